"""The page's data: the kernel's raw snapshot turned into what the page draws.

Runs on the dashboard's thread, never on the runtime loop: the loop only
copies (``_core.dashboard_view.gather``), this module counts, sorts and
trims. The result is plain JSON; its shape is the page's contract (see
``static/app.js``) and is checked against the state API by
``tests/test_dashboard.py``.
"""

from __future__ import annotations

import statistics
from collections import deque
from typing import Any

from .._core import dashboard_view as V
from .._core import task_events as E

# How far back the task stream reaches, and how many spans it sends at most
# (the newest): enough to see what ran lately without a heavy page.
STREAM_WINDOW_S = 120.0
STREAM_MAX_SPANS = 3000
# Resource samples kept (one per poll while someone looks: ~10 minutes).
HISTORY_SAMPLES = 600
# Actors sent at most (live first, then the newest dead).
ACTORS_MAX = 500

# Live task states drawn as open spans in the task stream.
_RUNNING = frozenset({"RUNNING"})


class History:
    """Resources in use over time: one sample per poll, the newest ``HISTORY_SAMPLES``.

    Sampled only when a page asks for a snapshot, so nobody looking costs nothing.
    """

    def __init__(self, maxlen: int = HISTORY_SAMPLES) -> None:
        self.samples: deque[tuple[float, dict[str, float]]] = deque(maxlen=maxlen)

    def add(self, t_ms: float, used: dict[str, float]) -> None:
        self.samples.append((t_ms, used))

    def to_json(self) -> dict[str, Any]:
        names = sorted({name for _, used in self.samples for name in used})
        return {
            "t_ms": [t for t, _ in self.samples],
            "series": {n: [used.get(n) for _, used in self.samples] for n in names},
        }


def resources_in_use(total: dict[str, float], available: dict[str, float]) -> dict[str, float]:
    """Each resource's amount in use (``object_store_memory`` is the store's own counter)."""
    return {
        name: max(0.0, qty - available.get(name, 0.0))
        for name, qty in total.items()
        if name != "object_store_memory" and not name.startswith("node:")
    }


def build(
    raw: dict[str, Any],
    history: History,
    processes: dict[int, dict[str, float]],
    *,
    kind: str,
) -> dict[str, Any]:
    """The page's JSON from ``raw`` (``dashboard_view.gather``) and per-process stats."""
    to_ms = _clock(raw)
    now_ms = to_ms(raw["perf_now"])
    used = resources_in_use(raw["total"], raw["available"])
    objects = raw["objects"]
    history.add(now_ms, {**used, "object_store_memory": float(objects["store_used"])})
    by_function, totals = _tasks_by_function(raw["live_tasks"], raw["ended"])
    return {
        "kind": kind,
        "now_ms": now_ms,
        "resources": {"total": raw["total"], "used": used},
        "history": history.to_json(),
        "tasks": {"by_function": by_function, "totals": totals, "queued": raw["queued"]},
        "stream": _stream(raw, to_ms, now_ms),
        "actors": _actors(raw["actors"]),
        "objects": objects,
        "workers": _workers(raw, processes),
        "drivers": raw["drivers"] if kind == "head" else [],
    }


def _clock(raw: dict[str, Any]) -> Any:
    base_us = raw["wall_us_at_perf_0"]

    def to_ms(perf: float) -> float:
        return (base_us + perf * 1e6) / 1000.0

    return to_ms


