"""``get_runtime_context()``: who and where the calling code is.

It reads the running task's identity from ``_task_context`` (set by the
worker around each call).
"""

from __future__ import annotations

import logging
from typing import Any

from ._task_context import current_task

logger = logging.getLogger("asyncray")

__all__ = ["RuntimeContext", "get_runtime_context"]


class RuntimeContext:
    """Ray's ``RuntimeContext``: ids, namespace and resources of the calling code."""

    def get_job_id(self) -> str:
        from . import _api

        return _api.job_id()

    def get_node_id(self) -> str:
        from . import _api

        return _api._auto_init().node_id

    def get_task_id(self) -> str | None:
        ctx = current_task()
        if ctx.task_id is None:
            logger.warning(
                "This method is only available when the process is a worker. Current mode: 0"
            )
            return None
        return ctx.task_id.hex()

    def get_actor_id(self) -> str | None:
        return current_task().actor_id

    def get_actor_name(self) -> str | None:
        ctx = current_task()
        if ctx.actor_id is None:
            return None
        return ctx.actor_name or ""

    @property
    def namespace(self) -> str:
        from . import _api

        return _api.namespace_of_session()

    def get_assigned_resources(self) -> dict[str, float]:
        ctx = current_task()
        if ctx.task_id is None and ctx.actor_id is None:
            raise AssertionError(
                "This method is only available when the process is a worker. Current mode: 0"
            )
        return {k: v for k, v in ctx.resources.items() if v > 0}

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        return {"GPU": [str(i) for i in current_task().gpu_ids]}

    def get_placement_group_id(self) -> str | None:
        pg = current_task().placement_group
        return None if pg is None else pg.id.hex()

    def is_canceled(self) -> bool:
        ctx = current_task()
        if ctx.task_id is None:
            raise RuntimeError("This method is only available in a task or an actor.")
        if ctx.is_async_actor:
            raise RuntimeError("This method is not supported in an async actor.")
        return ctx.cancelled

    @property
    def current_actor(self) -> Any:
        ctx = current_task()
        if ctx.actor_id is None:
            raise RuntimeError("This method is only available in an actor.")
        from . import actor

        return actor._current_actor_handle()

    def get(self) -> dict[str, Any]:
        """Deprecated in Ray: a dict of ids."""
        out: dict[str, Any] = {
            "job_id": self.get_job_id(),
            "node_id": self.get_node_id(),
            "namespace": self.namespace,
        }
        ctx = current_task()
        if ctx.task_id is not None:
            out["task_id"] = ctx.task_id.hex()
        if ctx.actor_id is not None:
            out["actor_id"] = ctx.actor_id
        return out


_context = RuntimeContext()


def get_runtime_context() -> RuntimeContext:
    """The runtime context of the calling code (auto-initialises asyncray, as Ray 2.60 does)."""
    from . import _api

    _api._auto_init()
    return _context
