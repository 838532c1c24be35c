"""``Queue``: a FIFO queue shared by the driver, tasks and actors (``ray.util.queue``).

Ray keeps a queue in an async actor, so every call is an actor round trip.
asyncray keeps its items in the runtime (``_core/queues.py``), and each call
takes the shortest way there from where it runs::

    driver:        Queue.put(x) ── dumps(x) ──► QueueState.put   (same process, under its lock)
    task, actor:   Queue.put(x) ── QueueOp ───► runtime loop ──► QueueState.put
                                ◄─ QueueReply ──┘

In the driver, a call that can finish at once (there is an item, or room, or
the batch fits; ``qsize``) works on the runtime's state directly: a few
microseconds, no message and no thread hop, so one driver thread does
hundreds of thousands of put+get pairs per second (``bench/queue_bench.py``;
an actor round trip each would allow a few thousand). A call that has to
wait, and every call from a task or an actor, is one message to the runtime
loop, where a blocked call waits as a parked request: a task blocked in
``get`` lends its CPU as in ``asyncray.get``, and a caller whose process
dies or whose task is cancelled stops waiting without taking an item. The
async twins take the same paths and never block their loop.

A ``Queue`` pickles as its id and ``maxsize``, so it can be passed to tasks
and actors; one made inside a task or an actor lives in the runtime all the
same (created by message). A queue lives until ``shutdown()``, until the
``Queue`` that made it is dropped without ever having been pickled (as a
dropped actor handle ends its actor), or until ``asyncray.shutdown()``.
Items are pickled when put, so changing an object after putting it does not
change the queued item (as in Ray), and are unpickled by whoever takes them;
large buffers travel through shared memory, whose segment the taker unlinks.

Errors follow Ray: a non-blocking call on a full/empty queue raises a bare
``Full``/``Empty``; a blocking call that times out and a batch that does
not fit raise what Ray's queue actor raises, ``RayTaskError(Full)``/
``RayTaskError(Empty)``, instances of ``Full``/``Empty`` (and of
``queue.Full``/``queue.Empty``) too. There is no actor: ``actor_options``
are checked and then ignored (docs/ray-compatibility.md). After
``shutdown()``, every call in any process, and every call still blocked,
raises ``ActorDiedError``, the error Ray gives for its dead queue actor.
"""

from __future__ import annotations

import contextlib
import os
import queue
from collections.abc import Iterable
from typing import Any

from . import _api, _options
from ._clients.base import decode_objects
from ._wire import protocol as P
from ._wire import serialization as ser
from .exceptions import ActorDiedError, RayTaskError
from .object_ref import ObjectRef

__all__ = ["Empty", "Full", "Queue"]


class Empty(queue.Empty):
    """Raised by ``get`` on an empty queue (non-blocking, or after the timeout)."""


class Full(queue.Full):
    """Raised by ``put`` on a full queue (non-blocking, or after the timeout)."""


# "Not answered here": the call goes to the runtime loop.
_MISS: Any = object()


