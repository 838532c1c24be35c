"""``asyncray.timeline()``: the session's tasks and actor calls as a Chrome trace.

The file (a JSON array of trace events) opens in chrome://tracing and in
Perfetto, as Ray's does: one process per node ("Node 127.0.0.1"), one track
per worker process (``worker:<worker id>``), named by metadata events. Each
task or call is a complete event ("ph": "X") from its start to its end,
named by its function or method and marked red when it failed; the time it
waited between submission and start is an event of its own ("task:pending")
on the track of the process that ran it. Times are microseconds.
"""

from __future__ import annotations

import json
from typing import Any

from ... import _api
from ...runtime_context import worker_id_of

# Ray's colour names (catapult's colour scheme).
_RAN = "rail_response"
_FAILED = "terrible"
_PENDING = "cq_build_abandoned"


def timeline(filename: str | None = None) -> list[dict[str, Any]] | None:
    """The session's tasks and actor calls as Chrome trace events.

    Args:
        filename: write the events there as a JSON array (and return None).

    Returns:
        The list of events, when no ``filename`` is given.

    Raises:
        RuntimeError: asyncray is not initialized.
    """
    if not _api.is_initialized():
        raise RuntimeError(
            "Ray has not been started yet. Timeline requires Ray to be initialized first."
        )
    node_id, rows = _api.state_rows("tasks")
    events = trace_events(node_id, rows, _api.now_ms())
    if filename is None:
        return events
    with open(filename, "w") as f:
        json.dump(events, f)
    return None


def trace_events(node_id: str, rows: list[dict[str, Any]], now_ms: float) -> list[dict[str, Any]]:
    """Chrome trace events of the kernel's task rows (running ones end ``now_ms``)."""
    tracks: dict[int, int] = {}  # worker pid → tid
    events: list[dict[str, Any]] = []
    for row in rows:
        start = row["start_time_ms"]
        pid = row["worker_pid"]
        if start is None or not pid:
            continue  # never ran: nothing to draw
        tid = tracks.setdefault(pid, len(tracks))
        end = row["end_time_ms"]
        failed = bool(row["error_type"])
        args = {
            "task_id": row["task_id"],
            "job_id": row["job_id"],
            "attempt_number": row["attempt_number"],
            "func_or_class_name": row["func_or_class_name"],
            "actor_id": row["actor_id"],
            "state": row["state"],
            "worker_pid": pid,
        }
        if failed:
            args["error_type"] = row["error_type"]
        created = row["creation_time_ms"]
        if created is not None and start > created:
            events.append(
                _complete("task:pending", row["name"], tid, created, start, _PENDING, args)
            )
        events.append(
            _complete(
                f"task::{row['func_or_class_name']}",
                row["name"],
                tid,
                start,
                now_ms if end is None else end,
                _FAILED if failed else _RAN,
                args,
            )
        )
    events.append(
        {
            "name": "process_name",
            "ph": "M",
            "pid": 0,
            "tid": None,
            "args": {"name": "Node 127.0.0.1"},
        }
    )
    for pid, tid in tracks.items():
        events.append(
            {
                "name": "thread_name",
                "ph": "M",
                "pid": 0,
                "tid": tid,
                "args": {"name": f"worker:{worker_id_of(node_id, pid)} (pid {pid})"},
            }
        )
    return events


def _complete(
    category: str,
    name: str,
    tid: int,
    start_ms: float,
    end_ms: float,
    colour: str,
    args: dict[str, Any],
) -> dict[str, Any]:
    return {
        "cat": category,
        "name": name,
        "pid": 0,
        "tid": tid,
        "ts": start_ms * 1000.0,
        "dur": max(0.0, (end_ms - start_ms) * 1000.0),
        "ph": "X",
        "cname": colour,
        "args": dict(args),
    }
