"""What asyncray needs from the operating system, checked once by ``init``.

asyncray supports Linux (CI runs CPython 3.11 on Linux x86_64). Where
something it relies on is missing, ``init`` fails at once naming it, instead
of a hang or a crash later in the zygote or a worker. ``/dev/shm`` is not
required: without it large objects go to a file-backed directory
(``_wire/shm.py``).
"""

from __future__ import annotations

import os
import socket
import sys

SUPPORTED = "asyncray supports Linux (CI runs CPython 3.11 on Linux x86_64)"


def _has_prctl() -> bool:
    """Whether libc has ``prctl`` (the zygote's parent-death signal and subreaper)."""
    import ctypes  # here, not at import: ``import asyncray`` stays cheap

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return callable(libc.prctl)
    except (OSError, AttributeError):
        return False


def _has_fcntl_locks() -> bool:
    try:
        import fcntl
    except ImportError:
        return False
    return hasattr(fcntl, "flock") and hasattr(fcntl, "lockf")


def missing(*, embedded: bool) -> list[str]:
    """What this platform lacks of what asyncray relies on (empty: nothing).

    A driver joining a head (``embedded=False``) forks nothing itself; it
    needs the unix socket and its peer credentials only.
    """
    gaps: list[str] = []
    if not sys.platform.startswith("linux"):
        gaps.append(f"Linux (this is {sys.platform})")
    if not hasattr(socket, "AF_UNIX"):
        gaps.append("unix sockets (socket.AF_UNIX)")
    if not hasattr(socket, "SO_PEERCRED"):
        gaps.append("peer credentials on unix sockets (socket.SO_PEERCRED)")
    if not embedded:
        return gaps
    if not hasattr(os, "fork"):
        gaps.append("os.fork")
    if not (hasattr(socket, "send_fds") and hasattr(socket, "recv_fds")):
        gaps.append("passing file descriptors (socket.send_fds/recv_fds, SCM_RIGHTS)")
    if not _has_prctl():
        gaps.append("prctl in libc (PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER)")
    if not hasattr(os, "sched_getaffinity"):
        gaps.append("os.sched_getaffinity")
    if not _has_fcntl_locks():
        gaps.append("file locks (fcntl.flock, fcntl.lockf)")
    return gaps


def check(*, embedded: bool) -> None:
    """Raise ``RuntimeError`` naming what is missing, if anything is."""
    gaps = missing(embedded=embedded)
    if gaps:
        raise RuntimeError(
            "asyncray cannot run on this platform: it needs " + "; ".join(gaps) + f". {SUPPORTED}."
        )
