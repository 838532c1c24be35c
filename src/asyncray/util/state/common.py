"""The rows of the state API: Ray's schemas (``ray.util.state.common``), same names and fields.

Each schema is a dataclass. A field marked ``detail`` is filled only when
the list call asks for ``detail=True`` (None otherwise), and only fields
marked ``filterable`` may appear in ``filters``, as in Ray.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

DEFAULT_RPC_TIMEOUT = 30
DEFAULT_LIMIT = 100


def state_column(*, filterable: bool, detail: bool = False) -> Any:
    """A schema field (None until set), marked as Ray marks it."""
    return field(default=None, metadata={"filterable": filterable, "detail": detail})


class StateSchema:
    """What every schema offers: its columns, and dict-style access to its fields."""

    @classmethod
    def list_columns(cls, detail: bool = True) -> list[str]:
        """The fields shown: all of them with ``detail``, else those not marked detail."""
        return [f.name for f in fields(cls) if detail or not f.metadata.get("detail")]  # type: ignore[arg-type]

    @classmethod
    def columns(cls) -> set[str]:
        return set(cls.list_columns(detail=True))

    @classmethod
    def filterable_columns(cls) -> set[str]:
        return {f.name for f in fields(cls) if f.metadata.get("filterable")}  # type: ignore[arg-type]

    @classmethod
    def base_columns(cls) -> set[str]:
        return set(cls.list_columns(detail=False))

    def asdict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


@dataclass
class TaskState(StateSchema):
    """A task, an actor call or an actor's creation (one attempt)."""

    task_id: str = state_column(filterable=True)
    attempt_number: int = state_column(filterable=True)
    name: str = state_column(filterable=True)
    state: str = state_column(filterable=True)
    job_id: str = state_column(filterable=True)
    actor_id: str | None = state_column(filterable=True)
    type: str = state_column(filterable=True)
    func_or_class_name: str = state_column(filterable=True)
    parent_task_id: str = state_column(filterable=True)
    node_id: str | None = state_column(filterable=True)
    worker_id: str | None = state_column(filterable=True)
    worker_pid: int | None = state_column(filterable=True)
    error_type: str | None = state_column(filterable=True)
    language: str | None = state_column(detail=True, filterable=True)
    required_resources: dict[str, float] | None = state_column(detail=True, filterable=False)
    runtime_env_info: dict[str, Any] | None = state_column(detail=True, filterable=False)
    placement_group_id: str | None = state_column(detail=True, filterable=True)
    events: list[dict[str, Any]] | None = state_column(detail=True, filterable=False)
    profiling_data: dict[str, Any] | None = state_column(detail=True, filterable=False)
    creation_time_ms: int | None = state_column(detail=True, filterable=False)
    start_time_ms: int | None = state_column(detail=True, filterable=False)
    end_time_ms: int | None = state_column(detail=True, filterable=False)
    task_log_info: dict[str, Any] | None = state_column(detail=True, filterable=False)
    error_message: str | None = state_column(detail=True, filterable=False)
    is_debugger_paused: bool | None = state_column(detail=True, filterable=True)
    call_site: str | None = state_column(detail=True, filterable=False)
    label_selector: dict[str, Any] | None = state_column(detail=True, filterable=False)
    fallback_strategy: dict[str, Any] | None = state_column(detail=True, filterable=False)


@dataclass
class ActorState(StateSchema):
    """An actor."""

    actor_id: str = state_column(filterable=True)
    class_name: str = state_column(filterable=True)
    state: str = state_column(filterable=True)
    job_id: str = state_column(filterable=True)
    name: str | None = state_column(filterable=True)
    node_id: str | None = state_column(filterable=True)
    pid: int | None = state_column(filterable=True)
    ray_namespace: str | None = state_column(filterable=True)
    serialized_runtime_env: str | None = state_column(filterable=False, detail=True)
    required_resources: dict[str, float] | None = state_column(filterable=False, detail=True)
    death_cause: dict[str, Any] | None = state_column(filterable=False, detail=True)
    is_detached: bool | None = state_column(filterable=False, detail=True)
    placement_group_id: str | None = state_column(detail=True, filterable=True)
    repr_name: str | None = state_column(detail=True, filterable=True)
    num_restarts: int | None = state_column(filterable=False, detail=True)
    num_restarts_due_to_lineage_reconstruction: int | None = state_column(
        filterable=False, detail=True
    )
    num_restarts_due_to_node_preemption: int | None = state_column(filterable=False, detail=True)
    call_site: str | None = state_column(detail=True, filterable=False)
    label_selector: dict[str, Any] | None = state_column(detail=True, filterable=False)
    fallback_strategy: dict[str, Any] | None = state_column(detail=True, filterable=False)


@dataclass
class ObjectState(StateSchema):
    """An object in the object table."""

    object_id: str = state_column(filterable=True)
    object_size: int = state_column(filterable=True)
    task_status: str = state_column(filterable=True)
    attempt_number: int = state_column(filterable=True)
    reference_type: str = state_column(filterable=True)
    call_site: str = state_column(filterable=True)
    type: str = state_column(filterable=True)
    pid: int = state_column(filterable=True)
    ip: str = state_column(filterable=True)


@dataclass
class WorkerState(StateSchema):
    """A worker process (task worker or actor) or a driver."""

    worker_id: str = state_column(filterable=True)
    is_alive: bool = state_column(filterable=True)
    worker_type: str = state_column(filterable=True)
    exit_type: str | None = state_column(filterable=True)
    node_id: str = state_column(filterable=True)
    ip: str = state_column(filterable=True)
    pid: int = state_column(filterable=True)
    exit_detail: str | None = state_column(detail=True, filterable=False)
    worker_launch_time_ms: int | None = state_column(filterable=False, detail=True)
    worker_launched_time_ms: int | None = state_column(filterable=False, detail=True)
    start_time_ms: int | None = state_column(filterable=False, detail=True)
    end_time_ms: int | None = state_column(filterable=False, detail=True)
    debugger_port: int | None = state_column(filterable=True, detail=True)
    num_paused_threads: int | None = state_column(filterable=True, detail=True)


@dataclass
class PlacementGroupState(StateSchema):
    """A placement group."""

    placement_group_id: str = state_column(filterable=True)
    name: str = state_column(filterable=True)
    creator_job_id: str = state_column(filterable=True)
    state: str = state_column(filterable=True)
    bundles: list[dict[str, Any]] | None = state_column(filterable=False, detail=True)
    is_detached: bool | None = state_column(filterable=True, detail=True)
    stats: dict[str, Any] | None = state_column(filterable=False, detail=True)


@dataclass
class NodeState(StateSchema):
    """The one node."""

    node_id: str = state_column(filterable=True)
    node_ip: str = state_column(filterable=True)
    is_head_node: bool = state_column(filterable=True)
    state: str = state_column(filterable=True)
    state_message: str | None = state_column(filterable=False)
    node_name: str = state_column(filterable=True)
    resources_total: dict[str, float] = state_column(filterable=False)
    labels: dict[str, str] = state_column(filterable=False)
    start_time_ms: int | None = state_column(filterable=False, detail=True)
    end_time_ms: int | None = state_column(filterable=False, detail=True)
