"""Queues on the runtime side: the items of each ``util.queue.Queue`` and its blocked callers.

A queue is a ``QueueState``: a deque of item payloads (pickled by the
caller, never unpickled here), a ``maxsize``, and the callers blocked on it.
It is the one piece of runtime state shared with another thread. In the
embedded driver, ``Queue`` calls the state directly under its lock (a few
microseconds, no loop wake-up): a queue call is otherwise a round trip to
the loop, and queues are the hot path of producer/consumer programs.
Everything else reaches the state by message::

    driver thread ── put / get / batch / size, under state.lock ───────┐
                                                                        ▼
    task, actor ── QueueOp ─► QueueManager.on_op ──────────────► QueueState
    (or driver) ◄─ QueueReply ─┘   (loop)           items, getters, putters
                                                            │
              would block and may wait: a QueueWaiter parks ┘

A call that would block and may wait becomes a ``QueueWaiter``, parked on its
connection like a blocked ``get``: a task lends its CPU meanwhile, and the
waiter ends when its timeout passes, its task is cancelled, its process dies
(``Runtime._finish`` calls ``detach``) or the queue is shut down. Waiters
are created, served and ended only on the loop, so no item is ever handed
to a caller that already gave up. The driver thread never touches them: when
its call may serve one (an item added while getters wait, room made while
putters wait) it schedules ``serve`` with ``call_soon_threadsafe``, the only
extra cost it ever pays, and only while someone waits. No order among
blocked callers is promised (as in Ray).

A queue lives until it is shut down, its owning ``Queue`` is dropped without
having been pickled, or the runtime stops. Items that are never taken give
their shared-memory segments (large buffers) back to the store; an item's
taker does so once it has loaded the value.

Refs inside an item keep their objects alive while the item waits: when
such an item enters a queue, the manager takes one unit per ref (directly on
the loop, by ``HoldObjects`` from the driver thread) and keeps them in
*holder* refs. An item sent to a taker is granted like any payload and its
holders let go; the driver taking an item directly inherits the holders'
units instead (it cannot touch the object table from its thread).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Union

from .._wire import protocol as P
from .._wire import refs
from .._wire import serialization as ser
from .conn import Conn

if TYPE_CHECKING:
    from .runtime import Runtime

# ``QueueState.put``/``get`` with a waiter: it was parked (never on the wire).
PARKED = -1

_ABSENT = object()


class QueueWaiter:
    """A call blocked on a full or empty queue; parked on its connection like a blocked get."""

    __slots__ = ("conn", "done", "kind", "payload", "req_id", "state", "timer", "watch")

    def __init__(self, conn: Conn, req_id: int, state: QueueState, payload: bytes | None) -> None:
        self.conn = conn
        self.req_id = req_id
        self.state = state
        # The item a blocked put adds once there is room; None for a get.
        self.payload = payload
        # What Runtime._park/_finish expect of a parked request.
        self.kind = "queue"
        self.done = False
        self.timer: Any = None
        self.watch: Any = None


class QueueState:
    """One queue's items and blocked callers; every field is guarded by ``lock``.

    ``put``, ``get``, ``put_batch``, ``get_batch`` and ``size`` are safe from
    any thread. Waiters are added (``put``/``get`` given one) and removed only
    on the loop.
    """

    __slots__ = (
        "closed",
        "getters",
        "items",
        "lock",
        "maxsize",
        "putters",
        "serve_pending",
        "wake",
    )

    def __init__(self, maxsize: int, wake: Callable[[QueueState], None]) -> None:
        self.maxsize = max(maxsize, 0)  # 0: unbounded
        self.items: deque[bytes] = deque()
        self.lock = threading.Lock()
        self.getters: OrderedDict[QueueWaiter, None] = OrderedDict()
        self.putters: OrderedDict[QueueWaiter, None] = OrderedDict()
        self.closed = False
        # A ``serve`` is scheduled and has not run yet: one is enough.
        self.serve_pending = False
        # Schedules ``QueueManager.serve(self)`` on the loop, from any thread.
        self.wake = wake

    def put(self, payload: bytes, waiter: QueueWaiter | None = None) -> int:
        """Add an item: ``QUEUE_OK``, ``QUEUE_WOULD_BLOCK`` (full), ``QUEUE_CLOSED``, or
        ``PARKED`` if it was full and ``waiter`` now waits for room."""
        with self.lock:
            if self.closed:
                return P.QUEUE_CLOSED
            if 0 < self.maxsize <= len(self.items):
                if waiter is None:
                    return P.QUEUE_WOULD_BLOCK
                self.putters[waiter] = None
                return PARKED
            self.items.append(payload)
            wake = self._must_serve(self.getters)
        if wake:
            self.wake(self)
        return P.QUEUE_OK

    def get(self, waiter: QueueWaiter | None = None) -> Union[bytes, int]:
        """Take the oldest item (its payload), or ``QUEUE_WOULD_BLOCK`` (empty), ``QUEUE_CLOSED``,
        or ``PARKED`` if it was empty and ``waiter`` now waits for an item."""
        with self.lock:
            if self.closed:
                return P.QUEUE_CLOSED
            if not self.items:
                if waiter is None:
                    return P.QUEUE_WOULD_BLOCK
                self.getters[waiter] = None
                return PARKED
            item = self.items.popleft()
            wake = self._must_serve(self.putters)
        if wake:
            self.wake(self)
        return item

    def put_batch(self, payloads: list[bytes]) -> tuple[int, int]:
        """Add all items or none: (status, the size before)."""
        with self.lock:
            if self.closed:
                return P.QUEUE_CLOSED, 0
            size = len(self.items)
            if self.maxsize and size + len(payloads) > self.maxsize:
                return P.QUEUE_WOULD_BLOCK, size
            self.items.extend(payloads)
            wake = bool(payloads) and self._must_serve(self.getters)
        if wake:
            self.wake(self)
        return P.QUEUE_OK, size

    def get_batch(self, count: int) -> tuple[int, list[bytes], int]:
        """Take the ``count`` oldest items or none: (status, items, the size before)."""
        with self.lock:
            if self.closed:
                return P.QUEUE_CLOSED, [], 0
            items = self.items
            size = len(items)
            if count > size:
                return P.QUEUE_WOULD_BLOCK, [], size
            taken = [items.popleft() for _ in range(count)]
            wake = count > 0 and self._must_serve(self.putters)
        if wake:
            self.wake(self)
        return P.QUEUE_OK, taken, size

    def size(self) -> int:
        """The number of items, or -1 once the queue is shut down."""
        return -1 if self.closed else len(self.items)

    def _must_serve(self, waiters: OrderedDict[QueueWaiter, None]) -> bool:
        """Under the lock, after a change: whether to schedule a ``serve`` for ``waiters``."""
        if not waiters or self.serve_pending:
            return False
        self.serve_pending = True
        return True


class QueueManager:
    """The queue registry and handlers of the runtime (``runtime.queues``)."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.loop = runtime.loop
        # Guards ``queues``: the embedded driver creates queues from its own thread.
        self._lock = threading.Lock()
        self.queues: dict[bytes, QueueState] = {}
        # The ids of the refs inside queued items (one unit each held for them),
        # by ``id(payload)`` (guarded by ``_lock``; the payload lives as long
        # as its entry).
        self._held: dict[int, list[bytes]] = {}
        # Queues a connected driver made, and that driver's connection (loop only).
        self.made_by_driver: dict[bytes, Any] = {}
        self._ops: dict[int, Callable[[Any, P.QueueOp, QueueState], None]] = {
            P.QUEUE_PUT: self._put,
            P.QUEUE_GET: self._get,
            P.QUEUE_PUT_BATCH: self._put_batch,
            P.QUEUE_GET_BATCH: self._get_batch,
            P.QUEUE_SIZE: self._size,
        }

    # ================================================================ registry (any thread)

    def create(self, queue_id: bytes, maxsize: int) -> QueueState:
        state = QueueState(maxsize, self._wake)
        with self._lock:
            return self.queues.setdefault(queue_id, state)

    def get(self, queue_id: bytes) -> QueueState | None:
        return self.queues.get(queue_id)

    # ================================================================ refs in items

    def hold(self, payload: bytes) -> None:
        """On the loop: an item with refs enters a queue; keep the objects it names alive."""
        incref = self.rt.objects.incref
        for oid in self.record_holders(payload):
            incref(oid)

    def record_holders(self, payload: bytes) -> list[bytes]:
        """Any thread: record the refs inside an item entering a queue; returns their ids.

        On the loop ``hold`` takes their units; the driver's direct path takes
        them by ``HoldObjects`` (it cannot touch the object table from its
        thread), before any later release of them.
        """
        if payload[:7] != refs.MARKER:
            return []
        ids = refs.contained(payload)
        with self._lock:
            self._held[id(payload)] = ids
        return ids

    def let_go(self, payloads: list[bytes]) -> None:
        """On the loop: items leave the queue (given to a taker by message, or dropped)."""
        ids = self.forget_holders(payloads)
        if ids:
            self.rt.objects.release_many(ids)

    def forget_holders(self, payloads: list[bytes]) -> list[bytes]:
        """Any thread: items leave the queue; returns the ids whose units must be released."""
        if not self._held:
            return []
        released: list[bytes] = []
        with self._lock:
            for payload in payloads:
                released += self._held.pop(id(payload), ())
        return released

    def hand_over(self, payload: bytes) -> None:
        """Off the loop: the driver takes an item directly; the units pass to the refs it
        rebuilds (nothing is released)."""
        if self._held:
            with self._lock:
                self._held.pop(id(payload), None)

    def discard(self, payloads: list[bytes]) -> None:
        """On the loop: items nobody will take; let go of their objects and segments."""
        self.let_go(payloads)
        for payload in payloads:
            ser.abandon(payload)

    def give(self, conn: Conn, payloads: list[bytes]) -> None:
        """Items sent to ``conn``: its process gets units for their refs, the holders go."""
        for payload in payloads:
            if payload[:7] == refs.MARKER:
                self.rt.grant(conn, payload)
        self.let_go(payloads)

    def _wake(self, state: QueueState) -> None:
        try:
            self.loop.call_soon_threadsafe(self.serve, state)
        except RuntimeError:  # the loop is closed: the runtime has stopped
            pass

    # ================================================================ handlers (loop)

    def on_create(self, conn: Conn, msg: P.CreateQueue) -> None:
        self.create(msg.queue_id, msg.maxsize)
        if conn.worker is None:  # a driver connected to a head: its job's queues end with it
            self.made_by_driver[msg.queue_id] = conn

    def end_owner(self, conn: Any) -> None:
        """A connected driver's job ended: the queues it made are shut down."""
        for queue_id in [q for q, c in self.made_by_driver.items() if c is conn]:
            self.close(queue_id)

    def on_op(self, conn: Conn, msg: P.QueueOp) -> None:
        if msg.op == P.QUEUE_CLOSE:
            self.close(msg.queue_id)
            self._reply(conn, msg.req_id, P.QUEUE_OK)
            return
        state = self.queues.get(msg.queue_id)
        if state is None:
            self._reply(conn, msg.req_id, P.QUEUE_CLOSED)
            return
        self._ops[msg.op](conn, msg, state)

    def _put(self, conn: Conn, msg: P.QueueOp, state: QueueState) -> None:
        payload = msg.items[0]
        self.hold(payload)
        waiter = None if msg.timeout == 0 else QueueWaiter(conn, msg.req_id, state, payload)
        status = state.put(payload, waiter)
        if status == PARKED:
            self._park(waiter, msg.timeout)  # type: ignore[arg-type]
        else:
            if status != P.QUEUE_OK:
                self.discard([payload])
            self._reply(conn, msg.req_id, status)

    def _get(self, conn: Conn, msg: P.QueueOp, state: QueueState) -> None:
        waiter = None if msg.timeout == 0 else QueueWaiter(conn, msg.req_id, state, None)
        got = state.get(waiter)
        if type(got) is bytes:
            self.give(conn, [got])
            conn.send(P.QueueReply(req_id=msg.req_id, status=P.QUEUE_OK, items=[got], size=0))
        elif got == PARKED:
            self._park(waiter, msg.timeout)  # type: ignore[arg-type]
        else:
            self._reply(conn, msg.req_id, got)  # type: ignore[arg-type]

    def _put_batch(self, conn: Conn, msg: P.QueueOp, state: QueueState) -> None:
        for payload in msg.items:
            self.hold(payload)
        status, size = state.put_batch(msg.items)
        if status != P.QUEUE_OK:
            self.discard(msg.items)
        self._reply(conn, msg.req_id, status, size=size)

    def _get_batch(self, conn: Conn, msg: P.QueueOp, state: QueueState) -> None:
        status, items, size = state.get_batch(msg.count)
        if msg.req_id:
            self.give(conn, items)
            conn.send(P.QueueReply(req_id=msg.req_id, status=status, items=items, size=size))
        else:
            self.discard(items)

    def _size(self, conn: Conn, msg: P.QueueOp, state: QueueState) -> None:
        self._reply(conn, msg.req_id, P.QUEUE_OK, size=state.size())

    def _reply(self, conn: Conn, req_id: int, status: int, size: int = 0) -> None:
        if req_id:
            conn.send(P.QueueReply(req_id=req_id, status=status, items=[], size=size))

    # ================================================================ waiters (loop)

    def _park(self, waiter: QueueWaiter, timeout: float) -> None:
        self.rt._park(waiter, P.NO_TIMEOUT)  # type: ignore[arg-type]
        if timeout > 0:
            waiter.timer = self.loop.call_later(timeout, self.expire, waiter)
        elif timeout != P.NO_TIMEOUT:  # NaN or another negative (no client sends one): now
            waiter.timer = self.loop.call_later(0, self.expire, waiter)

    def serve(self, state: QueueState) -> None:
        """Hand items to blocked getters and room to blocked putters, oldest first."""
        served: list[tuple[QueueWaiter, list[bytes]]] = []
        with state.lock:
            state.serve_pending = False
            items = state.items
            getters = state.getters
            putters = state.putters
            while True:
                if getters and items:
                    waiter = getters.popitem(last=False)[0]
                    served.append((waiter, [items.popleft()]))
                elif putters and not 0 < state.maxsize <= len(items):
                    waiter = putters.popitem(last=False)[0]
                    items.append(waiter.payload)  # type: ignore[arg-type]
                    waiter.payload = None
                    served.append((waiter, []))
                else:
                    break
        for waiter, got in served:
            self.rt._finish(waiter)  # type: ignore[arg-type]
            self.give(waiter.conn, got)
            waiter.conn.send(
                P.QueueReply(req_id=waiter.req_id, status=P.QUEUE_OK, items=got, size=0)
            )

    def expire(self, waiter: QueueWaiter) -> None:
        """The waiter's timeout passed, or its task was cancelled: it gets "would block"."""
        if waiter.done:
            return
        self.rt._finish(waiter)  # type: ignore[arg-type]
        waiter.conn.send(
            P.QueueReply(req_id=waiter.req_id, status=P.QUEUE_WOULD_BLOCK, items=[], size=0)
        )

    def detach(self, waiter: QueueWaiter) -> None:
        """From ``Runtime._finish``: the waiter stops waiting (served, expired, cancelled, or
        its process died). An unserved put's item is dropped."""
        state = waiter.state
        with state.lock:
            state.getters.pop(waiter, None)
            unserved = state.putters.pop(waiter, _ABSENT) is not _ABSENT
        if unserved and waiter.payload is not None:
            self.discard([waiter.payload])
        waiter.payload = None

    # ================================================================ shutdown

    def close(self, queue_id: bytes) -> None:
        """Shut a queue down: its blocked callers get ``QUEUE_CLOSED``, its items are dropped."""
        with self._lock:
            state = self.queues.pop(queue_id, None)
        self.made_by_driver.pop(queue_id, None)
        if state is None:
            return
        waiters, dropped = _close(state)
        self.discard(dropped)
        for waiter in waiters:
            self.rt._finish(waiter)  # type: ignore[arg-type]
            waiter.conn.send(
                P.QueueReply(req_id=waiter.req_id, status=P.QUEUE_CLOSED, items=[], size=0)
            )

    def stop(self) -> None:
        """The runtime is stopping: every queue is shut down (children are told to exit)."""
        with self._lock:
            states = list(self.queues.values())
            self.queues.clear()
        for state in states:
            _close(state)
        with self._lock:
            self._held.clear()


def _close(state: QueueState) -> tuple[list[QueueWaiter], list[bytes]]:
    """Mark a queue closed; return its waiters and the payloads it held."""
    with state.lock:
        state.closed = True
        waiters = [*state.getters, *state.putters]
        dropped = [*state.items]
        dropped += [w.payload for w in state.putters if w.payload is not None]
        state.getters.clear()
        state.putters.clear()
        state.items.clear()
    for waiter in waiters:
        waiter.payload = None
    return waiters, dropped
