"""The running task's identity: which task or actor call the calling code runs in.

A leaf module: the worker (``_worker``) sets it around each call and the
public surface (``runtime_context``, scheduling) reads it, so neither has
to import the other. The current task lives in a ``ContextVar``, so it is
right per thread in a threaded actor and per asyncio task in an async actor.

It also keeps what names the session's GPU slots (``CUDA_VISIBLE_DEVICES``
as ``init()`` found it), which the worker and the public surface both read.
"""

from __future__ import annotations

import contextlib
import sys
from contextvars import ContextVar
from typing import Any, Protocol


class TaskContext:
    """What the running task (if any) is: set by the worker around each call."""

    __slots__ = (
        "actor_id",
        "actor_name",
        "actor_restarted",
        "cancelled",
        "gpu_ids",
        "is_async_actor",
        "name",
        "pg_capture",
        "placement_group",
        "resources",
        "task_id",
    )

    def __init__(
        self,
        task_id: bytes | None = None,
        name: str = "",
        resources: dict[str, float] | None = None,
        gpu_ids: list[int] | None = None,
        actor_id: str | None = None,
        actor_name: str | None = None,
    ) -> None:
        self.task_id = task_id
        self.name = name
        self.resources = resources or {}
        self.gpu_ids = gpu_ids or []
        self.actor_id = actor_id
        self.actor_name = actor_name
        # The PlacementGroup this task or actor runs in, and whether it captures children.
        self.placement_group: Any = None
        self.pg_capture = False
        self.cancelled = False
        self.is_async_actor = False
        # Whether this actor's process is a restart (max_restarts, kill(no_restart=False)).
        self.actor_restarted = False


DRIVER_CONTEXT = TaskContext()
_current: ContextVar[TaskContext] = ContextVar("asyncray_task", default=DRIVER_CONTEXT)


def current_task() -> TaskContext:
    return _current.get()


def set_current_task(ctx: TaskContext) -> Any:
    return _current.set(ctx)


def reset_current_task(token: Any) -> None:
    _current.reset(token)


# CUDA_VISIBLE_DEVICES as init() found it (None: unset). The session's GPU
# slot i is the i-th device it lists, as in Ray; slots are what the runtime
# hands out. Set in the driver before the zygote forks, so every child
# inherits it (a child's own variable is rewritten for each task).
_cuda_at_init: str | None = None


def set_cuda_at_init(value: str | None) -> None:
    global _cuda_at_init
    _cuda_at_init = value


def cuda_at_init() -> str | None:
    """CUDA_VISIBLE_DEVICES as it was when ``init()`` ran (None: unset)."""
    return _cuda_at_init


def parse_visible_devices(value: str | None) -> list[str] | None:
    """The device ids a CUDA_VISIBLE_DEVICES value lists; None if unset (Ray's parse:
    empty and ``NoDevFiles`` list none)."""
    if value is None:
        return None
    if value in ("", "NoDevFiles"):
        return []
    return [d.strip() for d in value.split(",")]


def gpu_device_ids(slots: list[int]) -> list[str]:
    """The device ids of GPU slots, for ``CUDA_VISIBLE_DEVICES`` and ``get_accelerator_ids``."""
    devices = parse_visible_devices(_cuda_at_init)
    if devices is None:
        return [str(i) for i in slots]
    return [devices[i] if i < len(devices) else str(i) for i in slots]


def gpu_ids(slots: list[int]) -> list[int] | list[str]:
    """``get_gpu_ids()`` of GPU slots as Ray returns them: ints, or the device ids
    (strings) from CUDA_VISIBLE_DEVICES when it was set at ``init()``."""
    if _cuda_at_init is None:
        return list(slots)
    return gpu_device_ids(slots)


class ActorExitRequest(SystemExit):
    """Raised by ``exit_actor()`` inside a method; handled by the actor's host."""


class HostedActor(Protocol):
    """The actor this process hosts, as the public surface sees it (``exit_actor``,
    ``current_actor``); the child side's actor host implements it."""

    instance: Any
    class_name: str
    config: dict[str, Any]
    actor_binary_id: bytes


_hosted: HostedActor | None = None


def hosted_actor() -> HostedActor | None:
    """The actor running in this process once its ``__init__`` succeeded, else None."""
    return _hosted


def set_hosted_actor(actor: HostedActor | None) -> None:
    global _hosted
    _hosted = actor


# The job whose tasks this worker runs now, as (job id, namespace): a shared
# head's workers serve every connected driver, and the head says which job
# comes next (``SetJob``) when it changes. None: the session's own job (an
# embedded session has only one).
current_job: tuple[str, str] | None = None


# The directories the current job's driver put first on sys.path (its code).
_job_paths: list[str] = []


# Whether this process is a worker (a task worker or an actor), not a driver.
in_worker = False


# The runtime_env this process runs under: a worker's, set once (``SetEnv``);
# a driver's, its job's (``init(runtime_env=...)``). Tasks and actors it
# submits with no runtime_env of their own inherit it, as in Ray. Typed
# ``Any`` (a ``protocol.WorkerEnv``): this leaf module imports no wire code.
current_runtime_env: Any = None


def set_runtime_env(env: Any) -> None:
    """This process runs under ``env`` (a ``WorkerEnv``, or None for the default)."""
    global current_runtime_env
    current_runtime_env = env


def runtime_env() -> Any:
    """The ``WorkerEnv`` this process runs under, or None."""
    return current_runtime_env


def set_job(job_id: str, namespace: str, code_paths: list[str] | tuple[str, ...] = ()) -> None:
    global current_job, _job_paths
    current_job = (job_id, namespace)
    # The last job's code directories make way for this job's, first on the
    # path as Ray puts a driver's (modules already imported stay imported).
    for path in _job_paths:
        with contextlib.suppress(ValueError):
            sys.path.remove(path)
    _job_paths = [p for p in code_paths if p not in sys.path]
    sys.path[:0] = _job_paths
