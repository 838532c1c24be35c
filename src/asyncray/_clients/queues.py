"""How ``util.queue.Queue`` reaches the runtime's queues: one interface, two ways.

``QueueTransport`` is what a ``Queue`` calls; as it is (children) it sends
every call as a ``QueueOp`` and waits for its ``QueueReply``.
``DirectQueues`` (the embedded driver) first tries a call that needs no
wait on the kernel's ``QueueState`` directly, under the state's lock (a few
microseconds, no wake-up of the runtime loop), and falls back to the message
path when the call must wait or shut the queue down. This is the one place a
client touches kernel state outside a message; docs/architecture.md records
why (queue calls are the hot path of producer/consumer programs) and what it
saves.

``try_*`` methods answer ``None`` when the call must go to the runtime.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Union

from .._wire import protocol as P
from .._wire import serialization as ser

if TYPE_CHECKING:
    from .._core.queues import QueueManager, QueueState
    from .base import ClientBase


class QueueTransport:
    """The message path: every queue call is a ``QueueOp`` to the runtime."""

    def __init__(self, client: ClientBase) -> None:
        self._client = client

    # ------------------------------------------------------------ without waiting

    def create(self, queue_id: bytes, maxsize: int) -> None:
        """Make the queue ``queue_id`` in the runtime."""
        self._client.post(P.CreateQueue(queue_id, maxsize))

    def try_put(self, queue_id: bytes, payload: bytes, block: bool) -> int | None:
        """Add an item if it fits now: a ``QUEUE_*`` status, or None: ask the runtime
        (it is full and ``block``: the runtime parks the call until there is room)."""
        return None

    def try_get(self, queue_id: bytes) -> Union[bytes, int, None]:
        """Take the oldest item now: its payload, a ``QUEUE_*`` status, or None: ask the runtime."""
        return None

    def try_put_batch(self, queue_id: bytes, payloads: list[bytes]) -> tuple[int, int] | None:
        """Add all items or none: (status, size before), or None: ask the runtime."""
        return None

    def try_get_batch(self, queue_id: bytes, count: int) -> tuple[int, list[bytes], int] | None:
        """Take ``count`` items or none: (status, payloads, size before), or None."""
        return None

    def try_size(self, queue_id: bytes) -> int | None:
        """The size (-1 once shut down), or None: ask the runtime."""
        return None

    def is_closed_here(self, queue_id: bytes) -> bool:
        """Whether this process knows the queue is shut down without asking."""
        return False

    # ------------------------------------------------------------ by message

    def call(self, queue_id: bytes, op: int, items: list[bytes], count: int, timeout: float) -> Any:
        """Send a ``QueueOp`` and block for its reply (a ``QueueReply``, or the
        ``ObjectsReply`` error of a shutdown that came first)."""
        client = self._client
        msg = self._op(queue_id, op, items, count, timeout)
        try:
            return client.request(msg)
        except KeyboardInterrupt:
            # Interrupted while blocked (in the driver): stop waiting in the runtime too,
            # so no later item goes to a caller that is gone.
            with contextlib.suppress(Exception):
                client.post(P.CancelWaiter(msg.req_id))
            raise

    async def call_async(self, queue_id: bytes, op: int, items: list[bytes], timeout: float) -> Any:
        """The awaitable twin of ``call``."""
        return await self._client.request_async(self._op(queue_id, op, items, 0, timeout))

    def _op(
        self, queue_id: bytes, op: int, items: list[bytes], count: int, timeout: float
    ) -> P.QueueOp:
        return P.QueueOp(
            req_id=self._client.next_req_id(),
            queue_id=queue_id,
            op=op,
            items=items,
            count=count,
            timeout=timeout,
        )

    def close_dropped(self, queue_id: bytes) -> None:
        """The owning ``Queue`` was dropped: shut the queue down, expecting no reply."""
        self._client.post(
            P.QueueOp(req_id=0, queue_id=queue_id, op=P.QUEUE_CLOSE, items=[], count=0, timeout=0.0)
        )


class DirectQueues(QueueTransport):
    """The embedded driver's way: calls that need no wait run on the kernel's state.

    Refs inside items stay counted: an item entering a queue has its units
    taken by ``HoldObjects`` (posted before any later release), an item
    dropped here gives them back as dropped refs do (``ClientBase.release``),
    and an item the driver takes passes them to the refs it rebuilds.
    """

    def __init__(self, client: ClientBase, manager: QueueManager) -> None:
        super().__init__(client)
        self._manager = manager

    def _state(self, queue_id: bytes) -> QueueState | None:
        # Looked up per call (a dict read): a queue shut down is gone from the
        # registry, and its calls then go to the runtime, which answers "closed".
        return self._manager.get(queue_id)

    def create(self, queue_id: bytes, maxsize: int) -> None:
        self._manager.create(queue_id, maxsize)

    def _hold(self, payload: bytes) -> None:
        ids = self._manager.record_holders(payload)
        if ids:
            self._client.post(P.HoldObjects(ids))

    def _let_go(self, payloads: list[bytes], abandon: bool) -> None:
        # Through the client's batched releases, as a dropped ref's unit: they
        # reach the runtime after any message posted before them.
        release = self._client.release
        for oid in self._manager.forget_holders(payloads):
            release(oid)
        if abandon:
            for payload in payloads:
                ser.abandon(payload)

    def try_put(self, queue_id: bytes, payload: bytes, block: bool) -> int | None:
        state = self._state(queue_id)
        if state is None:
            return None
        self._hold(payload)
        status = state.put(payload)
        if status == P.QUEUE_OK:
            return status
        if status == P.QUEUE_CLOSED or not block:
            self._let_go([payload], abandon=True)  # nobody will take it
            return status
        self._let_go([payload], abandon=False)  # the loop holds its refs again when it parks it
        return None

    def try_get(self, queue_id: bytes) -> Union[bytes, int, None]:
        state = self._state(queue_id)
        if state is None:
            return None
        got = state.get()
        if type(got) is bytes:
            self._manager.hand_over(got)
        return got

    def try_put_batch(self, queue_id: bytes, payloads: list[bytes]) -> tuple[int, int] | None:
        state = self._state(queue_id)
        if state is None:
            return None
        for payload in payloads:
            self._hold(payload)
        status, size = state.put_batch(payloads)
        if status != P.QUEUE_OK:
            self._let_go(payloads, abandon=True)
        return status, size

    def try_get_batch(self, queue_id: bytes, count: int) -> tuple[int, list[bytes], int] | None:
        state = self._state(queue_id)
        if state is None:
            return None
        status, payloads, size = state.get_batch(count)
        for payload in payloads:
            self._manager.hand_over(payload)
        return status, payloads, size

    def try_size(self, queue_id: bytes) -> int | None:
        state = self._state(queue_id)
        return None if state is None else state.size()

    def is_closed_here(self, queue_id: bytes) -> bool:
        state = self._state(queue_id)
        return state is not None and state.closed
