"""Session locks (``_wire/session_lock.py``): held while a session lives, taken once it is gone."""

from __future__ import annotations

import fcntl
import os
import threading

import pytest

from asyncray._wire import session_lock


def test_a_held_lock_cannot_be_taken_and_a_released_one_is_missing(tmp_path):
    path = str(tmp_path / "asyncray-lock_1-ab")
    fd = session_lock.hold(path)
    try:
        assert session_lock.try_take(path) is None  # another open file: it conflicts
    finally:
        session_lock.release(fd, path)
    assert not os.path.exists(path)
    assert session_lock.try_take(path) is session_lock.MISSING


def test_a_lock_nobody_holds_is_taken(tmp_path):
    path = tmp_path / "asyncray-lock_1-ab"
    path.write_bytes(b"")  # a session that died: its lock file, unlocked
    fd = session_lock.try_take(str(path))
    assert isinstance(fd, int)
    session_lock.release(fd, str(path))
    assert not path.exists()


def test_a_lock_the_owner_holds_survives_in_a_forked_child(tmp_path):
    """The zygote and workers inherit the lock: it is held while any of them lives."""
    path = str(tmp_path / "asyncray-lock_1-ab")
    fd = session_lock.hold(path)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child keeps the inherited fd until told to exit
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    try:
        os.close(fd)  # the owner is gone; the child still holds the lock
        assert session_lock.try_take(path) is None
    finally:
        os.close(w)
        os.waitpid(pid, 0)
    fd = session_lock.try_take(path)
    assert isinstance(fd, int)
    session_lock.release(fd, path)


def test_an_owner_racing_a_sweeper_ends_up_holding_a_lock_at_the_path(tmp_path):
    """A sweeper took a new session's lock file before the session locked it and
    removed it: the session must not keep a lock on a file nobody can see."""
    path = str(tmp_path / "asyncray-lock_1-ab")
    with open(path, "w"):
        pass
    swept = session_lock.try_take(path)
    assert isinstance(swept, int)
    held: list[int] = []
    owner = threading.Thread(target=lambda: held.append(session_lock.hold(path)))
    owner.start()  # blocks in flock, or creates the file again after the sweep
    session_lock.release(swept, path)
    owner.join(10)
    assert held, "the owner never got its lock"
    try:
        assert os.path.exists(path)
        assert os.fstat(held[0]).st_ino == os.stat(path).st_ino
        probe = os.open(path, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):  # the lock at the path is held
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(probe)
    finally:
        session_lock.release(held[0], path)
