"""Ray's state API (``ray.util.state``): what runs, what waits, what ended.

``list_tasks``, ``list_actors``, ``list_objects``, ``list_workers``,
``list_placement_groups``, ``list_nodes``, ``get_task``, ``get_actor``,
``summarize_tasks``, ``summarize_actors`` and ``summarize_objects``, with
Ray's ``filters``, ``limit`` and ``detail``, and its schemas
(``asyncray.util.state.common``). They ask the session's kernel (embedded,
or the head a driver is connected to); they never start asyncray.

Ended tasks and actor calls are kept in a ring of the newest
``task_events_max_num_task_in_gcs`` (10,000 unless ``init(_system_config=...)``
says otherwise), as Ray's GCS keeps a bounded table of task events.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ... import _api
from ...runtime_context import worker_id_of
from .common import (
    DEFAULT_LIMIT,
    DEFAULT_RPC_TIMEOUT,
    ActorState,
    NodeState,
    ObjectState,
    PlacementGroupState,
    StateSchema,
    TaskState,
    WorkerState,
)
from .exception import RayStateApiException

S = TypeVar("S", bound=StateSchema)
Filter = tuple[str, str, Any]

__all__ = [
    "ActorState",
    "NodeState",
    "ObjectState",
    "PlacementGroupState",
    "RayStateApiException",
    "TaskState",
    "WorkerState",
    "get_actor",
    "get_node",
    "get_placement_group",
    "get_task",
    "get_worker",
    "list_actors",
    "list_nodes",
    "list_objects",
    "list_placement_groups",
    "list_tasks",
    "list_workers",
    "summarize_actors",
    "summarize_objects",
    "summarize_tasks",
]


# ==================================================================== rows


def _ms(value: float | None) -> int | None:
    return None if value is None else int(value)


def _task_rows() -> list[dict[str, Any]]:
    node_id, rows = _api.state_rows("tasks")
    for row in rows:
        pid = row["worker_pid"]
        row["node_id"] = node_id
        row["worker_id"] = worker_id_of(node_id, pid) if pid else None
        for key in ("creation_time_ms", "start_time_ms", "end_time_ms"):
            row[key] = _ms(row[key])
    return rows


def _actor_rows() -> list[dict[str, Any]]:
    node_id, rows = _api.state_rows("actors")
    for row in rows:
        row["node_id"] = node_id
    return rows


def _object_rows() -> list[dict[str, Any]]:
    _, rows = _api.state_rows("objects")
    for row in rows:
        row["type"] = "DRIVER"
        row["pid"] = None
        row["ip"] = "127.0.0.1"
    return rows


def _worker_rows() -> list[dict[str, Any]]:
    node_id, rows = _api.state_rows("workers")
    for row in rows:
        row["worker_id"] = worker_id_of(node_id, row["pid"])
        row["node_id"] = node_id
        row["ip"] = "127.0.0.1"
        row["exit_type"] = None
    return rows


def _group_rows() -> list[dict[str, Any]]:
    _, table = _api.state_rows("groups")
    rows = []
    for entry in table:
        pg_id = entry["placement_group_id"]
        rows.append(
            {
                "placement_group_id": pg_id,
                "name": entry.get("name", ""),
                "creator_job_id": entry.get("creator_job_id", ""),
                "state": entry.get("state"),
                "bundles": [
                    {"bundle_id": f"{pg_id}:{i}", "unit_resources": dict(b)}
                    for i, b in sorted(entry.get("bundles", {}).items())
                ],
                "is_detached": entry.get("is_detached", False),
                "stats": entry.get("stats"),
            }
        )
    return rows


def _node_rows() -> list[dict[str, Any]]:
    return [
        {
            "node_id": node["NodeID"],
            "node_ip": node["NodeManagerAddress"],
            "is_head_node": True,
            "state": "ALIVE",
            "state_message": None,
            "node_name": node["NodeName"],
            "resources_total": dict(node["Resources"]),
            "labels": dict(node.get("Labels", {})),
            "start_time_ms": None,
            "end_time_ms": None,
        }
        for node in _api.nodes()
    ]


def _make(schema: type[S], row: dict[str, Any], columns: list[str] | None = None) -> S:
    """A ``schema`` instance of ``row``'s ``columns`` (all of them by default)."""
    values: dict[str, Any] = {c: row.get(c) for c in columns or schema.list_columns()}
    return schema(**values)