def _tasks_by_function(
    live: list[V.LiveTask], ended: list[E.Ended]
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Counts by (function, state), as ``summarize_tasks`` counts them, and run times.

    Durations are those of the ended tasks still in the kernel's ring: from
    start to end (from submission for a task that never started).
    """
    entries: dict[str, dict[str, Any]] = {}
    durations: dict[str, list[float]] = {}
    totals: dict[str, int] = {}

    def entry(name: str, kind: str) -> dict[str, Any]:
        found = entries.get(name)
        if found is None:
            found = entries[name] = {"name": name, "type": kind, "counts": {}}
        return found

    for name, kind, state, _, _ in live:
        counts = entry(name, kind)["counts"]
        counts[state] = counts.get(state, 0) + 1
        totals[state] = totals.get(state, 0) + 1
    for e in ended:
        name = e[E.NAME]
        state = "FAILED" if e[E.ERROR] else "FINISHED"
        counts = entry(name, e[E.TYPE])["counts"]
        counts[state] = counts.get(state, 0) + 1
        totals[state] = totals.get(state, 0) + 1
        begin = e[E.STARTED] or e[E.CREATED]
        if begin:
            durations.setdefault(name, []).append((e[E.ENDED] - begin) * 1000.0)
    rows = []
    for name, found in entries.items():
        spans = durations.get(name)
        found["mean_ms"] = statistics.fmean(spans) if spans else None
        found["p50_ms"] = statistics.median(spans) if spans else None
        found["total"] = sum(found["counts"].values())
        rows.append(found)
    rows.sort(key=lambda r: (-r["total"], r["name"]))
    return rows, totals


def _stream(raw: dict[str, Any], to_ms: Any, now_ms: float) -> dict[str, Any]:
    """Which worker ran what, when: the spans of the last ``STREAM_WINDOW_S`` seconds.

    Each span is ``[pid, name, start_ms, end_ms or None (running), failed]``.
    """
    since_ms = now_ms - STREAM_WINDOW_S * 1000.0
    spans: list[list[Any]] = []
    for e in reversed(raw["ended"]):  # newest first: stop at the window's start
        ended_ms = to_ms(e[E.ENDED])
        if ended_ms < since_ms or len(spans) >= STREAM_MAX_SPANS:
            break
        if not e[E.PID] or not e[E.STARTED]:
            continue  # never ran on a worker (cancelled while queued)
        spans.append([e[E.PID], e[E.NAME], to_ms(e[E.STARTED]), ended_ms, bool(e[E.ERROR])])
    live: list[V.LiveTask] = raw["live_tasks"]
    for name, _, state, pid, started in live:
        if state in _RUNNING and pid and started:
            spans.append([pid, name, to_ms(started), None, False])
    return {"window_s": STREAM_WINDOW_S, "since_ms": since_ms, "spans": spans}


def _actors(rows: list[dict[str, Any]]) -> dict[str, Any]:
    states: dict[str, int] = {}
    for row in rows:
        states[row["state"]] = states.get(row["state"], 0) + 1
    live = [r for r in rows if r["state"] != "DEAD"]
    dead = [r for r in rows if r["state"] == "DEAD"]
    shown = (live + dead[::-1])[:ACTORS_MAX]
    return {
        "total": len(rows),
        "states": states,
        "rows": [
            {
                "actor_id": r["actor_id"],
                "class_name": r["class_name"],
                "name": r["name"] or "",
                "state": r["state"],
                "num_restarts": r["num_restarts"],
                "pid": r["pid"],
                "namespace": r["ray_namespace"],
            }
            for r in shown
        ],
    }


def _workers(raw: dict[str, Any], processes: dict[int, dict[str, float]]) -> list[dict[str, Any]]:
    """This process (driver or head) first, then every worker, with CPU % and RSS."""
    me = raw["pid"]
    rows: list[dict[str, Any]] = [
        {"pid": me, "kind": "runtime", "state": "alive", "running": None, **processes.get(me, {})}
    ]
    for w in raw["workers"]:
        rows.append(
            {
                "pid": w["pid"],
                "kind": w["kind"],
                "state": w["state"],
                "running": w["running"],
                **processes.get(w["pid"], {}),
            }
        )
    return rows


def pids_of(raw: dict[str, Any]) -> list[int]:
    """The processes whose CPU and memory the page shows."""
    return [raw["pid"], *(w["pid"] for w in raw["workers"])]
