"""The exception hierarchy and how task errors reach the caller."""

from __future__ import annotations

import builtins
import pickle

import pytest

import asyncray
from asyncray import exceptions as exc
from asyncray.exceptions import RayError, RayTaskError


class CodedError(Exception):
    """A user exception with an extra attribute and a two-argument constructor."""

    def __init__(self, message, code=7):
        super().__init__(message)
        self.code = code


@asyncray.remote
def raise_coded():
    raise CodedError("boom", code=42)


@asyncray.remote
def divide_by_zero():
    return 1 / 0


@asyncray.remote
def get_inner():
    return asyncray.get(divide_by_zero.remote())


@asyncray.remote
def identity(x):
    return x


def _raised(ref):
    with pytest.raises(Exception) as info:
        asyncray.get(ref)
    return info.value


def test_task_error_is_both_ray_task_error_and_the_users_class(ray_start):
    err = _raised(raise_coded.remote())
    assert isinstance(err, RayTaskError)
    assert isinstance(err, RayError)
    assert isinstance(err, CodedError)
    assert type(err).__name__ == "RayTaskError(CodedError)"


def test_task_error_str_carries_the_remote_traceback(ray_start):
    text = str(_raised(raise_coded.remote()))
    assert "raise_coded" in text
    assert 'raise CodedError("boom", code=42)' in text
    assert "CodedError: boom" in text


def test_task_error_exposes_the_cause_and_its_attributes(ray_start):
    err = _raised(raise_coded.remote())
    assert type(err.cause) is CodedError
    assert err.cause.args == ("boom",)
    assert err.code == 42
    assert err.args == (err.cause,)


def test_as_instanceof_cause_gives_the_dual_class(ray_start):
    err = _raised(raise_coded.remote())
    plain = RayTaskError(err.function_name, err.traceback_str, err.cause)
    dual = plain.as_instanceof_cause()
    assert isinstance(dual, RayTaskError)
    assert isinstance(dual, CodedError)
    assert dual.code == 42


def test_builtin_exception_types_are_catchable_by_their_own_class(ray_start):
    with pytest.raises(ZeroDivisionError):
        asyncray.get(divide_by_zero.remote())


def test_nested_task_error_is_catchable_by_the_innermost_cause(ray_start):
    with pytest.raises(ZeroDivisionError) as info:
        asyncray.get(get_inner.remote())
    text = str(info.value)
    assert "get_inner" in text
    assert "divide_by_zero" in text
    assert "ZeroDivisionError" in text


def test_failed_dependency_fails_the_dependent_without_running_it(ray_start, tmp_path):
    ran = tmp_path / "ran"

    @asyncray.remote
    def consume(value, path):
        open(path, "w").close()
        return value

    with pytest.raises(CodedError) as info:
        asyncray.get(consume.remote(raise_coded.remote(), str(ran)))
    assert isinstance(info.value, RayTaskError)
    assert "CodedError: boom" in str(info.value)
    assert not ran.exists()
    # A nested (unresolved) failed ref does not fail the task.
    bad = raise_coded.remote()
    assert asyncray.get(identity.remote([bad]))[0] == bad


def test_failed_dependency_error_names_both_tasks(ray_start):
    @asyncray.remote
    def consume(value):
        return value

    with pytest.raises(CodedError) as info:
        asyncray.get(consume.remote(raise_coded.remote()))
    text = str(info.value)
    assert "consume" in text, "the error should say which task could not run"
    assert "raise_coded" in text, "the error should carry the upstream traceback"


def test_task_error_survives_a_pickle_round_trip(ray_start):
    err = _raised(raise_coded.remote())
    copy = pickle.loads(pickle.dumps(err))
    assert isinstance(copy, RayTaskError)
    assert isinstance(copy, CodedError)
    assert copy.code == 42
    assert str(copy) == str(err)


# Ray 2.60's hierarchy (semantics §11.1): class name -> names of required bases.
HIERARCHY = {
    "RayError": ["Exception"],
    "RayTaskError": ["RayError"],
    "TaskCancelledError": ["RayError"],
    "GetTimeoutError": ["RayError", "TimeoutError"],
    "WorkerCrashedError": ["RayError"],
    "LocalRayletDiedError": ["RayError"],
    "RayActorError": ["RayError"],
    "ActorDiedError": ["RayActorError"],
    "ActorUnavailableError": ["RayActorError"],
    "ObjectLostError": ["RayError"],
    "OwnerDiedError": ["ObjectLostError"],
    "ObjectFetchTimedOutError": ["ObjectLostError"],
    "ObjectFreedError": ["ObjectLostError"],
    "ObjectReconstructionFailedError": ["ObjectLostError"],
    "ReferenceCountingAssertionError": ["ObjectLostError", "AssertionError"],
    "ObjectStoreFullError": ["RayError"],
    "OutOfDiskError": ["RayError"],
    "OutOfMemoryError": ["RayError"],
    "NodeDiedError": ["RayError"],
    "RaySystemError": ["RayError"],
    "RuntimeEnvSetupError": ["RayError"],
    "TaskPlacementGroupRemoved": ["RayError"],
    "ActorPlacementGroupRemoved": ["RayError"],
    "PendingCallsLimitExceeded": ["RayError"],
    "TaskUnschedulableError": ["RayError"],
    "ActorUnschedulableError": ["RayError"],
    "ObjectRefStreamEndOfStreamError": ["RayError"],
    "AsyncioActorExit": ["RayError"],
    "UnserializableException": ["RayError"],
    "ActorAlreadyExistsError": ["RayError", "ValueError"],
    "ActorHandleNotFoundError": ["RayError", "ValueError"],
}


def _base(name):
    return getattr(exc, name, None) or getattr(builtins, name)


@pytest.mark.parametrize(("name", "bases"), HIERARCHY.items(), ids=HIERARCHY.keys())
def test_exception_class_exists_with_rays_bases(name, bases):
    cls = getattr(exc, name)
    for base in bases:
        assert issubclass(cls, _base(base)), f"{name} should subclass {base}"


# Constructor arguments in Ray's signatures for the classes that require or
# format them. (The actor errors are built bare: their Ray signatures differ
# from class to class and all arguments are optional in asyncray.)
CONSTRUCTOR_ARGS = {
    "RayTaskError": ("f", "Traceback text\n", ValueError("cause")),
    "TaskCancelledError": ("task-1",),
    "ObjectLostError": ("ab" * 28, "", "call site"),
    "OwnerDiedError": ("ab" * 28, "", "call site"),
    "ObjectFetchTimedOutError": ("ab" * 28, "", "call site"),
    "ObjectFreedError": ("ab" * 28, "", "call site"),
    "ObjectReconstructionFailedError": ("ab" * 28, "", "call site"),
    "ReferenceCountingAssertionError": ("ab" * 28, "", "call site"),
    "RaySystemError": ("system broke",),
    "TaskUnschedulableError": ("no node fits",),
    "ActorUnschedulableError": ("no node fits",),
}


@pytest.mark.parametrize("name", HIERARCHY.keys())
def test_exception_survives_a_pickle_round_trip(name):
    cls = getattr(exc, name)
    err = cls(*CONSTRUCTOR_ARGS.get(name, ()))
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is cls
    assert str(copy) == str(err)
