"""What the dashboard reads from the kernel: one raw snapshot, taken on the runtime loop.

The dashboard runs on a thread of its own; the kernel's state has one owner,
the runtime loop. So the dashboard asks the loop for ``gather(rt)`` (by
``call_soon_threadsafe``) and does everything else, aggregating and encoding,
on its own thread. ``gather`` copies what it reads: the live rows (built by
``state_view``, so states match the state API's), the ring of ended tasks as
it is (a list of the ring's immutable tuples: one C-level copy), and a few
counters. Nothing here runs unless someone has the page open.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from . import state_view

if TYPE_CHECKING:
    from .runtime import Runtime

# A live task as (name, type, state, pid, started): what the page counts and
# draws, nothing more (tens of thousands of queued tasks must not cost a dict
# each, every second).
LiveTask = tuple[str, str, str, int, float]


def gather(rt: Runtime) -> dict[str, Any]:
    """A copy of what the dashboard shows, read on the runtime loop (its only owner)."""
    store = rt.store
    return {
        "perf_now": time.perf_counter(),
        # Wall-clock microseconds = this + perf_counter seconds * 1e6 (``TaskEvents``'
        # clock, which is linear), so the dashboard converts the ring's times itself.
        "wall_us_at_perf_0": rt.events.wall_us(0.0),
        "total": dict(rt.resources.totals),
        "available": rt.resources.snapshot_available(),
        "live_tasks": live_tasks(rt),
        # The ring's tuples are immutable: the dashboard's thread may read them.
        "ended": list(rt.events.ended),
        "actors": state_view.actors(rt),
        "workers": state_view.workers(rt),
        "objects": {
            "count": len(rt.objects),
            "store_used": store.used,
            "store_capacity": store.capacity,
            "spilled_bytes": sum(store.spilled.values()),
            "spilled_objects": len(store.spilled),
        },
        "queued": len(rt.ready),
        "drivers": [job.row() for job in rt.jobs.live.values()],
        "pid": os.getpid(),
    }


def live_tasks(rt: Runtime) -> list[LiveTask]:
    """Every live task, actor call and actor creation, in their state-API states.

    ``STARTED`` is a ``perf_counter`` reading (0 unless running).
    """
    rows: list[LiveTask] = []
    append = rows.append
    task_state = state_view.task_state
    for task in list(rt.tasks.values()):
        state = task_state(task)
        running = state == "RUNNING"
        append(
            (
                task.spec.name,
                "NORMAL_TASK",
                state,
                task.pid if running else 0,
                task.started if running else 0.0,
            )
        )
    for actor, call in list(rt.actors.calls.values()):
        state = state_view.call_state(actor, call)
        running = state == "RUNNING"
        append(
            (
                f"{actor.spec.class_name}.{call.spec.method}",
                "ACTOR_TASK",
                state,
                actor.pid if running else 0,
                call.started if running else 0.0,
            )
        )
    for actor in list(rt.actors.actors.values()):
        name = f"{actor.spec.class_name}.__init__"
        append((name, "ACTOR_CREATION_TASK", state_view.creation_state(actor), 0, 0.0))
    return rows
