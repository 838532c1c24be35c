"""Session locks: whether a session still runs, in any PID namespace.

A session's segments and spill files carry its tag in their names. Whether
that session is still alive cannot be judged from a pid: a driver in another
PID namespace sharing ``/dev/shm`` (containers with a shared IPC namespace)
has a pid that means nothing here, or names an unrelated live process.

So a session holds an exclusive ``flock`` on ``asyncray-lock_{tag}`` in each
directory it writes to, from before its first file until after its last is
removed. The lock belongs to the open file description, which the zygote and
every worker inherit at fork: it is held as long as any process of the
session lives, and only the kernel's view of those processes decides. A
sweep that can take a tag's lock knows nobody of that session is left.

Ordering that makes it race-free:

- the owner creates and locks the file *before* creating any other file of
  the tag, and checks that the file it locked is still the one at the path
  (a sweeper may have removed it in between; then it starts again);
- cleanup (owner or sweeper) removes the tag's files first and the lock file
  last, while still holding the lock, then closes it; a sweeper that locks a
  file no longer at its path leaves the tag alone (someone else cleaned it).
"""

from __future__ import annotations

import contextlib
import fcntl
import os


class Missing:
    """``try_take`` found no lock file: the tag has no lock to judge it by."""


MISSING = Missing()


def hold(path: str) -> int:
    """Create and lock ``path`` for this session; returns the fd to keep open."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            # Blocking: only a sweeper can hold a fresh tag's lock, and only
            # while it removes the (empty) tag; then we start again below.
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _still_at(fd, path):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def try_take(path: str) -> int | Missing | None:
    """Lock another session's lock file: the fd if that session is gone.

    ``MISSING`` if there is no lock file; ``None`` if the session is alive,
    the file was just cleaned up by someone else, or it cannot be opened
    (then the tag is left alone).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return MISSING
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if _still_at(fd, path):
            return fd
    except OSError:  # BlockingIOError: a process of the session holds it
        pass
    os.close(fd)
    return None


def release(fd: int, path: str) -> None:
    """Remove the lock file, then drop the lock (after the tag's other files are gone)."""
    with contextlib.suppress(OSError):
        os.unlink(path)
    with contextlib.suppress(OSError):
        os.close(fd)


def _still_at(fd: int, path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)
