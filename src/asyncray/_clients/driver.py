"""The embedded driver's client: the runtime runs in this process, on its own thread.

Messages are handed to the ``Runtime`` on its loop as Python objects,
batched: many ``.remote()`` calls from any number of threads cost one loop
wake-up. Replies come back through ``DriverConn.send`` on the loop thread
and complete the caller's waiter: a lock for a blocking call, a future on
the caller's own event loop for ``await`` (one ``call_soon_threadsafe`` per
loop per batch), or a callback.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import exceptions as exc
from .._wire import protocol as P
from .._wire import refs, shm
from .._wire.channel import discard_reply, resolve_futures
from .base import (
    LOCAL_VALUE_LIMIT,
    TIMED_REQUESTS,
    ClientBase,
    closed_reply,
    raise_if_error,
    reply_deadline,
    timed_out_reply,
)
from .driving import DRIVE_S, PARKED, PARKED_BACKLOG, REQUESTED, Baton
from .queues import DirectQueues, QueueTransport
from .wakeups import RuntimeWakeups

if TYPE_CHECKING:
    import asyncio

    from .._core.runtime import Runtime
    from .._core.worker_pool import WorkerRecord

# A sync call whose reply takes longer than this makes the runtime thread a
# normal (preempting) thread until the reply comes (see wakeups.py). Short
# calls never switch: changing a running thread's policy costs it a
# reschedule (sync calls -6% when every call switched). Measured on the
# 2-core VM: a first wait of 1 ms made sync calls ~10% slower, 10 ms did not.
QUICK_REPLY_S = 0.01

# asyncio, imported by the first ``request_async`` (``import asyncray`` does
# not import it: a driver that never awaits never pays for it). Its caller
# runs on an event loop, so asyncio is loaded by then; this saves the import
# statement's lookup on every await.
_asyncio: Any = None


def _load_asyncio() -> Any:
    global _asyncio
    import asyncio

    _asyncio = asyncio
    return asyncio


class _SyncWaiter:
    __slots__ = ("lock", "reply")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.reply: Any = None


def _reply_of(waiter: _SyncWaiter) -> Any:
    """The reply a completed ``waiter`` holds (raising the error it is)."""
    reply = waiter.reply
    if type(reply) is P.ErrorReply:
        raise_if_error(reply)
    return reply


class _AsyncWaiter:
    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
        self.loop = loop
        self.future = future


class _CallbackWaiter:
    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[Any], None]) -> None:
        self.callback = callback


class DriverConn:
    """The runtime's side of the embedded driver (the kernel's ``Conn``, in-process).

    Replies complete the driver's waiters directly; small results of tasks
    the driver owns go straight to its in-process store.
    """

    worker: WorkerRecord | None = None
    keeps_values = True

    def __init__(self, client: DriverClient) -> None:
        self.client = client
        self.requests: dict[int, Any] = {}
        self.local_values = client.local_values
        # The driver's units are not tracked per process: it outlives the runtime.
        self.units: dict[bytes, int] | None = None
        self.job = ""  # the session's job id, set by init()

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
        """A reply to the driver: complete the waiter of its ``req_id``."""
        self.client.complete(msg)


class WaitingClient(ClientBase):
    """A driver's client whose replies arrive on another thread than the caller's.

    Callers wait on a lock (blocking calls), a future on their own event loop
    (``await``) or a callback; whichever thread receives a reply completes
    its waiter (``complete``). The embedded driver (``DriverClient``) gets
    replies from the runtime thread in-process; a driver connected to a
    shared head (``connected.ConnectedClient``) from its socket's reader
    thread. Subclasses say how messages leave (``post``), how a reply for
    an event loop is handed to it (``batch_async``) and which thread must be
    alive for a reply to come (``thread``).
    """

    is_driver = True

    def __init__(self, thread: threading.Thread) -> None:
        super().__init__()
        self.thread = thread
        self.wakeups = RuntimeWakeups()
        self.waiters: dict[int, Any] = {}
        self.closed = False

    def complete(self, msg: Any) -> None:
        """A reply: complete the waiter of its ``req_id`` (on the receiving thread)."""
        waiter = self.waiters.pop(msg.req_id, None)
        if waiter is None:  # its caller stopped waiting (a timeout, a cancelled await)
            discard_reply(msg)
            return
        kind = type(waiter)
        if kind is _SyncWaiter:
            waiter.reply = msg
            waiter.lock.release()
        elif kind is _AsyncWaiter:
            self.batch_async(waiter, msg)
        else:
            waiter.callback(msg)

    def batch_async(self, waiter: _AsyncWaiter, reply: Any) -> None:
        """Hand ``reply`` to the event loop ``waiter`` waits on."""
        raise NotImplementedError(f"{type(self).__name__} does not define batch_async()")

    # ------------------------------------------------------------ requests

    def request(self, msg: Any) -> Any:
        waiter = _SyncWaiter()
        self.waiters[msg.req_id] = waiter
        self.post(msg)
        return self._await_reply(msg, waiter)

    def _await_reply(self, msg: Any, waiter: _SyncWaiter) -> Any:
        """Block until ``waiter`` has ``msg``'s reply; return it (or raise the error it is)."""
        lock = waiter.lock
        if not lock.acquire(timeout=QUICK_REPLY_S) and not self._wait_long(
            lock, reply_deadline(msg)
        ):
            return self._give_up(msg, waiter)
        return _reply_of(waiter)

    def _wait_long(self, lock: threading.Lock, patience: float | None) -> bool:
        """Block for a reply that did not come at once; the runtime may preempt meanwhile.

        Returns False if ``patience`` seconds passed without it.
        """
        wakeups = self.wakeups
        wakeups.driver_blocks()
        deadline = None if patience is None else time.monotonic() + patience
        try:
            # Wake now and then to notice a runtime that died instead of hanging.
            while True:
                wait_s = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if lock.acquire(timeout=max(wait_s, 0.0)):
                    return True
                if not self.thread.is_alive():
                    raise exc.RaySystemError(self.stopped_reason())
                if deadline is not None and time.monotonic() >= deadline:
                    return False
        finally:
            wakeups.driver_resumes()

    def _give_up(self, msg: Any, waiter: _SyncWaiter) -> Any:
        """``msg``'s timeout passed and the kernel never answered: answer it here."""
        if self.waiters.pop(msg.req_id, None) is None:  # the reply came meanwhile
            waiter.lock.acquire()
            return raise_if_error(waiter.reply)
        if not self.closed:
            self.post(P.CancelWaiter(msg.req_id))
        return timed_out_reply(msg)

    async def request_async(self, msg: Any) -> Any:
        aio = _asyncio or _load_asyncio()
        try:
            loop: asyncio.AbstractEventLoop = aio.get_running_loop()
        except RuntimeError:  # no asyncio loop: trio (directly or under anyio)
            return await self._request_trio(msg)
        future = loop.create_future()
        self.waiters[msg.req_id] = _AsyncWaiter(loop, future)
        self.post(msg)
        patience = reply_deadline(msg)
        try:
            if patience is None:
                return raise_if_error(await future)
            return raise_if_error(await aio.wait_for(future, patience))
        except aio.TimeoutError:  # the kernel never answered: answer it here
            self._stop_waiting(msg.req_id)
            return timed_out_reply(msg)
        except aio.CancelledError:
            self._stop_waiting(msg.req_id)
            raise

    async def _request_trio(self, msg: Any) -> Any:
        """``request_async`` under trio: the reply wakes the trio task through its run's token."""
        token = None
        try:
            import trio

            token = trio.lowlevel.current_trio_token()
        except (ImportError, RuntimeError):
            pass
        if token is None:
            raise RuntimeError(
                "asyncray's awaitables run in asyncio or trio (also through anyio); this "
                "coroutine runs in neither. Use the blocking call (get, wait) outside them."
            )
        done = trio.Event()
        replies: list[Any] = []

        def on_reply(reply: Any) -> None:  # on an internal thread
            replies.append(reply)
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        self.request_callback(msg, on_reply)
        patience = reply_deadline(msg)
        try:
            with trio.move_on_after(math.inf if patience is None else patience):
                await done.wait()
        except BaseException:  # cancelled: the kernel forgets the request
            self._stop_waiting(msg.req_id)
            raise
        if not replies:  # the kernel never answered: answer it here
            self._stop_waiting(msg.req_id)
            return timed_out_reply(msg)
        return raise_if_error(replies[0])

    def _stop_waiting(self, req_id: int) -> None:
        """The caller gave up on ``req_id``: the kernel forgets it (a late reply is discarded)."""
        self.waiters.pop(req_id, None)
        if not self.closed:
            self.post(P.CancelWaiter(req_id))

    def request_callback(self, msg: Any, callback: Callable[[Any], None]) -> None:
        self.waiters[msg.req_id] = _CallbackWaiter(callback)
        self.post(msg)

    def stopped_reason(self) -> str:
        """Why no reply can come once ``thread`` has stopped."""
        return "the asyncray runtime thread has stopped"

    def fail_all_waiters(
        self, reason: str = "asyncray was shut down while this call was waiting"
    ) -> None:
        """At shutdown: wake every blocked caller with an error instead of leaving it hanging."""
        self.closed = True
        for req_id in list(self.waiters):
            waiter = self.waiters.pop(req_id, None)
            if waiter is None:
                continue
            reply = closed_reply(req_id, reason)
            if type(waiter) is _SyncWaiter:
                waiter.reply = reply
                waiter.lock.release()
            elif type(waiter) is _AsyncWaiter:
                try:
                    waiter.loop.call_soon_threadsafe(resolve_futures, [(waiter.future, reply)])
                except RuntimeError:
                    pass
            else:
                with contextlib.suppress(Exception):  # its decode raises the reason
                    waiter.callback(reply)


