"""Runtime: the one owner of all runtime state, driven by one event loop.

Every message from every client — the embedded driver, task workers, actors
— arrives at ``handle`` and is dispatched by type to an ``_on_<message>``
handler. Handlers only change state and send messages; they never block.
Nothing here is touched from another thread: the driver's client posts
messages onto the loop, children write to their sockets.

Task life::

    SubmitTask ─► TaskRecord ─(deps ready)─► ReadyQueue ─(resources + idle worker)─►
    ExecuteTask ─► worker ─► TaskDone ─► ObjectTable.seal(return ids) ─► waiters

A worker that dies mid-task is noticed twice: EOF on its socket and the
zygote's ``Reaped`` with its exit status. When both are in (or after a short
grace period) the task is retried or failed with ``WorkerCrashedError``
naming the pid and the exit code or signal.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import signal
import socket
import time
import traceback
import typing
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from .. import exceptions as exc
from .._wire import protocol as P
from .._wire import refs, shm
from .._wire import serialization as ser
from .._wire.output import write_log
from . import retention, state_view
from .busy_poll import BusyPoll
from .child_checks import MAX_STREAM_INDEX, stream_index_problem, task_done_problem
from .conn import Conn
from .jobs import JobRecord, JobTable
from .mailbox import ActorManager
from .object_table import ObjectEntry, ObjectTable
from .placement import PlacementGroupManager, removed_payload
from .queues import QueueManager
from .scheduler import ReadyQueue, ResourcePool, Shape, shape_of
from .store import SegmentStore, StoreFull
from .task_events import TaskEvents
from .worker_pool import ChildConn, WorkerRecord, ZygoteLink, unsendable_error

logger = logging.getLogger("asyncray")

# Forks in flight at once. More would only queue inside the zygote, and a
# burst of zero-CPU tasks must not fork hundreds of processes in one go.
MAX_CONCURRENT_STARTS = 4
# Hard ceiling on task workers, blocked ones included (deep nested gets).
MAX_TASK_WORKERS = 512
# Workers above the base pool exit after idling this long; long enough to
# survive the gaps of a bursty workload, short enough to give memory back.
IDLE_RETIRE_S = 10.0
# Tasks sent ahead to a busy worker (same resource shape, so they inherit its
# slot), about PIPELINE_BUDGET_S of work by the function's recent run times,
# at most PIPELINE_DEPTH. One hides the runtime round trip between two tasks;
# short tasks need several, or the worker idles while the runtime (sharing the
# driver's GIL) turns each one around: 28k -> 54k tasks/s for empty tasks on
# 2 CPUs. The budget bounds what waits behind a task that runs long: work a
# freed worker cannot take over (a sent task is not taken back unless its
# worker blocks in get).
PIPELINE_DEPTH = 8
PIPELINE_BUDGET_S = 1e-3
# How fast a function's run-time estimate follows its latest run (an EWMA).
RUN_TIME_WEIGHT = 0.2
# Recycled shared-memory segments unused this long are removed (the pool is a
# cache for bursts of puts, not memory kept for good).
RECYCLE_IDLE_S = 1.0
# The id suffix of a stream's completion object (``ObjectRefGenerator.completed()``).
STREAM_COMPLETION = b"\xff\xff\xff\xff"
_NONE_PAYLOAD = ser.dumps(None)
# The id suffix of a ``put`` object (return ids and stream items count from 1).
_PUT_SUFFIX = b"\x00\x00\x00\x00"
# A wait over at least this many pending objects watches their ids as a set
# (one check per seal) instead of adding a callback to each of them.
WATCH_SET_MIN = 32
# A task past its ``timeout_s`` gets KeyboardInterrupt; if it is still
# running this long after, its worker is killed (C code can ignore SIGINT).
TIMEOUT_KILL_GRACE_S = 1.0
# After a worker could not be started (no file descriptors, no memory), how
# long until dispatch tries again: soon enough for a limit that eases (actors
# exiting), rare enough not to spin on one that does not.
SPAWN_RETRY_S = 1.0
# How long an interrupt waits for its request to leave the runtime's buffer
# for the worker's socket (it is written at once unless the socket is full).
INTERRUPT_WRITE_WAIT_S = 1.0
# How long to wait for the zygote's exit status after a child's EOF before
# failing its task with an unknown status.
EXIT_STATUS_GRACE_S = 1.0


# Messages a peer sends that wait for an answer: those with a ``req_id``, but
# the replies (which travel the other way) and ``CancelWaiter`` (which names
# another request).
_REQUEST_TYPES = frozenset(
    t
    for t in typing.get_args(P.Message)
    if "req_id" in t.__struct_fields__ and t not in P.REPLY_TYPES and t is not P.CancelWaiter
)

# Messages only the runtime sends: a peer that sends one is corrupt or hostile.
_RUNTIME_TO_CLIENT = (
    P.ExecuteTask,
    P.StartActor,
    P.ExecuteActorCall,
    P.StreamCredit,
    P.CancelActorCall,
    P.Shutdown,
    P.RevokeTasks,
    P.DropMappings,
    P.InterruptTask,
    P.SetJob,
    P.SetEnv,
    *P.REPLY_TYPES,
)

# ``QueryState.what`` → the rows of Ray's state API it asks for.
_STATE_TABLES: dict[str, Callable[[Runtime], Any]] = {
    "tasks": state_view.tasks,
    "actors": state_view.actors,
    "objects": state_view.objects,
    "workers": state_view.workers,
    "groups": state_view.groups,
}

_QUEUE_OPS = frozenset(
    (P.QUEUE_PUT, P.QUEUE_GET, P.QUEUE_PUT_BATCH, P.QUEUE_GET_BATCH, P.QUEUE_SIZE, P.QUEUE_CLOSE)
)

# A ready-queue key: the placement group and bundle (or None), and the shape.
TaskKey = tuple[tuple[bytes, int] | None, Shape]


class TaskRecord:
    """The runtime's view of one submitted task."""

    __slots__ = (
        "attempts",
        "cancelled",
        "children",
        "created",
        "dep_values",
        "gpu_ids",
        "job",
        "key",
        "missing",
        "owner",
        "pid",
        "pool",
        "shape",
        "spec",
        "started",
        "timer",
        "worker",
    )

    def __init__(self, spec: P.SubmitTask, owner: Conn) -> None:
        self.spec = spec
        self.owner = owner
        # The job it belongs to: its submitter's (a driver's, or the task's that submitted it).
        self.job: str = owner.job
        self.shape: Shape = shape_of(spec.resources)
        # The ready-queue key: (placement group and bundle, or None; shape).
        group = (spec.pg_id, spec.pg_bundle) if spec.pg_id else None
        self.key: TaskKey = (group, self.shape)
        # The pool the task's resources came from: the host's or a bundle's.
        self.pool: ResourcePool | None = None
        self.dep_values: list[bytes] = []
        self.missing = 0
        self.attempts = 0
        self.worker: WorkerRecord | None = None
        self.gpu_ids: list[int] = []
        # The error payload to seal instead of any result once cancelled.
        self.cancelled: bytes | None = None
        self.children: list[bytes] = []
        self.timer: asyncio.TimerHandle | None = None
        self.started = 0.0  # when it became its worker's running task
        self.created = time.perf_counter()  # when it was submitted (state API, timeline)
        self.pid = 0  # the process that runs (ran) it

    def can_retry(self) -> bool:
        if self.cancelled is not None:
            return False  # cancelled tasks are never retried
        limit = self.spec.max_retries
        return limit < 0 or self.attempts < limit


class StreamRecord:
    """A streaming generator's items as the producer yields and the consumer takes them.

    A retried generator runs again from its start, as in Ray: the items an
    earlier attempt produced are ``kept`` (the consumer may hold them) and the
    new attempt's items at those indices are dropped; its later items follow.
    """

    __slots__ = (
        "backpressure",
        "consumed",
        "count",
        "kept",
        "owner",
        "produced",
        "producer",
        "released",
    )

    def __init__(self, owner: Conn, backpressure: int) -> None:
        self.owner = owner
        self.backpressure = backpressure
        self.produced = 0  # items the running attempt has sent
        self.kept = 0  # items kept from earlier attempts (0 on a first attempt)
        self.consumed = 0
        self.count = -1  # set when the stream ends
        self.producer: Any = None
        self.released = False

    def items(self) -> int:
        """How many items the consumer has (or will have) so far."""
        return self.produced if self.produced > self.kept else self.kept

    def new_attempt(self) -> None:
        """The generator runs again from its start (a retry)."""
        self.kept = self.items()
        self.produced = 0


class _Request:
    """An outstanding get or wait."""

    __slots__ = (
        "conn",
        "done",
        "entries",
        "ids",
        "kind",
        "num_returns",
        "remaining",
        "req_id",
        "timer",
        "watch",
    )

    def __init__(self, conn: Conn, req_id: int, ids: list[bytes], kind: str) -> None:
        self.conn = conn
        self.req_id = req_id
        self.ids = ids
        self.kind = kind
        self.entries: list[ObjectEntry | None] = []
        self.remaining = 0
        self.num_returns = 0
        self.done = False
        self.timer: asyncio.TimerHandle | None = None
        self.watch: Any = None


def _loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The runtime loop's exception handler: a kernel callback raised."""
    error = context.get("exception")
    detail = "".join(traceback.format_exception(error)) if error is not None else ""
    logger.error("asyncray internal error in the runtime loop: %s\n%s", context["message"], detail)


def _argument_objects(args: bytes, dep_ids: list[bytes]) -> list[bytes]:
    """The objects a call takes: its top-level ref arguments and the refs nested in the rest."""
    if args[:7] == refs.MARKER:
        return dep_ids + refs.contained(args)
    return dep_ids


