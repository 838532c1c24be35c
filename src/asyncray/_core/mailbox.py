"""Actors on the runtime side: records, ordered mailboxes, names, death and restarts.

Each actor has one mailbox. Calls enter it in the order the runtime receives
them, which is each caller's submission order (a caller's messages arrive in
order on its one connection). Order is kept per caller, as in Ray: a call
leaves the mailbox once its ``ObjectRef`` arguments are ready and no earlier
call of the same caller (connection) is still in it, so a later call never
overtakes an earlier one of its caller that waits on an argument, while
another caller's ready calls go past it. A threaded or async actor promises
no order within a caller either (as in Ray): there a caller's ready call
goes past its own call that waits. The kernel's own call (the
terminate sent when the owner drops its handle) is a barrier: it leaves only
from the head, and nothing behind it leaves before it. Calls that left the
mailbox are *in flight*: sent to the actor process, which runs them one at a
time (plain), on a thread pool (threaded) or as coroutines (async).

Life of an actor::

    pending (waits for args + placement) → starting (process forked,
    StartActor sent) → alive ⇄ restarting → dead

Death fails every in-flight and queued call, and every later one, with the
actor's death error. A dead actor's record goes (once its process is gone);
its death error stays as a tombstone in ``dead``, the newest
``maximum_gcs_destroyed_actor_cached_count`` of them (``retention.py``).
A crash restarts the actor while ``max_restarts`` allows; in-flight calls
are then retried per ``max_task_retries`` or fail with
``ActorUnavailableError``. A call whose error its ``retry_exceptions``
allows (the actor process judges it: ``TaskDone.retryable``) runs again,
before the calls still queued, while the same count allows; a retried
stream is told how many items it already produced (``skip``). A kill of a
process still being forked lands at its hello. ``ActorManager`` is part of
the ``Runtime``: it touches runtime state only on the runtime loop.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import time
from collections import OrderedDict, deque
from functools import partial
from typing import TYPE_CHECKING, Any

from .. import exceptions as exc
from .._wire import protocol as P
from .._wire import refs, shm
from .._wire import serialization as ser
from . import retention, state_view
from .object_table import ObjectEntry
from .scheduler import Shape, shape_of
from .worker_pool import unsendable_error

if TYPE_CHECKING:
    from .conn import Conn
    from .runtime import Runtime
    from .worker_pool import ChildConn, WorkerRecord

logger = logging.getLogger("asyncray")

TERMINATE = "__ray_terminate__"
# How long an actor that called exit_actor() may take to end its process (its
# atexit handlers run) before the runtime kills it: a process that says it
# exits and lives on would hold its resources for the rest of the session.
EXIT_GRACE_S = 10.0
_GROUP_REMOVED = "The actor is dead because its placement group was removed."


class CallRecord:
    """One actor method call, from submission until its result is sealed."""

    __slots__ = (
        "attempts",
        "cancelled",
        "children",
        "created",
        "dep_values",
        "failed",
        "holding",
        "missing",
        "owner",
        "spec",
        "started",
        "timer",
    )

    def __init__(self, spec: P.CallActor, owner: Conn | None) -> None:
        self.spec = spec
        self.owner = owner
        self.created = time.perf_counter()  # submitted (state API, timeline)
        self.started = 0.0  # sent to its actor's process
        self.dep_values: list[bytes] = []
        self.missing = 0
        self.attempts = 0
        self.failed = False
        # Whether it holds its arguments' objects (until it ends).
        self.holding = False
        # The error payload to seal instead of the result once cancelled.
        self.cancelled: bytes | None = None
        self.timer: Any = None
        # Tasks and calls this call submitted (for recursive cancel).
        self.children: list[bytes] = []


class ActorRecord:
    """The runtime's view of one actor."""

    def __init__(self, spec: P.CreateActor, owner: Conn) -> None:
        self.spec = spec
        self.owner = owner
        # The job that made it: its namespace and output follow it; a
        # non-detached actor ends with its job.
        self.job: str = owner.job
        self.actor_id = spec.actor_id
        self.state = "pending"
        self.created = time.perf_counter()  # the state API's creation time
        self.place_shape: Shape = shape_of(spec.place)
        self.hold_shape: Shape = shape_of(spec.hold)
        self.gpu_ids: list[int] = []
        self.holding = False
        self.group = (spec.pg_id, spec.pg_bundle) if spec.pg_id else None
        self.pool: Any = None
        self.worker: WorkerRecord | None = None
        self.pid = 0
        self.mailbox: deque[CallRecord] = deque()
        # How many calls each caller has in the mailbox (the kernel's own under
        # None), kept only while a call there waits for an argument: built by a
        # full pass (``_pump`` for everyone), dropped when the mailbox empties.
        # The common case, an empty mailbox, never pays for it.
        self.queued: dict[Any, int] | None = None
        self._ordered: bool | None = None  # see keeps_caller_order
        self.inflight: dict[bytes, CallRecord] = {}
        self.restarts_used = 0
        self.ctor_values: list[bytes] = []
        self.ctor_missing = 0
        self.death: bytes | None = None
        self.exiting = False
        self.killed = False
        self.name_key: tuple[str, str] | None = None
        # Whether it holds its constructor arguments' objects (restarts reuse them).
        self.holding_args = False
        # A process killed before its pid was known: SIGKILLed at its hello.
        self.kill_at_hello: WorkerRecord | None = None

    def keeps_caller_order(self) -> bool:
        """Whether a caller's call waiting for an argument holds back its later calls.

        A plain actor runs each caller's calls in submission order; a threaded
        or async one does not promise it, so, as in Ray, a ready call goes past
        its caller's call that waits. Read from the config only when a call
        waits (never on the common path), then kept.
        """
        ordered = self._ordered
        if ordered is None:
            spec = self.spec
            ordered = self._ordered = spec.kind == "plain" and not spec.out_of_order
        return ordered

    def can_restart(self) -> bool:
        limit = self.spec.max_restarts
        return limit < 0 or self.restarts_used < limit