class DriverClient(WaitingClient):
    """The embedded driver's client; the runtime runs on ``loop`` in ``thread``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        super().__init__(thread)
        self.loop = loop
        self.runtime: Runtime | None = None
        self.conn = DriverConn(self)
        # Messages for the runtime, drained on its loop (or by a driving thread).
        self.inbox: deque[Any] = deque()
        self._wake_scheduled = False
        # Who runs the kernel: the runtime thread, or a driver thread that waits.
        self.baton = Baton(self)
        self._async_batch: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        self._async_flush_scheduled = False

    # ------------------------------------------------------------ to the loop

    def post(self, msg: Any) -> None:
        self.inbox.append(msg)
        # A parked runtime thread drains the inbox when it resumes, and a
        # driving thread as it goes: waking the loop would only cost a write.
        # (Appended before the state is read: a resume that follows sees it.)
        if not self._wake_scheduled:
            state = self.baton.state
            if state <= REQUESTED:
                self._wake()
            elif state == PARKED and len(self.inbox) > PARKED_BACKLOG:
                self.baton.resume_parked()

    def request(self, msg: Any) -> Any:
        """A blocking call: while it waits, this thread runs the kernel if it can (driving.py)."""
        baton = self.baton
        # A timeout shorter than a drive is the loop's: its timer answers it.
        if (type(msg) in TIMED_REQUESTS and 0 <= msg.timeout < DRIVE_S) or not baton.take():
            return super().request(msg)
        waiter = _SyncWaiter()
        self.waiters[msg.req_id] = waiter
        self.inbox.append(msg)  # this thread drains it
        done = False
        try:
            done = baton.drive(waiter.lock)
        finally:
            # Others waiting (another thread, an await) are served by the loop.
            baton.give_back(resume=not done or bool(self.waiters) or self._async_flush_scheduled)
        baton.raise_deferred()
        if not done:
            return self._await_reply(msg, waiter)
        return _reply_of(waiter)

    def has_posted(self) -> bool:
        """Whether messages or dropped refs wait for a ``drain``."""
        return bool(self.inbox or self._released)

    def resumed(self) -> None:
        """On the loop, as the runtime thread resumes after parking: drain what came meanwhile."""
        if self.has_posted():
            self.drain()

    def _wake(self) -> None:
        # The flag is cleared by ``drain`` *before* it empties the inbox, and
        # producers append *before* they test it, so no message is stranded.
        self._wake_scheduled = True
        try:
            self.loop.call_soon_threadsafe(self.drain)
        except RuntimeError:  # the loop is closed: asyncray was shut down
            raise exc.RaySystemError("asyncray has been shut down; call asyncray.init() again.")

    def drain(self) -> None:
        """On the loop, or a driving thread: hand every queued message to the runtime."""
        self._wake_scheduled = False
        inbox = self.inbox
        runtime = self.runtime
        assert runtime is not None, "drain before the runtime was built"
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
                loop.call_soon_threadsafe(resolve_futures, items)
            except RuntimeError:
                pass  # that loop has been closed; nobody is waiting any more

    @property
    def queues(self) -> QueueTransport:
        """Queue calls that need no wait run on the runtime's state directly (see queues.py)."""
        transport = self._queues
        if transport is None:
            runtime = self.runtime
            assert runtime is not None
            transport = self._queues = DirectQueues(self, runtime.queues)
        return transport

    def segment_hooks(self) -> shm.SegmentHooks:
        return shm.SegmentHooks(
            reserve=self._reserve_segment,
            abandon=self._abandon_segment,
            view_closed=self._view_closed,
        )

    def _view_closed(self, name: str) -> None:
        """A view of a segment closed in the driver (any thread)."""
        # Only a segment the runtime retired waits for this (a read of its
        # dict, safe from any thread): most closed views cost no message.
        runtime = self.runtime
        if runtime is not None and name in runtime.store.retired:
            with contextlib.suppress(Exception):  # at shutdown there is nobody to tell
                self.post(P.SegmentMaps([], [name]))
