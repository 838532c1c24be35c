"""The running task's identity: which task or actor call the calling code runs in.

A leaf module: the worker (``_worker``) sets it around each call and the
public surface (``runtime_context``, scheduling) reads it, so neither has
to import the other. The current task lives in a ``ContextVar``, so it is
right per thread in a threaded actor and per asyncio task in an async actor.
"""

from __future__ import annotations

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


def set_hosted_actor(actor: HostedActor) -> None:
    global _hosted
    _hosted = actor
