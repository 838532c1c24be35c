"""A child's socket to the runtime: framing, sending from any thread, routing replies.

``SocketChannel`` is the child side of one connection. Any thread may send
(one write carries what several threads queued). Receiving is leader/follower:
whichever thread needs a message reads the socket for everyone and routes
what it read — replies by ``req_id``, control messages (revokes, credits,
cancels, dropped mappings) to their state here, and calls to the inbound
queue the worker loop consumes. An async actor's event loop reads the
socket itself whenever no blocked thread leads.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import polling, shm
from . import protocol as P
from . import serialization as ser
from .framing import has_whole_frame, read_buffer, take_frames
from .protocol import REPLY_TYPES
from .writer import FrameWriter

if TYPE_CHECKING:
    import asyncio


def _held_slots() -> polling.PollSlots:
    """The poll slots of a child that holds one (it took it from them)."""
    slots = polling.slots()
    assert slots is not None
    return slots


# How far a SIGINT handler looks into the socket for the request it answers.
# Large values travel in shared memory, so frames are small; the request was
# written just before the signal, behind at most a few pipelined tasks.
_PEEK_BYTES = 1 << 20
# Interrupt requests remembered; more are ids of tasks that ended long ago.
_INTERRUPTS_KEPT = 64


def resolve_futures(items: list[tuple[asyncio.Future[Any], Any]]) -> None:
    """On a future's loop: complete each with its reply (unless it was cancelled)."""
    for future, reply in items:
        if not future.done():
            future.set_result(reply)
        else:  # its caller stopped waiting (a timeout, a cancelled await)
            discard_reply(reply)


def discard_reply(reply: Any) -> None:
    """A reply nobody waits for any more (its caller timed out): give back the refs inside."""
    kind = type(reply)
    if kind is P.ObjectsReply:
        payloads: list[Any] = reply.values
    elif kind is P.QueueReply:
        payloads = reply.items
    else:
        return
    for data in payloads:
        if data is not None:
            ser.discard(data)


