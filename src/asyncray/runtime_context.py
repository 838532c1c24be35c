"""``get_runtime_context()``: who and where the calling code is.

It reads the running task's identity from ``_task_context`` (set by the
worker around each call).
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from typing import Any

from ._task_context import current_task, gpu_device_ids

logger = logging.getLogger("asyncray")

__all__ = ["RuntimeContext", "get_runtime_context"]

# Ray's accelerator resource names: ``get_accelerator_ids()`` has a key for
# each, as in Ray 2.60 (only GPUs are scheduled here; the others stay empty).
ACCELERATOR_NAMES = (
    "GPU",
    "FURIOSA",
    "HPU",
    "MBLT",
    "NPU",
    "RBLN",
    "TPU",
    "TTNPU",
    "neuron_cores",
)

# Ray's worker ids are 28 bytes, shown as 56 hex digits.
_WORKER_ID_BYTES = 28
_worker_id: str | None = None


@functools.lru_cache(maxsize=1024)  # a state query asks once per row, of few processes
def worker_id_of(node_id: str, pid: int) -> str:
    """The worker id of process ``pid`` of the session on ``node_id``.

    Derived, not drawn, so the state API (which knows pids) names a worker as
    ``get_worker_id()`` inside it does.
    """
    import hashlib

    digest = hashlib.blake2b(f"{node_id}:{pid}".encode(), digest_size=_WORKER_ID_BYTES)
    return digest.hexdigest()


def _forget_worker_id() -> None:
    global _worker_id
    _worker_id = None


# A forked child is another worker: it draws its own id.
os.register_at_fork(after_in_child=_forget_worker_id)


class NodeID:
    """Ray's ``NodeID`` (what the deprecated ``RuntimeContext.node_id`` returns)."""

    def __init__(self, hex_id: str) -> None:
        self._hex = hex_id

    def hex(self) -> str:
        return self._hex

    def binary(self) -> bytes:
        return bytes.fromhex(self._hex)

    def is_nil(self) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NodeID) and other._hex == self._hex

    def __hash__(self) -> int:
        return hash(self._hex)

    def __repr__(self) -> str:
        return f"NodeID({self._hex})"


class RuntimeContext:
    """Ray's ``RuntimeContext``: ids, namespace and resources of the calling code."""

    def get_job_id(self) -> str:
        from . import _api

        return _api.job_id()

    def get_node_id(self) -> str:
        """The node's id, 56 hex digits (one node: the same in every process of a session)."""
        from . import _api

        return _api._auto_init().node_id

    @property
    def node_id(self) -> NodeID:
        """Deprecated in Ray (warns as Ray does): the node's ``NodeID``; use ``get_node_id()``."""
        warnings.warn(
            "This API is deprecated and may be removed in future Ray releases. You could "
            'suppress this warning by setting env variable PYTHONWARNINGS="ignore::'
            'DeprecationWarning"\nUse get_node_id() instead',
            DeprecationWarning,
            stacklevel=2,
        )
        return NodeID(self.get_node_id())

    def get_worker_id(self) -> str:
        """The id of this worker or driver process, 56 hex digits.

        Tasks that run in the same pooled worker process share it; a restarted
        actor has a new one (a new process), as in Ray.
        """
        global _worker_id
        if _worker_id is None:
            _worker_id = worker_id_of(self.get_node_id(), os.getpid())
        return _worker_id

    @property
    def was_current_actor_reconstructed(self) -> bool:
        """Whether the calling actor has been restarted (``max_restarts``) at least once.

        Also true in the ``__init__`` of a restart. Raises ``AssertionError`` outside
        an actor, as Ray does.
        """
        ctx = current_task()
        if ctx.actor_id is None:
            if ctx.task_id is None:
                raise AssertionError(
                    "This method is only available when the process is a worker. Current mode: 0"
                )
            raise AssertionError(
                "was_current_actor_reconstructed is only available in an actor, not in a task."
            )
        return ctx.actor_restarted

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
        """The accelerator ids assigned to the calling task or actor, by Ray's resource names.

        ``{"GPU": ["0"], "TPU": [], "neuron_cores": [], ...}``; the driver holds none.
        """
        ids: dict[str, list[str]] = {name: [] for name in ACCELERATOR_NAMES}
        ids["GPU"] = gpu_device_ids(current_task().gpu_ids)
        return ids

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

    @property
    def runtime_env(self) -> dict[str, Any]:
        """The runtime_env the calling driver, task or actor runs under (merged, as in Ray).

        The driver's is its job's (``init(runtime_env=...)``); ``{}`` for none.
        """
        from ._wire import runtime_env

        return runtime_env.current()

    def get_runtime_env_string(self) -> str:
        """``runtime_env`` as JSON (``"{}"`` for none)."""
        from ._wire import runtime_env

        return runtime_env.current_string()

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
