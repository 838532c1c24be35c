"""A shared asyncray head for the ``client:`` workloads and ``connect time``.

The harness (:mod:`bench.orchestrate`) makes a private temporary directory
for each head and, whatever happens to the processes that use it, stops the
head and removes the directory afterwards (:func:`head_directory`). Whoever
needs the head running starts it there with :func:`start_head`, as a user
would (``python -m asyncray start --head --address DIR``: a daemon in a
session of its own, so killing a child's process tree would not reach it;
hence the harness's own stop). Drivers connect with
``init(address="auto")`` and ``$ASYNCRAY_HEAD_DIR`` set to the directory
(:data:`HEAD_DIR_ENV`), the issue's "connect" path.

Only the standard library (and psutil, for the last-resort kill) is used,
so the child can import this before anything else.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

HEAD_DIR_ENV = "ASYNCRAY_HEAD_DIR"
"""asyncray's variable: the directory ``init(address="auto")`` looks in."""
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0


def _cli(python: str, env: dict[str, str], *args: str, timeout: float) -> str:
    """Run ``python -m asyncray ARGS``; return its output, raise on failure."""
    done = subprocess.run(
        [python, "-m", "asyncray", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    out = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise RuntimeError(f"`asyncray {' '.join(args)}` exited {done.returncode}: {out}")
    return out


def start_head(directory: str, python: str | None = None, env: dict[str, str] | None = None) -> int:
    """``asyncray start --head --address DIRECTORY`` with default resources; return its pid.

    The head's workers inherit ``env`` (the bench's ``PYTHONPATH``), so they
    can import :mod:`bench.tasks`.
    """
    _cli(
        python or sys.executable,
        dict(os.environ if env is None else env),
        "start",
        "--head",
        "--address",
        directory,
        timeout=START_TIMEOUT_S,
    )
    return head_pid(directory)


def head_pid(directory: str) -> int:
    """The pid in ``DIRECTORY/head.json``, or 0."""
    try:
        with open(os.path.join(directory, "head.json")) as f:
            pid = json.load(f).get("pid", 0)
    except (OSError, ValueError, AttributeError):
        return 0
    return pid if isinstance(pid, int) else 0


def stop_head(directory: str, python: str | None = None, env: dict[str, str] | None = None) -> str:
    """``asyncray stop --address DIRECTORY``; a no-op if no head runs there.

    If the command fails or the head outlives it, the head and everything
    under it get SIGKILL. Returns what happened, for the log.
    """
    pid = head_pid(directory)
    procs = _tree(pid)
    try:
        said = _cli(
            python or sys.executable,
            dict(os.environ if env is None else env),
            "stop",
            "--address",
            directory,
            "--grace-period",
            str(STOP_GRACE_S),
            timeout=STOP_TIMEOUT_S,
        )
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        said = f"{type(exc).__name__}: {exc}"
    left = _wait_gone(procs, STOP_GRACE_S)
    if left:
        for p in left:
            with contextlib.suppress(Exception):
                os.kill(p.pid, signal.SIGKILL)
        _wait_gone(left, 5.0)
        said += f"; killed {len(left)} leftover process(es)"
    return said


def _tree(pid: int) -> list:
    """The head and its descendants (zygote, workers, actors), as psutil processes."""
    if not pid:
        return []
    try:
        import psutil

        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except Exception:
        return []


def _wait_gone(procs: list, timeout: float) -> list:
    """Wait until ``procs`` are gone or zombies; return those still alive."""
    if not procs:
        return []
    import psutil

    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for p in procs:
            with contextlib.suppress(psutil.Error):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.02)


@contextlib.contextmanager
def head_directory(python: str, env: dict[str, str]) -> Iterator[str]:
    """A private directory for one head; on exit, stop any head there and remove it.

    Used by the parent around every process that starts a head in it, so a
    head is stopped even if that process crashed, hung or was killed.
    """
    directory = tempfile.mkdtemp(prefix="bench-head-")  # mode 0700, as asyncray requires
    try:
        yield directory
    finally:
        try:
            if head_pid(directory):
                stop_head(directory, python, env)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
