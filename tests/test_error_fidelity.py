"""Task errors reach the caller as Ray 2.60 delivers them (issue #17, error fidelity).

Every expectation below was observed with Ray 2.60 (``ray.init(num_cpus=1)``,
a task raising the error, ``ray.get`` on its ref); the comments quote Ray.
"""

from __future__ import annotations

import errno
import pickle
import re
import sys
import threading

import pytest

import asyncray
from asyncray.exceptions import (
    ActorDiedError,
    RayError,
    RayTaskError,
    TaskCancelledError,
    UnserializableException,
    WorkerCrashedError,
)

pytestmark = pytest.mark.timeout(60)


class TwoArgError(Exception):
    """``__init__`` takes other arguments than its ``args``: it cannot be unpickled."""

    def __init__(self, a, b):
        super().__init__(f"{a}-{b}")


class BadReduceError(Exception):
    """Its ``__reduce__`` gives a callable that fails when the caller unpickles it."""

    def __reduce__(self):
        return (_fail_rebuild, ())


def _fail_rebuild():
    raise RuntimeError("cannot rebuild")


class LockedError(Exception):
    """Holds a lock: it cannot be pickled at all."""

    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


def _recurse():
    return _recurse()


def _raise(kind):
    if kind == "memory":
        raise MemoryError("out of mem")
    if kind == "recursion":
        _recurse()
    if kind == "oserror":
        raise FileNotFoundError(errno.ENOENT, "No such file", "/x/y")
    if kind == "unicode":
        b"\xff".decode("utf-8")
    if kind == "two_arg":
        raise TwoArgError(1, 2)
    if kind == "bad_reduce":
        raise BadReduceError("bu")
    if kind == "locked":
        raise LockedError("up")
    if kind == "cause":
        try:
            raise KeyError("inner")
        except KeyError as e:
            raise ValueError("outer") from e
    if kind == "context":
        try:
            raise KeyError("inner")
        except KeyError:
            raise ValueError("outer2")
    if kind == "long":
        raise ValueError("x" * 100_000)
    if kind == "group":
        raise ExceptionGroup("grp", [ValueError("v"), TypeError("t")])  # noqa: F821


@asyncray.remote(max_retries=0)
def fail(kind):
    _raise(kind)


def _raised(kind):
    with pytest.raises(BaseException) as info:
        asyncray.get(fail.remote(kind), timeout=30)
    return info.value


def test_memory_error_is_catchable_as_memory_error(ray_start):
    # Ray: type RayTaskError(MemoryError), mro [.., RayTaskError, RayError, MemoryError, ..],
    # args (MemoryError('out of mem'),); str ends "MemoryError: out of mem".
    with pytest.raises(MemoryError) as info:
        asyncray.get(fail.remote("memory"), timeout=30)
    err = info.value
    assert isinstance(err, RayTaskError)
    assert type(err).__name__ == "RayTaskError(MemoryError)"
    assert err.args == (err.cause,)
    assert type(err.cause) is MemoryError
    assert str(err).startswith("ray::fail() (pid=")
    assert str(err).endswith("MemoryError: out of mem")
    assert repr(err) == "RayTaskError(MemoryError)(MemoryError('out of mem'))"


def test_recursion_error_keeps_the_repeated_frames_summary(ray_start):
    # Ray: RayTaskError(RecursionError), str has "[Previous line repeated N more times]".
    err = _raised("recursion")
    assert isinstance(err, RecursionError) and isinstance(err, RayTaskError)
    text = str(err)
    assert "more times]" in text
    assert text.endswith("RecursionError: maximum recursion depth exceeded")


def test_os_error_subclass_keeps_errno_and_filename_in_its_cause(ray_start):
    # Ray: RayTaskError(FileNotFoundError); cause FileNotFoundError(2, 'No such file');
    # str ends "FileNotFoundError: [Errno 2] No such file: '/x/y'".
    err = _raised("oserror")
    assert isinstance(err, FileNotFoundError) and isinstance(err, OSError)
    assert (err.cause.errno, err.cause.strerror, err.cause.filename) == (
        errno.ENOENT,
        "No such file",
        "/x/y",
    )
    assert str(err).endswith("FileNotFoundError: [Errno 2] No such file: '/x/y'")


def test_unicode_decode_error_keeps_its_five_arguments(ray_start):
    # Ray: cause UnicodeDecodeError('utf-8', b'\xff', 0, 1, 'invalid start byte').
    err = _raised("unicode")
    assert isinstance(err, UnicodeDecodeError) and isinstance(err, ValueError)
    assert err.cause.args == ("utf-8", b"\xff", 0, 1, "invalid start byte")
    assert str(err).endswith(
        "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"
    )