class Runtime:
    """All mutable runtime state; touched only on ``loop``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        totals: dict[str, float],
        zygote_pid: int,
        zygote_sock: socket.socket,
        *,
        namespace: str,
        job_id: str,
        log_to_driver: bool = True,
        store_capacity: int = 1 << 40,
    ) -> None:
        self.loop = loop
        self.namespace = namespace
        # Drivers' jobs (embedded: one; a shared head: one per connected driver).
        self.jobs = JobTable()
        if job_id:  # embedded: the one job, its driver in this process
            self.jobs.open(
                None,
                namespace,
                pid=os.getpid(),
                log_to_driver=log_to_driver,
                output=write_log,
                job_id=job_id,
            )
        # The job a new worker is taken to serve: embedded, the only one, so
        # no ``SetJob`` is ever sent; a shared head has none ("").
        self.default_job = job_id
        # On a shared head a task worker serves one job for life, as Ray's
        # workers do: modules a job's tasks imported (its own ``utils.py``)
        # and globals they set never meet another job's tasks. A fresh worker
        # is a fork of the zygote, a few milliseconds.
        self.workers_per_job = not job_id
        # Set once a task with a runtime_env comes: from then on a task runs
        # only on a worker set up with its env (or a fresh one, which takes it
        # on for life); until then dispatch takes any idle worker.
        self.workers_per_env = False
        self.resources = ResourcePool(totals)
        self.store = SegmentStore(store_capacity, shm.spill_directory())
        self.objects = ObjectTable(self.store)
        self._trim_handle: asyncio.TimerHandle | None = None
        self.store.on_recycle = self.schedule_trim
        self.store.on_removed = self._segment_removed
        self.ready: ReadyQueue[TaskKey] = ReadyQueue()
        self.functions: dict[bytes, bytes] = {}
        # The last ended tasks and actor calls (the state API, the timeline).
        self.events = TaskEvents(retention.current().task_events)
        # Which socket peers registered each definition (see release_functions);
        # definitions no live peer holds that were still in use, to drop later.
        self.function_holders: dict[bytes, set[Any]] = {}
        self.unheld_functions: set[bytes] = set()
        self.workers: dict[int, WorkerRecord] = {}
        self.workers_by_pid: dict[int, WorkerRecord] = {}
        self.idle: deque[WorkerRecord] = deque()
        # Recent run time of each function's tasks (seconds, an EWMA): sets PIPELINE depth.
        self.run_times: dict[bytes, float] = {}
        # Task workers forked and not yet ready. Actors' processes are not
        # counted: they never take a task, so a queued task must not wait for one.
        self.starting = 0
        # Set while a failed fork waits to be tried again (see _spawn_failed).
        self._spawn_retry: asyncio.TimerHandle | None = None
        self.base_pool_size = max(1, int(totals.get("CPU", 1)))
        self._child_ids = itertools.count(1)
        self._stopped = False
        self.zygote = ZygoteLink(
            loop, zygote_pid, zygote_sock, self._on_spawned, self._on_reaped, self._on_zygote_lost
        )
        self.actors = ActorManager(self)
        self.groups = PlacementGroupManager(self)
        self.queues = QueueManager(self)
        self.task_workers = 0
        self.tasks: dict[bytes, TaskRecord] = {}
        self.streams: dict[bytes, StreamRecord] = {}
        # Inside a batch of messages (begin_batch/end_batch), submissions only
        # queue; one dispatch runs at the end of the batch.
        self._batching = False
        self._dispatch_wanted = False
        # Children with messages held during the current batch.
        self.batched_conns: list[Any] = []
        # Each connected child's socket by descriptor, and a count of changes:
        # a driver thread that runs the kernel while it waits (the embedded
        # driver's ``_clients/driving.py``) reads these sockets itself.
        self.child_readers: dict[int, Any] = {}
        self.child_readers_version = 0
        # A head's loop polls for a moment after each driver's message and reply.
        self.busy_poll = BusyPoll(loop)
        # A callback of the kernel's own (a timer, a socket's protocol) that
        # raises is a bug like a handler that raises: logged loudly.
        loop.set_exception_handler(_loop_error)
        a = self.actors
        self._handlers: dict[type, Callable[[Any, Any], object]] = {
            P.CreateActor: a.on_create,
            P.CallActor: a.on_call,
            P.KillActor: a.on_kill,
            P.ReleaseActor: a.on_release,
            P.GetActor: a.on_get_actor,
            P.ActorExiting: a.on_exiting,
            P.ActorStarted: a.on_started,
            P.ListNamedActors: self._on_list_named_actors,
            P.CreatePlacementGroup: self._on_create_placement_group,
            P.RemovePlacementGroup: self.groups.on_remove,
            P.StreamItem: self._on_stream_item,
            P.StreamNext: self._on_stream_next,
            P.ReleaseStream: self._on_release_stream,
            P.CancelTask: self._on_cancel_task,
            P.RegisterFunction: self._on_register_function,
            P.SubmitTask: self._on_submit_task,
            P.PutObject: self._on_put_object,
            P.GetObjects: self._on_get_objects,
            P.WaitObjects: self._on_wait_objects,
            P.ReleaseObjects: self._on_release_objects,
            P.Log: self._on_log,
            P.TaskDone: self._on_task_done,
            P.CancelWaiter: self._on_cancel_waiter,
            P.QueryState: self._on_query_state,
            P.WorkerHello: self._on_worker_hello,
            P.ReserveSegment: self._on_reserve_segment,
            P.DropReservation: self._on_drop_reservation,
            P.SegmentMaps: self._on_segment_maps,
            P.HoldObjects: self._on_hold_objects,
            P.CreateQueue: self._on_create_queue,
            P.QueueOp: self._on_queue_op,
        }
        for t in _RUNTIME_TO_CLIENT:
            self._handlers[t] = self._on_runtime_message

    # ================================================================ entry point

    def handle(self, conn: Conn, msg: Any) -> None:
        """Dispatch one message. A dict by type, not ``match``: this is the hottest line."""
        try:
            self._handlers[type(msg)](conn, msg)
        except Exception:  # an internal bug: say so loudly, answer, keep serving others
            self._handler_failed(conn, msg)

    def _handler_failed(self, conn: Conn, msg: Any) -> None:
        """A handler raised: log it loudly and answer whoever waits on ``msg``.

        A request gets an ``ErrorReply`` with the kernel's traceback (its
        requester raises ``RaySystemError``) instead of never being answered;
        a task or actor call gets its return objects sealed with that error,
        so a ``get`` of them raises instead of hanging.
        """
        text = traceback.format_exc()
        name = type(msg).__name__
        logger.error(
            "asyncray internal error handling %s (a bug in asyncray; the caller gets "
            "RaySystemError):\n%s",
            name,
            text,
        )
        try:
            if type(msg) in _REQUEST_TYPES and msg.req_id:
                conn.requests.pop(msg.req_id, None)
                conn.send(P.ErrorReply(req_id=msg.req_id, error=text))
            if type(msg) is P.CreateActor:  # its calls fail with the reason, not "unknown actor"
                self.actors.creation_failed(conn, msg, text)
            elif type(msg) in (P.SubmitTask, P.CallActor):
                error = ser.dumps_function(
                    exc.RaySystemError(
                        f"asyncray failed handling {name} (an internal bug):\n{text}"
                    )
                )
                for rid in msg.return_ids:
                    entry = self.objects.get(rid)
                    if entry is None or entry.data is None:
                        self.objects.seal(rid, error, True)
        except Exception:
            logger.exception("asyncray could not answer %s after its handler failed", name)

    def reject(self, conn: Conn, problem: str) -> None:
        """``conn`` sent what no asyncray peer sends: drop it if it is a child.

        The child is reported, killed and its work fails as after a crash
        (``ChildConn.drop``). The embedded driver's messages are built by
        asyncray itself, so one of them failing a check is an internal bug.
        """
        drop = getattr(conn, "drop", None)  # a child, or a driver connected to a head
        if drop is not None:
            drop(problem)
            return
        raise ValueError(f"the driver's client {problem}")

    def _on_create_placement_group(self, conn: Conn, msg: P.CreatePlacementGroup) -> None:
        if conn.units is not None:  # the driver's client checked its bundles at the call site
            if msg.pg_id in self.groups.groups:
                self.reject(conn, f"created placement group {msg.pg_id.hex()}, an id in use")
                return
            for bundle in msg.bundles:
                if not all(0 <= qty < math.inf for qty in bundle.values()):
                    # A negative amount would let the group take more than the host has.
                    self.reject(conn, f"asked for a placement-group bundle of {bundle}")
                    return
        self.groups.on_create(conn, msg)

    def _on_create_queue(self, conn: Conn, msg: P.CreateQueue) -> None:
        if conn.units is not None and msg.queue_id in self.queues.queues:
            self.reject(conn, f"created queue {msg.queue_id.hex()}, an id in use")
            return
        self.queues.on_create(conn, msg)

    def _on_queue_op(self, conn: Conn, msg: P.QueueOp) -> None:
        if conn.units is not None and (
            msg.op not in _QUEUE_OPS or (msg.op == P.QUEUE_PUT and not msg.items) or msg.count < 0
        ):
            self.reject(conn, f"sent a queue call no queue has (op {msg.op}, count {msg.count})")
            return
        self.queues.on_op(conn, msg)

    def _on_runtime_message(self, conn: Conn, msg: Any) -> None:
        self.reject(conn, f"sent {type(msg).__name__}, a message only the runtime sends")

    def start(self) -> None:
        """Pre-fork the base pool so the first task finds a worker ready."""
        try:
            for _ in range(self.base_pool_size):
                self._spawn_worker()
        except OSError as e:
            self._spawn_failed(e)

    # ================================================================ functions & objects

    def _on_register_function(self, conn: Conn, msg: P.RegisterFunction) -> None:
        fid = msg.func_id
        self.functions.setdefault(fid, msg.blob)
        if conn.units is None:
            return  # the embedded driver's: kept for the session, as Ray keeps them
        holders = self.function_holders.get(fid)
        if holders is None:
            holders = self.function_holders[fid] = set()
        holders.add(conn)
        conn.registered_functions.add(fid)  # type: ignore[attr-defined]

    def release_functions(self, conn: Any) -> None:
        """A peer that registered definitions is gone: drop the ones nobody else holds.

        Every client registers a definition before its first use, so one that
        no live peer registered is needed only by what is already queued or
        alive: a task of it, or an actor of that class (its restarts). Those
        are kept until a later sweep finds them unused. On a shared head this
        keeps the table bounded while drivers come and go.
        """
        unheld = self.unheld_functions
        holders_of = self.function_holders
        for fid in conn.registered_functions:
            holders = holders_of.get(fid)
            if holders is not None:
                holders.discard(conn)
                if not holders:
                    unheld.add(fid)
        conn.registered_functions = set()
        if not unheld:
            return
        in_use = {t.spec.func_id for t in self.tasks.values()}
        in_use.update(a.spec.class_id for a in self.actors.actors.values())
        for fid in list(unheld):
            if fid in in_use:
                continue
            unheld.discard(fid)
            if holders_of.get(fid):
                continue  # registered again meanwhile
            holders_of.pop(fid, None)
            self.functions.pop(fid, None)
            self.run_times.pop(fid, None)

    def _on_put_object(self, conn: Conn, msg: P.PutObject) -> None:
        oid = msg.object_id
        if conn.units is not None and (oid[24:] != _PUT_SUFFIX or self.objects.get(oid)):
            # A put's id is new (the client's prefix and counter) and ends in
            # zeros: this one would overwrite or pre-empt another object.
            self.reject(conn, f"put object {oid.hex()}, not a new put id")
            return
        self.objects.seal(msg.object_id, msg.data, msg.is_error)
        self.own(conn, [msg.object_id])

    def _on_release_objects(self, conn: Conn, msg: P.ReleaseObjects) -> None:
        units = conn.units
        if units is None:  # the embedded driver: its refs are not tracked
            self.objects.release_many(msg.object_ids)
        else:
            # A child gives back only units it holds: a release of anything
            # else (a bug, or a hostile child) must not free another's object.
            held = []
            for oid in msg.object_ids:
                n = units.get(oid, 0)
                if n > 1:
                    units[oid] = n - 1
                elif n == 1:
                    del units[oid]  # the record stays bounded by what it holds
                else:
                    continue
                held.append(oid)
            self.objects.release_many(held)
        conn.forget(msg.object_ids)

    def _on_reserve_segment(self, conn: Conn, msg: P.ReserveSegment) -> None:
        if msg.size < 0:
            self.reject(conn, f"asked for a segment of {msg.size} bytes")
            return
        try:
            writer = conn if conn.units is not None else None
            name, recycled = self.store.reserve(msg.size, writer)
        except StoreFull as e:
            conn.send(P.SegmentReply(req_id=msg.req_id, name="", recycled=False, error=str(e)))
            return
        conn.send(P.SegmentReply(req_id=msg.req_id, name=name, recycled=recycled, error=""))

    def _segment_removed(self, writer: Any, name: str) -> None:
        """A child that wrote the segment closes the mapping it kept (memory comes back)."""
        if writer.transport is not None and not self._stopped:
            writer.send(P.DropMappings([name]))

    def _on_hold_objects(self, conn: Conn, msg: P.HoldObjects) -> None:
        if conn.units is not None:
            # Only the embedded driver's queues send it (``DirectQueues``); the
            # units it takes are owned by no peer, so from a socket it would
            # pin anyone's objects past the sender's exit.
            self.reject(conn, "sent HoldObjects, a message only the embedded driver sends")
            return
        incref = self.objects.incref
        for oid in msg.object_ids:
            incref(oid)

    def _on_segment_maps(self, conn: Conn, msg: P.SegmentMaps) -> None:
        """A child mapped or unmapped segments (views of objects it read); or the driver
        closed views (it is checked directly, but a retired segment waits for this)."""
        if conn.units is None:
            self.store.views_closed(msg.unmapped)
        else:
            self.store.child_mapped(conn, msg.mapped, msg.unmapped)

    def _on_drop_reservation(self, conn: Conn, msg: P.DropReservation) -> None:
        store = self.store
        if msg.name not in store.reservations:
            return  # stored or dropped already
        if conn.units is not None and conn not in store.writers.get(msg.name, ()):
            self.reject(conn, f"dropped segment {msg.name}, reserved by someone else")
            return
        store.cancel(msg.name)

    def _trim_recycled(self) -> None:
        """Recycled segments nobody reused for a while go back to the system."""
        self._trim_handle = None
        store = self.store
        store.trim(time.monotonic() - RECYCLE_IDLE_S)
        if store.recycled:
            self._trim_handle = self.loop.call_later(RECYCLE_IDLE_S, self._trim_recycled)

    def schedule_trim(self) -> None:
        if self._trim_handle is None and self.store.recycled:
            self._trim_handle = self.loop.call_later(RECYCLE_IDLE_S, self._trim_recycled)

    # ================================================================ reference counting

    def grant(self, conn: Conn, data: bytes | None) -> None:
        """``data`` is sent to ``conn``'s process: one unit per ref inside it.

        Each ``ObjectRef`` unpickled from it there owns one of these units
        (a payload dropped unloaded gives them back), so an object stays
        alive while the payload is in flight and while the rebuilt refs live.
        """
        if data is not None and data[:7] == refs.MARKER:
            self.grant_ids(conn, refs.contained(data))

    def grant_ids(self, conn: Conn, object_ids: list[bytes]) -> None:
        get = self.objects.get
        units = conn.units
        for oid in object_ids:
            entry = get(oid)
            if entry is not None:
                entry.refs += 1
            if units is not None:
                units[oid] = units.get(oid, 0) + 1

    def grant_call(self, conn: Conn, args: bytes, dep_values: list[bytes]) -> None:
        """Grants for a call's argument payloads sent to ``conn``."""
        self.grant(conn, args)
        for value in dep_values:
            self.grant(conn, value)

    def take_argument_holds(self, args: bytes, dep_ids: list[bytes]) -> None:
        """A pending call holds the objects it takes (top-level and nested refs) until it ends."""
        incref = self.objects.incref
        for oid in _argument_objects(args, dep_ids):
            incref(oid)

    def drop_argument_holds(self, args: bytes, dep_ids: list[bytes]) -> None:
        self.objects.release_many(_argument_objects(args, dep_ids))

    def own(self, conn: Conn, object_ids: list[bytes]) -> None:
        """``conn``'s process created refs to these objects (their first units)."""
        units = conn.units
        if units is not None:
            for oid in object_ids:
                units[oid] = units.get(oid, 0) + 1

    def drop_units(self, conn: Any) -> None:
        """A child process (or a connected driver) is gone: the units its refs held go with it."""
        units, conn.units = conn.units, {}
        release = self.objects.release
        for oid, n in units.items():
            if n > 0:
                release(oid, n)

    def _lost_payload(self, oid: bytes) -> bytes:
        gone_group = self.groups.ready_gone_payload(oid)
        if gone_group is not None:
            return gone_group  # pg.ready() of a removed group raises, as in Ray
        err = exc.ObjectLostError(
            oid.hex(),
            "",
            "The object was freed (its last reference went away) or never existed.",
        )
        return ser.dumps_function(err)

    # ================================================================ get / wait

    def _on_get_objects(self, conn: Conn, msg: P.GetObjects) -> None:
        req = _Request(conn, msg.req_id, msg.object_ids, "get")
        get = self.objects.get
        pending: list[ObjectEntry] = []
        for oid in msg.object_ids:
            entry = get(oid) or self._stream_entry(oid)
            if entry is None:
                entry = ObjectEntry()
                entry.data = self._lost_payload(oid)
                entry.is_error = True
            req.entries.append(entry)
            if entry.data is None:
                pending.append(entry)
            elif entry.is_error:
                self._reply_get(req, timed_out=False)
                return
        if not pending:
            self._reply_get(req, timed_out=False)
            return
        if msg.timeout == 0:
            self._reply_get(req, timed_out=True)
            return
        req.remaining = len(pending)
        on_ready = self.objects.on_ready
        callback = self._get_callback(req)
        for entry in pending:
            on_ready(entry, callback)
        self._park(req, msg.timeout)

    def _get_callback(self, req: _Request) -> Any:
        def on_sealed(entry: ObjectEntry) -> None:
            if req.done:
                return
            req.remaining -= 1
            if entry.is_error or req.remaining == 0:
                self._reply_get(req, timed_out=False)

        return on_sealed

    def _reply_get(self, req: _Request, timed_out: bool) -> None:
        self._finish(req)
        entries: list[ObjectEntry] = req.entries  # type: ignore[assignment]  # never None in a get
        values = [e.data for e in entries]
        errors = [e.is_error for e in entries]
        conn = req.conn
        for e in entries:
            if e.contained:
                self.grant_ids(conn, e.contained)
        conn.send(
            P.ObjectsReply(req_id=req.req_id, values=values, errors=errors, timed_out=timed_out)
        )

    def _on_wait_objects(self, conn: Conn, msg: P.WaitObjects) -> None:
        ids = msg.object_ids
        # Comprehensions, not loops: a driver polling a long list with
        # wait(num_returns=1) sends it again for every object that finishes.
        entries: list[Any] = list(map(self.objects.get, ids))
        if None in entries:
            for i, entry in enumerate(entries):
                if entry is None:
                    entry = self._stream_entry(ids[i])
                    if entry is None:  # lost objects are "ready": get will raise
                        entry = ObjectEntry()
                        entry.data = b""
                    entries[i] = entry
        ready = [i for i, e in enumerate(entries) if e.data is not None]
        if len(ready) >= msg.num_returns or msg.timeout == 0:
            conn.send(P.WaitReply(msg.req_id, ready[: msg.num_returns]))
            return
        req = _Request(conn, msg.req_id, ids, "wait")
        req.num_returns = msg.num_returns
        req.entries = entries
        req.remaining = msg.num_returns - len(ready)
        callback = self._wait_callback(req)
        if len(entries) - len(ready) >= WATCH_SET_MIN:
            self.objects.watch({oid for oid, e in zip(ids, entries) if e.data is None}, callback)
            req.watch = callback
        else:
            for entry in entries:
                if entry.data is None:  # on_ready, inlined
                    cbs = entry.callbacks
                    if cbs is None:
                        entry.callbacks = [callback]
                    else:
                        cbs.append(callback)
        self._park(req, msg.timeout)

    def _wait_callback(self, req: _Request) -> Any:
        def on_sealed(entry: ObjectEntry) -> None:
            if req.done:
                return
            req.remaining -= 1
            if req.remaining <= 0:
                self._reply_wait(req)

        return on_sealed

    def _reply_wait(self, req: _Request) -> None:
        self._finish(req)
        ready = [i for i, e in enumerate(req.entries) if e is not None and e.data is not None]
        req.conn.send(P.WaitReply(req.req_id, ready[: req.num_returns]))

    def _park(self, req: _Request, timeout: float) -> None:
        """Remember an unsatisfied request: its timer, and the CPU its task lends meanwhile."""
        req.conn.requests[req.req_id] = req
        if timeout > 0:
            req.timer = self.loop.call_later(timeout, self._expire, req)
        elif timeout != P.NO_TIMEOUT:  # NaN or another negative (no client sends one): now
            req.timer = self.loop.call_later(0, self._expire, req)
        worker: WorkerRecord | None = req.conn.worker
        if worker is None or worker.task is None:
            return
        if worker.task.cancelled is not None and req.kind != "queue":
            self._interrupt_again(worker, req)
        elif not worker.blocked:
            worker.blocked = True
            self._revoke_pipeline(worker)
            task = worker.task
            task.pool.adjust("CPU", task.spec.resources.get("CPU", 0.0))  # type: ignore[union-attr]
            self.dispatch()

    def _interrupt_again(self, worker: WorkerRecord, req: _Request) -> None:
        """A cancelled task waits in get/wait: interrupt it again and answer at once.

        A task cancelled just as it was sent may get the interrupt before its
        user code runs, where the worker drops it; blocked in a get on what
        never comes (the result of a task waiting for it), it would wait for
        ever. The answer lets the new interrupt land, as ``cancel_task`` does.
        """
        self.interrupt(worker, P.InterruptTask(worker.task.spec.task_id))  # type: ignore[union-attr]
        if req.kind == "get":
            self._reply_get(req, timed_out=True)
        else:
            self._reply_wait(req)

    def _finish(self, req: _Request) -> None:
        req.done = True
        if req.timer is not None:
            req.timer.cancel()
        if req.watch is not None:
            self.objects.unwatch(req.watch)
            req.watch = None
        if req.kind == "queue":
            self.queues.detach(req)  # type: ignore[arg-type]
        conn = req.conn
        conn.requests.pop(req.req_id, None)
        worker: WorkerRecord | None = conn.worker
        if worker is not None and worker.blocked and not conn.requests:
            worker.blocked = False
            task = worker.task
            if task is not None:
                # Take the lent CPU back, even if that oversubscribes briefly.
                task.pool.adjust("CPU", -task.spec.resources.get("CPU", 0.0))  # type: ignore[union-attr]

    def _expire(self, req: _Request) -> None:
        if req.done:
            return
        if req.kind == "get":
            self._reply_get(req, timed_out=True)
        else:
            self._reply_wait(req)

    def _on_cancel_waiter(self, conn: Conn, msg: P.CancelWaiter) -> None:
        req = conn.requests.get(msg.req_id)
        if req is not None:
            self._finish(req)

    # ================================================================ tasks

    def _on_submit_task(self, conn: Conn, msg: P.SubmitTask) -> None:
        if conn.units is not None and self.ids_taken(msg.task_id, msg.return_ids):
            self.reject(conn, f"submitted task {msg.task_id.hex()} under ids already in use")
            return
        task = TaskRecord(msg, conn)
        self.tasks[msg.task_id] = task
        if msg.env is not None:
            self.workers_per_env = True
        if msg.parent:
            self.note_child(msg.parent, msg.task_id)
        if msg.streaming:
            self.open_stream(msg.task_id, conn, msg.backpressure)
        create = self.objects.create
        for rid in msg.return_ids:
            create(rid)
        if conn.units is not None:
            self.own(conn, msg.return_ids)
        if msg.dep_ids or msg.args[:7] == refs.MARKER:
            self.take_argument_holds(msg.args, msg.dep_ids)
        if not msg.dep_ids:
            self._enqueue(task)
            return
        get = self.objects.get
        task.dep_values = [b""] * len(msg.dep_ids)
        waiting: list[tuple[int, ObjectEntry]] = []
        for i, oid in enumerate(msg.dep_ids):
            entry = get(oid)
            if entry is None:
                self._fail_task(task, self._lost_payload(oid))
                return
            if entry.data is None:
                waiting.append((i, entry))
            elif entry.is_error:
                self._fail_task(task, ser.dependency_failure(task.spec.name, entry.data))
                return
            else:
                task.dep_values[i] = entry.data
        if not waiting:
            self._enqueue(task)
            return
        task.missing = len(waiting)
        for i, entry in waiting:
            self.objects.on_ready(entry, self._dep_callback(task, i))

    def ids_taken(self, task_id: bytes, return_ids: list[bytes]) -> bool:
        """Whether a child's new task or call names a live task or existing objects."""
        if task_id in self.tasks or task_id in self.actors.calls:
            return True
        get = self.objects.get
        return any(get(rid) is not None for rid in return_ids)

    def _dep_callback(self, task: TaskRecord, index: int) -> Any:
        def on_sealed(entry: ObjectEntry) -> None:
            if task.missing <= 0:
                return  # failed already because of another dependency
            if entry.is_error:
                task.missing = 0
                self._fail_task(task, ser.dependency_failure(task.spec.name, entry.data))  # type: ignore[arg-type]
                return
            task.dep_values[index] = entry.data  # type: ignore[assignment]
            task.missing -= 1
            if task.missing == 0:
                self._enqueue(task)

        return on_sealed

    def _enqueue(self, task: TaskRecord) -> None:
        self.ready.push(task.key, task)
        if self._batching:
            self._dispatch_wanted = True  # once, when the batch of messages is done
        else:
            self.dispatch()

    def begin_batch(self) -> None:
        """A batch of messages follows: dispatch once after it, not after each submission."""
        self._batching = True

    def end_batch(self) -> None:
        """The batch is handled: dispatch once, then write what each child was sent."""
        try:
            if self._dispatch_wanted:
                self._dispatch_wanted = False
                self.dispatch()
        except Exception:  # dispatch guards each task; this is a bug in dispatch itself
            logger.exception("asyncray internal error at the end of a batch of messages")
        finally:
            # Whatever happened, later sends are written at once again and
            # nothing a child was sent stays held back.
            self._batching = False
            if self.batched_conns:
                conns, self.batched_conns = self.batched_conns, []
                for conn in conns:
                    try:
                        conn.flush()
                    except Exception:
                        logger.exception("asyncray internal error writing to %s", conn.worker)

    def _record_attempt(self, task: TaskRecord, error_type: str) -> None:
        """One attempt of ``task`` ended (``error_type`` "" if it succeeded): its event row."""
        spec = task.spec
        self.events.ended.append(
            (
                "NORMAL_TASK",
                spec.task_id,
                spec.name,
                task.job,
                b"",
                task.pid,
                task.created,
                task.started,
                time.perf_counter(),
                error_type,
                task.attempts,
                # The shape, not the request dict: a tuple of atomic values is
                # untracked by the GC, so the ring adds nothing to collections.
                task.shape,
                spec.parent,
                spec.pg_id,
            )
        )

    def _fail_task(self, task: TaskRecord, error: bytes, error_type: str = "") -> None:
        if task.cancelled is not None:
            error_type = "TASK_CANCELLED"
        self._finish_task(task, error_type or "TASK_EXECUTION_EXCEPTION")
        if task.spec.streaming:
            self.fail_stream(task.spec.task_id, error)
            return
        seal = self.objects.seal
        for rid in task.spec.return_ids:
            seal(rid, error, True)

    def _finish_task(self, task: TaskRecord, error_type: str = "") -> None:
        """``task`` ended (``error_type`` "" if it succeeded): forget it, record it."""
        spec = task.spec
        if self.tasks.pop(spec.task_id, None) is not None:
            self._record_attempt(task, error_type)
            segment = shm.segment_of(spec.args)
            if segment is not None:  # large arguments live as long as the task
                self.store.call_ended(segment)
            if spec.dep_ids or spec.args[:7] == refs.MARKER:
                self.drop_argument_holds(spec.args, spec.dep_ids)
        if task.timer is not None:
            task.timer.cancel()
            task.timer = None

    def dispatch(self) -> None:
        """Start every queued task that fits and has an idle worker; fork workers if short."""
        if self.groups.pending:
            self.groups.place_pending()
        if self.actors.pending:
            self.actors.place_pending()
        if not self.ready:
            return
        pool_for = self.pool_for
        idle = self.idle
        keyed = self.workers_per_job or self.workers_per_env
        short = False
        for key, queue in self.ready.shapes():
            group, shape = key
            while queue:
                pool = pool_for(group, shape)
                if pool is None:
                    if group is not None and self.groups.is_gone(group[0]):
                        self._fail_queued_in_gone_group(key)
                    break
                if not idle:
                    short = True
                    break
                if keyed:
                    worker = self._idle_worker_for(queue[0])
                    if worker is None:  # only other jobs' or envs' workers are idle: fork one
                        short = True
                        break
                    task = self.ready.pop(key)
                else:
                    task = self.ready.pop(key)
                    worker = idle.pop()
                try:
                    self._start_task(task, worker, pool)
                except Exception:  # an internal bug: fail this task alone, keep dispatching
                    self._start_failed(task, worker)
        if short:
            self._grow_pool()

    def _idle_worker_for(self, task: TaskRecord) -> WorkerRecord | None:
        """An idle worker ``task`` may run on (newest first), taken: one that serves its
        job (a shared head) and its runtime_env, or a fresh one that will."""
        job = task.job
        env = task.spec.env
        key = "" if env is None else env.key
        idle = self.idle
        for i in range(len(idle) - 1, -1, -1):
            worker = idle[i]
            if (worker.job == job or not worker.job) and (
                worker.env_key == key or worker.env_key is None
            ):
                del idle[i]
                return worker
        return None

    def _retire_job_workers(self, job: str) -> None:
        """A job ended: its idle workers exit, and fresh ones keep the base pool warm."""
        for worker in [w for w in self.idle if w.job == job]:
            self.idle.remove(worker)
            if worker.retire_handle is not None:
                worker.retire_handle.cancel()
                worker.retire_handle = None
            worker.state = "retiring"
            worker.conn.send(P.Shutdown())  # type: ignore[union-attr]
        fresh = sum(1 for w in self.idle if not w.job) + self.starting
        try:
            for _ in range(self.base_pool_size - fresh):
                self._spawn_worker()
        except OSError as e:
            self._spawn_failed(e)

    def _fail_queued_in_gone_group(self, key: TaskKey) -> None:
        """Tasks submitted to a group removed before they came never run: they fail."""
        error = removed_payload()
        while self.ready.has(key):
            self._fail_task(self.ready.pop(key), error)

    def pool_for(self, group: tuple[bytes, int] | None, shape: Shape) -> ResourcePool | None:
        """The pool a request of ``shape`` can draw from now: the host's, or its group's bundle."""
        if group is None:
            return self.resources if self.resources.fits(shape) else None
        record = self.groups.get(group[0])
        return None if record is None else record.pool_for(group[1], shape)

    def fail_group_tasks(self, pg_id: bytes, error: bytes) -> None:
        """A placement group was removed: its queued and running tasks fail."""
        for task in list(self.tasks.values()):
            group = task.key[0]
            if group is None or group[0] != pg_id or task.cancelled is not None:
                continue
            worker = task.worker
            if worker is not None and worker.task is task:
                task.cancelled = error
                self._signal(worker, 9)
            elif worker is not None:
                task.cancelled = error
                self._cancel_pipelined(task, worker, error)
            elif task.missing == 0:
                self.ready.remove(task.key, task)
                self._fail_task(task, error)
            else:
                task.missing = 0
                self._fail_task(task, error)

    def _pipeline_next(self, worker: WorkerRecord) -> None:
        """Send ``worker`` the next queued task of its running task's shape, to run after it."""
        task = worker.task
        if (
            task is None
            or worker.blocked
            or task.gpu_ids
            or task.key[0] is not None
            or not self.ready.has(task.key)
            or self.resources.fits(task.shape)  # a free slot: it should run now, not queue here
        ):
            return
        run_time = self.run_times.get(task.spec.func_id)
        depth = 1
        if run_time is not None:
            depth = max(1, min(PIPELINE_DEPTH, int(PIPELINE_BUDGET_S / max(run_time, 1e-6))))
        queue_has = self.ready.has
        while len(worker.pipeline) < depth and queue_has(task.key):
            if (self.workers_per_job or self.workers_per_env) and not self._serves(
                worker, self.ready.first(task.key)
            ):
                return  # another job's or env's task: never in this worker
            nxt = self.ready.pop(task.key)
            nxt.worker = worker
            worker.pipeline.append(nxt)
            self._send_task(nxt, worker)

    @staticmethod
    def _serves(worker: WorkerRecord, task: TaskRecord) -> bool:
        """Whether ``worker`` (set up for a job and an env) may run ``task``."""
        env = task.spec.env
        return worker.job == task.job and worker.env_key == ("" if env is None else env.key)

    def _revoke_pipeline(self, worker: WorkerRecord) -> None:
        """Put a worker's pipelined tasks back at the head of the queue.

        Called while the worker's running task waits for a reply (blocked in
        get/wait): the worker reads the revoke before that reply, so before
        it could start any of them. Cancelled ones (see ``_cancel_pipelined``)
        are dropped for good.
        """
        if not worker.pipeline:
            return
        tasks = list(worker.pipeline)
        worker.pipeline.clear()
        for t in tasks:
            # The revoked message may have carried the function's code, which
            # the worker now never loads: send it again with the next task.
            worker.known_functions.discard(t.spec.func_id)
        if worker.state != "dead" and worker.conn is not None:
            worker.conn.send(P.RevokeTasks([t.spec.task_id for t in tasks]))
        for t in reversed(tasks):
            t.worker = None
            if t.cancelled is None:
                self.ready.push_front(t.key, t)

    def _cancel_pipelined(self, task: TaskRecord, worker: WorkerRecord, error: bytes) -> None:
        """``task`` was sent ahead to ``worker`` and is cancelled: its caller learns it now.

        The worker cannot be trusted to drop it. It usually read the task
        together with the one it runs, and takes the next from what it read
        without reading its socket again, so a ``RevokeTasks`` reaches it only
        by luck. The task therefore keeps its place in the worker's pipeline;
        when its turn comes the worker is replaced (``_replace_worker``)
        instead of trusted to skip it. Before, the kernel took the worker as
        idle while it ran the cancelled task, and the next task sent to it
        waited behind that one (for ever if it waited on the next task).
        """
        if worker.conn is not None:
            worker.conn.send(P.RevokeTasks([task.spec.task_id]))  # it may still read it in time
        self._fail_task(task, error)

    def _replace_worker(self, worker: WorkerRecord) -> None:
        """The worker's next task was cancelled while pipelined: kill it, requeue the rest."""
        tasks = [t for t in worker.pipeline if t.cancelled is None]
        worker.pipeline.clear()
        for t in reversed(tasks):
            t.worker = None
            self.ready.push_front(t.key, t)
        worker.state = "retiring"
        self._signal(worker, signal.SIGKILL)

    def _grow_pool(self) -> None:
        """Fork as many workers as the queued tasks that fit could use right now."""
        available = dict(self.resources.available)
        fits = self.resources.fits
        wanted = 0
        for (group, shape), queue in self.ready.shapes():
            if group is not None:
                wanted += 1 if self.pool_for(group, shape) is not None else 0
                continue
            for _ in range(len(queue)):
                if wanted >= MAX_CONCURRENT_STARTS or not fits(shape, available):
                    break
                for name, qty in shape:
                    available[name] = available.get(name, 0.0) - qty
                wanted += 1
        live = self.task_workers
        wanted = min(wanted, MAX_CONCURRENT_STARTS) - self.starting
        wanted = min(wanted, MAX_TASK_WORKERS - live)
        try:
            for _ in range(wanted):
                self._spawn_worker()
        except OSError as e:
            self._spawn_failed(e)

    def _spawn_failed(self, error: OSError) -> None:
        """No process could be started: say so once, and try again a little later."""
        if self.zygote.lost:  # never again: what waits for a worker fails now
            self._fail_queued_tasks(f"asyncray cannot start a worker: {error}")
            return
        if self._spawn_retry is not None:
            return
        logger.error(
            "asyncray could not start a worker process: %s. Queued tasks wait until one "
            "can start (raise the open-files limit, `ulimit -n`, or run fewer actors).",
            error,
        )
        self._spawn_retry = self.loop.call_later(SPAWN_RETRY_S, self._retry_spawn)

    def _fail_queued_tasks(self, reason: str) -> None:
        """Fail every task waiting for a worker (none can ever start)."""
        error = ser.dumps_function(exc.RaySystemError(reason))
        for key, queue in list(self.ready.shapes()):
            while queue:
                self._fail_task(self.ready.pop(key), error)

    def _retry_spawn(self) -> None:
        self._spawn_retry = None
        self.dispatch()

    def _start_task(self, task: TaskRecord, worker: WorkerRecord, pool: ResourcePool) -> None:
        if worker.retire_handle is not None:
            worker.retire_handle.cancel()
            worker.retire_handle = None
        task.pool = pool
        task.gpu_ids = pool.acquire(task.shape)
        task.worker = worker
        worker.state = "busy"
        worker.task = task
        self._send_task(task, worker)
        self._pipeline_next(worker)

    def _start_failed(self, task: TaskRecord, worker: WorkerRecord) -> None:
        """Starting ``task`` raised (a bug): its caller gets the error, the worker is replaced.

        The worker may or may not have been sent the task, so it is not
        trusted with another: it is told to exit and a fresh one is forked.
        """
        text = traceback.format_exc()
        logger.error("asyncray internal error starting task %s:\n%s", task.spec.name, text)
        try:
            if worker.task is task:
                self._release_task(worker, task)
            elif task.pool is not None:
                task.pool.release(task.shape, task.gpu_ids)
            self._revoke_pipeline(worker)
            if worker.state != "dead":
                worker.state = "retiring"
                if worker.conn is not None:
                    worker.conn.send(P.Shutdown())
            self._fail_task(
                task,
                ser.dumps_function(
                    exc.RaySystemError(f"asyncray failed starting task {task.spec.name}:\n{text}")
                ),
            )
        except Exception:
            logger.exception(
                "asyncray could not fail task %s after its start failed", task.spec.name
            )

    def _task_running(self, task: TaskRecord, worker: WorkerRecord) -> None:
        """The worker starts ``task`` now (directly, or after its pipelined predecessor)."""
        spec = task.spec
        task.started = time.perf_counter()
        task.pid = worker.pid
        if spec.timeout_s > 0:
            task.timer = self.loop.call_later(spec.timeout_s, self._on_task_timeout, task)
        if spec.streaming:
            stream = self.streams.get(spec.task_id)
            if stream is not None:
                stream.producer = worker.conn
                stream.new_attempt()

    def _send_task(self, task: TaskRecord, worker: WorkerRecord) -> None:
        spec = task.spec
        known = spec.func_id in worker.known_functions
        pg, pg_capture = self._group_context(spec.pg_id, spec.pg_capture)
        # Encoded before anything is committed: a value the wire cannot carry
        # (an option out of range) fails this task alone, not the handler
        # that happened to dispatch it (and the worker and slot with it).
        try:
            frame = P.frame(
                P.ExecuteTask(
                    task_id=spec.task_id,
                    func_id=spec.func_id,
                    func_blob=b"" if known else self.functions.get(spec.func_id, b""),
                    name=spec.name,
                    args=spec.args,
                    dep_ids=spec.dep_ids,
                    dep_values=task.dep_values,
                    num_returns=len(spec.return_ids),
                    retry_exc=spec.retry_exc,
                    resources=spec.resources,
                    gpu_ids=task.gpu_ids,
                    streaming=spec.streaming,
                    backpressure=spec.backpressure,
                    pg=pg,
                    pg_capture=pg_capture,
                )
            )
        except Exception as e:
            self._unsendable_task(task, worker, e)
            return
        if worker.job != task.job:  # a shared head's fresh worker: its job from now on
            self.tell_job(worker, task.job)
        env = spec.env
        if env is None:
            worker.env_key = ""
        elif worker.env_key != env.key:  # a fresh worker: this env from now on
            self.tell_env(worker, env)
        if worker.task is task:
            self._task_running(task, worker)
        if not known:
            worker.known_functions.add(spec.func_id)
        if spec.dep_ids or spec.args[:7] == refs.MARKER:
            self.grant_call(worker.conn, spec.args, task.dep_values)  # type: ignore[arg-type]
        worker.conn.send_frame(frame)  # type: ignore[union-attr]

    def tell_job(self, worker: WorkerRecord, job: str) -> None:
        """``worker`` serves ``job`` from now on: send it ``SetJob`` (a shared head only)."""
        worker.job = job
        worker.conn.send_frame(P.frame(self.jobs.set_job(job)))  # type: ignore[union-attr]

    def tell_env(self, worker: WorkerRecord, env: P.WorkerEnv) -> None:
        """``worker`` (fresh) runs only ``env`` 's tasks from now on: send it ``SetEnv``."""
        worker.env_key = env.key
        worker.conn.send(P.SetEnv(env))  # type: ignore[union-attr]

    def _unsendable_task(self, task: TaskRecord, worker: WorkerRecord, error: Exception) -> None:
        """``task`` cannot be encoded for its worker: fail it and give its worker back."""
        name = task.spec.name
        logger.warning("asyncray: task %s cannot be sent to a worker: %r", name, error)
        if worker.task is task:
            self._release_task(worker, task)
            self._make_idle(worker)
        else:  # pipelined behind the running task: it never held a slot
            worker.pipeline.remove(task)
            task.worker = None
        self._fail_task(task, unsendable_error(f"task {name}", error))

    def _group_context(self, pg_id: bytes, capture: bool) -> tuple[bytes, bool]:
        """What a task or actor in a group needs to know: its pickled handle, capture flag."""
        if not pg_id:
            return b"", False
        record = self.groups.get(pg_id)
        return (b"", False) if record is None else (record.spec.handle, capture)

    def _release_task(self, worker: WorkerRecord, task: TaskRecord) -> None:
        """Give back the task's resources (minus any CPU it had lent while blocked)."""
        pool = task.pool or self.resources
        if worker.blocked:
            worker.blocked = False
            pool.adjust("CPU", -task.spec.resources.get("CPU", 0.0))
        pool.release(task.shape, task.gpu_ids)
        worker.task = None
        task.worker = None

    def _on_task_done(self, conn: ChildConn, msg: P.TaskDone) -> None:
        worker = conn.worker
        if worker.actor is not None:
            self.actors.on_task_done(worker, msg)
            return
        task = worker.task
        if task is None or task.spec.task_id != msg.task_id:
            return
        spec = task.spec
        if (
            msg.is_error
            or spec.streaming
            or msg.stream_count >= 0
            or len(msg.results) != len(spec.return_ids)
        ) and self.task_done_rejected(conn, msg, spec, task.cancelled is not None):
            return
        func_id = task.spec.func_id
        run_time = time.perf_counter() - task.started
        estimate = self.run_times.get(func_id)
        self.run_times[func_id] = (
            run_time if estimate is None else estimate + RUN_TIME_WEIGHT * (run_time - estimate)
        )
        if worker.pipeline and worker.pipeline[0].cancelled is None:
            # The next pipelined task inherits the slot: no release, no idle.
            nxt = worker.pipeline.popleft()
            if worker.blocked:
                worker.blocked = False
                task.pool.adjust("CPU", -task.spec.resources.get("CPU", 0.0))  # type: ignore[union-attr]
            nxt.pool = task.pool
            nxt.gpu_ids = task.gpu_ids
            worker.task = nxt
            task.worker = None
            self._task_running(nxt, worker)
            self._pipeline_next(worker)
        else:
            self._release_task(worker, task)
            if worker.pipeline:  # it may run a cancelled task next (see _cancel_pipelined)
                self._replace_worker(worker)
            else:
                self._make_idle(worker)
        if task.cancelled is not None:
            for data in msg.results:
                self.objects.discard(data)
            self._fail_task(task, task.cancelled)
        elif msg.is_error and msg.retryable and task.can_retry():
            self._record_attempt(task, "TASK_EXECUTION_EXCEPTION")
            task.attempts += 1
            self.ready.push_front(task.key, task)
        elif msg.stream_count >= 0:
            self._finish_task(task)
            if msg.is_error:  # a retryable error with no retry left: it is the last item
                self.fail_stream(task.spec.task_id, msg.results[0], whole_task=False)
            else:
                self.end_stream(task.spec.task_id, msg.stream_count)
        elif msg.is_error:
            self._fail_task(task, msg.results[0])
        else:
            self._finish_task(task)
            self.seal_results(task.owner, task.spec.return_ids, msg.results)
        self.dispatch()

    def task_done_rejected(
        self,
        conn: ChildConn,
        msg: P.TaskDone,
        spec: P.SubmitTask | P.CallActor,
        cancelled: bool,
    ) -> bool:
        """The checks of a task's or actor call's ``TaskDone`` that is not a plain
        success (which passes at once); a failed check drops the child."""
        stream = self.streams.get(msg.task_id) if spec.streaming else None
        problem = task_done_problem(
            msg,
            len(spec.return_ids),
            spec.streaming,
            stream.produced if stream is not None and stream.count < 0 else -1,
            cancelled,
        )
        if problem:
            self.reject(conn, problem)
        return bool(problem)

    def seal_results(
        self, owner: Conn | None, return_ids: list[bytes], results: list[bytes]
    ) -> None:
        """Seal a task's values; small ones also go to the owner's in-process store.

        ``owner`` is None for the kernel's own calls (an actor's exit call).
        """
        deliver = owner.deliver if owner is not None and owner.keeps_values else None
        get = self.objects.get
        seal = self.objects.seal
        for rid, data in zip(return_ids, results):
            if deliver is not None:
                entry = get(rid)
                if entry is not None and entry.refs > 0:
                    deliver(rid, data)
            seal(rid, data, False)

    # ================================================================ workers

    def _spawn_worker(self, kind: str = "task") -> WorkerRecord:
        """Fork a child of ``kind`` ("task" or "actor") through the zygote.

        Raises:
            OSError: no socket pair for it (the open-files limit, most likely).
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        worker = WorkerRecord(next(self._child_ids), kind)
        worker.job = self.default_job
        try:
            self.zygote.spawn(worker.child_id, kind, {}, theirs)  # the link closes theirs
        except OSError:
            ours.close()
            raise
        self.workers[worker.child_id] = worker
        if kind == "task":
            self.task_workers += 1
            self.starting += 1
        conn = ChildConn(self, worker, ours)
        worker.conn = conn
        self.loop.create_task(self._connect(ours, conn))
        return worker

    async def _connect(self, sock: socket.socket, conn: ChildConn) -> None:
        if self._stopped or sock.fileno() < 0:
            return
        await self.loop.connect_accepted_socket(lambda: conn, sock)

    def _on_spawned(self, child_id: int, pid: int) -> None:
        worker = self.workers.get(child_id)
        if worker is None:
            return
        if pid < 0:
            self._fork_failed(worker, OSError(-pid, os.strerror(-pid)))
            return
        worker.pid = pid
        self.workers_by_pid[pid] = worker
        if worker.dropped and worker.conn is not None:
            worker.conn.kill()  # dropped before its pid was known

    def _fork_failed(self, worker: WorkerRecord, error: OSError) -> None:
        """The zygote could not fork ``worker``: its actor dies saying why, tasks wait."""
        actor, worker.actor = worker.actor, None  # not the crash of a running actor
        self._worker_gone(worker)
        if worker.conn is not None:
            worker.conn.close()
        if actor is not None:
            self.actors.start_failed(actor, error)
        else:
            self._spawn_failed(error)

    def _on_zygote_lost(self) -> None:
        """The zygote exited while the session runs; its children died with it."""
        if self._stopped:
            return
        logger.error(
            "asyncray's zygote process (pid %d) exited: no worker or actor can start any "
            "more. Call asyncray.shutdown() and asyncray.init() again.",
            self.zygote.pid,
        )
        self._fail_queued_tasks(
            f"asyncray's zygote process (pid {self.zygote.pid}) exited, so no worker can "
            "start; call asyncray.shutdown() and asyncray.init() again."
        )

    def _on_worker_hello(self, conn: ChildConn, msg: P.WorkerHello) -> None:
        worker = conn.worker
        if worker.state != "starting":
            self.reject(conn, "said hello twice")
            return
        if worker.pid == 0:
            worker.pid = msg.pid
            self.workers_by_pid[msg.pid] = worker
        if worker.kind == "task":
            self.starting -= 1
        if worker.actor is not None:
            self.actors.on_worker_hello(worker)
            return
        self._make_idle(worker)
        self.dispatch()

    def _make_idle(self, worker: WorkerRecord) -> None:
        worker.state = "idle"
        self.idle.append(worker)
        if self.task_workers > self.base_pool_size and worker.retire_handle is None:
            worker.retire_handle = self.loop.call_later(IDLE_RETIRE_S, self._retire, worker)

    def _retire(self, worker: WorkerRecord) -> None:
        worker.retire_handle = None
        if worker.state != "idle" or self.task_workers <= self.base_pool_size:
            return
        try:
            self.idle.remove(worker)
        except ValueError:
            return
        worker.state = "retiring"
        worker.conn.send(P.Shutdown())  # type: ignore[union-attr]

    def on_child_eof(self, worker: WorkerRecord) -> None:
        worker.eof = True
        if worker.exit_status is not None:
            self._worker_gone(worker)
        elif not self._stopped:
            self.loop.call_later(EXIT_STATUS_GRACE_S, self._worker_gone, worker)

    def _on_reaped(self, pid: int, status: int) -> None:
        worker = self.workers_by_pid.get(pid)
        if worker is None:
            return
        worker.exit_status = status
        if worker.eof:
            self._worker_gone(worker)

    def _worker_gone(self, worker: WorkerRecord) -> None:
        if worker.state == "dead":
            return
        was_starting = worker.state == "starting"
        worker.state = "dead"
        self.workers.pop(worker.child_id, None)
        if worker.kind == "task":
            self.task_workers -= 1
        self.workers_by_pid.pop(worker.pid, None)
        if worker.retire_handle is not None:
            worker.retire_handle.cancel()
        if was_starting and worker.kind == "task":
            self.starting -= 1
        try:
            self.idle.remove(worker)
        except ValueError:
            pass
        conn = worker.conn
        if conn is not None:
            for req in list(conn.requests.values()):
                self._finish(req)
            # Its generators go as if dropped (before its units: the items it never
            # took are released once, by the stream).
            for task_id in [t for t, s in self.streams.items() if s.owner is conn]:
                self._on_release_stream(conn, P.ReleaseStream(task_id))
            self.drop_units(conn)
            self.store.child_gone(conn)
            self._drop_unclaimed_reservations(conn)
        if worker.actor is not None:
            if conn is not None and conn.registered_functions:
                self.loop.call_soon(self.release_functions, conn)  # after the actor's death
            if not self._stopped:
                self.actors.on_process_gone(worker)
            return
        for t in reversed(worker.pipeline):  # never started: not an attempt
            t.worker = None
            if t.cancelled is None:
                self.ready.push_front(t.key, t)
        worker.pipeline.clear()
        task = worker.task
        if task is not None:
            self._release_task(worker, task)
            if task.can_retry():
                self._record_attempt(task, "WORKER_DIED")
                task.attempts += 1
                self.ready.push_front(task.key, task)
            elif task.cancelled is not None:
                self._fail_task(task, task.cancelled)
            else:
                err = exc.WorkerCrashedError(worker.describe_exit())
                self._fail_task(task, ser.dumps_function(err), "WORKER_DIED")
        if conn is not None and conn.registered_functions:
            self.release_functions(conn)
        if self._stopped:
            return
        if was_starting and worker.exit_status not in (None, 0):
            logger.error("asyncray: a worker died while starting %s", worker.describe_exit())
        self.dispatch()

    def _drop_unclaimed_reservations(self, conn: Any) -> None:
        """Segments a dead child reserved and never handed to anyone are removed.

        A reservation ends when its object is stored or when the call whose
        arguments it holds ends; one whose writer died in between (killed
        while writing a large put or result) would otherwise hold its bytes
        for the rest of the session. Rare, so the calls are scanned only then.
        """
        store = self.store
        mine = [
            name
            for name, writers in store.writers.items()
            if conn in writers and name in store.reservations
        ]
        if not mine:
            return
        claimed = {shm.segment_of(task.spec.args) for task in self.tasks.values()}
        claimed.update(self.actors.argument_segments())
        for name in mine:
            if name not in claimed:
                store.cancel(name)

    # ================================================================ streams

    def open_stream(self, task_id: bytes, owner: Conn, backpressure: int) -> StreamRecord:
        stream = self.streams[task_id] = StreamRecord(owner, backpressure)
        self.objects.create(task_id + STREAM_COMPLETION)
        return stream

    def _stream_entry(self, oid: bytes) -> ObjectEntry | None:
        """A pending entry for a stream item asked for before it was produced."""
        stream = self.streams.get(oid[:24])
        if stream is None or len(oid) != 28 or oid[24:] == STREAM_COMPLETION:
            return None
        index = int.from_bytes(oid[24:], "little")
        if stream.count >= 0 and index > stream.count:
            self.objects.seal(oid, P.STREAM_END)
            return self.objects.get(oid)
        return self.objects.create(oid)

    def _on_stream_item(self, conn: Conn, msg: P.StreamItem) -> None:
        stream = self.streams.get(msg.task_id)
        if stream is None or stream.count >= 0:
            return  # ended (cancelled, failed): late items are dropped
        if stream.producer is not conn:
            self.reject(conn, f"sent an item of stream {msg.task_id.hex()}, which it does not run")
            return
        index = msg.index
        if not 1 <= index <= stream.produced + 1 or index > MAX_STREAM_INDEX:
            # A gap would leave the consumer waiting for ever for the missing item.
            self.reject(conn, f"sent item {msg.index} of a stream of {stream.produced} items")
            return
        if index <= stream.produced:  # sent again: the call is replayed (its actor restarted)
            stream.new_attempt()
        stream.produced = index
        if index <= stream.kept:
            # An earlier attempt produced this item and the consumer may have
            # it: the first value stays, as in Ray.
            if not msg.is_error:
                self.objects.discard(msg.data)
                if index == 1 and stream.backpressure > 0 and stream.consumed:
                    # Credits the producer missed while it was not running yet.
                    conn.send(P.StreamCredit(msg.task_id, stream.consumed))
                return
            index = stream.kept = stream.kept + 1  # an error ends it after the kept items
        if stream.released:
            self.objects.discard(msg.data)
            return
        oid = msg.task_id + index.to_bytes(4, "little")
        owner = stream.owner
        if owner.units is not None:
            self._seal_item(stream, oid, msg.data, msg.is_error)
            return
        if msg.is_error:
            self.objects.seal(oid, msg.data, True)
            return
        # Straight to the owner's store (even if nobody asked yet): a consumer
        # behind the producer then takes each item without a round trip.
        if owner.keeps_values:
            owner.deliver(oid, msg.data)
        self.objects.seal(oid, msg.data, False)

    def _seal_item(self, stream: StreamRecord, oid: bytes, data: bytes, is_error: bool) -> None:
        """Seal a stream item. Its first unit is the owner's: a child owner's is counted,
        so the ref it takes may release it and its death frees what it never took."""
        units = stream.owner.units
        if units is not None:
            entry = self.objects.get(oid)
            if entry is None or entry.data is None:  # not a replayed item
                units[oid] = units.get(oid, 0) + 1
        self.objects.seal(oid, data, is_error)

    def end_stream(self, task_id: bytes, count: int) -> None:
        """The producer is done after ``count`` items: seal the end marker after them."""
        stream = self.streams.get(task_id)
        if stream is None or stream.count >= 0:
            return
        count = stream.count = max(count, stream.kept)  # a retry may yield fewer than kept
        stream.producer = None
        self.objects.seal(task_id + STREAM_COMPLETION, _NONE_PAYLOAD)
        if stream.released:
            del self.streams[task_id]
            return
        for index in range(count + 1, count + 2):
            self.objects.seal(task_id + index.to_bytes(4, "little"), P.STREAM_END)
        # Ask-ahead entries past the end (a wait on a finished stream) end too.
        index = count + 2
        while True:
            oid = task_id + index.to_bytes(4, "little")
            entry = self.objects.get(oid)
            if entry is None or entry.data is not None:
                break
            self.objects.seal(oid, P.STREAM_END)
            index += 1

    def fail_stream(
        self,
        task_id: bytes,
        error: bytes,
        *,
        next_to_consumer: bool = False,
        whole_task: bool = True,
    ) -> None:
        """End a stream with ``error`` as its next item (cancel, crash, dependency failure).

        With ``next_to_consumer`` (cancel) the error is the consumer's very next
        item: produced items it has not taken yet are dropped. Without
        ``whole_task`` (the generator raised) ``completed()`` is still None.
        """
        stream = self.streams.get(task_id)
        if stream is None or stream.count >= 0:
            return
        if stream.released:
            # Its owner dropped the generator (or its driver left): nobody takes
            # the error. Sealing it, and the completion a second time after the
            # first seal freed it, made entries nobody holds, kept for the
            # session (a dropped generator whose actor then died, every running
            # generator of a driver that disconnected). Just end it.
            self.end_stream(task_id, stream.items())
            return
        end = stream.items() + 1
        index = end
        if next_to_consumer:
            index = max(stream.consumed, 1)
            asked = self.objects.get(task_id + index.to_bytes(4, "little"))
            if asked is not None and asked.data is not None and stream.consumed:
                index += 1  # the consumer already has the item it asked for
            self._drop_items(stream, task_id, index, end)
        self._seal_item(stream, task_id + index.to_bytes(4, "little"), error, True)
        stream.produced = index
        stream.kept = 0  # the error is the last item, wherever it is
        if whole_task:
            self.objects.seal(task_id + STREAM_COMPLETION, error, True)
        self.end_stream(task_id, index)

    def _drop_items(self, stream: StreamRecord, task_id: bytes, first: int, end: int) -> None:
        """Items ``first`` to ``end - 1`` will never be taken: free them (the owner's copy too)."""
        dropped = [task_id + i.to_bytes(4, "little") for i in range(first, end)]
        self.objects.release_many(dropped)
        stream.owner.forget(dropped)  # items delivered to the owner's store, never taken
        units = stream.owner.units
        if units is not None:  # a child owner's units on them went with them
            for oid in dropped:
                n = units.pop(oid, 0)
                if n > 1:
                    units[oid] = n - 1

    def _on_stream_next(self, conn: Conn, msg: P.StreamNext) -> None:
        stream = self.streams.get(msg.task_id)
        if not 1 <= msg.index <= MAX_STREAM_INDEX or (
            stream is not None and stream.owner is not conn
        ):
            self.reject(
                conn,
                stream_index_problem(msg.index)
                or f"took items of stream {msg.task_id.hex()}, which it does not own",
            )
            return
        if stream is not None and msg.index > stream.consumed:
            # Asking for item k takes it: the producer may run N past it.
            stream.consumed = msg.index
            if stream.backpressure > 0 and stream.producer is not None:
                stream.producer.send(P.StreamCredit(msg.task_id, stream.consumed))
        if msg.req_id == 0:
            return  # a consumption notice: the consumer had the item locally
        oid = msg.task_id + msg.index.to_bytes(4, "little")
        self._on_get_objects(conn, P.GetObjects(msg.req_id, [oid], msg.timeout))

    def _on_release_stream(self, conn: Conn, msg: P.ReleaseStream) -> None:
        stream = self.streams.get(msg.task_id)
        if stream is None:
            return
        if stream.owner is not conn:
            self.reject(conn, f"released stream {msg.task_id.hex()}, which it does not own")
            return
        stream.released = True
        self._drop_items(stream, msg.task_id, stream.consumed + 1, stream.items() + 2)
        if 0 <= stream.count < stream.consumed:
            # The consumer took the end marker; no ref of it holds its unit: let it go.
            self.objects.release(msg.task_id + (stream.count + 1).to_bytes(4, "little"))
        self.objects.release(msg.task_id + STREAM_COMPLETION)
        if stream.count >= 0:
            del self.streams[msg.task_id]
        elif stream.producer is not None and stream.backpressure > 0:
            stream.producer.send(P.StreamCredit(msg.task_id, 1 << 62))

    # ================================================================ cancel

    def _on_cancel_task(self, conn: Conn, msg: P.CancelTask) -> None:
        task = self.tasks.get(msg.task_id)
        if task is None:
            self.actors.cancel_call(msg.task_id)
            return
        self.cancel_task(task, msg.force, msg.recursive)

    def cancel_task(
        self, task: TaskRecord, force: bool, recursive: bool, timeout: float = 0.0
    ) -> None:
        if task.cancelled is not None:
            return
        tid = task.spec.task_id
        if timeout:
            err: exc.TaskCancelledError = exc.TaskTimeoutError(
                tid.hex(),
                f"Task {task.spec.name} ran longer than its timeout_s={timeout:g} s and was "
                "cancelled.",
            )
        else:
            err = exc.TaskCancelledError(tid.hex())
        worker = task.worker
        if worker is not None and worker.task is task:
            # Interrupted while running: a task error too (RayTaskError(TaskCancelledError)).
            task.cancelled = ser.dumps_function(
                exc.RayTaskError(task.spec.name, f"{type(err).__name__}: {err}\n", err)
            )
        else:
            task.cancelled = ser.dumps_function(err)
        if task.spec.streaming:
            # The consumer's next item is the cancellation; later items are dropped.
            self.fail_stream(tid, task.cancelled, next_to_consumer=True)
        if recursive:
            self.cancel_children(task.children, force)
        if task.missing > 0:  # waiting for arguments
            task.missing = 0
            self._fail_task(task, task.cancelled)
        elif worker is None:  # queued
            self.ready.remove(task.key, task)
            self._fail_task(task, task.cancelled)
        elif worker.task is not task:  # pipelined behind another task
            self._cancel_pipelined(task, worker, task.cancelled)
        elif force:
            self._signal(worker, 9)
        else:
            # KeyboardInterrupt in the task; a get/wait it is blocked in
            # returns at once so the interrupt can land.
            self.interrupt(worker, P.InterruptTask(tid))
            for req in list(worker.conn.requests.values()):  # type: ignore[union-attr]
                if req.kind == "get":
                    self._reply_get(req, timed_out=True)
                elif req.kind == "queue":
                    self.queues.expire(req)
                else:
                    self._reply_wait(req)

    def note_child(self, parent: bytes, child: bytes) -> None:
        """Remember that ``parent`` (a task or an actor call) submitted ``child``."""
        parent_task = self.tasks.get(parent)
        if parent_task is not None:
            parent_task.children.append(child)
        else:
            self.actors.note_child(parent, child)

    def cancel_children(self, children: list[bytes], force: bool) -> None:
        for child_id in children:
            child = self.tasks.get(child_id)
            if child is not None:
                self.cancel_task(child, force, True)
            else:
                self.actors.cancel_call(child_id)

    def interrupt(self, worker: WorkerRecord, request: Any) -> None:
        """SIGINT ``worker`` for the task or call ``request`` names.

        ``request`` (``InterruptTask`` or ``CancelActorCall``) is written to the
        worker's socket before the signal is sent: the worker lets the signal
        interrupt only the task it names, so if that task ended just before
        (its TaskDone is on the way here) the next one runs untouched.
        """
        conn = worker.conn
        if conn is None:
            return
        conn.send_now(request)
        self._signal_when_written(worker, time.monotonic() + INTERRUPT_WRITE_WAIT_S)

    def _signal_when_written(self, worker: WorkerRecord, give_up_at: float) -> None:
        conn = worker.conn
        if worker.state == "dead" or conn is None:
            return
        if conn.written() or time.monotonic() >= give_up_at:
            self._signal(worker, signal.SIGINT)
        else:  # the socket is full: the request must be in it before the signal
            self.loop.call_later(0.001, self._signal_when_written, worker, give_up_at)

    def _signal(self, worker: WorkerRecord, sig: int) -> None:
        if worker.pid:
            try:
                os.kill(worker.pid, sig)
            except OSError:
                pass

    def _on_task_timeout(self, task: TaskRecord) -> None:
        task.timer = None
        if task.spec.task_id not in self.tasks:
            return
        self.cancel_task(task, False, True, timeout=task.spec.timeout_s)
        worker = task.worker
        if worker is not None:
            self.loop.call_later(TIMEOUT_KILL_GRACE_S, self._kill_if_still_running, task, worker)

    def _kill_if_still_running(self, task: TaskRecord, worker: WorkerRecord) -> None:
        if worker.task is task and worker.state != "dead":
            self._signal(worker, 9)

    # ================================================================ output and state

    def _on_log(self, conn: Conn, msg: P.Log) -> None:
        """A child's output goes to the driver of the job that printed it.

        Embedded, that is this process's stdout/stderr; on a shared head, the
        job's driver's socket. Output of a job whose driver is gone (a
        detached actor's) goes to the head's own log.
        """
        job = self.jobs.live.get(msg.job_id or conn.job)
        if job is None:
            write_log(msg)
        elif job.log_to_driver:
            job.output(msg)

    def open_job(self, conn: Any, hello: P.ClientHello) -> JobRecord:
        """A driver joined the head: its job, numbered as Ray numbers them."""
        return self.jobs.open(
            conn,
            hello.namespace,
            pid=conn.pid,
            log_to_driver=hello.log_to_driver,
            output=conn.send,
            entrypoint=hello.entrypoint,
            code_paths=hello.code_paths,
        )

    def driver_gone(self, conn: Any) -> None:
        """A connected driver disconnected (or was dropped, or killed): its job ends.

        As in Ray, what the job made goes with it — its tasks are cancelled
        (their workers replaced if they ran), its non-detached actors killed,
        its non-detached placement groups and its queues removed, every
        reference it held given back — and detached actors live on.
        """
        job_id = conn.job
        if self.jobs.close(job_id) is None or self._stopped:
            return
        for req in list(conn.requests.values()):
            self._finish(req)
        for task_id in [t for t, s in self.streams.items() if s.owner is conn]:
            self._on_release_stream(conn, P.ReleaseStream(task_id))
        for task in [t for t in self.tasks.values() if t.owner is conn]:
            self.cancel_task(task, force=True, recursive=True)
        self.actors.end_job(job_id)
        self.groups.end_job(job_id)
        self._retire_job_workers(job_id)
        self.queues.end_owner(conn)
        self.drop_units(conn)
        self.store.child_gone(conn)
        self._drop_unclaimed_reservations(conn)
        self.release_functions(conn)
        self.dispatch()

    def _on_list_named_actors(self, conn: Conn, msg: P.ListNamedActors) -> None:
        value = self.actors.list_named(msg.namespace, msg.all_namespaces)
        conn.send(P.StateReply(msg.req_id, msgspec.msgpack.encode(value)))

    def _on_query_state(self, conn: Conn, msg: P.QueryState) -> None:
        value: Any
        if msg.what == "available":
            value = self.resources.snapshot_available()
            value.update(self.groups.derived_resources(available=True))
        elif msg.what == "cluster":
            value = dict(self.resources.totals)
            value.update(self.groups.derived_resources(available=False))
        elif msg.what == "pg_table":
            value = self.groups.table(bytes.fromhex(msg.arg) if msg.arg else None)
        elif msg.what == "pg_by_name":
            namespace, _, name = msg.arg.partition("\x00")
            value = self.groups.lookup(namespace, name)
        elif msg.what == "stats":
            value = {
                "objects": len(self.objects),
                "functions": len(self.functions),
                "workers": len(self.workers),
                "idle": len(self.idle),
                "queued": len(self.ready),
                "shm_bytes": self.objects.shm_bytes,
                **self.store.stats(),
                "pids": [w.pid for w in self.workers.values() if w.pid],
            }
        elif msg.what == "status":
            value = self.status()
        elif msg.what in _STATE_TABLES:
            value = _STATE_TABLES[msg.what](self)
        else:
            value = None
        conn.send(P.StateReply(msg.req_id, msgspec.msgpack.encode(value)))

    def status(self) -> dict[str, Any]:
        """What ``asyncray status`` shows: resources, workers, actors, objects, drivers."""
        actors: dict[str, dict[str, int]] = {}
        for actor in self.actors.actors.values():
            by_state = actors.setdefault(actor.spec.namespace, {})
            state = actor.state.upper()
            by_state[state] = by_state.get(state, 0) + 1
        task_workers = [w for w in self.workers.values() if w.kind == "task"]
        return {
            "total": dict(self.resources.totals),
            "available": self.resources.snapshot_available(),
            "workers": {
                "task": len(task_workers),
                "idle": len(self.idle),
                "actor": len(self.workers) - len(task_workers),
            },
            "tasks": {"queued": len(self.ready), "live": len(self.tasks)},
            "actors": actors,
            "objects": {
                "count": len(self.objects),
                "shm_bytes": self.objects.shm_bytes,
                "store_capacity": self.store.capacity,
                "store_used": self.store.used,
                "spilled_bytes": sum(self.store.spilled.values()),
            },
            "drivers": [job.row() for job in self.jobs.live.values()],
        }

    # ================================================================ shutdown

    def stop(self) -> None:
        """Tell every child to exit and close the zygote (which reaps them all)."""
        self._stopped = True
        self.queues.stop()
        for worker in list(self.workers.values()):
            conn = worker.conn
            if conn is None:
                continue
            if conn.transport is not None:
                conn.send(P.Shutdown())
            conn.close()
        self.zygote.close()
