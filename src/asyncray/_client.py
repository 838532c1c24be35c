"""Clients: how the public API reaches the runtime from wherever it runs.

The public API never touches runtime state; it calls the current client,
which sends the runtime the same ``protocol`` messages in every process:

* ``DriverClient`` — in the driver. Messages are handed to the ``Runtime`` on
  its loop as Python objects, batched: many ``.remote()`` calls from any
  number of threads cost one loop wake-up. Replies come back through
  ``DriverConn.send`` on the loop thread and complete the caller's waiter:
  a lock for a blocking call, a future on the caller's own event loop for
  ``await`` (one ``call_soon_threadsafe`` per loop per batch), or a callback.
* ``WorkerClient`` — in a child. Messages go over the child's socket; any
  thread may send, and whichever thread needs a reply reads the socket for
  everyone (leader/follower), routing replies by ``req_id`` and everything
  else to the inbound queue the worker loop consumes. An async actor's
  event loop reads the socket itself whenever no blocked thread leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import os
import select
import socket
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from . import exceptions as exc
from ._wakeups import RuntimeWakeups
from ._wire import protocol as P
from ._wire import refs, shm
from ._wire import serialization as ser

# Releases are sent in batches of at least this many ids (or with the next
# message): one ReleaseObjects per batch instead of one per dropped ref.
RELEASE_BATCH = 512

_REPLY_TYPES = (
    P.ObjectsReply,
    P.WaitReply,
    P.StateReply,
    P.ActorReply,
    P.SegmentReply,
    P.QueueReply,
)
# Values up to this size are kept in the owner's in-process store, so getting
# them needs no round trip (Ray's max_direct_call_object_size).
LOCAL_VALUE_LIMIT = 100 * 1024

# A child whose last wait for a message ended within this long polls its
# socket for up to this long before it blocks again. Waking a process that
# sleeps costs 30-40 us on a VM (its idle vCPU halts), a fifth of a
# synchronous task's round trip; while calls arrive back to back the poll
# catches the next one awake. A child whose messages stop sleeps at once, so
# an idle pool costs no CPU.
SPIN_S = 300e-6
# After a poll in vain, none for this long: messages come in bursts with
# longer gaps (a driver busy on the GIL), and polling through those gaps only
# takes CPU from the processes doing the work.
SPIN_BACKOFF_S = 20e-3

# Which children may poll now: every core but one (pollers that took the
# driver's core too would starve the runtime thread of CPU). None: nobody.
_poll_slots: _PollSlots | None = None


class _PollSlots:
    """Slots a child holds while it polls, as record locks on a file the zygote made.

    The kernel drops a process's record locks when it dies, so a child
    killed while polling (``kill`` of an idle actor) gives its slot back.
    """

    def __init__(self, count: int) -> None:
        # Unlinked at once; open for the zygote's life, inherited by its children.
        self._file = tempfile.TemporaryFile()  # noqa: SIM115
        self._count = count

    def take(self) -> int:
        """A free slot's number, held by this process, or -1."""
        fd = self._file.fileno()
        for slot in range(self._count):
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, slot)
            except OSError:
                continue
            return slot
        return -1

    def give_back(self, slot: int) -> None:
        fcntl.lockf(self._file.fileno(), fcntl.LOCK_UN, 1, slot)

    def close(self) -> None:
        self._file.close()


def allow_pollers(count: int) -> None:
    """In the zygote: let up to ``count`` of its children poll at once."""
    global _poll_slots
    try:
        _poll_slots = _PollSlots(count) if count > 0 else None
    except OSError:  # no temporary file: children just never poll
        _poll_slots = None


