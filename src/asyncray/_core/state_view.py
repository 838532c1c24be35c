"""The kernel's state, as rows of Ray's state API (``QueryState``: tasks, actors, ...).

Rows are plain dicts with Ray's field names, built only when asked (a query
walks the live records and the ring of ended ones; nothing is kept for it
on the hot path but ``TaskEvents``). Times are wall-clock milliseconds as
floats (the client rounds them where Ray gives integers; the timeline keeps
the fraction). Ids are hex. The client fills what only it knows (node and
worker ids) and applies filters, ``limit`` and ``detail``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._wire import shm
from . import task_events as E

if TYPE_CHECKING:
    from .mailbox import ActorRecord, CallRecord
    from .runtime import Runtime, TaskRecord

Row = dict[str, Any]


def _ms(rt: Runtime, perf: float) -> float | None:
    if not perf:
        return None
    return rt.events.wall_us(perf) / 1000.0


def tasks(rt: Runtime) -> list[Row]:
    """Every live task, actor call and actor creation, then the ended ones (newest last)."""
    rows = live_tasks(rt)
    rows.extend(_ended(rt, e) for e in list(rt.events.ended))
    return rows


def live_tasks(rt: Runtime) -> list[Row]:
    """Every live task, actor call and actor creation (the ended ones are in ``rt.events``)."""
    rows: list[Row] = [_live_task(rt, t) for t in list(rt.tasks.values())]
    for actor, call in list(rt.actors.calls.values()):
        rows.append(_live_call(rt, actor, call))
    for actor in list(rt.actors.actors.values()):
        rows.append(_creation(rt, actor))
    return rows


def _task_row(
    *,
    task_id: bytes,
    attempt: int,
    name: str,
    state: str,
    job: str,
    actor_id: bytes,
    kind: str,
    pid: int,
    error_type: str | None,
    resources: Any,
    parent: bytes,
    pg_id: bytes,
    created: float | None,
    started: float | None,
    ended: float | None,
    func_or_class_name: str = "",
) -> Row:
    return {
        "task_id": task_id.hex(),
        "attempt_number": attempt,
        "name": name,
        "state": state,
        "job_id": job,
        "actor_id": actor_id.hex() if actor_id else None,
        "type": kind,
        "func_or_class_name": func_or_class_name or name,
        "parent_task_id": parent.hex() if parent else None,
        "worker_pid": pid or None,
        "error_type": error_type or None,
        "language": "PYTHON",
        "required_resources": dict(resources) if resources else {},
        "placement_group_id": pg_id.hex() if pg_id else None,
        "creation_time_ms": created,
        "start_time_ms": started,
        "end_time_ms": ended,
    }


def task_state(task: TaskRecord) -> str:
    """A live task's state, from where it is."""
    worker = task.worker
    if task.missing:
        return "PENDING_ARGS_AVAIL"
    if worker is None:
        return "PENDING_NODE_ASSIGNMENT"
    if worker.task is task:
        return "RUNNING"
    return "SUBMITTED_TO_WORKER"  # pipelined behind the task its worker runs


def call_state(actor: ActorRecord, call: CallRecord) -> str:
    """A live actor call's state."""
    if call.missing:
        return "PENDING_ACTOR_TASK_ARGS_FETCH"
    if call.spec.task_id in actor.inflight:
        return "RUNNING"
    return "PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY"


def creation_state(actor: ActorRecord) -> str:
    """The state of an actor's creation task (``Counter.__init__``)."""
    return {
        "pending": "PENDING_ARGS_AVAIL" if actor.ctor_missing else "PENDING_NODE_ASSIGNMENT",
        "starting": "RUNNING",
        "alive": "FINISHED",
    }.get(actor.state, "FAILED")


def _live_task(rt: Runtime, task: TaskRecord) -> Row:
    worker = task.worker
    state = task_state(task)
    spec = task.spec
    return _task_row(
        task_id=spec.task_id,
        attempt=task.attempts,
        name=spec.name,
        state=state,
        job=task.job,
        actor_id=b"",
        kind="NORMAL_TASK",
        pid=task.pid if state == "RUNNING" else (worker.pid if worker is not None else 0),
        error_type=None,
        resources=task.shape,
        parent=spec.parent,
        pg_id=spec.pg_id,
        created=_ms(rt, task.created),
        started=_ms(rt, task.started) if state == "RUNNING" else None,
        ended=None,
    )


def _live_call(rt: Runtime, actor: ActorRecord, call: CallRecord) -> Row:
    spec = call.spec
    state = call_state(actor, call)
    return _task_row(
        task_id=spec.task_id,
        attempt=call.attempts,
        name=f"{actor.spec.class_name}.{spec.method}",
        state=state,
        job=actor.job,
        actor_id=actor.actor_id,
        kind="ACTOR_TASK",
        pid=actor.pid,
        error_type=None,
        resources=None,
        parent=spec.parent,
        pg_id=actor.spec.pg_id,
        created=_ms(rt, call.created),
        started=_ms(rt, call.started) if state == "RUNNING" else None,
        ended=None,
    )


