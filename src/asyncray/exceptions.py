"""Exceptions raised by asyncray, with Ray's names and hierarchy.

::

    Exception
    └── RayError
        ├── RayTaskError                 a task or actor method raised; raised as
        │                                RayTaskError(Cause), an instance of both
        ├── TaskCancelledError           the task was cancelled
        │   └── TaskTimeoutError         (asyncray) the task ran past ``timeout_s``
        ├── GetTimeoutError              get() timed out (also a builtin TimeoutError)
        ├── WorkerCrashedError           the worker process died running the task
        ├── LocalRayletDiedError
        ├── RayActorError
        │   ├── ActorDiedError           the actor is dead for good
        │   └── ActorUnavailableError    the actor is restarting
        ├── ObjectLostError              the object's value can no longer be found
        │   ├── OwnerDiedError
        │   ├── ObjectFetchTimedOutError
        │   ├── ObjectFreedError
        │   ├── ObjectReconstructionFailedError
        │   └── ReferenceCountingAssertionError (also AssertionError)
        ├── ObjectStoreFullError
        ├── OutOfDiskError
        ├── OutOfMemoryError
        ├── NodeDiedError
        ├── RaySystemError
        ├── RuntimeEnvSetupError
        ├── TaskPlacementGroupRemoved
        ├── ActorPlacementGroupRemoved
        ├── PendingCallsLimitExceeded
        ├── TaskUnschedulableError       (asyncray: also ValueError, raised at submission)
        ├── ActorUnschedulableError      (asyncray: also ValueError, raised at creation)
        ├── ObjectRefStreamEndOfStreamError
        ├── AsyncioActorExit
        ├── UnserializableException
        ├── ActorAlreadyExistsError      (also ValueError)
        └── ActorHandleNotFoundError     (also ValueError)

Every class survives pickling, so errors cross process boundaries intact.
"""

from __future__ import annotations

import builtins
import threading
from typing import Any

__all__ = [
    "ActorAlreadyExistsError",
    "ActorDiedError",
    "ActorHandleNotFoundError",
    "ActorPlacementGroupRemoved",
    "ActorUnavailableError",
    "ActorUnschedulableError",
    "AsyncioActorExit",
    "GetTimeoutError",
    "LocalRayletDiedError",
    "NodeDiedError",
    "ObjectFetchTimedOutError",
    "ObjectFreedError",
    "ObjectLostError",
    "ObjectReconstructionFailedError",
    "ObjectRefStreamEndOfStreamError",
    "ObjectStoreFullError",
    "OutOfDiskError",
    "OutOfMemoryError",
    "OwnerDiedError",
    "PendingCallsLimitExceeded",
    "RayActorError",
    "RayError",
    "RaySystemError",
    "RayTaskError",
    "ReferenceCountingAssertionError",
    "RuntimeEnvSetupError",
    "TaskCancelledError",
    "TaskPlacementGroupRemoved",
    "TaskTimeoutError",
    "TaskUnschedulableError",
    "UnserializableException",
    "UnsupportedLibraryError",
    "WorkerCrashedError",
]


class RayError(Exception):
    """Base class of every error asyncray raises for a remote failure."""


