"""Synchronisation helpers for tests: poll a condition, never sleep blindly.

These functions also run inside task workers (they are pickled by reference,
and workers are forked after the test modules were imported), so they only
use the standard library.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

POLL_S = 0.01


def wait_for_condition(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it is truthy; raise AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(POLL_S)


def arrive_and_wait(
    directory: str | os.PathLike[str], name: str, parties: int, timeout: float = 10.0
) -> bool:
    """A file barrier: mark ``name`` as arrived, wait until ``parties`` have arrived.

    Returns True if everyone arrived within ``timeout``, False otherwise, so a
    task can report "I was never running alongside the others" as a value
    instead of hanging the test.
    """
    directory = Path(directory)
    (directory / f"arrived-{name}").touch()
    deadline = time.monotonic() + timeout
    while len(list(directory.glob("arrived-*"))) < parties:
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


def wait_for_file(path: str | os.PathLike[str], timeout: float = 10.0) -> bool:
    """Wait until ``path`` exists; True if it appeared within ``timeout``."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


def record_attempt(path: str | os.PathLike[str]) -> int:
    """Append this process's pid as one line to ``path``; return the attempt number."""
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
    return len(attempts(path))


def attempts(path: str | os.PathLike[str]) -> list[int]:
    """The pids recorded by ``record_attempt``, one per attempt."""
    try:
        with open(path) as f:
            return [int(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def process_gone(pid: int) -> bool:
    """True if ``pid`` no longer runs (it exited; an unreaped zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return True
    # The state letter follows the parenthesised command name, which may hold spaces.
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_for_process_exit(pid: int, timeout: float = 10.0) -> None:
    """Poll until ``pid`` has exited; raise AssertionError naming it after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not process_gone(pid):
        if time.monotonic() >= deadline:
            raise AssertionError(f"process {pid} still running after {timeout} s")
        time.sleep(POLL_S)
