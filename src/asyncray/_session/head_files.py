"""Where a shared head lives on disk, and who may reach it.

A head's files are in one directory per user (``{tmp}/asyncray-{uid}``, or
the directory of the socket path given to ``asyncray start --address``):

- ``head.sock`` — the unix socket drivers connect to (mode 0600);
- ``token`` — the secret a driver presents in its hello (mode 0600);
- ``head.json`` — the head's pid, socket, resources and start time;
- ``head.log`` — the head's own log (when it runs as a daemon);
- ``head.lock`` — locked by the running head (``lockf``), so two heads
  started at once at one address cannot both serve; kept, never removed
  (a lock file removed while another process opens it locks nothing).

The directory must be the user's own and closed to everyone else (0700);
anything else — another owner, a symlink, wider permissions — is refused
with a message rather than used, since the token in it is the only secret
between the head and its drivers. Drivers never reach the head over TCP (its
one TCP socket is the read-only dashboard's, on 127.0.0.1).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
from typing import Any, NamedTuple

SOCKET_NAME = "head.sock"
TOKEN_NAME = "token"
INFO_NAME = "head.json"
LOG_NAME = "head.log"
LOCK_NAME = "head.lock"

# The address that means "the head this user started" (``init(address="auto")``).
AUTO = "auto"


def default_directory() -> str:
    """The user's head directory: ``$ASYNCRAY_HEAD_DIR`` or ``{tmp}/asyncray-{uid}``."""
    configured = os.environ.get("ASYNCRAY_HEAD_DIR")
    if configured:
        return os.path.abspath(configured)
    return os.path.join(tempfile.gettempdir(), f"asyncray-{os.getuid()}")


class HeadFiles(NamedTuple):
    """The files of one head, in ``directory``.

    (A NamedTuple, not a frozen dataclass: ~1 ms less of ``import asyncray``.)
    """

    directory: str

    @property
    def socket(self) -> str:
        return os.path.join(self.directory, SOCKET_NAME)

    @property
    def token(self) -> str:
        return os.path.join(self.directory, TOKEN_NAME)

    @property
    def info(self) -> str:
        return os.path.join(self.directory, INFO_NAME)

    @property
    def log(self) -> str:
        return os.path.join(self.directory, LOG_NAME)

    @property
    def lock(self) -> str:
        return os.path.join(self.directory, LOCK_NAME)

    def take_lock(self) -> int | None:
        """Lock ``head.lock`` for this process; its fd, or None if another process holds it.

        A POSIX record lock: the zygote and workers forked later do not
        inherit it, and it is released when the head exits, however it exits.
        """
        fd = open_nofollow(self.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return fd

    def read_token(self) -> str:
        check_private(self.token, is_dir=False)
        with open(self.token, encoding="ascii") as f:
            return f.read().strip()

    def write_token(self, token: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.token)
        fd = os.open(self.token, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(token)

    def lock_held(self) -> bool:
        """Whether a head (running or starting) holds ``head.lock``.

        Not to be called in a process that holds the lock itself: closing
        any fd of the file releases a process's POSIX locks.
        """
        try:
            fd = os.open(self.lock, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return False  # no lock file (or a symlink): no head has locked it
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)  # (and the lock, if we took it)
        return False

    def read_info(self) -> dict[str, Any] | None:
        import json

        try:
            with open(self.info, encoding="utf-8") as f:
                info = json.load(f)
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def write_info(self, info: dict[str, Any]) -> None:
        import json

        tmp = self.info + ".tmp"
        fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(info, f, indent=1)
        os.replace(tmp, self.info)

    def remove(self) -> None:
        """Remove the head's files (not the directory: other heads' may share it)."""
        for path in (self.socket, self.token, self.info):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def open_nofollow(path: str, flags: int) -> int:
    """``os.open`` (mode 0600 if created), refusing a symlink with a message.

    Raises:
        PermissionError: ``path`` is a symlink (the head writes through none).
    """
    try:
        return os.open(path, flags | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        raise PermissionError(
            f"asyncray refuses {path}: a symlink where the head's file goes. Remove it."
        ) from None


def check_private(path: str, *, is_dir: bool) -> None:
    """Refuse a head file or directory another user could read, replace or own.

    Raises:
        PermissionError: it is a symlink, not ours, or open to others.
        FileNotFoundError: it does not exist.
    """
    st = os.lstat(path)
    kind = "directory" if is_dir else "file"
    if stat.S_ISLNK(st.st_mode):
        raise PermissionError(f"asyncray refuses {path}: a symlink where the head's {kind} goes")
    if is_dir and not stat.S_ISDIR(st.st_mode):
        raise PermissionError(f"asyncray refuses {path}: not a directory")
    if st.st_uid != os.getuid():
        raise PermissionError(
            f"asyncray refuses {path}: it belongs to uid {st.st_uid}, not to you "
            f"(uid {os.getuid()}). Remove it or set ASYNCRAY_HEAD_DIR to a directory of yours."
        )
    if st.st_mode & 0o077:
        raise PermissionError(
            f"asyncray refuses {path}: its mode {stat.S_IMODE(st.st_mode):o} lets other users "
            f"in; the head's {kind} must be private (chmod {'700' if is_dir else '600'})."
        )


def private_directory(path: str) -> str:
    """Create ``path`` (mode 0700) if it is missing; refuse it if it is not private."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    check_private(path, is_dir=True)
    return path


def resolve(address: str) -> HeadFiles:
    """The head files an address names: ``"auto"``, a head's socket, or its directory.

    A path that is not an existing file and not named ``head.sock`` is a
    directory (``asyncray start --address DIR`` creates it).
    """
    if address == AUTO:
        return HeadFiles(default_directory())
    path = os.path.abspath(os.path.expanduser(address))
    if os.path.basename(path) == SOCKET_NAME or (os.path.exists(path) and not os.path.isdir(path)):
        return HeadFiles(os.path.dirname(path))  # the socket itself
    return HeadFiles(path)