# ==================================================================== filters


# The most rows one call returns (Ray's RAY_MAX_LIMIT_FROM_API_SERVER).
MAX_LIMIT = int(os.environ.get("RAY_MAX_LIMIT_FROM_API_SERVER", 10_000))

# The column each resource's rows are sorted by, as Ray's server sorts them.
_SORT_KEYS = {
    TaskState: "task_id",
    ActorState: "actor_id",
    ObjectState: "object_id",
    WorkerState: "worker_id",
    PlacementGroupState: "placement_group_id",
    NodeState: "node_id",
}


def _filtered(
    rows: Iterable[dict[str, Any]],
    schema: type[S],
    filters: list[Filter] | None,
    limit: int,
    detail: bool,
    explain: bool,
    what: str,
) -> list[S]:
    if limit > MAX_LIMIT:
        raise RayStateApiException(
            f"Given limit {limit} exceeds the supported limit {MAX_LIMIT}. Use a lower limit, "
            "or set the `RAY_MAX_LIMIT_FROM_API_SERVER` environment variable to a larger value."
        )
    predicates = _predicates(schema, filters or [])
    columns = schema.list_columns(detail=detail)
    key = _SORT_KEYS[schema]
    kept = sorted((r for r in rows if all(test(r) for test in predicates)), key=lambda r: r[key])
    out = [_make(schema, row, columns) for row in kept[:limit]]
    if explain and len(kept) > limit:
        warnings.warn(
            f"Limit last {limit} entries (Total {len(kept)}). Use `--filter` to reduce the "
            "amount of data to return or setting a higher limit with `--limit` to see all data. ",
            UserWarning,
            stacklevel=4,
        )
    return out


def _predicates(schema: type[StateSchema], filters: list[Filter]) -> list[Callable[[Any], bool]]:
    filterable = schema.filterable_columns()
    types = dict(schema.__annotations__)
    tests: list[Callable[[Any], bool]] = []
    for item in filters:
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            raise ValueError(
                f"The given filter has incorrect input type, {item}. Provide (key, predicate, "
                "value) tuples."
            )
        key, predicate, value = item
        if predicate not in ("=", "!="):
            raise ValueError(
                f"Unsupported filter predicate {predicate} is given. Available predicates: =, !=."
            )
        key = str(key).lower()
        if key not in filterable:
            raise RayStateApiException(
                f"Error: The given filter column {key} is not supported. Enter filters with "
                f"--filter key=value or --filter key!=value Supported filter columns: "
                f"{sorted(filterable)}"
            )
        want = _coerce(value, str(types.get(key, "str")))
        tests.append(_test(key, predicate == "=", want))
    return tests


def _coerce(value: Any, hint: str) -> Any:
    """A filter value as the column holds it (the CLI gives strings), as Ray converts it."""
    if not isinstance(value, str):
        return value
    if hint.startswith("bool"):
        if value in ("True", "true", "1"):
            return True
        if value in ("False", "false", "0"):
            return False
        raise RayStateApiException(
            f"Error: Failed to convert a value {value} of type {type(value)} to {bool}"
        )
    if hint.startswith("int"):
        try:
            return int(value)
        except ValueError:
            raise RayStateApiException(
                f"Error: Failed to convert a value {value} of type {type(value)} to {int}"
            ) from None
    return value


def _test(key: str, equal: bool, want: Any) -> Callable[[Any], bool]:
    lowered = want.lower() if isinstance(want, str) else None

    def test(row: dict[str, Any]) -> bool:
        if key not in row:
            return False  # a row without the column never matches, as in Ray
        got = row[key]
        if lowered is not None and isinstance(got, str):
            same = got.lower() == lowered  # string filters are case-insensitive, as in Ray
        else:
            same = got == want
        return same if equal else not same

    return test