class ActorManager:
    """Actor handlers of the runtime (``runtime.actors``)."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        # Actors not dead yet (a dead one leaves only its tombstone in ``dead``).
        self.actors: dict[bytes, ActorRecord] = {}
        # Dead actors' death errors, oldest first, at most ``dead_kept`` of them.
        self.dead: OrderedDict[bytes, bytes] = OrderedDict()
        # Their rows for the state API (``list_actors`` shows the dead, as Ray's).
        self.dead_rows: dict[bytes, dict[str, Any]] = {}
        self.dead_kept = retention.current().dead_actors
        self.names: dict[tuple[str, str], bytes] = {}
        self.pending: deque[ActorRecord] = deque()
        # Live calls by task id, and the actor each belongs to (cancel, children).
        self.calls: dict[bytes, tuple[ActorRecord, CallRecord]] = {}

    # ================================================================ creation

    def on_create(self, conn: Conn, msg: P.CreateActor) -> None:
        if conn.units is not None and msg.actor_id in self.actors:
            self.rt.reject(conn, f"created actor {msg.actor_id.hex()}, an id already in use")
            return
        if msg.name:
            key = (msg.namespace, msg.name)
            existing = self.names.get(key)
            if existing is not None:
                other = self.actors[existing]
                if msg.get_if_exists:
                    conn.send(
                        P.ActorReply(
                            req_id=msg.req_id, actor_id=existing, meta=other.spec.meta, error=""
                        )
                    )
                else:
                    conn.send(
                        P.ActorReply(req_id=msg.req_id, actor_id=b"", meta=b"", error="exists")
                    )
                return
        actor = ActorRecord(msg, conn)
        self.actors[msg.actor_id] = actor
        if msg.name:
            actor.name_key = (msg.namespace, msg.name)
            self.names[actor.name_key] = msg.actor_id
        if msg.req_id:
            conn.send(
                P.ActorReply(req_id=msg.req_id, actor_id=msg.actor_id, meta=msg.meta, error="")
            )
        if msg.holders_id and not msg.detached:
            # setdefault: a child naming another actor's holders object must
            # not unhook that actor (it would then never be released).
            self.rt.objects.free_hooks.setdefault(
                msg.holders_id, partial(self._holders_gone, msg.actor_id)
            )
        self.rt.take_argument_holds(msg.args, msg.dep_ids)
        actor.holding_args = True
        self._resolve_ctor_args(actor)

    def argument_segments(self) -> set[str | None]:
        """Segments holding the large arguments of live calls and of actors being made."""
        segments = {shm.segment_of(call.spec.args) for _, call in self.calls.values()}
        segments.update(
            shm.segment_of(actor.spec.args) for actor in self.actors.values() if actor.holding_args
        )
        return segments

    def start_failed(self, actor: ActorRecord, error: OSError) -> None:
        """No process could be started for ``actor``: it dies, its calls say why."""
        if actor.state == "dead":
            return
        hint = (
            "Raise the open-files limit (`ulimit -n`) or run fewer actors at once."
            if error.errno == errno.EMFILE
            else "The machine may be out of memory or processes."
        )
        reason = f"Its process could not be started: {error}. {hint}"
        self._die(actor, self._died_payload(actor, reason))

    def creation_failed(self, conn: Conn, msg: P.CreateActor, text: str) -> None:
        """Handling ``msg`` raised (a bug): the actor is dead, its calls say why."""
        actor = self.actors.get(msg.actor_id)
        if actor is None:
            actor = self.actors[msg.actor_id] = ActorRecord(msg, conn)
        if actor.state != "dead":
            reason = f"asyncray failed creating it (an internal bug):\n{text}"
            self._die(actor, self._died_payload(actor, reason))

    def _resolve_ctor_args(self, actor: ActorRecord) -> None:
        dep_ids = actor.spec.dep_ids
        actor.ctor_values = [b""] * len(dep_ids)
        waiting: list[tuple[int, ObjectEntry]] = []
        for i, oid in enumerate(dep_ids):
            entry = self.rt.objects.get(oid)
            if entry is None:
                self._die(actor, self.rt._lost_payload(oid))
                return
            if entry.data is None:
                waiting.append((i, entry))
            elif entry.is_error:
                self._die(actor, entry.data)
                return
            else:
                actor.ctor_values[i] = entry.data
        actor.ctor_missing = len(waiting)
        if not waiting:
            self._queue_for_placement(actor)
        for i, entry in waiting:
            self.rt.objects.on_ready(entry, self._ctor_dep_callback(actor, i))

    def _ctor_dep_callback(self, actor: ActorRecord, index: int) -> Any:
        def on_sealed(entry: ObjectEntry) -> None:
            if actor.state != "pending" or actor.ctor_missing <= 0:
                return
            if entry.is_error:
                actor.ctor_missing = 0
                self._die(actor, entry.data)  # type: ignore[arg-type]
                return
            actor.ctor_values[index] = entry.data  # type: ignore[assignment]
            actor.ctor_missing -= 1
            if actor.ctor_missing == 0:
                self._queue_for_placement(actor)

        return on_sealed

    def _queue_for_placement(self, actor: ActorRecord) -> None:
        self.pending.append(actor)
        self.place_pending()

    def place_pending(self) -> None:
        """Start every pending actor whose placement request fits, in creation order."""
        still: deque[ActorRecord] = deque()
        while self.pending:
            actor = self.pending.popleft()
            if actor.state != "pending":
                continue
            pool = self.rt.pool_for(actor.group, actor.place_shape)
            if pool is None and actor.group is not None and self.rt.groups.is_gone(actor.group[0]):
                # Created in a group removed before it was placed: it would never start.
                self._die(actor, self._died_payload(actor, _GROUP_REMOVED))
                continue
            if pool is None or not pool.fits(actor.hold_shape):
                still.append(actor)  # actors in other pools may still fit
                continue
            actor.pool = pool
            actor.gpu_ids = pool.acquire(actor.hold_shape)
            actor.holding = True
            self._spawn(actor)
        self.pending = still

    def _spawn(self, actor: ActorRecord) -> None:
        actor.state = "starting"
        try:
            worker = self.rt._spawn_worker("actor")
        except OSError as e:
            self.start_failed(actor, e)
            return
        worker.actor = actor
        actor.worker = worker

    def on_worker_hello(self, worker: WorkerRecord) -> None:
        actor: ActorRecord = worker.actor
        spec = actor.spec
        actor.pid = worker.pid
        worker.state = "busy"
        if actor.kill_at_hello is worker:  # killed while it was being forked
            self._kill_process(actor)
            return
        pg, pg_capture = self.rt._group_context(spec.pg_id, spec.pg_capture)
        try:
            frame = P.frame(
                P.StartActor(
                    actor_id=actor.actor_id,
                    class_blob=self.rt.functions.get(spec.class_id, b""),
                    args=spec.args,
                    dep_values=actor.ctor_values,
                    config=spec.config,
                    resources=spec.hold,
                    gpu_ids=actor.gpu_ids,
                    name=spec.name,
                    namespace=spec.namespace,
                    pg=pg,
                    pg_capture=pg_capture,
                    num_restarts=actor.restarts_used,
                )
            )
        except Exception as e:  # its options cannot be carried: the actor never starts
            logger.warning("asyncray: actor %s cannot be started: %r", spec.name, e)
            reason = f"Its creation could not be sent to its process: {type(e).__name__}: {e}"
            self._die(actor, self._died_payload(actor, reason))
            return
        if worker.job != actor.job:  # a shared head: the actor serves its creator's job
            self.rt.tell_job(worker, actor.job)
        if spec.env is not None:  # its own process: set up before the actor is built
            self.rt.tell_env(worker, spec.env)
        self.rt.grant_call(worker.conn, spec.args, actor.ctor_values)  # type: ignore[arg-type]
        worker.conn.send_frame(frame)  # type: ignore[union-attr]

    def on_started(self, conn: Conn, msg: P.ActorStarted) -> None:
        actor: ActorRecord | None = conn.worker.actor if conn.worker is not None else None
        if actor is None or actor.state != "starting":
            return
        if not msg.ok:
            self._die(actor, msg.error)
            return
        actor.state = "alive"
        self._pump(actor)

    # ================================================================ calls

    def on_call(self, conn: Conn, msg: P.CallActor) -> None:
        if conn.units is not None and self.rt.ids_taken(msg.task_id, msg.return_ids):
            self.rt.reject(conn, f"called an actor under ids already in use ({msg.task_id.hex()})")
            return
        call = CallRecord(msg, conn)
        if msg.streaming:
            self.rt.open_stream(msg.task_id, conn, msg.backpressure)
        create = self.rt.objects.create
        for rid in msg.return_ids:
            create(rid)
        if conn.units is not None:
            self.rt.own(conn, msg.return_ids)
        actor = self.actors.get(msg.actor_id)
        if actor is None:
            death = self.dead.get(msg.actor_id) or self._unknown_actor_payload(msg.actor_id)
            self._seal_call(call, death, True, "ACTOR_DIED")
            return
        if actor.state == "dead" or actor.exiting:
            self._seal_call(
                call,
                actor.death or self._died_payload(actor, "The actor is dead."),
                True,
                "ACTOR_DIED",
            )
            return
        if msg.parent:
            self.rt.note_child(msg.parent, msg.task_id)
        self.calls[msg.task_id] = (actor, call)
        self.rt.take_argument_holds(msg.args, msg.dep_ids)
        call.holding = True
        self._resolve_call_args(actor, call)
        actor.mailbox.append(call)
        queued = actor.queued
        if queued is not None:
            queued[conn] = queued.get(conn, 0) + 1
        self._pump(actor, call)

    def _resolve_call_args(self, actor: ActorRecord, call: CallRecord) -> None:
        dep_ids = call.spec.dep_ids
        if not dep_ids:
            return
        call.dep_values = [b""] * len(dep_ids)
        get = self.rt.objects.get
        for i, oid in enumerate(dep_ids):
            entry = get(oid)
            if entry is None:
                self._fail_call(call, self.rt._lost_payload(oid))
                return
            if entry.data is None:
                call.missing += 1
                self.rt.objects.on_ready(entry, self._call_dep_callback(actor, call, i))
            elif entry.is_error:
                self._fail_call(call, entry.data)
                return
            else:
                call.dep_values[i] = entry.data

    def _call_dep_callback(self, actor: ActorRecord, call: CallRecord, index: int) -> Any:
        def on_sealed(entry: ObjectEntry) -> None:
            if call.failed:
                return
            if entry.is_error:
                self._fail_call(call, entry.data)  # type: ignore[arg-type]
            else:
                call.dep_values[index] = entry.data  # type: ignore[assignment]
                call.missing -= 1
            self._pump(actor, call)

        return on_sealed

    def _fail_call(self, call: CallRecord, payload: bytes) -> None:
        call.failed = True
        call.missing = 0
        self._seal_call(call, payload, True)

    def _pump(self, actor: ActorRecord, changed: CallRecord | None = None) -> None:
        """Send every call that may go now: arguments ready, no earlier call of its caller left.

        ``changed`` is the only call that may have become ready (new, an
        argument sealed, cancelled); None looks at every call (the actor
        (re)started, a barrier queued). The head goes first, as long as it is
        ready: the common case. Past a head that waits for an argument, only
        the changed call's caller is looked at (a plain actor keeps each
        caller's order) or only the changed call (a threaded or async actor
        lets a caller's ready call overtake its call that waits, as Ray does).
        """
        if actor.state != "alive" or actor.exiting:
            return
        mailbox = actor.mailbox
        # An alive actor's process is connected.
        conn: ChildConn = actor.worker.conn  # type: ignore[union-attr, assignment]
        if changed is None:
            actor.queued = None  # counted again below: the mailbox may have been refilled
        queued = actor.queued
        unsendable: list[tuple[CallRecord, bytes]] = []
        while mailbox:
            call = mailbox[0]
            if not call.failed:
                if call.missing:
                    break
                self._send_call(actor, conn, call, unsendable)
            mailbox.popleft()
            if queued is not None:
                queued[call.owner] -= 1
        if not mailbox:
            actor.queued = None
        elif queued is None or changed is None or queued.get(None):
            self._pump_everyone(actor, conn, unsendable)
        elif actor.keeps_caller_order():
            self._pump_lane(actor, conn, changed.owner, queued, unsendable)
        else:
            self._pump_call(actor, conn, changed, queued, unsendable)
        # Failed only now: sealing wakes callbacks that may pump this mailbox again.
        for call, error in unsendable:
            self._fail_call(call, error)

    def _pump_everyone(
        self, actor: ActorRecord, conn: ChildConn, unsendable: list[tuple[CallRecord, bytes]]
    ) -> None:
        """One pass over the whole mailbox: send what may go, count what stays per caller."""
        mailbox = actor.mailbox
        kept: list[CallRecord] = []
        counts: dict[Any, int] = {}
        barrier = False
        ordered = actor.keeps_caller_order()
        for call in mailbox:
            if call.failed:
                continue
            owner = call.owner
            if barrier or call.missing or (ordered and owner in counts) or (owner is None and kept):
                kept.append(call)
                counts[owner] = counts.get(owner, 0) + 1
                barrier = barrier or owner is None
                continue
            self._send_call(actor, conn, call, unsendable)
        mailbox.clear()
        mailbox.extend(kept)
        actor.queued = counts if kept else None

    def _pump_lane(
        self,
        actor: ActorRecord,
        conn: ChildConn,
        caller: Any,
        queued: dict[Any, int],
        unsendable: list[tuple[CallRecord, bytes]],
    ) -> None:
        """Send ``caller``'s calls from the first of them on, until one waits for an argument."""
        left = queued.get(caller, 0)
        mailbox = actor.mailbox
        i = 0
        while left:
            call = mailbox[i]
            if call.owner is not caller:
                i += 1
                continue
            if call.missing and not call.failed:
                return  # the caller's next call waits: so do the ones behind it
            del mailbox[i]
            left -= 1
            queued[caller] -= 1
            if not call.failed:
                self._send_call(actor, conn, call, unsendable)
        if not mailbox:
            actor.queued = None

    def _pump_call(
        self,
        actor: ActorRecord,
        conn: ChildConn,
        call: CallRecord,
        queued: dict[Any, int],
        unsendable: list[tuple[CallRecord, bytes]],
    ) -> None:
        """A threaded or async actor: send ``call`` if it is ready, wherever it is."""
        if call.missing and not call.failed:
            return
        mailbox = actor.mailbox
        if mailbox[-1] is call:  # a new call: the usual place
            mailbox.pop()
        else:
            try:
                mailbox.remove(call)
            except ValueError:
                return  # sent already, from the head
        queued[call.owner] -= 1
        if not call.failed:
            self._send_call(actor, conn, call, unsendable)
        if not mailbox:
            actor.queued = None

    def _send_call(
        self,
        actor: ActorRecord,
        conn: ChildConn,
        call: CallRecord,
        unsendable: list[tuple[CallRecord, bytes]],
    ) -> None:
        """Put ``call`` in flight; one the wire cannot carry goes to ``unsendable`` instead."""
        spec = call.spec
        stream = self.rt.streams.get(spec.task_id) if spec.streaming else None
        # Encoded first: a value the wire cannot carry fails this call alone.
        try:
            frame = P.frame(
                P.ExecuteActorCall(
                    task_id=spec.task_id,
                    method=spec.method,
                    args=spec.args,
                    dep_values=call.dep_values,
                    num_returns=len(spec.return_ids),
                    group=spec.group,
                    streaming=spec.streaming,
                    backpressure=spec.backpressure,
                    retry_exc=spec.retry_exc,
                    # A retried stream goes on after the items already produced.
                    skip=stream.produced if stream is not None and call.attempts else 0,
                )
            )
        except Exception as e:
            logger.warning("asyncray: actor call %s cannot be sent: %r", spec.method, e)
            unsendable.append((call, unsendable_error(f"actor call {spec.method}", e)))
            return
        actor.inflight[spec.task_id] = call
        call.started = time.perf_counter()
        if stream is not None:
            stream.producer = conn
        if spec.timeout_s > 0 and call.timer is None:
            call.timer = self.rt.loop.call_later(spec.timeout_s, self._call_timed_out, call)
        if call.dep_values or spec.args[:7] == refs.MARKER:
            self.rt.grant_call(conn, spec.args, call.dep_values)
        conn.send_frame(frame)

    def on_task_done(self, worker: WorkerRecord, msg: P.TaskDone) -> None:
        actor: ActorRecord = worker.actor
        call = actor.inflight.get(msg.task_id)
        if call is None:
            return
        spec = call.spec
        if (
            msg.is_error
            or spec.streaming
            or msg.stream_count >= 0
            or len(msg.results) != len(spec.return_ids)
        ) and self.rt.task_done_rejected(
            worker.conn,  # type: ignore[arg-type]
            msg,
            spec,
            call.cancelled is not None,
        ):  # not a plain success, and not one a child may send
            return
        del actor.inflight[msg.task_id]
        if call.cancelled is not None:
            for data in msg.results:
                self.rt.objects.discard(data)
            self._seal_call(call, call.cancelled, True)
        elif msg.stream_count >= 0:
            self._end_call(call)
            self.rt.end_stream(call.spec.task_id, msg.stream_count)
        elif msg.is_error:
            if msg.retryable and spec.retry_exc != P.RETRY_NONE and self._take_retry(call):
                # retry_exceptions: the error is dropped and the call runs again,
                # before the calls still queued (Ray delivers only the last error).
                self.rt.objects.discard(msg.results[0])
                actor.mailbox.appendleft(call)
                self._pump(actor)
                return
            self._seal_call(call, msg.results[0], True)
        else:
            self._end_call(call)
            self.rt.seal_results(call.owner, call.spec.return_ids, msg.results)

    @staticmethod
    def _take_retry(call: CallRecord) -> bool:
        """Count one more attempt of ``call`` if its ``max_task_retries`` allows one."""
        limit = call.spec.max_task_retries
        if limit < 0 or call.attempts < limit:
            call.attempts += 1
            return True
        return False

    def _end_call(self, call: CallRecord, error_type: str = "") -> None:
        """The call is over (``error_type`` "" if it succeeded): stop its timer, forget it,
        let go of its arguments, record it."""
        self._stop_timer(call)
        spec = call.spec
        found = self.calls.pop(spec.task_id, None)
        if found is not None:
            actor = found[0]
            self.rt.events.ended.append(
                (
                    "ACTOR_TASK",
                    spec.task_id,
                    f"{actor.spec.class_name}.{spec.method}",
                    actor.job,
                    actor.actor_id,
                    actor.pid,
                    call.created,
                    call.started,
                    time.perf_counter(),
                    error_type,
                    call.attempts,
                    None,
                    spec.parent,
                    actor.spec.pg_id,
                )
            )
        if call.holding:
            call.holding = False
            self.rt.drop_argument_holds(spec.args, spec.dep_ids)
            segment = shm.segment_of(spec.args)
            if segment is not None:  # large arguments live as long as the call
                self.rt.store.call_ended(segment)

    def _seal_call(
        self,
        call: CallRecord,
        payload: bytes,
        is_error: bool,
        error_type: str = "TASK_EXECUTION_EXCEPTION",
    ) -> None:
        if call.cancelled is not None:
            error_type = "TASK_CANCELLED"
        self._end_call(call, error_type if is_error else "")
        if call.spec.streaming:
            self.rt.fail_stream(call.spec.task_id, payload)
            return
        seal = self.rt.objects.seal
        for rid in call.spec.return_ids:
            seal(rid, payload, is_error)

    def _stop_timer(self, call: CallRecord) -> None:
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None

    # ================================================================ cancel

    def note_child(self, parent: bytes, child: bytes) -> None:
        found = self.calls.get(parent)
        if found is not None:
            found[1].children.append(child)

    def cancel_call(self, task_id: bytes, timeout: float = 0.0) -> None:
        """Cancel an actor call (and what it submitted).

        Queued here: dropped. Sent to the actor but not running: it fails now
        and the actor drops it. Running: an async actor cancels its asyncio
        task; a sync actor gets a flag (``is_canceled()``), as in Ray — except
        that a plain actor's call past its ``timeout_s`` is interrupted.
        """
        found = self.calls.get(task_id)
        if found is None:
            return
        actor, call = found
        if call.cancelled is not None:
            return
        self.rt.cancel_children(call.children, False)
        payload = self._cancelled_payload(call, timeout)
        if task_id not in actor.inflight:
            self._fail_call(call, payload)
            self._pump(actor, call)  # its caller's calls behind it may go now
            return
        call.cancelled = payload
        if call.spec.streaming:
            self.rt.fail_stream(task_id, payload, next_to_consumer=True)
        worker = actor.worker
        if worker is None or worker.conn is None:
            return
        kind = actor.spec.kind
        running = next(iter(actor.inflight)) == task_id
        if kind == "plain" and timeout and running:
            # KeyboardInterrupt in the method (the host only lets it land in
            # user code, and only in the call the request names).
            self.rt.interrupt(worker, P.CancelActorCall(task_id))
            return
        worker.conn.send(P.CancelActorCall(task_id))
        if kind == "plain" and not running:
            self._seal_call(call, payload, True)  # it will never run: say so now

    def _cancelled_payload(self, call: CallRecord, timeout: float) -> bytes:
        tid = call.spec.task_id.hex()
        if timeout:
            return ser.dumps_function(
                exc.TaskTimeoutError(
                    tid,
                    f"Actor call {call.spec.method} ran longer than its timeout_s={timeout:g} s "
                    "and was cancelled.",
                )
            )
        return ser.dumps_function(exc.TaskCancelledError(tid))

    def _call_timed_out(self, call: CallRecord) -> None:
        call.timer = None
        self.cancel_call(call.spec.task_id, timeout=call.spec.timeout_s)

    # ================================================================ ending

    def on_kill(self, conn: Conn, msg: P.KillActor) -> None:
        actor = self.actors.get(msg.actor_id)
        if actor is None or actor.state == "dead":
            return
        if not msg.no_restart and actor.can_restart() and actor.state in ("alive", "starting"):
            self._kill_process(actor)  # the death path restarts it
            return
        actor.killed = True
        if actor.state == "pending":
            reason = "The actor never ran - it was cancelled before it started running."
        else:
            reason = "The actor is dead because it was killed by `ray.kill`."
        self._kill_process(actor)  # first: no graceful exit, no atexit handlers
        self._die(actor, self._died_payload(actor, reason))

    def on_release(self, conn: Conn, msg: P.ReleaseActor) -> None:
        """The owner dropped its handle: terminate after queued calls (as ``__ray_terminate__``)."""
        self._release(msg.actor_id)

    def _release(self, actor_id: bytes) -> None:
        actor = self.actors.get(actor_id)
        if actor is None or actor.state == "dead" or actor.spec.detached:
            return
        if actor.state == "pending":
            self._die(actor, self._died_payload(actor, "The actor's handle went out of scope."))
            return
        spec = P.CallActor(
            task_id=b"terminate-" + actor.actor_id,
            actor_id=actor.actor_id,
            method=TERMINATE,
            args=ser.EMPTY_ARGS,
            dep_ids=[],
            return_ids=[],
            group="",
            max_task_retries=0,
        )
        actor.mailbox.append(CallRecord(spec, None))
        self._pump(actor)

    def _holders_gone(self, actor_id: bytes, holders_id: bytes) -> None:
        """Every handle of the actor is gone (its holders object was freed): release it.

        Deferred to its own callback: the object table calls this while it
        frees, and releasing may send messages and free other objects.
        """
        self.rt.loop.call_soon(self._release, actor_id)

    def on_exiting(self, conn: Conn, msg: P.ActorExiting) -> None:
        """``exit_actor()``: that call and everything not yet started fail with ActorDiedError."""
        actor: ActorRecord | None = conn.worker.actor if conn.worker is not None else None
        if actor is None or actor.state == "dead":
            return
        actor.exiting = True
        death = self._died_payload(
            actor,
            "The actor is dead because its worker process has died. Worker exit type: "
            "INTENDED_USER_EXIT Worker exit detail: exit_actor() was called (exit code 0).",
        )
        actor.death = death
        call = actor.inflight.pop(msg.task_id, None)
        if call is not None:
            self._seal_call(call, death, True, "ACTOR_DIED")
        self._fail_queued(actor, death)
        self._drop_name(actor)
        if conn.worker is not None:
            self.rt.loop.call_later(EXIT_GRACE_S, self._kill_if_still_there, actor, conn.worker)

    def _kill_if_still_there(self, actor: ActorRecord, worker: WorkerRecord) -> None:
        """An actor said it exits but its process lives on: end it (its resources with it)."""
        if actor.worker is worker and worker.state != "dead":
            logger.warning(
                "asyncray: actor %s (pid %d) said it exits but is still running after %g s; "
                "killing it",
                actor.spec.class_name,
                worker.pid,
                EXIT_GRACE_S,
            )
            self._kill_process(actor)

    def on_process_gone(self, worker: WorkerRecord) -> None:
        """The actor's process exited: finish an intended exit, restart, or die."""
        actor: ActorRecord = worker.actor
        if actor.worker is not worker:
            return
        actor.worker = None
        if actor.state == "dead":
            self._fail_inflight(actor, actor.death)  # type: ignore[arg-type]
            return
        if actor.exiting:
            self._die(actor, actor.death)  # type: ignore[arg-type]
            return
        detail = worker.describe_exit()
        if actor.can_restart() and not actor.killed:
            actor.restarts_used += 1
            unavailable = ser.dumps_function(
                exc.ActorUnavailableError(
                    actor.actor_id.hex(),
                    f"The actor {actor.actor_id.hex()} is unavailable: its process died {detail} "
                    "and it is restarting. The task may or may not have been executed on the "
                    "actor.",
                )
            )
            retry: list[CallRecord] = []
            for call in actor.inflight.values():
                if self._take_retry(call):
                    retry.append(call)
                else:
                    self._seal_call(call, unavailable, True, "ACTOR_UNAVAILABLE")
            actor.inflight.clear()
            actor.mailbox.extendleft(reversed(retry))
            self._spawn(actor)
            return
        death = self._died_payload(
            actor,
            "The actor is dead because its worker process has died. Worker exit type: "
            f"SYSTEM_ERROR Worker exit detail: the process exited unexpectedly {detail}.",
        )
        self._die(actor, death)

    def _die(self, actor: ActorRecord, death: bytes) -> None:
        actor.state = "dead"
        actor.death = death
        self._bury(actor, death)
        if actor.holding_args:
            actor.holding_args = False
            spec = actor.spec
            self.rt.drop_argument_holds(spec.args, spec.dep_ids)
            segment = shm.segment_of(spec.args)
            if segment is not None:
                self.rt.store.call_ended(segment)
        self._fail_inflight(actor, death)
        self._fail_queued(actor, death)
        self._drop_name(actor)
        if actor.holding:
            actor.holding = False
            actor.pool.release(actor.hold_shape, actor.gpu_ids)
            self.rt.dispatch()
        worker = actor.worker
        if (
            worker is not None
            and worker.conn is not None
            and worker.state != "dead"
            and not actor.killed
        ):
            worker.conn.send(P.Shutdown())

    def _fail_inflight(self, actor: ActorRecord, death: bytes) -> None:
        for call in actor.inflight.values():
            self._seal_call(call, death, True, "ACTOR_DIED")
        actor.inflight.clear()

    def _fail_queued(self, actor: ActorRecord, death: bytes) -> None:
        while actor.mailbox:
            call = actor.mailbox.popleft()
            if not call.failed:
                self._seal_call(call, death, True, "ACTOR_DIED")

    def _bury(self, actor: ActorRecord, death: bytes) -> None:
        """The record goes (its process, if any, still points to it until it exits); the
        death error stays as a tombstone, and its state API row with it, among the newest
        ``dead_kept``."""
        actor_id = actor.actor_id
        self.actors.pop(actor_id, None)
        dead = self.dead
        dead[actor_id] = death
        self.dead_rows[actor_id] = state_view.actor_row(actor)
        while len(dead) > self.dead_kept:
            gone, _ = dead.popitem(last=False)
            self.dead_rows.pop(gone, None)

    def _drop_name(self, actor: ActorRecord) -> None:
        if actor.name_key is not None and self.names.get(actor.name_key) == actor.actor_id:
            del self.names[actor.name_key]

    def _kill_process(self, actor: ActorRecord) -> None:
        worker = actor.worker
        if worker is None:
            return
        if not worker.pid:
            # Still being forked: killed at its hello, before its constructor runs
            # (else the kill is lost: a restart not counted, a dead actor's process
            # left running its __init__ for the rest of the session).
            actor.kill_at_hello = worker
            return
        try:
            os.kill(worker.pid, signal.SIGKILL)
        except OSError:
            pass

    def end_group_actors(self, pg_id: bytes) -> None:
        """Its placement group was removed: the actor dies (as in Ray)."""
        for actor in list(self.actors.values()):
            if actor.group is None or actor.group[0] != pg_id or actor.state == "dead":
                continue
            actor.killed = True
            self._kill_process(actor)
            actor.holding = False  # the bundle's resources go back with the group
            self._die(
                actor,
                self._died_payload(actor, _GROUP_REMOVED),
            )

    # ================================================================ lookup

    def end_job(self, job_id: str) -> None:
        """A driver's job ended: its non-detached actors die, as in Ray."""
        for actor in [a for a in self.actors.values() if a.job == job_id]:
            if actor.spec.detached or actor.state == "dead":
                continue
            actor.killed = True
            self._kill_process(actor)
            self._die(
                actor,
                self._died_payload(
                    actor,
                    "The actor is dead because its owner has died: the driver of its job "
                    f"(job {job_id}) disconnected.",
                ),
            )

    def on_get_actor(self, conn: Conn, msg: P.GetActor) -> None:
        actor_id = self.names.get((msg.namespace, msg.name))
        if actor_id is None:
            conn.send(P.ActorReply(req_id=msg.req_id, actor_id=b"", meta=b"", error="missing"))
            return
        conn.send(
            P.ActorReply(
                req_id=msg.req_id, actor_id=actor_id, meta=self.actors[actor_id].spec.meta, error=""
            )
        )

    def list_named(self, namespace: str, all_namespaces: bool) -> list[Any]:
        if all_namespaces:
            return [{"name": n, "namespace": ns} for (ns, n) in self.names]
        return [n for (ns, n) in self.names if ns == namespace]

    # ================================================================ errors

    def _died_payload(self, actor: ActorRecord, reason: str) -> bytes:
        spec = actor.spec
        name_line = f"\tname: {spec.name}\n" if spec.name else ""  # as Ray, for named actors
        text = (
            "The actor died unexpectedly before finishing this task.\n"
            f"\tclass_name: {spec.class_name}\n"
            f"\tactor_id: {actor.actor_id.hex()}\n"
            f"\tpid: {actor.pid}\n"
            f"{name_line}"
            f"\tnamespace: {spec.namespace}\n"
            "\tip: 127.0.0.1\n"
            f"{reason}"
        )
        return ser.dumps_function(exc.ActorDiedError(actor.actor_id.hex(), text))

    def _unknown_actor_payload(self, actor_id: bytes) -> bytes:
        return ser.dumps_function(
            exc.ActorDiedError(
                actor_id.hex(),
                f"The actor {actor_id.hex()} is dead or unknown: no record of it is left. "
                f"Either it died and its record was dropped (asyncray remembers the "
                f"{self.dead_kept} most recent dead actors; raise "
                f"_system_config['{retention.DEAD_ACTORS_KEY}'] to keep more), or it was "
                "never created in this session (actor handles are not valid across "
                "sessions).",
            )
        )