class RayTaskError(RayError):
    """A task or actor method raised an exception.

    ``get`` raises ``as_instanceof_cause()`` of it: an instance of a class named
    ``RayTaskError(Cause)`` that inherits from both ``RayTaskError`` and the
    user's exception class, so ``except ValueError`` and
    ``except RayTaskError`` both catch it.
    """

    def __init__(
        self,
        function_name: str = "",
        traceback_str: str = "",
        cause: BaseException | None = None,
        proctitle: str | None = None,
        pid: int | None = None,
        ip: str | None = None,
        actor_repr: str | None = None,
        actor_id: str | None = None,
    ) -> None:
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.proctitle = proctitle or f"ray::{function_name}"
        self.pid = pid
        self.ip = ip or "127.0.0.1"
        self.actor_repr = actor_repr
        self.actor_id = actor_id
        # Exception.__init__ directly: in the dual class RayTaskError(Cause),
        # super() would reach the user's __init__ with our arguments.
        Exception.__init__(self, function_name, traceback_str, cause)

    def __reduce__(self) -> Any:
        return (
            RayTaskError,
            (
                self.function_name,
                self.traceback_str,
                self.cause,
                self.proctitle,
                self.pid,
                self.ip,
                self.actor_repr,
                self.actor_id,
            ),
        )

    def __str__(self) -> str:
        # As Ray's: the header takes the place of each "Traceback (most recent
        # call last):" line of traceback_str (one per chained exception).
        header = f"{self.proctitle}() (pid={self.pid}, ip={self.ip}"
        if self.actor_id is not None:
            header += f", actor_id={self.actor_id}"
        if self.actor_repr is not None:
            header += f", repr={self.actor_repr}"
        header += ")"
        lines = self.traceback_str.strip().split("\n")
        out = [header if line.startswith("Traceback ") else line for line in lines]
        if not lines[0].startswith(("Traceback ", "+ Exception Group Traceback")):
            out.insert(0, header)
        return "\n".join(out)

    def as_instanceof_cause(self) -> RayTaskError:
        """Return this error as an instance of ``RayTaskError`` and the cause's class."""
        cause = self.cause
        if cause is None or isinstance(cause, RayTaskError):
            return self if cause is None else cause.as_instanceof_cause()
        cause_cls = type(cause)
        if issubclass(cause_cls, RayError) and not issubclass(
            cause_cls, (RayTaskError, TaskCancelledError)
        ):
            return self
        try:
            dual = _dual_class(cause_cls)
            err = dual(
                self.function_name,
                self.traceback_str,
                cause,
                self.proctitle,
                self.pid,
                self.ip,
                self.actor_repr,
                self.actor_id,
            )
            err.args = (cause,)
            return err
        except Exception:  # a class that cannot be subclassed or blocks construction
            return self


_dual_classes: dict[type, type[RayTaskError]] = {}
_dual_classes_lock = threading.Lock()


def _dual_class(cause_cls: type) -> type[RayTaskError]:
    """The cached ``RayTaskError(Cause)`` class for a user exception class."""
    with _dual_classes_lock:
        cls = _dual_classes.get(cause_cls)
        if cls is None:

            def __getattr__(self: Any, name: str) -> Any:
                return getattr(self.cause, name)

            def __reduce__(self: Any) -> Any:
                return (_rebuild_dual, (RayTaskError.__reduce__(self)[1],))

            namespace: dict[str, Any] = {}
            if any(isinstance(c.__dict__.get("args"), property) for c in cause_cls.__mro__):
                # A user class whose ``args`` is a (read-only) property: keep ours
                # apart, as Ray does, so the dual instance can still be made.
                def _get_args(self: Any) -> Any:
                    return self.__dict__.get("_ray_task_error_args", ())

                def _set_args(self: Any, value: Any) -> None:
                    self.__dict__["_ray_task_error_args"] = tuple(value)

                namespace["args"] = property(_get_args, _set_args)

            group_cls: Any = getattr(builtins, "BaseExceptionGroup", None)  # Python 3.11+
            if group_cls is not None and issubclass(cause_cls, group_cls):
                # An exception group's __new__ takes (message, exceptions), as in Ray.
                base_new: Any = cause_cls.__new__

                def __new__(cls: Any, *args: Any, **kwargs: Any) -> Any:
                    cause = args[2]
                    return base_new(cls, cause.message, cause.exceptions)

                namespace["__new__"] = __new__

            cls = type(
                f"RayTaskError({cause_cls.__name__})",
                (RayTaskError, cause_cls),
                {
                    "__getattr__": __getattr__,
                    "__reduce__": __reduce__,
                    "__str__": RayTaskError.__str__,
                    "__init__": RayTaskError.__init__,
                    "__module__": __name__,
                    "__qualname__": f"RayTaskError({cause_cls.__qualname__})",
                    **namespace,
                },
            )
            _dual_classes[cause_cls] = cls
        return cls


def _rebuild_dual(args: tuple[Any, ...]) -> RayTaskError:
    return RayTaskError(*args).as_instanceof_cause()