class ClientBase:
    """What every client provides to the public API."""

    is_driver = False

    def __init__(self) -> None:
        # Ids are a per-process random prefix and a counter: unique without
        # a round trip, 28 bytes like Ray's (56 hex characters).
        self._prefix = os.urandom(12)
        self._counter = itertools.count(1)
        self._req_ids = itertools.count(1)
        self._registered: set[bytes] = set()
        self._released: list[bytes] = []
        # The owner's in-process store (as Ray's): serialized small values this
        # process put or already fetched. Objects are immutable once sealed, so
        # a hit needs no round trip to the runtime.
        self.local_values: dict[bytes, bytes] = {}

    # ------------------------------------------------------------ ids

    def new_task_id(self) -> bytes:
        return self._prefix + next(self._counter).to_bytes(12, "little")

    def new_object_id(self) -> bytes:
        return self.new_task_id() + b"\x00\x00\x00\x00"

    # ------------------------------------------------------------ sending

    def post(self, msg: Any) -> None:
        raise NotImplementedError

    def ensure_function(self, func_id: bytes, blob: Callable[[], bytes]) -> None:
        """Send a function's definition before its first task (once per client)."""
        if func_id not in self._registered:
            self.post(P.RegisterFunction(func_id, blob()))
            self._registered.add(func_id)

    def release(self, object_id: bytes) -> None:
        """Give back a unit (``ObjectRef.__del__`` does the same inline)."""
        released = self._released
        released.append(object_id)
        if len(released) >= RELEASE_BATCH:
            self.flush_releases()

    def flush_releases(self) -> None:
        released = self._take_releases()
        if released:
            self.post(P.ReleaseObjects(released))

    def _take_releases(self) -> list[bytes]:
        """The ids released since the last call; their cached values are dropped too."""
        released, self._released = self._released, []
        local = self.local_values
        if local:
            pop = local.pop
            for oid in released:
                pop(oid, None)
        return released

    # ------------------------------------------------------------ requests

    def request(self, msg: Any) -> Any:
        """Send a request and block until its reply."""
        raise NotImplementedError

    async def request_async(self, msg: Any) -> Any:
        """Send a request and await its reply on the running loop."""
        raise NotImplementedError

    def request_callback(self, msg: Any, callback: Callable[[Any], None]) -> None:
        """Send a request; ``callback(reply)`` runs on some internal thread."""
        raise NotImplementedError

    def next_req_id(self) -> int:
        return next(self._req_ids)

    def query(self, what: str) -> Any:
        reply = self.request(P.QueryState(self.next_req_id(), what))
        return msgspec.msgpack.decode(reply.value)

    def query_arg(self, what: str, arg: str) -> Any:
        reply = self.request(P.QueryState(self.next_req_id(), what, arg))
        return msgspec.msgpack.decode(reply.value)

    @property
    def local_queues(self) -> Any:
        """The runtime's queue registry if the runtime runs in this process, else None."""
        return None


def decode_objects(reply: P.ObjectsReply) -> list[Any]:
    """Values of a get reply, raising the first error in request order."""
    errors = reply.errors
    values = reply.values
    if True in errors or reply.timed_out:
        for data in values:
            ser.discard(data)  # never loaded: give back the units of refs inside
        for data, is_error in zip(values, errors):
            if is_error and data is not None:
                raise ser.loads_error(data)
        raise exc.GetTimeoutError("Get timed out: some object(s) not ready.")
    out = []
    try:
        for v in values:
            out.append(ser.loads(v))  # type: ignore[arg-type]
    except Exception as e:
        for v in values[len(out) + 1 :]:
            ser.discard(v)
        raise exc.RaySystemError(f"Failed to deserialize an object: {type(e).__name__}: {e}") from e
    return out


# ==================================================================== driver

# A sync call whose reply takes longer than this makes the runtime thread a
# normal (preempting) thread until the reply comes (see _wakeups.py). Short
# calls never switch: changing a running thread's policy costs it a
# reschedule (sync calls -6% when every call switched). Measured on the
# 2-core VM: a first wait of 1 ms made sync calls ~10% slower, 10 ms did not.
QUICK_REPLY_S = 0.01


class _SyncWaiter:
    __slots__ = ("lock", "reply")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.reply: Any = None