class SocketChannel:
    """A child's blocking socket to the runtime, shared by its threads.

    Sending takes a lock. Receiving is leader/follower: the first thread that
    needs a message reads frames and routes them; the others wait on the
    condition until their reply (or an inbound message) has been routed.
    """

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        self.sock = sock
        # Any thread sends; one write carries what several threads queued.
        self._writer = FrameWriter(sock)
        self._cv = threading.Condition(threading.Lock())
        self._reading = False
        self._eof = False
        self._replies: dict[int, Any] = {}
        # Requests whose callers stopped waiting (their timeout passed first):
        # a late reply to one is discarded, not kept for nobody.
        self._abandoned: set[int] = set()
        self.inbound: deque[Any] = deque()
        self._buf = bytearray()
        self._chunk = read_buffer()  # every read goes here first (_recv_some)
        # Backpressure: items of each stream the consumer has taken.
        self.credits: dict[bytes, int] = {}
        # Actor calls cancelled while running here (``is_canceled()``).
        self.cancelled: set[bytes] = set()
        # Tasks the runtime interrupts (``InterruptTask``; see interrupt_requested).
        self.interrupted: set[bytes] = set()
        # Replies awaited on the reader loop (async actors), by req_id.
        self._async_waiters: dict[int, asyncio.Future[Any]] = {}
        self.reader_loop: asyncio.AbstractEventLoop | None = None
        self._on_inbound: Callable[[list[Any]], None] = lambda msgs: None
        # The loop stopped watching the socket while a thread leads.
        self._loop_reader_paused = False
        # Poll before blocking (polling.SPIN_S); only where the thread that reads
        # runs the calls (a task worker, a plain actor, an async actor's
        # loop): a poller beside the threads that run them would contend
        # with them for the GIL.
        self.spin = False
        self._recent = False  # the last message came within polling.SPIN_S
        self._calm_from = 0.0  # no polling before this time (see polling.SPIN_BACKOFF_S)
        self._last_inbound = 0.0  # when the reader loop last read a message
        self._poll_slot = -1  # the slot the reader loop holds while it polls
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)

    def send(self, msg: Any) -> None:
        self._writer.send(msg)

    def send_many(self, msgs: list[Any]) -> None:
        self._writer.send_many(msgs)

    def drain_outbox(self) -> None:
        """Block until every queued frame is written: call before the process exits."""
        self._writer.drain()

    def _read_frames(self, deadline: float | None = None) -> list[Any]:
        """Block until at least one whole frame is buffered; decode all whole frames.

        With a ``deadline`` (``time.monotonic``), returns ``[]`` if it passes first.
        """
        buf = self._buf
        while not has_whole_frame(buf):
            if deadline is not None and not self._poller.poll(_poll_ms(deadline)):
                if time.monotonic() >= deadline:
                    return []
                continue
            # A thread blocked beside a reader loop does not poll (the loop does).
            polls = self.spin and self.reader_loop is None
            chunk = self._recv() if polls else self._recv_some()
            if not chunk:
                raise ConnectionError("the asyncray runtime closed the connection")
            buf += chunk
        return self._decode_frames()

    def _decode_frames(self) -> list[Any]:
        """Every whole frame buffered, decoded; a partial one stays buffered."""
        return take_frames(self._buf, P.decoder.decode)

    def _recv_some(self, flags: int = 0) -> memoryview:
        """One read into the channel's ``read_buffer``; valid until the next read."""
        chunk = self._chunk
        return chunk[: self.sock.recv_into(chunk, 0, flags)]

    def _recv(self) -> memoryview:
        """``recv``, polling first while messages arrive back to back (see polling.SPIN_S)."""
        ready = self._poller.poll
        if ready(0):
            return self._recv_some()
        # Only a wait that was needed teaches us anything: data already
        # buffered says nothing about how long the next gap will be.
        clock = time.perf_counter
        start = clock()
        slot = self._take_poll_slot(start) if self._recent else -1
        if slot >= 0:
            # poll(), not a non-blocking recv: a failing recv builds an OSError
            # (with its strerror text) on every turn of the loop.
            deadline = start + polling.SPIN_S
            try:
                if not polling.poll_until(ready, deadline):
                    self._polled_in_vain(deadline)
            finally:
                _held_slots().give_back(slot)
        chunk = self._recv_some()
        self._recent = clock() - start < polling.SPIN_S
        return chunk

    def _take_poll_slot(self, now: float) -> int:
        """A slot to poll in (see _PollSlots), or -1: no slot free, or backing off."""
        slots = polling.slots()
        if now < self._calm_from or slots is None:
            return -1
        return slots.take()

    def _polled_in_vain(self, deadline: float) -> None:
        """No message by ``deadline``: no polling for polling.SPIN_BACKOFF_S."""
        self._calm_from = deadline + polling.SPIN_BACKOFF_S

    def _wait_for(self, check: Callable[[], Any], deadline: float | None = None) -> Any:
        """Read and route messages until ``check()`` finds one (or ``deadline``: None)."""
        cv = self._cv
        with cv:
            while True:
                found = check()
                if found is not None:
                    return found
                if self._eof:
                    raise ConnectionError("the asyncray runtime closed the connection")
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                if self._reading:
                    cv.wait(None if deadline is None else deadline - time.monotonic())
                    continue
                self._reading = True
                cv.release()
                try:
                    msgs = self._read_frames(deadline)
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
                    if kind in REPLY_TYPES:
                        self._keep_reply(msg)
                    elif kind is P.RevokeTasks:
                        self._revoke(msg.task_ids)
                    elif kind is P.DropMappings:
                        shm.forget_writable(msg.names)
                    elif kind is P.StreamCredit:
                        self._credit(msg)
                    elif kind is P.CancelActorCall:
                        self._cancel_call(msg.task_id)
                    elif kind is P.InterruptTask:
                        self._note_interrupt(msg.task_id)
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
                chunk: memoryview | bytes = self._recv_some(socket.MSG_DONTWAIT)
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
        """On the reader loop: keep it awake for ``SPIN_S`` after a message.

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
        elif time.perf_counter() >= self._last_inbound + polling.SPIN_S or self._eof:
            self._stop_loop_poll()
            self._polled_in_vain(self._last_inbound + polling.SPIN_S)
        else:
            os.sched_yield()
            self.reader_loop.call_soon(self._loop_poll)  # type: ignore[union-attr]

    def _stop_loop_poll(self) -> None:
        _held_slots().give_back(self._poll_slot)
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
            if kind in REPLY_TYPES:
                future = self._async_waiters.pop(msg.req_id, None)
                if future is not None:
                    resolved.append((future, msg))
                else:
                    self._keep_reply(msg)
            elif kind is P.RevokeTasks:
                continue
            elif kind is P.InterruptTask:
                self._note_interrupt(msg.task_id)
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
        have = self.credits.get(msg.task_id)
        if have is not None and msg.consumed > have:  # a late credit of an ended stream: dropped
            self.credits[msg.task_id] = msg.consumed

    def open_credits(self, task_id: bytes) -> None:
        """A stream produced here starts: its credits are counted until ``close_credits``."""
        self.credits[task_id] = 0

    def close_credits(self, task_id: bytes) -> None:
        self.credits.pop(task_id, None)

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

    def _note_interrupt(self, task_id: bytes) -> None:
        interrupted = self.interrupted
        if len(interrupted) >= _INTERRUPTS_KEPT:
            interrupted.clear()  # ids of tasks long over: only the running one matters
        interrupted.add(task_id)

    def interrupt_requested(self, task_id: bytes) -> bool:
        """Whether the runtime asked to interrupt ``task_id`` (from a SIGINT handler).

        The runtime writes ``InterruptTask`` (``CancelActorCall`` for an
        actor's call) before it signals, so the request is either routed
        already or still in the socket: peeked there, not consumed, without
        blocking.
        """
        if task_id in self.interrupted or task_id in self.cancelled:
            return True
        try:
            peeked = self.sock.recv(_PEEK_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except OSError:
            peeked = b""
        buf = bytearray(self._buf)
        buf += peeked
        try:
            msgs = take_frames(buf, P.decoder.decode)
        except Exception:  # a frame cut by the peek's size: judge by what was whole
            msgs = []
        for msg in msgs:
            kind = type(msg)
            if (kind is P.InterruptTask or kind is P.CancelActorCall) and msg.task_id == task_id:
                return True
        return task_id in self.interrupted or task_id in self.cancelled

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

    def wait_reply(self, req_id: int, patience: float | None = None) -> Any:
        """Block for the reply to ``req_id``; None if ``patience`` seconds pass first."""
        replies = self._replies
        if patience is None:
            return self._wait_for(lambda: replies.pop(req_id, None))
        reply = self._wait_for(lambda: replies.pop(req_id, None), time.monotonic() + patience)
        if reply is None:
            self.abandon(req_id)
        return reply

    def _keep_reply(self, msg: Any) -> None:
        """Under the lock: keep a reply for the thread that waits for it."""
        abandoned = self._abandoned
        if abandoned and msg.req_id in abandoned:
            abandoned.discard(msg.req_id)
            discard_reply(msg)
        else:
            self._replies[msg.req_id] = msg

    def abandon(self, req_id: int) -> None:
        """The caller of ``req_id`` stopped waiting: its reply, now or later, is discarded."""
        with self._cv:
            self._async_waiters.pop(req_id, None)
            reply = self._replies.pop(req_id, None)
            if reply is not None:
                discard_reply(reply)
            else:
                self._abandoned.add(req_id)


def _poll_ms(deadline: float) -> int:
    """Milliseconds until ``deadline`` for ``poll``: at least 1 (never a busy loop),
    at most a day (``poll`` refuses more than a C int; the caller polls again)."""
    return max(1, min(int((deadline - time.monotonic()) * 1000) + 1, _POLL_MS_MAX))


_POLL_MS_MAX = 86_400_000


def _deliver_to_loop(
    on_inbound: Callable[[list[Any]], None],
    inbound: list[Any],
    resolved: list[tuple[asyncio.Future[Any], Any]],
) -> None:
    resolve_futures(resolved)
    if inbound:
        on_inbound(inbound)