class Queue:
    """A first-in, first-out queue for the driver, tasks and actors.

    Args:
        maxsize: the most items the queue holds; ``<= 0`` means unbounded.
        actor_options: accepted for Ray compatibility and checked as actor
            options, but unused: asyncray's queue has no actor (its items
            live in the runtime), so it holds no resources and has no name.

    Raises:
        TypeError, ValueError: ``maxsize`` is not an int, or ``actor_options``
            is not a dict of valid actor options.

    Example:
        >>> q = Queue()
        >>> for i in range(3):
        ...     q.put(i)
        >>> [q.get() for _ in range(3)]
        [0, 1, 2]
    """

    def __init__(self, maxsize: int = 0, actor_options: dict[str, Any] | None = None) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError(f"maxsize must be an int, got {type(maxsize).__name__}")
        if not -_options.MAX_WIRE_INT <= maxsize <= _options.MAX_WIRE_INT:
            raise ValueError(
                f"maxsize must be at most {_options.MAX_WIRE_INT} (or from "
                f"-{_options.MAX_WIRE_INT} to 0 for unbounded), "
                f"got {_options.shown(maxsize)}"
            )
        _check_actor_options(actor_options)
        client = _api.client()
        self.maxsize = maxsize
        self._id = client.new_task_id()
        # Shut the queue down when this object is dropped, unless it was pickled
        # (a copy may be in use anywhere), as a dropped actor handle ends its actor.
        self._owned = True
        client.queues.create(self._id, maxsize)

    # ------------------------------------------------------------ size

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        """The number of items in the queue.

        Raises:
            ActorDiedError: the queue was shut down.
        """
        size = _api.client().queues.try_size(self._id)
        if size is None:
            return self._call(P.QUEUE_SIZE).size
        if size < 0:
            raise _shut_down()
        return size

    def qsize(self) -> int:
        """The number of items in the queue."""
        return self.size()

    def empty(self) -> bool:
        """Whether the queue is empty."""
        return self.size() == 0

    def full(self) -> bool:
        """Whether the queue is full (never, if unbounded)."""
        return 0 < self.maxsize <= self.size()

    # ------------------------------------------------------------ put

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add ``item`` to the queue.

        Args:
            item: the item (a top-level ``ObjectRef`` is stored as its value, as in Ray).
            block: wait up to ``timeout`` for room; if False, fail at once when full.
            timeout: seconds to wait when blocking; None waits forever.

        Raises:
            Full: the queue is full and ``block`` is False, or stayed full for ``timeout``.
            ValueError: ``timeout`` is negative.
            ActorDiedError: the queue was shut down.
        """
        timeout = _check_timeout(block, timeout)
        if type(item) is ObjectRef:
            item = _api.get(item)
        payload = ser.dumps(item)
        if self._put_here(payload, block):
            return
        reply = self._call(P.QUEUE_PUT, [payload], timeout=_wait_s(block, timeout))
        _check_put(reply, block)

    async def put_async(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """The awaitable twin of ``put``: waiting for room never blocks the event loop."""
        timeout = _check_timeout(block, timeout)
        if type(item) is ObjectRef:
            item = await item
        payload = ser.dumps(item)
        if self._put_here(payload, block):
            return
        op = P.QUEUE_PUT
        reply = await self._call_async(op, [payload], timeout=_wait_s(block, timeout))
        _check_put(reply, block)

    def put_nowait(self, item: Any) -> None:
        """``put(item, block=False)``.

        Raises:
            Full: the queue is full.
        """
        return self.put(item, block=False)

    def put_nowait_batch(self, items: Iterable[Any]) -> None:
        """Add all ``items`` in order, at once: all of them or none.

        Raises:
            TypeError: ``items`` is not iterable.
            Full: they do not all fit (nothing is added).
        """
        if not isinstance(items, Iterable):
            raise TypeError("Argument 'items' must be an Iterable")
        payloads = [ser.dumps(item) for item in items]
        done = _api.client().queues.try_put_batch(self._id, payloads)
        if done is None:
            reply = self._call(P.QUEUE_PUT_BATCH, payloads)
            status, size = reply.status, reply.size
        else:
            status, size = done
        if status == P.QUEUE_CLOSED:
            raise _shut_down()
        if status != P.QUEUE_OK:
            raise _as_remote(
                Full(
                    f"Cannot add {len(payloads)} items to queue of size {size} "
                    f"and maxsize {self.maxsize}."
                ),
                "put_nowait_batch",
            )

    # ------------------------------------------------------------ get

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the oldest item.

        Args:
            block: wait up to ``timeout`` for an item; if False, fail at once when empty.
            timeout: seconds to wait when blocking; None waits forever.

        Raises:
            Empty: the queue is empty and ``block`` is False, or stayed empty for ``timeout``.
            ValueError: ``timeout`` is negative.
            ActorDiedError: the queue was shut down.
        """
        timeout = _check_timeout(block, timeout)
        value = self._get_here(block)
        if value is not _MISS:
            return value
        return _got(self._call(P.QUEUE_GET, timeout=_wait_s(block, timeout)), block)

    async def get_async(self, block: bool = True, timeout: float | None = None) -> Any:
        """The awaitable twin of ``get``: waiting for an item never blocks the event loop."""
        timeout = _check_timeout(block, timeout)
        value = self._get_here(block)
        if value is not _MISS:
            return value
        return _got(await self._call_async(P.QUEUE_GET, timeout=_wait_s(block, timeout)), block)

    def get_nowait(self) -> Any:
        """``get(block=False)``.

        Raises:
            Empty: the queue is empty.
        """
        return self.get(block=False)

    def get_nowait_batch(self, num_items: int) -> list[Any]:
        """Remove and return the ``num_items`` oldest items, at once: all or none.

        Raises:
            TypeError: ``num_items`` is not an int.
            ValueError: ``num_items`` is negative.
            Empty: fewer than ``num_items`` items are queued (nothing is removed).
        """
        if isinstance(num_items, bool) or not isinstance(num_items, int):
            raise TypeError("Argument 'num_items' must be an int")
        if num_items < 0:
            raise ValueError("'num_items' must be nonnegative")
        if num_items > _options.MAX_WIRE_INT:
            raise ValueError(
                f"'num_items' must be at most {_options.MAX_WIRE_INT}, "
                f"got {_options.shown(num_items)}"
            )
        done = _api.client().queues.try_get_batch(self._id, num_items)
        if done is None:
            reply = self._call(P.QUEUE_GET_BATCH, count=num_items)
            status, payloads, size = reply.status, reply.items, reply.size
        else:
            status, payloads, size = done
        if status == P.QUEUE_CLOSED:
            raise _shut_down()
        if status != P.QUEUE_OK:
            raise _as_remote(
                Empty(f"Cannot get {num_items} items from queue of size {size}."),
                "get_nowait_batch",
            )
        return [_loads(payload) for payload in payloads]

    # ------------------------------------------------------------ shutdown

    def shutdown(self, force: bool = False, grace_period_s: float = 5) -> None:
        """Shut the queue down: its items are dropped and it takes no more calls.

        Calls still blocked on it, and every later call on this object or on a
        copy of it in any process, raise ``ActorDiedError``. A second call does
        nothing.

        Args:
            force: accepted for Ray compatibility: there is no actor to kill,
                and nothing waits, so both ways are the same.
            grace_period_s: accepted for Ray compatibility, unused.
        """
        self._owned = False
        if not _api.is_initialized():
            return  # shut down with the runtime
        if _api.client().queues.is_closed_here(self._id):
            return
        # Through the loop even in the driver: blocked callers are answered before we return.
        self._call(P.QUEUE_CLOSE)

    @property
    def actor(self) -> Any:
        """Ray's queue actor handle; asyncray's queue has none."""
        raise AttributeError(
            "asyncray's Queue has no actor: its items live in the runtime. Use the Queue "
            "itself (it can be passed to tasks and actors); see docs/ray-compatibility.md."
        )

    # ------------------------------------------------------------ pickling and lifetime

    def __reduce__(self) -> Any:
        self._owned = False  # a copy may be used anywhere: never shut down on drop
        return (_rebuild, (self._id, self.maxsize))

    def __del__(self) -> None:
        if self.__dict__.get("_owned"):
            client = _api.current_client()
            if client is not None:
                with contextlib.suppress(Exception):  # interpreter exit, closed loop
                    client.queues.close_dropped(self._id)

    def __repr__(self) -> str:
        return f"Queue(maxsize={self.maxsize}, id={self._id.hex()})"

    # ------------------------------------------------------------ the two ways to the state

    def _put_here(self, payload: bytes, block: bool) -> bool:
        """A put answered without the runtime's loop (the driver's direct path): True if
        done; False: it must go to the loop."""
        status = _api.client().queues.try_put(self._id, payload, block)
        if status is None:
            return False
        if status == P.QUEUE_OK:
            return True
        raise _shut_down() if status == P.QUEUE_CLOSED else Full

    def _get_here(self, block: bool) -> Any:
        """A get answered without the runtime's loop: the value, or ``_MISS`` to go to it."""
        got = _api.client().queues.try_get(self._id)
        if got is None:
            return _MISS
        if type(got) is bytes:
            return _loads(got)
        if got == P.QUEUE_CLOSED:
            raise _shut_down()
        if not block:
            raise Empty
        return _MISS  # empty: wait for an item on the loop

    def _call(
        self, op: int, items: list[bytes] | None = None, count: int = 0, timeout: float = 0.0
    ) -> P.QueueReply:
        reply = _api.client().queues.call(self._id, op, items or [], count, timeout)
        return _checked(reply)

    async def _call_async(
        self, op: int, items: list[bytes] | None = None, timeout: float = 0.0
    ) -> P.QueueReply:
        reply = await _api.client().queues.call_async(self._id, op, items or [], timeout)
        return _checked(reply)