# ==================================================================== lists


def _list(
    rows: Callable[[], list[dict[str, Any]]],
    schema: type[S],
    what: str,
    address: str | None,
    filters: list[Filter] | None,
    limit: int,
    detail: bool,
    explain: bool,
) -> list[S]:
    if address is not None and address != "auto":
        raise RayStateApiException(
            f"address={address!r}: the state API asks the session this process is "
            "connected to; call asyncray.init(address=...) first, or use `asyncray list` "
            "against a head."
        )
    return _filtered(rows(), schema, filters, limit, detail, explain, what)


def list_tasks(
    address: str | None = None,
    filters: list[Filter] | None = None,
    limit: int = DEFAULT_LIMIT,
    timeout: int = DEFAULT_RPC_TIMEOUT,
    detail: bool = False,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> list[TaskState]:
    """Tasks, actor calls and actor creations: live ones, then the newest ended ones."""
    return _list(_task_rows, TaskState, "tasks", address, filters, limit, detail, _explain)


def list_actors(
    address: str | None = None,
    filters: list[Filter] | None = None,
    limit: int = DEFAULT_LIMIT,
    timeout: int = DEFAULT_RPC_TIMEOUT,
    detail: bool = False,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> list[ActorState]:
    """Actors: live ones and the dead the session still remembers."""
    return _list(_actor_rows, ActorState, "actors", address, filters, limit, detail, _explain)


def list_objects(
    address: str | None = None,
    filters: list[Filter] | None = None,
    limit: int = DEFAULT_LIMIT,
    timeout: int = DEFAULT_RPC_TIMEOUT,
    detail: bool = False,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> list[ObjectState]:
    """Objects in the object table, with their sizes."""
    return _list(
        _object_rows,
        ObjectState,
        "objects",
        address,
        filters,
        limit,
        detail,
        _explain,
    )


def list_workers(
    address: str | None = None,
    filters: list[Filter] | None = None,
    limit: int = DEFAULT_LIMIT,
    timeout: int = DEFAULT_RPC_TIMEOUT,
    detail: bool = False,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> list[WorkerState]:
    """Worker processes: task workers and actors."""
    return _list(
        _worker_rows,
        WorkerState,
        "workers",
        address,
        filters,
        limit,
        detail,
        _explain,
    )


def list_placement_groups(
    address: str | None = None,
    filters: list[Filter] | None = None,
    limit: int = DEFAULT_LIMIT,
    timeout: int = DEFAULT_RPC_TIMEOUT,
    detail: bool = False,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> list[PlacementGroupState]:
    """Placement groups, with their state and bundles."""
    return _list(
        _group_rows,
        PlacementGroupState,
        "placement_groups",
        address,
        filters,
        limit,
        detail,
        _explain,
    )


def list_nodes(
    address: str | None = None,
    filters: list[Filter] | None = None,
    limit: int = DEFAULT_LIMIT,
    timeout: int = DEFAULT_RPC_TIMEOUT,
    detail: bool = False,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> list[NodeState]:
    """The one node."""
    return _list(_node_rows, NodeState, "nodes", address, filters, limit, detail, _explain)


# ==================================================================== get


def get_task(
    id: Any,
    address: str | None = None,
    timeout: int = DEFAULT_RPC_TIMEOUT,
    _explain: bool = False,
) -> TaskState | list[TaskState] | None:
    """The task (or actor call) with this hex id (or of this ``ObjectRef``), detail included:
    one row, a list of rows if it ran several attempts, or None."""
    if not isinstance(id, str):  # an ObjectRef: its task
        id = id.task_id().hex()
    found = [_make(TaskState, r) for r in _task_rows() if r["task_id"] == id]
    if not found:
        return None
    return found[0] if len(found) == 1 else found


def get_actor(
    id: str,
    address: str | None = None,
    timeout: int = DEFAULT_RPC_TIMEOUT,
    _explain: bool = False,
) -> ActorState | None:
    """The actor with this hex id, or None; detail fields included."""
    for row in _actor_rows():
        if row["actor_id"] == id:
            return _make(ActorState, row)
    return None


def get_worker(
    id: str,
    address: str | None = None,
    timeout: int = DEFAULT_RPC_TIMEOUT,
    _explain: bool = False,
) -> WorkerState | None:
    """The worker with this id, or None."""
    for row in _worker_rows():
        if row["worker_id"] == id:
            return _make(WorkerState, row)
    return None


def get_placement_group(
    id: str,
    address: str | None = None,
    timeout: int = DEFAULT_RPC_TIMEOUT,
    _explain: bool = False,
) -> PlacementGroupState | None:
    """The placement group with this hex id, or None."""
    for row in _group_rows():
        if row["placement_group_id"] == id:
            return _make(PlacementGroupState, row)
    return None


def get_node(
    id: str,
    address: str | None = None,
    timeout: int = DEFAULT_RPC_TIMEOUT,
    _explain: bool = False,
) -> NodeState | None:
    """The node with this id, or None."""
    for row in _node_rows():
        if row["node_id"] == id:
            return NodeState(**row)
    return None


# ==================================================================== summaries


def summarize_tasks(
    address: str | None = None,
    timeout: int = DEFAULT_RPC_TIMEOUT,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> dict[str, Any]:
    """Tasks counted by function (or method) and state, in Ray's shape."""
    summary: dict[str, dict[str, Any]] = {}
    total = actor_tasks = actors_scheduled = 0
    for row in _task_rows():
        name = row["name"] or row["func_or_class_name"]
        entry = summary.setdefault(
            name,
            {
                "func_or_class_name": row["func_or_class_name"],
                "type": row["type"],
                "state_counts": {},
            },
        )
        counts = entry["state_counts"]
        counts[row["state"]] = counts.get(row["state"], 0) + 1
        if row["type"] == "NORMAL_TASK":
            total += 1
        elif row["type"] == "ACTOR_TASK":
            actor_tasks += 1
        else:
            actors_scheduled += 1
    return {
        "cluster": {
            "summary": summary,
            "total_tasks": total,
            "total_actor_tasks": actor_tasks,
            "total_actor_scheduled": actors_scheduled,
            "summary_by": "func_name",
        }
    }


def summarize_actors(
    address: str | None = None,
    timeout: int = DEFAULT_RPC_TIMEOUT,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> dict[str, Any]:
    """Actors counted by class and state, in Ray's shape."""
    summary: dict[str, dict[str, Any]] = {}
    total = 0
    for row in _actor_rows():
        name = row["class_name"]
        entry = summary.setdefault(name, {"class_name": name, "state_counts": {}})
        counts = entry["state_counts"]
        counts[row["state"]] = counts.get(row["state"], 0) + 1
        total += 1
    return {"cluster": {"summary": summary, "total_actors": total, "summary_by": "class"}}


def summarize_objects(
    address: str | None = None,
    timeout: int = DEFAULT_RPC_TIMEOUT,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> dict[str, Any]:
    """Objects counted and sized, in Ray's shape (one call site: "disabled")."""
    rows = _object_rows()
    size = sum(r["object_size"] for r in rows if r["object_size"] > 0)
    by_type: dict[str, int] = {}
    for r in rows:
        by_type[r["reference_type"]] = by_type.get(r["reference_type"], 0) + 1
    group = {
        "total_objects": len(rows),
        "total_size_mb": size / 1024**2,
        "total_num_workers": 0,
        "total_num_nodes": 1,
        "task_state_counts": {"FINISHED": sum(r["task_status"] == "FINISHED" for r in rows)},
        "task_attempt_number_counts": {"1": len(rows)} if rows else {},
        "ref_type_counts": by_type,
    }
    return {
        "cluster": {
            "summary": {"disabled": group} if rows else {},
            "total_objects": len(rows),
            "total_size_mb": size / 1024**2,
            "callsite_enabled": False,
            "summary_by": "callsite",
        }
    }