class TaskCancelledError(RayError):
    """The task was cancelled with ``cancel()`` before it finished."""

    def __init__(self, task_id: Any = None, error_message: str | None = None) -> None:
        self.task_id = task_id
        self.error_message = error_message
        super().__init__(task_id, error_message)

    def __reduce__(self) -> Any:
        return (type(self), (self.task_id, self.error_message))

    def __str__(self) -> str:
        if self.error_message:
            return self.error_message
        if self.task_id is None:
            return ""
        return f"Task: {self.task_id} was cancelled. "


class TaskTimeoutError(TaskCancelledError):
    """(asyncray) The task ran longer than its ``timeout_s`` option and was cancelled."""


class GetTimeoutError(RayError, TimeoutError):
    """``get()`` timed out before every object was ready."""


class WorkerCrashedError(RayError):
    """The worker process died while running the task (after any retries)."""

    def __init__(self, message: str | None = None) -> None:
        self.message = message
        super().__init__(message)

    def __reduce__(self) -> Any:
        return (type(self), (self.message,))

    def __str__(self) -> str:
        # Ray's text goes on "Check python-core-worker-*.log files for more
        # information." asyncray writes no such files: it says what it knows
        # instead, the message "(pid=N, exit code C)" / "(pid=N, killed by signal S)".
        if not self.message:
            return "The worker died unexpectedly while executing this task."
        return f"The worker died unexpectedly while executing this task {self.message}."


class LocalRayletDiedError(RayError):
    """The runtime went away while the task was pending."""


class RayActorError(RayError):
    """An actor failed before finishing the call."""

    def __init__(
        self,
        actor_id: str | None = None,
        error_msg: str | None = None,
        actor_init_failed: bool = False,
        preempted: bool = False,
    ) -> None:
        self.actor_id = actor_id
        self.error_msg = error_msg or "The actor experienced an error before finishing this task."
        self.actor_init_failed = actor_init_failed
        self.preempted = preempted
        super().__init__(self.error_msg)

    def __reduce__(self) -> Any:
        return (type(self), (self.actor_id, self.error_msg, self.actor_init_failed, self.preempted))

    def __str__(self) -> str:
        return self.error_msg


class ActorDiedError(RayActorError):
    """The actor is dead: killed, exited, crashed past its restarts, or its ``__init__`` failed."""


class ActorUnavailableError(RayActorError):
    """The actor is temporarily unreachable (restarting); the call may or may not have run."""


class ObjectLostError(RayError):
    """The object's value can no longer be found."""

    def __init__(self, object_ref_hex: str = "", owner_address: str = "", call_site: str = ""):
        self.object_ref_hex = object_ref_hex
        self.owner_address = owner_address
        self.call_site = call_site
        super().__init__(object_ref_hex, owner_address, call_site)

    def __reduce__(self) -> Any:
        return (type(self), (self.object_ref_hex, self.owner_address, self.call_site))

    def __str__(self) -> str:
        return f"Failed to retrieve object {self.object_ref_hex}. {self.call_site}".rstrip()


class OwnerDiedError(ObjectLostError):
    """The process that owned the object died."""


class ObjectFetchTimedOutError(ObjectLostError):
    """Fetching the object timed out."""


class ObjectFreedError(ObjectLostError):
    """The object was freed explicitly."""


class ObjectReconstructionFailedError(ObjectLostError):
    """The object could not be reconstructed."""


class ReferenceCountingAssertionError(ObjectLostError, AssertionError):
    """An object was used after its reference count reached zero."""


class ObjectStoreFullError(RayError):
    """The object store is full and nothing can be freed or spilled."""


class OutOfDiskError(RayError):
    """The local disk is full."""


class OutOfMemoryError(RayError):
    """The task was killed because the machine ran out of memory."""


class NodeDiedError(RayError):
    """The node died."""


