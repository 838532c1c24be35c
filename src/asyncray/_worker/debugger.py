"""``breakpoint()`` in a task or actor: a pdb session the user joins with ``asyncray debug``.

A worker's stdin is not the user's terminal, so plain pdb there would hang
the task. Instead ``breakpoint()`` opens a unix socket in a private per-user
directory (``{tmp}/asyncray-debug-{uid}``, mode 0700; the socket 0600), says
on the driver's terminal where the task stopped and how to join, and waits.
``asyncray debug`` (or any client of a unix socket, ``nc -U PATH``) joins; pdb
then reads commands from and writes to that connection. ``continue`` lets
the task go on (the connection closes); ``quit`` ends the task with pdb's
``BdbQuit``. ``PYTHONBREAKPOINT=0`` turns breakpoints off, as for any Python
program. While it waits, the task can still be cancelled (``ray.cancel``).
"""

from __future__ import annotations

import contextlib
import json
import os
import pdb
import socket
import stat
import sys
import tempfile
import time
from typing import Any, TextIO

from .. import _task_context


def debug_directory() -> str:
    """Where waiting breakpoints are: ``$ASYNCRAY_DEBUG_DIR`` or ``{tmp}/asyncray-debug-{uid}``."""
    configured = os.environ.get("ASYNCRAY_DEBUG_DIR")
    if configured:
        return os.path.abspath(configured)
    return os.path.join(tempfile.gettempdir(), f"asyncray-debug-{os.getuid()}")


def _private_directory() -> str:
    """The debug directory, created 0700; refused if another user could reach it."""
    path = debug_directory()
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.getuid()
        or info.st_mode & (stat.S_IRWXG | stat.S_IRWXO)
    ):
        raise PermissionError(
            f"asyncray's debug directory {path} is not a private directory of this user: "
            "remove it, or set ASYNCRAY_DEBUG_DIR to one."
        )
    return path


class _SocketPdb(pdb.Pdb):
    """pdb over one connection; ``continue`` and ``quit`` end the session."""

    def __init__(self, commands: TextIO, output: TextIO, on_end: Any) -> None:
        super().__init__(stdin=commands, stdout=output)
        self.use_rawinput = False
        self.prompt = "(asyncray-pdb) "
        self._on_end = on_end

    def do_continue(self, arg: str) -> Any:
        # One session per breakpoint(): breakpoints set in it would stop with
        # nobody connected, so they go with it.
        self.clear_all_breaks()
        result = super().do_continue(arg)
        self._on_end()
        return result

    do_c = do_cont = do_continue

    def do_quit(self, arg: str) -> Any:
        result = super().do_quit(arg)
        self._on_end()
        return result

    do_q = do_exit = do_quit

    def do_EOF(self, arg: str) -> Any:  # the user's end hung up: let the task go on
        return self.do_continue(arg)


def breakpoint_hook(*args: Any, frame: Any = None, **kwargs: Any) -> None:
    """``sys.breakpointhook`` of a worker: stop here until a debugger joins over a socket."""
    if os.environ.get("PYTHONBREAKPOINT") == "0":
        return
    frame = frame or sys._getframe(1)
    ctx = _task_context.current_task()
    what = ctx.name or "a worker"
    where = f"{frame.f_code.co_filename}:{frame.f_lineno}"
    directory = _private_directory()
    pid = os.getpid()
    path = os.path.join(directory, f"{pid}-{time.monotonic_ns()}.sock")
    meta = path[: -len(".sock")] + ".json"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn: socket.socket | None = None
    try:
        server.bind(path)
        os.chmod(path, 0o600)
        server.listen(1)
        with open(meta, "w") as f:
            json.dump({"pid": pid, "task": what, "where": where, "socket": path}, f)
        print(
            f"asyncray: breakpoint() in {what} (pid {pid}) at {where}: it waits for a "
            f"debugger. Join with `asyncray debug` (or `nc -U {path}`).",
            file=sys.stderr,
            flush=True,
        )
        conn, _ = server.accept()  # ray.cancel interrupts this (KeyboardInterrupt)
    finally:
        server.close()
        for name in (path, meta):
            with contextlib.suppress(OSError):
                os.unlink(name)
    assert conn is not None  # accept() returned
    # Two files: one read-write text file would drop what it read ahead (the
    # user's next commands) each time pdb writes.
    commands = conn.makefile("r", encoding="utf-8", errors="replace")
    output = conn.makefile("w", buffering=1, encoding="utf-8", errors="replace")

    def end() -> None:
        for closing in (output.flush, output.close, commands.close, conn.close):
            with contextlib.suppress(OSError):
                closing()

    output.write(f"asyncray: {what} (pid {pid}) stopped at {where}\n")
    _SocketPdb(commands, output, end).set_trace(frame)