def _rebuild(queue_id: bytes, maxsize: int) -> Queue:
    q = Queue.__new__(Queue)
    q.maxsize = maxsize
    q._id = queue_id
    q._owned = False
    return q


# ---------------------------------------------------------------- helpers


def _check_timeout(block: Any, timeout: Any) -> float | None:
    """The timeout of a blocking call, checked (None: for ever); ignored when not
    blocking, as Ray ignores it."""
    if not block or timeout is None:
        return None
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")  # Ray's words
    return _options.check_timeout("timeout", timeout)


def _check_actor_options(actor_options: Any) -> None:
    if actor_options is None:
        return
    if not isinstance(actor_options, dict):
        raise TypeError(f"actor_options must be a dict or None, got {type(actor_options).__name__}")
    from .actor import validate_actor_options

    validate_actor_options(actor_options, in_options_call=True)


def _wait_s(block: bool, timeout: float | None) -> float:
    """The wire's timeout: 0 never waits, ``NO_TIMEOUT`` waits for ever."""
    if not block:
        return 0.0
    return P.NO_TIMEOUT if timeout is None else float(timeout)


def _checked(reply: Any) -> P.QueueReply:
    if type(reply) is not P.QueueReply:  # asyncray shut down while this call waited
        decode_objects(reply)  # raises the error it carries
        raise _shut_down()
    if reply.status == P.QUEUE_CLOSED:
        raise _shut_down()
    return reply


def _check_put(reply: P.QueueReply, block: bool) -> None:
    if reply.status != P.QUEUE_OK:
        raise _as_remote(Full(), "put") if block else Full


def _got(reply: P.QueueReply, block: bool) -> Any:
    if reply.status != P.QUEUE_OK:
        raise _as_remote(Empty(), "get") if block else Empty
    return _loads(reply.items[0])


def _loads(payload: bytes) -> Any:
    value = ser.loads(payload)
    # The taker owns the item's segment: give it back (the mapping outlives the file).
    ser.abandon(payload)
    return value


def _as_remote(cause: Exception, method: str) -> RayTaskError:
    """``cause`` as Ray raises it from its queue actor: ``RayTaskError(cause)``, both at once."""
    text = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
    error = RayTaskError(f"Queue.{method}", text + "\n", cause, pid=os.getpid())
    return error.as_instanceof_cause()


def _shut_down() -> ActorDiedError:
    return ActorDiedError(
        None,
        "This Queue has been shut down (Queue.shutdown(), or asyncray.shutdown()): it holds "
        "no items and takes no more calls.",
    )