def _creation(rt: Runtime, actor: ActorRecord) -> Row:
    """An actor's creation task, as Ray lists it (``Counter.__init__``)."""
    state = creation_state(actor)
    spec = actor.spec
    init = f"{spec.class_name}.__init__"
    return _task_row(
        task_id=spec.actor_id,
        attempt=actor.restarts_used,
        name=f"{spec.name}:{spec.class_name}.__init__"
        if spec.name
        else f"{spec.class_name}.__init__",
        state=state,
        job=actor.job,
        actor_id=actor.actor_id,
        kind="ACTOR_CREATION_TASK",
        pid=actor.pid,
        error_type="ACTOR_DIED" if state == "FAILED" else None,
        resources=spec.place,
        parent=b"",
        pg_id=spec.pg_id,
        created=_ms(rt, actor.created),
        started=None,
        ended=None,
        func_or_class_name=init,
    )


def _ended(rt: Runtime, e: E.Ended) -> Row:
    return _task_row(
        task_id=e[E.TASK_ID],
        attempt=e[E.ATTEMPTS],
        name=e[E.NAME],
        state="FAILED" if e[E.ERROR] else "FINISHED",
        job=e[E.JOB],
        actor_id=e[E.ACTOR_ID],
        kind=e[E.TYPE],
        pid=e[E.PID],
        error_type=e[E.ERROR],
        resources=e[E.RESOURCES],
        parent=e[E.PARENT],
        pg_id=e[E.PG_ID],
        created=_ms(rt, e[E.CREATED]),
        started=_ms(rt, e[E.STARTED]),
        ended=_ms(rt, e[E.ENDED]),
    )


_ACTOR_STATES = {
    "pending": "PENDING_CREATION",
    "starting": "PENDING_CREATION",
    "alive": "ALIVE",
    "dead": "DEAD",
}


def actors(rt: Runtime) -> list[Row]:
    """Every live actor, then the dead ones the kernel still remembers (newest last)."""
    rows = [actor_row(actor) for actor in list(rt.actors.actors.values())]
    rows.extend(rt.actors.dead_rows.values())
    return rows


def actor_row(actor: ActorRecord) -> Row:
    """One actor's row (a dead actor's is kept as it was at its death)."""
    spec = actor.spec
    state = _ACTOR_STATES.get(actor.state, actor.state.upper())
    if state == "PENDING_CREATION" and actor.restarts_used:
        state = "RESTARTING"
    elif actor.state == "pending" and actor.ctor_missing:
        state = "DEPENDENCIES_UNREADY"
    return {
        "actor_id": actor.actor_id.hex(),
        "class_name": spec.class_name,
        "state": state,
        "job_id": actor.job,
        "name": spec.name,
        "pid": actor.pid or None,
        "ray_namespace": spec.namespace,
        "required_resources": dict(spec.place),
        "is_detached": spec.detached,
        "placement_group_id": spec.pg_id.hex() if spec.pg_id else None,
        "repr_name": "",
        "num_restarts": actor.restarts_used,
        "num_restarts_due_to_lineage_reconstruction": 0,
        "num_restarts_due_to_node_preemption": 0,
        "death_cause": None if state != "DEAD" else {"actor_died_error_context": {}},
    }


def objects(rt: Runtime) -> list[Row]:
    """Every object the kernel holds: its size, whether it is ready, how many refs."""
    rows = []
    sizes = rt.store.resident
    spilled = rt.store.spilled
    for oid, entry in list(rt.objects.items()):
        data = entry.data
        size = -1  # not there yet, as Ray says of a pending task's return
        where = "PENDING"
        if data is not None:
            segment = shm.segment_of(data)
            if segment is None:
                size, where = len(data), "INLINE"
            elif segment in spilled:
                size, where = spilled[segment], "SPILLED"
            else:
                size, where = sizes.get(segment, 0), "SHARED_MEMORY"
        rows.append(
            {
                "object_id": oid.hex(),
                "object_size": size,
                "task_status": "FINISHED" if data is not None else "PENDING_NODE_ASSIGNMENT",
                "attempt_number": 0,
                "reference_type": "LOCAL_REFERENCE" if entry.refs > 0 else "PINNED_IN_MEMORY",
                "call_site": "disabled",
                "ref_count": entry.refs,
                "is_error": entry.is_error,
                "location": where,
            }
        )
    return rows


def workers(rt: Runtime) -> list[Row]:
    """Every live task worker and actor process."""
    rows = []
    for worker in list(rt.workers.values()):
        if not worker.pid:
            continue
        running = worker.task.spec.name if worker.task is not None else None
        rows.append(
            {
                "pid": worker.pid,
                "is_alive": worker.state != "dead",
                "worker_type": "WORKER",
                "kind": worker.kind,
                "state": worker.state,
                "job_id": worker.job or None,
                "actor_id": worker.actor.actor_id.hex() if worker.actor is not None else None,
                "running": running,
                "worker_launch_time_ms": None,
            }
        )
    return rows


def groups(rt: Runtime) -> list[Row]:
    """Every placement group the kernel has a record of (``placement_group_table``'s rows,
    with the creator's job and whether it is detached)."""
    rows: list[Row] = list(rt.groups.table().values())
    return rows