def test_explicit_cause_chain_is_in_the_text(ray_start):
    # Ray: str shows the KeyError, "The above exception was the direct cause of the
    # following exception:", then the ValueError, each under a "ray::fail() (pid=..." header.
    err = _raised("cause")
    assert isinstance(err, ValueError)
    text = str(err)
    assert text.count("ray::fail() (pid=") == 2
    assert "KeyError: 'inner'" in text
    assert "The above exception was the direct cause of the following exception:" in text
    assert text.endswith("ValueError: outer")
    assert "Traceback (most recent call last)" not in text


def test_implicit_context_chain_is_in_the_text(ray_start):
    # Ray: "During handling of the above exception, another exception occurred:".
    text = str(_raised("context"))
    assert "KeyError: 'inner'" in text
    assert "During handling of the above exception, another exception occurred:" in text
    assert text.endswith("ValueError: outer2")


def test_long_message_arrives_whole(ray_start):
    # Ray: the 5000-character message is in str() whole (len(str) 5302).
    err = _raised("long")
    assert err.cause.args == ("x" * 100_000,)
    assert str(err).endswith("ValueError: " + "x" * 100_000)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception groups are Python 3.11+")
def test_exception_group_is_catchable_as_a_group(ray_start):
    # Ray: RayTaskError(ExceptionGroup), .message 'grp', .exceptions (ValueError('v'),
    # TypeError('t')); str starts "+ Exception Group Traceback (most recent call last):".
    err = _raised("group")
    assert isinstance(err, ExceptionGroup)  # noqa: F821
    assert isinstance(err, RayTaskError)
    assert type(err).__name__ == "RayTaskError(ExceptionGroup)"
    assert err.message == "grp"
    assert [type(e) for e in err.exceptions] == [ValueError, TypeError]
    text = str(err)
    assert text.startswith("+ Exception Group Traceback (most recent call last):")
    assert "ValueError: v" in text and "TypeError: t" in text


_UNSERIALIZABLE_HEAD = (
    # Ray 2.60's UnserializableException.__str__, verbatim.
    "Failed to deserialize exception. Refer to https://docs.ray.io/en/latest/ray-core/"
    "objects/serialization.html#custom-serializers-for-exceptions for more information.\n"
    "Original exception:\n"
)


@pytest.mark.parametrize(
    ("kind", "last_line"), [("two_arg", "TwoArgError: 1-2"), ("bad_reduce", "BadReduceError: bu")]
)
def test_exception_that_cannot_be_rebuilt_is_unserializable_exception(ray_start, kind, last_line):
    # Ray: UnserializableException (not a RayTaskError); args == (text,) where text is
    # "ray.exceptions.RayTaskError: ray::f() (pid=..., ip=...)\n<traceback>\nCustomInit: 1-2\n".
    err = _raised(kind)
    assert type(err) is UnserializableException
    assert isinstance(err, RayError) and not isinstance(err, RayTaskError)
    text = err.args[0]
    assert text.startswith("asyncray.exceptions.RayTaskError: ray::fail() (pid=")
    assert text.endswith(last_line + "\n")
    assert str(err) == _UNSERIALIZABLE_HEAD + text


def test_exception_that_cannot_be_pickled_becomes_a_ray_error_cause(ray_start):
    # Ray: plain RayTaskError whose cause is RayError("Exception __main__.Unpicklable isn't
    # serializable: cannot pickle '_thread.lock' object.\nOriginal exception details:\n...");
    # its str is the traceback ending "Unpicklable: up".
    err = _raised("locked")
    assert type(err) is RayTaskError
    assert type(err.cause) is RayError
    assert str(err.cause).startswith(
        f"Exception {__name__}.LockedError isn't serializable: "
        "cannot pickle '_thread.lock' object.\nOriginal exception details:\n"
    )
    assert str(err).endswith("LockedError: up")


def test_unserializable_exception_pickles_with_its_text():
    err = UnserializableException("original text")
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == _UNSERIALIZABLE_HEAD + "original text"
    assert again.args == ("original text",)
    assert again._original_stack_trace == again.original_stack_trace == "original text"


@asyncray.remote(max_retries=0)
def exit_with(code):
    import os

    os._exit(code)


def test_worker_crash_names_pid_and_exit_code_and_no_log_files(ray_start):
    # Ray: WorkerCrashedError "The worker died unexpectedly while executing this task.
    # Check python-core-worker-*.log files for more information." asyncray writes no log
    # files: it names the worker's pid and exit code instead (docs/ray-compatibility.md).
    with pytest.raises(WorkerCrashedError) as info:
        asyncray.get(exit_with.remote(3), timeout=30)
    text = str(info.value)
    assert re.fullmatch(
        r"The worker died unexpectedly while executing this task \(pid=\d+, exit code 3\)\.", text
    )
    assert "log" not in text


