"""The zygote: a clean, single-threaded process that forks every child.

Forking a process that runs threads is unsafe (a lock held by another thread
stays held forever in the child) and spawning a fresh interpreter costs about
100 ms. So ``init()`` forks the zygote *before* the runtime thread starts. It
has everything the driver imported so far, stays single-threaded, and forks a
worker in about a millisecond when the runtime asks.

Data flow::

    runtime ──Spawn + fd (SCM_RIGHTS)──► zygote ──fork──► child (talks over fd)
    runtime ◄──Spawned(child_id, pid)─── zygote
    runtime ◄──Reaped(pid, status)────── zygote   (SIGCHLD → waitpid)

The zygote leaves the driver's process group, so a Ctrl-C in the terminal
reaches only the driver. It dies with the driver: EOF on its control socket,
or the parent-death signal. Before it exits it SIGKILLs and reaps every child,
so nothing outlives it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import signal
import socket
import sys
from collections.abc import Callable

from .._wire import polling
from .._wire import protocol as P
from .._wire.framing import take_frames

# Control messages are tiny; one recvmsg of this size always holds one whole.
_CTL_BUFSIZE = 1 << 16
_PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def start_zygote(
    child_main: Callable[[socket.socket, str, dict[str, str]], None],
) -> tuple[int, socket.socket]:
    """Fork the zygote; returns its pid and the runtime's end of the control socket."""
    parent_sock, zygote_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    driver_pid = os.getpid()
    pid = os.fork()
    if pid == 0:  # the zygote
        code = 0
        try:
            parent_sock.close()
            _zygote_main(zygote_sock, driver_pid, child_main)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    zygote_sock.close()
    return pid, parent_sock


def _zygote_main(
    ctl: socket.socket,
    driver_pid: int,
    child_main: Callable[[socket.socket, str, dict[str, str]], None],
) -> None:
    os.setpgid(0, 0)
    set_parent_death_signal()
    polling.allow_pollers(len(os.sched_getaffinity(0)) - 1)
    if os.getppid() != driver_pid:  # the driver died before prctl took effect
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: set[int] = set()
    sel = selectors.DefaultSelector()
    sel.register(ctl, selectors.EVENT_READ, "ctl")
    sel.register(wake_r, selectors.EVENT_READ, "chld")
    buf = bytearray()
    try:
        while True:
            for key, _ in sel.select():
                if key.data == "chld":
                    with contextlib.suppress(OSError):
                        os.read(wake_r, 4096)
                    _reap(ctl, children)
                    continue
                msg, fds = _recv_ctl(ctl, buf)
                if msg is None:
                    return  # the runtime is gone
                for spawn, fd in zip(msg, fds):
                    pid = _fork_child(ctl, sel, wake_r, wake_w, fd, spawn, child_main)
                    children.add(pid)
                    ctl.sendall(P.frame(P.Spawned(spawn.child_id, pid)))
                _reap(ctl, children)
    finally:
        for pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)


def _recv_ctl(ctl: socket.socket, buf: bytearray) -> tuple[list[P.Spawn] | None, list[int]]:
    """Read control frames; each Spawn arrives with exactly one file descriptor."""
    try:
        data, fds, _flags, _addr = socket.recv_fds(ctl, _CTL_BUFSIZE, 64)
    except (ConnectionError, OSError):
        return None, []
    if not data:
        return None, []
    buf += data
    msgs = [m for m in take_frames(buf, P.zygote_decoder.decode) if isinstance(m, P.Spawn)]
    return msgs, list(fds)


def _reap(ctl: socket.socket, children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        with contextlib.suppress(OSError):
            ctl.sendall(P.frame(P.Reaped(pid, status)))


def _fork_child(
    ctl: socket.socket,
    sel: selectors.BaseSelector,
    wake_r: int,
    wake_w: int,
    fd: int,
    spawn: P.Spawn,
    child_main: Callable[[socket.socket, str, dict[str, str]], None],
) -> int:
    pid = os.fork()
    if pid != 0:
        os.close(fd)
        return pid
    # ---- in the child
    code = 0
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        sel.close()
        ctl.close()
        os.close(wake_r)
        os.close(wake_w)
        set_parent_death_signal()
        os.environ.update(spawn.env)
        sock = socket.socket(fileno=fd)
        child_main(sock, spawn.kind, spawn.env)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