class RaySystemError(RayError):
    """An internal error, or a call that needs ``init()`` first."""

    def __init__(self, client_exc: Any = None, traceback_str: str | None = None) -> None:
        self.client_exc = client_exc
        self.traceback_str = traceback_str
        super().__init__(client_exc, traceback_str)

    def __reduce__(self) -> Any:
        return (type(self), (self.client_exc, self.traceback_str))

    def __str__(self) -> str:
        text = f"System error: {self.client_exc}"
        if self.traceback_str:
            text += f"\ntraceback: {self.traceback_str}"
        return text


class RuntimeEnvSetupError(RayError):
    """The runtime environment could not be set up."""


class TaskPlacementGroupRemoved(RayError):
    """The placement group the task was scheduled in was removed."""

    def __str__(self) -> str:
        return "The placement group corresponding to this task has been removed."


class ActorPlacementGroupRemoved(RayError):
    """The placement group the actor was scheduled in was removed."""

    def __str__(self) -> str:
        return "The placement group corresponding to this Actor has been removed."


class PendingCallsLimitExceeded(RayError):
    """More calls are queued on the actor than its ``max_pending_calls``."""


class TaskUnschedulableError(RayError, ValueError):
    """(asyncray: at submission) The task's resource request can never fit this host."""

    def __init__(self, error_message: str = "") -> None:
        self.error_message = error_message
        super().__init__(error_message)

    def __reduce__(self) -> Any:
        return (type(self), (self.error_message,))

    def __str__(self) -> str:
        return self.error_message


class ActorUnschedulableError(TaskUnschedulableError):
    """(asyncray: at creation) The actor's resource request can never fit this host."""


class ObjectRefStreamEndOfStreamError(RayError):
    """Internal: the streaming generator has no more items."""


class AsyncioActorExit(RayError):
    """Internal: ``exit_actor()`` was called in an async actor."""


class UnserializableException(RayError):
    """The remote exception could not be unpickled; carries its text (as Ray's)."""

    def __init__(self, original_stack_trace: str = "") -> None:
        self._original_stack_trace = original_stack_trace
        super().__init__(original_stack_trace)

    def __reduce__(self) -> Any:
        return (type(self), (self._original_stack_trace,))

    @property
    def original_stack_trace(self) -> str:
        """(asyncray) The text of the exception that could not be rebuilt."""
        return self._original_stack_trace

    def __str__(self) -> str:
        # Ray 2.60's exact text [obs].
        return (
            "Failed to deserialize exception. Refer to https://docs.ray.io/en/latest/ray-core/"
            "objects/serialization.html#custom-serializers-for-exceptions for more information.\n"
            "Original exception:\n"
            f"{self._original_stack_trace}"
        )


class ActorAlreadyExistsError(RayError, ValueError):
    """An actor with this name already exists in the namespace."""


class ActorHandleNotFoundError(RayError, ValueError):
    """The actor handle belongs to an earlier session."""


# Ray's libraries asyncray does not provide, by the name ``ray.<name>`` has.
RAY_LIBRARIES = {
    "air": "Ray AIR",
    "dag": "the DAG API (ray.dag)",
    "data": "Ray Data",
    "rllib": "RLlib",
    "serve": "Ray Serve",
    "train": "Ray Train",
    "tune": "Ray Tune",
    "workflow": "Ray Workflows",
}

_RAY_EXTRAS = {"air", "data", "rllib", "serve", "train", "tune"}


class UnsupportedLibraryError(ImportError):
    """A Ray library outside Ray Core (``ray.data``, ``ray.serve``, ...) was imported.

    An ``ImportError``, so ``try: from asyncray import data / except ImportError``
    works as for a missing optional dependency.
    """

    def __init__(self, library: str) -> None:
        what = RAY_LIBRARIES.get(library, f"ray.{library}")
        extra = f"'ray[{library}]'" if library in _RAY_EXTRAS else "ray"
        super().__init__(
            f"asyncray.{library}: asyncray covers Ray Core only (tasks, actors, objects, "
            f"placement groups, ray.util); {what} is not part of it. Run this program with "
            f"real Ray (pip install {extra}, then import ray).",
            name=f"asyncray.{library}",
        )
        self.library = library

    def __reduce__(self) -> Any:
        return (type(self), (self.library,))