class _AsyncWaiter:
    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
        self.loop = loop
        self.future = future


class _CallbackWaiter:
    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[Any], None]) -> None:
        self.callback = callback


def _resolve_futures(items: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, reply in items:
        if not future.done():
            future.set_result(reply)


class DriverConn:
    """The runtime's view of the embedded driver: replies complete waiters in-process."""

    worker = None

    def __init__(self, client: DriverClient) -> None:
        self.client = client
        self.requests: dict[int, Any] = {}
        self.local_values = client.local_values
        # The driver's units are not tracked per process: it outlives the runtime.
        self.units = None

    def deliver(self, object_id: bytes, data: bytes) -> None:
        """A small result of a task this driver owns: keep it in the owner's store (as Ray does)."""
        # Not a value with refs inside: each load of it needs units the runtime grants.
        if len(data) <= LOCAL_VALUE_LIMIT and data[:7] != refs.MARKER:
            self.local_values[object_id] = data

    def forget(self, object_ids: list[bytes]) -> None:
        """Released ids: drop anything delivered after the driver dropped its ref."""
        pop = self.local_values.pop
        for oid in object_ids:
            pop(oid, None)

    def send(self, msg: Any) -> None:
        waiter = self.client.waiters.pop(msg.req_id, None)
        if waiter is None:
            return
        kind = type(waiter)
        if kind is _SyncWaiter:
            waiter.reply = msg
            waiter.lock.release()
        elif kind is _AsyncWaiter:
            self.client.batch_async(waiter, msg)
        else:
            waiter.callback(msg)


class DriverClient(ClientBase):
    """The embedded driver's client; the runtime runs on ``loop`` in ``thread``."""

    is_driver = True

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        super().__init__()
        self.loop = loop
        self.thread = thread
        self.runtime: Any = None
        self.conn = DriverConn(self)
        self.wakeups = RuntimeWakeups()
        self.waiters: dict[int, Any] = {}
        self._inbox: deque[Any] = deque()
        self._wake_scheduled = False
        self._async_batch: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        self._async_flush_scheduled = False
        self.closed = False

    # ------------------------------------------------------------ to the loop

    def post(self, msg: Any) -> None:
        self._inbox.append(msg)
        if not self._wake_scheduled:
            self._wake()

    def _wake(self) -> None:
        # The flag is cleared by ``drain`` *before* it empties the inbox, and
        # producers append *before* they test it, so no message is stranded.
        self._wake_scheduled = True
        try:
            self.loop.call_soon_threadsafe(self.drain)
        except RuntimeError:  # the loop is closed: asyncray was shut down
            raise exc.RaySystemError("asyncray has been shut down; call asyncray.init() again.")

    def drain(self) -> None:
        """On the loop: hand every queued message to the runtime."""
        self._wake_scheduled = False
        inbox = self._inbox
        runtime = self.runtime
        handle = runtime.handle
        conn = self.conn
        runtime.begin_batch()
        try:
            while inbox:
                handle(conn, inbox.popleft())
        finally:
            runtime.end_batch()
        # Releases go last: one must never overtake a message posted before it
        # (a submission that uses the object). Late is always safe: it only
        # keeps an object a little longer.
        if self._released:
            handle(conn, P.ReleaseObjects(self._take_releases()))

    # ------------------------------------------------------------ requests

    def request(self, msg: Any) -> Any:
        waiter = _SyncWaiter()
        self.waiters[msg.req_id] = waiter
        self.post(msg)
        lock = waiter.lock
        if not lock.acquire(timeout=QUICK_REPLY_S):
            self._wait_long(lock)
        return waiter.reply

    def _wait_long(self, lock: threading.Lock) -> None:
        """Block for a reply that did not come at once; the runtime may preempt meanwhile."""
        wakeups = self.wakeups
        wakeups.driver_blocks()
        try:
            # Wake now and then to notice a runtime that died instead of hanging.
            while not lock.acquire(timeout=1.0):
                if not self.thread.is_alive():
                    raise exc.RaySystemError("the asyncray runtime thread has stopped")
        finally:
            wakeups.driver_resumes()

    async def request_async(self, msg: Any) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.waiters[msg.req_id] = _AsyncWaiter(loop, future)
        self.post(msg)
        try:
            return await future
        except asyncio.CancelledError:
            self.waiters.pop(msg.req_id, None)
            if not self.closed:
                self.post(P.CancelWaiter(msg.req_id))
            raise

    def request_callback(self, msg: Any, callback: Callable[[Any], None]) -> None:
        self.waiters[msg.req_id] = _CallbackWaiter(callback)
        self.post(msg)

    def batch_async(self, waiter: _AsyncWaiter, reply: Any) -> None:
        """On the loop: queue a reply for a user loop; one wake-up per loop per tick."""
        batch = self._async_batch.get(waiter.loop)
        if batch is None:
            batch = self._async_batch[waiter.loop] = []
        batch.append((waiter.future, reply))
        if not self._async_flush_scheduled:
            self._async_flush_scheduled = True
            self.loop.call_soon(self._flush_async)

    def _flush_async(self) -> None:
        self._async_flush_scheduled = False
        batches, self._async_batch = self._async_batch, {}
        for loop, items in batches.items():
            try:
                loop.call_soon_threadsafe(_resolve_futures, items)
            except RuntimeError:
                pass  # that loop has been closed; nobody is waiting any more

    def fail_all_waiters(self) -> None:
        """At shutdown: wake every blocked caller with an error instead of leaving it hanging."""
        self.closed = True
        error = ser.dumps_function(
            exc.RaySystemError("asyncray was shut down while this call was waiting")
        )
        for req_id in list(self.waiters):
            waiter = self.waiters.pop(req_id, None)
            if waiter is None:
                continue
            reply = P.ObjectsReply(req_id, [error], [True], False)
            if type(waiter) is _SyncWaiter:
                waiter.reply = reply
                waiter.lock.release()
            elif type(waiter) is _AsyncWaiter:
                try:
                    waiter.loop.call_soon_threadsafe(_resolve_futures, [(waiter.future, reply)])
                except RuntimeError:
                    pass

    @property
    def local_queues(self) -> Any:
        """The runtime's ``QueueManager``: ``util.queue`` calls its queues directly (no message)."""
        return self.runtime.queues


# ==================================================================== worker


class SocketChannel:
    """A child's blocking socket to the runtime, shared by its threads.

    Sending takes a lock. Receiving is leader/follower: the first thread that
    needs a message reads frames and routes them; the others wait on the
    condition until their reply (or an inbound message) has been routed.
    """

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        self.sock = sock
        # Frames waiting to be written, and the lock of whoever writes them.
        # A __del__ that posts inside a send on this thread only queues.
        self._outbox: deque[bytes] = deque()
        self._send_lock = threading.Lock()
        self._cv = threading.Condition(threading.Lock())
        self._reading = False
        self._eof = False
        self._replies: dict[int, Any] = {}
        self.inbound: deque[Any] = deque()
        self._buf = bytearray()
        # Backpressure: items of each stream the consumer has taken.
        self.credits: dict[bytes, int] = {}
        # Actor calls cancelled while running here (``is_canceled()``).
        self.cancelled: set[bytes] = set()
        # Replies awaited on the reader loop (async actors), by req_id.
        self._async_waiters: dict[int, asyncio.Future[Any]] = {}
        self.reader_loop: asyncio.AbstractEventLoop | None = None
        self._on_inbound: Callable[[list[Any]], None] = lambda msgs: None
        # The loop stopped watching the socket while a thread leads.
        self._loop_reader_paused = False
        # Poll before blocking (SPIN_S); only where the thread that reads
        # runs the calls (a task worker, a plain actor, an async actor's
        # loop): a poller beside the threads that run them would contend
        # with them for the GIL.
        self.spin = False
        self._recent = False  # the last message came within SPIN_S
        self._calm_from = 0.0  # no polling before this time (see SPIN_BACKOFF_S)
        self._last_inbound = 0.0  # when the reader loop last read a message
        self._poll_slot = -1  # the slot the reader loop holds while it polls
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)

    def send(self, msg: Any) -> None:
        self._outbox.append(P.frame(msg))
        self._flush_outbox()

    def send_many(self, msgs: list[Any]) -> None:
        self._outbox.append(P.frame_many(msgs))
        self._flush_outbox()

    def _flush_outbox(self) -> None:
        """Write queued frames; a thread that finds another writing leaves its frame to it.

        Threads of a threaded actor reply at once: one write carries every
        reply queued meanwhile (fewer syscalls, fewer GIL hand-offs), in
        the order they were queued. Whoever writes looks again after letting
        go of the lock, so no frame is left behind.
        """
        outbox = self._outbox
        lock = self._send_lock
        while outbox and lock.acquire(blocking=False):
            try:
                self._write_queued()
            finally:
                lock.release()

    def drain_outbox(self) -> None:
        """Block until every queued frame is written: call before the process exits."""
        with contextlib.suppress(OSError), self._send_lock:  # waits for a write in progress
            self._write_queued()

    def _write_queued(self) -> None:
        """Holding the send lock: write the outbox, one ``sendall`` per batch queued."""
        outbox = self._outbox
        while outbox:
            frames = [outbox.popleft() for _ in range(len(outbox))]
            self.sock.sendall(frames[0] if len(frames) == 1 else b"".join(frames))

    def _read_frames(self) -> list[Any]:
        """Block until at least one whole frame is buffered; decode all whole frames."""
        buf = self._buf
        while True:
            if len(buf) >= 4:
                (n,) = P.HEADER.unpack_from(buf)
                if len(buf) >= 4 + n:
                    break
            # A thread blocked beside a reader loop does not poll (the loop does).
            polls = self.spin and self.reader_loop is None
            chunk = self._recv() if polls else self.sock.recv(1 << 18)
            if not chunk:
                raise ConnectionError("the asyncray runtime closed the connection")
            buf += chunk
        return self._decode_frames()

    def _decode_frames(self) -> list[Any]:
        """Every whole frame buffered, decoded; a partial one stays buffered."""
        buf = self._buf
        msgs = []
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            (n,) = P.HEADER.unpack_from(buf, pos)
            if end - pos - 4 < n:
                break
            msgs.append(P.decoder.decode(memoryview(buf)[pos + 4 : pos + 4 + n]))
            pos += 4 + n
        del buf[:pos]
        return msgs

    def _recv(self) -> bytes:
        """``recv``, polling first while messages arrive back to back (see SPIN_S)."""
        ready = self._poller.poll
        if ready(0):
            return self.sock.recv(1 << 18)
        # Only a wait that was needed teaches us anything: data already
        # buffered says nothing about how long the next gap will be.
        clock = time.perf_counter
        start = clock()
        slot = self._take_poll_slot(start) if self._recent else -1
        if slot >= 0:
            # poll(), not a non-blocking recv: a failing recv builds an OSError
            # (with its strerror text) on every turn of the loop.
            deadline = start + SPIN_S
            yield_cpu = os.sched_yield
            try:
                while not ready(0):
                    if clock() >= deadline:
                        self._polled_in_vain(deadline)
                        break
                    yield_cpu()
            finally:
                _poll_slots.give_back(slot)  # type: ignore[union-attr]
        chunk = self.sock.recv(1 << 18)
        self._recent = clock() - start < SPIN_S
        return chunk

    def _take_poll_slot(self, now: float) -> int:
        """A slot to poll in (see _PollSlots), or -1: no slot free, or backing off."""
        if now < self._calm_from or _poll_slots is None:
            return -1
        return _poll_slots.take()

    def _polled_in_vain(self, deadline: float) -> None:
        """No message by ``deadline``: no polling for SPIN_BACKOFF_S."""
        self._calm_from = deadline + SPIN_BACKOFF_S

    def _wait_for(self, check: Callable[[], Any]) -> Any:
        cv = self._cv
        with cv:
            while True:
                found = check()
                if found is not None:
                    return found
                if self._eof:
                    raise ConnectionError("the asyncray runtime closed the connection")
                if self._reading:
                    cv.wait()
                    continue
                self._reading = True
                cv.release()
                try:
                    msgs = self._read_frames()
                except BaseException as e:
                    cv.acquire()
                    self._reading = False
                    if not isinstance(e, KeyboardInterrupt):
                        self._eof = True
                        if self.reader_loop is not None:
                            self._to_loop([None], [])
                    elif self._loop_reader_paused:
                        self._to_loop([], [])  # the loop reads again
                    cv.notify_all()
                    raise
                cv.acquire()
                self._reading = False
                if self.reader_loop is not None:
                    self._route_to_loop(msgs)
                    cv.notify_all()
                    continue
                for msg in msgs:
                    kind = type(msg)
                    if kind in _REPLY_TYPES:
                        self._replies[msg.req_id] = msg
                    elif kind is P.RevokeTasks:
                        self._revoke(msg.task_ids)
                    elif kind is P.DropMappings:
                        shm.forget_writable(msg.names)
                    elif kind is P.StreamCredit:
                        self._credit(msg)
                    elif kind is P.CancelActorCall:
                        self._cancel_call(msg.task_id)
                    else:
                        self.inbound.append(msg)
                cv.notify_all()

    def start_loop_reader(
        self, on_inbound: Callable[[list[Any]], None], loop: asyncio.AbstractEventLoop
    ) -> None:
        """Read the socket on ``loop`` (async actors); call on the loop's thread.

        The loop reads whenever the socket is readable and no thread leads;
        a thread blocked in a call (``get`` in a sync method, or on the loop
        itself) leads as usual and hands the loop what it read. One wake-up
        per message, where a reader thread cost two (socket, then loop).
        """
        with self._cv:
            self.reader_loop = loop
            self._on_inbound = on_inbound
            # Messages a leader routed before the loop read (during __init__).
            queued, self.inbound = list(self.inbound), deque()
        if queued:
            loop.call_soon(on_inbound, queued)
        self._watch()

    def _watch(self) -> None:
        """On the reader loop: read when the socket is readable."""
        self.reader_loop.add_reader(self.sock.fileno(), self._on_readable)  # type: ignore[union-attr]
        # add_reader made the socket non-blocking; other threads' blocking
        # recv and sendall need it blocking (the loop reads with MSG_DONTWAIT).
        self.sock.setblocking(True)

    def _on_readable(self) -> None:
        """On the reader loop: read what arrived and route it."""
        loop = self.reader_loop
        assert loop is not None
        with self._cv:
            if self._reading:
                # A blocked thread leads and will route our messages; stop
                # watching (the socket stays readable until it reads) until
                # it hands the socket back (_to_loop).
                loop.remove_reader(self.sock.fileno())
                self._loop_reader_paused = True
                return
            try:
                chunk = self.sock.recv(1 << 18, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self._eof = True
                self._cv.notify_all()
                loop.remove_reader(self.sock.fileno())
                inbound: list[Any] = [None]
                resolved: list[tuple[asyncio.Future[Any], Any]] = []
            else:
                self._buf += chunk
                inbound, resolved = self._route(self._decode_frames())
                self._cv.notify_all()
        _deliver_to_loop(self._on_inbound, inbound, resolved)
        if self.spin and chunk:
            self._last_inbound = time.perf_counter()
            if self._poll_slot < 0:
                self._start_loop_poll()

    def _start_loop_poll(self) -> None:
        """On the reader loop: keep it awake for SPIN_S after a message (see SPIN_S).

        A chain of callbacks makes the loop poll instead of sleeping, like a
        task worker's ``_recv``, under the same slots and backoff.
        """
        self._poll_slot = self._take_poll_slot(self._last_inbound)
        if self._poll_slot >= 0:
            self.reader_loop.call_soon(self._loop_poll)  # type: ignore[union-attr]

    def _loop_poll(self) -> None:
        if self._poller.poll(0) and not self._eof:
            self._stop_loop_poll()
            self._on_readable()
        elif time.perf_counter() >= self._last_inbound + SPIN_S or self._eof:
            self._stop_loop_poll()
            self._polled_in_vain(self._last_inbound + SPIN_S)
        else:
            os.sched_yield()
            self.reader_loop.call_soon(self._loop_poll)  # type: ignore[union-attr]

    def _stop_loop_poll(self) -> None:
        _poll_slots.give_back(self._poll_slot)  # type: ignore[union-attr]
        self._poll_slot = -1

    def _route_to_loop(self, msgs: list[Any]) -> None:
        """A leader read ``msgs`` for a loop channel: route them, hand the loop its share."""
        inbound, resolved = self._route(msgs)
        if inbound or resolved or self._loop_reader_paused:
            self._to_loop(inbound, resolved)

    def _to_loop(self, inbound: list[Any], resolved: list[Any]) -> None:
        """From any thread, under the lock: deliver to the loop and let it read again."""
        loop = self.reader_loop
        assert loop is not None
        resume = self._loop_reader_paused and not self._eof
        self._loop_reader_paused = False
        try:
            loop.call_soon_threadsafe(self._on_loop, inbound, resolved, resume)
        except RuntimeError:
            pass  # the loop is closed: the actor is exiting

    def _on_loop(self, inbound: list[Any], resolved: list[Any], resume: bool) -> None:
        if resume:
            self._watch()
        _deliver_to_loop(self._on_inbound, inbound, resolved)

    def _route(self, msgs: list[Any]) -> tuple[list[Any], list[Any]]:
        """Under the lock: route ``msgs`` for a loop channel.

        Returns the loop's messages and the futures its replies resolve.
        """
        inbound: list[Any] = []
        resolved: list[tuple[asyncio.Future[Any], Any]] = []
        for msg in msgs:
            kind = type(msg)
            if kind in _REPLY_TYPES:
                future = self._async_waiters.pop(msg.req_id, None)
                if future is not None:
                    resolved.append((future, msg))
                else:
                    self._replies[msg.req_id] = msg
            elif kind is P.RevokeTasks:
                continue
            elif kind is P.DropMappings:
                shm.forget_writable(msg.names)
            elif kind is P.StreamCredit:
                self._credit(msg)
                inbound.append(msg)  # async producers wait on the loop
            else:
                if kind is P.CancelActorCall:
                    self.cancelled.add(msg.task_id)
                inbound.append(msg)
        return inbound, resolved

    def register_async(self, req_id: int, future: asyncio.Future[Any]) -> None:
        with self._cv:
            self._async_waiters[req_id] = future

    def _credit(self, msg: P.StreamCredit) -> None:
        if msg.consumed > self.credits.get(msg.task_id, 0):
            self.credits[msg.task_id] = msg.consumed

    def wait_credit(self, task_id: bytes, consumed: int) -> None:
        """Block until the consumer has taken at least ``consumed`` items (backpressure)."""
        credits = self.credits
        self._wait_for(lambda: True if credits.get(task_id, 0) >= consumed else None)

    def _cancel_call(self, task_id: bytes) -> None:
        """A cancelled actor call still queued here never runs; a running one is flagged."""
        for msg in self.inbound:
            if type(msg) is P.ExecuteActorCall and msg.task_id == task_id:
                self.inbound.remove(msg)
                self.send(P.TaskDone(task_id, [], True, cancelled=True))
                return
        self.cancelled.add(task_id)

    def _revoke(self, task_ids: list[bytes]) -> None:
        revoked = set(task_ids)
        kept = []
        for m in self.inbound:
            if type(m) is P.ExecuteTask and m.task_id in revoked:
                ser.discard_arguments(m)  # never run here
            else:
                kept.append(m)
        self.inbound.clear()
        self.inbound.extend(kept)

    def next_inbound(self) -> Any:
        inbound = self.inbound
        return self._wait_for(lambda: inbound.popleft() if inbound else None)

    def wait_reply(self, req_id: int) -> Any:
        replies = self._replies
        return self._wait_for(lambda: replies.pop(req_id, None))


def _deliver_to_loop(
    on_inbound: Callable[[list[Any]], None],
    inbound: list[Any],
    resolved: list[tuple[asyncio.Future[Any], Any]],
) -> None:
    _resolve_futures(resolved)
    if inbound:
        on_inbound(inbound)


class WorkerClient(ClientBase):
    """The client inside a task worker or actor process."""

    def __init__(self, channel: SocketChannel) -> None:
        super().__init__()
        self.channel = channel

    def post(self, msg: Any) -> None:
        if self._released or shm.mapped_log or shm.unmapped_log:
            # Views opened go before msg (which may let their object go),
            # releases and views closed after it (see DriverClient.drain).
            mapped, unmapped = shm.take_view_reports()
            msgs = [P.SegmentMaps(mapped, [])] if mapped else []
            msgs.append(msg)
            if self._released:
                msgs.append(P.ReleaseObjects(self._take_releases()))
            if unmapped:
                msgs.append(P.SegmentMaps([], unmapped))
            self.channel.send_many(msgs)
        else:
            self.channel.send(msg)

    def request(self, msg: Any) -> Any:
        from ._worker.interrupts import protocol_io

        with protocol_io():
            self.post(msg)
            return self.channel.wait_reply(msg.req_id)

    async def request_async(self, msg: Any) -> Any:
        loop = asyncio.get_running_loop()
        channel = self.channel
        if loop is channel.reader_loop:
            future = loop.create_future()
            channel.register_async(msg.req_id, future)
            self.post(msg)
            return await future
        # A task running its own event loop: read the reply on a helper
        # thread so this loop keeps running meanwhile.
        return await loop.run_in_executor(None, self.request, msg)

    def request_callback(self, msg: Any, callback: Callable[[Any], None]) -> None:
        def run() -> None:
            callback(self.request(msg))

        threading.Thread(target=run, daemon=True, name="asyncray-future").start()


# ==================================================================== the current client

_current: ClientBase | None = None


def current() -> ClientBase | None:
    return _current


def set_current(client: ClientBase | None) -> None:
    global _current
    _current = client
    # Large objects ask this process's runtime for room before they are written.
    shm.reserver = None if client is None else _reserve_segment
    shm.abandoner = None if client is None else _abandon_segment
    shm.driver_view_closed = _driver_view_closed if client and client.is_driver else None


def _reserve_segment(size: int) -> tuple[str, bool]:
    client = _current
    assert client is not None
    # Objects dropped just before (a loop of large puts) free their room first.
    client.flush_releases()
    reply = client.request(P.ReserveSegment(client.next_req_id(), size))
    if reply.error:
        raise exc.ObjectStoreFullError(reply.error)
    return reply.name, reply.recycled


def _driver_view_closed(name: str) -> None:
    client = _current
    if client is None or not client.is_driver:
        return
    # Only a segment the runtime retired waits for this (a read of its dict,
    # safe from any thread): most closed views cost no message.
    runtime = getattr(client, "runtime", None)
    if runtime is not None and name in runtime.store.retired:
        with contextlib.suppress(Exception):  # at shutdown there is nobody to tell
            client.post(P.SegmentMaps([], [name]))


def _abandon_segment(name: str) -> None:
    client = _current
    if client is not None:
        client.post(P.DropReservation(name))