def test_system_exit_in_a_task_is_a_worker_crash(ray_start):
    # Ray: SystemExit(3) raised in a task -> WorkerCrashedError (the worker exits).
    with pytest.raises(WorkerCrashedError, match=r"exit code 3\)"):
        asyncray.get(exit_with_system_exit.remote(), timeout=30)


@asyncray.remote(max_retries=0)
def exit_with_system_exit():
    raise SystemExit(3)


@asyncray.remote(max_retries=0)
def raise_keyboard_interrupt():
    raise KeyboardInterrupt("kb")


def test_keyboard_interrupt_raised_by_a_task_is_a_cancelled_task(ray_start):
    # Ray: RayTaskError(TaskCancelledError); str ends
    # "ray.exceptions.TaskCancelledError: Task: TaskID(...) was cancelled."
    with pytest.raises(TaskCancelledError) as info:
        asyncray.get(raise_keyboard_interrupt.remote(), timeout=30)
    err = info.value
    assert isinstance(err, RayTaskError)
    assert not isinstance(err, KeyboardInterrupt)
    assert type(err).__name__ == "RayTaskError(TaskCancelledError)"
    assert 'raise KeyboardInterrupt("kb")' in str(err)
    pattern = r"asyncray\.exceptions\.TaskCancelledError: Task: \w+ was cancelled\.$"
    assert re.search(pattern, str(err))


@asyncray.remote(max_retries=0)
def divide():
    return 1 / 0


@asyncray.remote(max_retries=0)
def get_divide():
    return asyncray.get(divide.remote())


def test_nested_task_error_shows_the_inner_error_once(ray_start):
    # Ray: the outer task's traceback ends with one
    # "ray.exceptions.RayTaskError(ZeroDivisionError): ray::divide() ..." block.
    with pytest.raises(ZeroDivisionError) as info:
        asyncray.get(get_divide.remote(), timeout=30)
    text = str(info.value)
    assert text.startswith("ray::get_divide() (pid=")
    assert "asyncray.exceptions.RayTaskError(ZeroDivisionError): ray::divide() (pid=" in text
    assert text.count("ZeroDivisionError: division by zero") == 1


@asyncray.remote(max_restarts=0)
class Raiser:
    def __init__(self, bad=False):
        if bad:
            raise TwoArgError(1, 2)

    def memory(self):
        raise MemoryError("om")

    def two_arg(self):
        raise TwoArgError(3, 4)

    def interrupt(self):
        raise KeyboardInterrupt("k")


def test_actor_method_errors_match_ray(ray_start):
    # Ray: RayTaskError(MemoryError); UnserializableException for TwoArgError;
    # RayTaskError(TaskCancelledError) for a KeyboardInterrupt the method raises.
    actor = Raiser.remote()
    with pytest.raises(MemoryError) as info:
        asyncray.get(actor.memory.remote(), timeout=30)
    assert str(info.value).startswith("ray::Raiser.memory() (pid=")
    with pytest.raises(UnserializableException) as info:
        asyncray.get(actor.two_arg.remote(), timeout=30)
    assert str(info.value).endswith("TwoArgError: 3-4\n")
    with pytest.raises(TaskCancelledError) as info:
        asyncray.get(actor.interrupt.remote(), timeout=30)
    assert isinstance(info.value, RayTaskError)
    # The actor survives all three.
    with pytest.raises(MemoryError):
        asyncray.get(actor.memory.remote(), timeout=30)


def test_actor_init_error_that_cannot_be_unpickled_is_still_named(ray_start):
    # Ray 2.60 raises UnserializableException here (the ActorDiedError carries the cause);
    # asyncray's ActorDiedError carries the text, so the real error is named.
    with pytest.raises(ActorDiedError) as info:
        asyncray.get(Raiser.remote(True).memory.remote(), timeout=30)
    text = str(info.value)
    assert "The actor died because of an error raised in its creation task" in text
    assert text.endswith("TwoArgError: 1-2")


class ArgsPropertyError(Exception):
    """A read-only ``args`` property."""

    @property
    def args(self):
        return ("fixed",)


@asyncray.remote(max_retries=0)
def raise_args_property():
    raise ArgsPropertyError("x")


def test_exception_with_read_only_args_is_still_catchable_by_its_class(ray_start):
    # Ray: RayTaskError(ArgsProp), catchable as ArgsProp (Ray keeps its own args apart).
    with pytest.raises(ArgsPropertyError) as info:
        asyncray.get(raise_args_property.remote(), timeout=30)
    err = info.value
    assert type(err).__name__ == "RayTaskError(ArgsPropertyError)"
    assert err.args == (err.cause,)
    assert err.cause.args == ("fixed",)
    assert str(err).endswith("ArgsPropertyError: x")
