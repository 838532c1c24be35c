"""The crash matrix: what the caller sees when a task fails at each stage, and retries.

Each row breaks one stage of a task's life — argument pickling in the caller,
argument unpickling in the worker, the function itself, the worker process,
result pickling in the worker, result unpickling in the caller — and checks
the error the caller gets and that the runtime keeps working afterwards.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

import pytest
from _helpers import attempts, record_attempt, wait_for_file

import asyncray
from asyncray.exceptions import RayError, RayTaskError, WorkerCrashedError


def _explode_on_unpickle():
    raise RuntimeError("unpickle boom")


class FailsToUnpickle:
    """Pickles fine; unpickling it anywhere raises."""

    def __reduce__(self):
        return (_explode_on_unpickle, ())


class FailsToPickle:
    def __reduce__(self):
        raise TypeError("refuses to pickle")


class LockedError(Exception):
    """An exception that cannot be pickled: it holds a lock."""

    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


@asyncray.remote(max_retries=0)
def misbehave(how, log, payload=None):
    record_attempt(log)
    if how == "raise":
        raise ValueError("raised in the function")
    if how == "exit":
        os._exit(37)
    if how == "sys-exit":
        sys.exit(93)
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "segfault":
        ctypes.string_at(0)
    if how == "return-unpicklable":
        return threading.Lock()
    if how == "return-fails-to-unpickle":
        return FailsToUnpickle()
    if how == "raise-unpicklable":
        raise LockedError("holds a lock")
    return payload


@asyncray.remote
def healthy(x):
    return x + 1


def assert_runtime_still_works():
    assert asyncray.get([healthy.remote(i) for i in range(4)], timeout=20) == [1, 2, 3, 4]


# how, payload, expected error class, fragments its str() must contain
# ("{pid}" is replaced by the pid of the worker that ran the attempt).
CRASH_MATRIX = [
    ("arg-fails-to-unpickle", FailsToUnpickle(), RayError, ["unpickle boom"]),
    ("raise", None, ValueError, ["misbehave", "ValueError: raised in the function"]),
    ("exit", None, WorkerCrashedError, ["{pid}", "37"]),
    ("sys-exit", None, WorkerCrashedError, ["{pid}", "93"]),
    ("sigkill", None, WorkerCrashedError, ["{pid}", "SIGKILL"]),
    ("segfault", None, WorkerCrashedError, ["{pid}", "SIGSEGV"]),
    ("return-unpicklable", None, RayTaskError, ["pickle", "lock"]),
    ("return-fails-to-unpickle", None, RayError, ["unpickle boom"]),
    ("raise-unpicklable", None, RayError, ["holds a lock"]),
]


@pytest.mark.parametrize(
    ("how", "payload", "expected", "fragments"),
    CRASH_MATRIX,
    ids=[row[0] for row in CRASH_MATRIX],
)
def test_crash_matrix(ray_start, tmp_path, how, payload, expected, fragments):
    log = tmp_path / "attempts"
    with pytest.raises(expected) as info:
        asyncray.get(misbehave.remote(how, str(log), payload), timeout=20)
    text = str(info.value)
    pids = attempts(log)
    assert len(pids) <= 1, "max_retries=0 must run the task at most once"
    for fragment in fragments:
        if fragment == "{pid}":
            assert str(pids[0]) in text, f"pid {pids[0]} not in {text!r}"
        else:
            # Blank the pid out so an exit code cannot be "found" inside it.
            rest = text.replace(str(pids[0]), "<pid>") if pids else text
            assert fragment in rest, f"{fragment!r} not in {text!r}"
    assert_runtime_still_works()


@pytest.mark.parametrize(
    "argument",
    [threading.Lock(), FailsToPickle()],
    ids=["lock", "reduce-raises"],
)
def test_unpicklable_argument_raises_type_error_at_remote(ray_start, tmp_path, argument):
    with pytest.raises(TypeError, match="Could not serialize"):
        misbehave.remote("return", str(tmp_path / "log"), argument)
    assert attempts(tmp_path / "log") == []
    assert_runtime_still_works()


def test_function_with_unpicklable_closure_raises_type_error_at_remote(ray_start):
    lock = threading.Lock()

    @asyncray.remote
    def uses_lock():
        return lock.locked()

    with pytest.raises(TypeError, match="Could not serialize"):
        uses_lock.remote()
    assert_runtime_still_works()


def test_worker_crash_is_retried_three_times_by_default(ray_start, tmp_path):
    @asyncray.remote
    def exit_every_time(log):
        record_attempt(log)
        os._exit(1)

    log = tmp_path / "attempts"
    with pytest.raises(WorkerCrashedError) as info:
        asyncray.get(exit_every_time.remote(str(log)), timeout=30)
    pids = attempts(log)
    assert len(pids) == 4
    assert len(set(pids)) == 4, "each attempt needs a fresh worker"
    assert str(pids[-1]) in str(info.value)
    assert_runtime_still_works()


def test_max_retries_zero_runs_once(ray_start, tmp_path):
    log = tmp_path / "attempts"
    with pytest.raises(WorkerCrashedError):
        asyncray.get(misbehave.options(max_retries=0).remote("exit", str(log)), timeout=20)
    assert len(attempts(log)) == 1


def test_crash_then_success_on_retry_returns_the_value(ray_start, tmp_path):
    @asyncray.remote(max_retries=2)
    def crash_first_time(log):
        if record_attempt(log) == 1:
            os._exit(1)
        return "second attempt"

    log = tmp_path / "attempts"
    assert asyncray.get(crash_first_time.remote(str(log)), timeout=20) == "second attempt"
    assert len(attempts(log)) == 2


@asyncray.remote
def raise_numbered(log, exc_type):
    n = record_attempt(log)
    raise exc_type(f"attempt {n}")


def test_application_errors_are_not_retried_by_default(ray_start, tmp_path):
    log = tmp_path / "attempts"
    with pytest.raises(ValueError, match="attempt 1"):
        asyncray.get(raise_numbered.options(max_retries=3).remote(str(log), ValueError))
    assert len(attempts(log)) == 1


def test_retry_exceptions_true_retries_and_raises_the_last_error(ray_start, tmp_path):
    log = tmp_path / "attempts"
    ref = raise_numbered.options(retry_exceptions=True, max_retries=2).remote(str(log), ValueError)
    with pytest.raises(ValueError, match="attempt 3"):
        asyncray.get(ref, timeout=20)
    assert len(attempts(log)) == 3


@pytest.mark.parametrize(
    ("raised", "expected_attempts"),
    [(ValueError, 3), (KeyError, 1)],
    ids=["listed", "not-listed"],
)
def test_retry_exceptions_allow_list(ray_start, tmp_path, raised, expected_attempts):
    log = tmp_path / "attempts"
    ref = raise_numbered.options(retry_exceptions=[ValueError], max_retries=2).remote(
        str(log), raised
    )
    with pytest.raises(raised, match=f"attempt {expected_attempts}"):
        asyncray.get(ref, timeout=20)
    assert len(attempts(log)) == expected_attempts


def test_worker_crash_fails_only_its_own_task(ray_start, tmp_path):
    @asyncray.remote
    def bystander(started, go):
        open(started, "w").close()
        return "released" if wait_for_file(go) else "hold timed out"

    started, go = tmp_path / "started", tmp_path / "go"
    survivor = bystander.remote(str(started), str(go))
    assert wait_for_file(started)
    with pytest.raises(WorkerCrashedError):
        asyncray.get(misbehave.remote("sigkill", str(tmp_path / "log")), timeout=20)
    go.touch()
    assert asyncray.get(survivor, timeout=20) == "released"
