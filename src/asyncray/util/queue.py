"""``Queue``: a FIFO queue shared by the driver, tasks and actors (``ray.util.queue``).

As in Ray, the queue lives in an async actor (``_QueueActor``, an
``asyncio.Queue``); a ``Queue`` object is only ``maxsize`` plus the actor's
handle, so it pickles into tasks and actors, and every call is one actor call::

    Queue.put(item) ──put.remote(item, timeout)──▶ _QueueActor ─▶ asyncio.Queue
    Queue.get()     ◀──────── the item ────────── (waits inside the actor)

A synchronous operation is exactly one round trip, so its rate is the
runtime's actor round-trip rate (see ``bench/queue_bench.py``). Blocking waits
happen inside the actor (``asyncio.wait_for`` on the async queue), so a
blocked caller never holds up other callers, and the actor skips the wait
entirely when it can answer at once. ``put_nowait``/``get_nowait`` report
"full"/"empty" with a marker value instead of an exception, so a polling loop
costs no traceback. The batch methods move many items in one call.

``put_async``/``get_async`` calls that are in flight together on one event
loop are coalesced: all the calls made in one turn of the loop share a single
actor call (``put_many``/``get_many``), which takes what fits or what is there
at once; a call it could not serve falls back to its own blocking call (or
raises ``Full``/``Empty`` if it does not block). Each caller still gets
exactly its own item, and no item is taken before a caller asked for it.

Errors follow Ray: a non-blocking call on a full/empty queue raises ``Full``/
``Empty``; a blocking call that times out and a batch call that does not fit
raise them from the actor, so they arrive as ``RayTaskError(Full)`` /
``RayTaskError(Empty)``, instances of ``Full``/``Empty`` (and of
``queue.Full``/``queue.Empty``) too.
"""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import Callable, Iterable
from typing import Any

import asyncray
from asyncray.object_ref import ObjectRef

__all__ = ["Empty", "Full", "Queue"]

# The queue actor holds no CPU: it only waits, and must never be stuck behind
# busy tasks waiting for a CPU to be placed on (Ray's default needs 1 to place).
DEFAULT_ACTOR_OPTIONS: dict[str, Any] = {"num_cpus": 0}


class Empty(queue.Empty):
    """Raised by ``get`` on an empty queue (non-blocking, or after the timeout)."""


class Full(queue.Full):
    """Raised by ``put`` on a full queue (non-blocking, or after the timeout)."""


class _Marker:
    """The actor's "would block" answer: pickled by name, compared by identity."""

    def __reduce__(self) -> str:
        return "_WOULD_BLOCK"


_WOULD_BLOCK = _Marker()


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")


class Queue:
    """A first-in, first-out queue backed by an async actor.

    Args:
        maxsize: the most items the queue holds; ``<= 0`` means unbounded.
        actor_options: options for the queue actor, merged over
            ``DEFAULT_ACTOR_OPTIONS`` (``{"num_cpus": 0}``), e.g.
            ``{"num_cpus": 1}`` or ``{"name": "jobs"}``.

    Example:
        >>> q = Queue()
        >>> for i in range(3):
        ...     q.put(i)
        >>> [q.get() for _ in range(3)]
        [0, 1, 2]
    """

    def __init__(self, maxsize: int = 0, actor_options: dict[str, Any] | None = None) -> None:
        options = {**DEFAULT_ACTOR_OPTIONS, **(actor_options or {})}
        self.maxsize = maxsize
        self.actor: Any = _queue_actor_class().options(**options).remote(maxsize)

    # ------------------------------------------------------------ size

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        """The number of items in the queue."""
        return asyncray.get(self.actor.qsize.remote())  # type: ignore[no-any-return]

    def qsize(self) -> int:
        """The number of items in the queue."""
        return self.size()

    def empty(self) -> bool:
        """Whether the queue is empty."""
        return asyncray.get(self.actor.empty.remote())  # type: ignore[no-any-return]

    def full(self) -> bool:
        """Whether the queue is full (never, if unbounded)."""
        return asyncray.get(self.actor.full.remote())  # type: ignore[no-any-return]

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
        """
        if not block:
            if asyncray.get(self.actor.put_nowait.remote(item)) is _WOULD_BLOCK:
                raise Full
            return
        _check_timeout(timeout)
        asyncray.get(self.actor.put.remote(item, timeout))

    async def put_async(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """The awaitable twin of ``put``; concurrent calls share actor calls (see above)."""
        if block:
            _check_timeout(timeout)
        if type(item) is ObjectRef:  # stored as its value: it must be a top-level argument
            return await self._put_one_async(item, block, timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        if await self._coalescer().put(item):
            return
        if not block:
            raise Full
        await self.actor.put.remote(item, _remaining(deadline))

    async def _put_one_async(self, item: Any, block: bool, timeout: float | None) -> None:
        if not block:
            if await self.actor.put_nowait.remote(item) is _WOULD_BLOCK:
                raise Full
            return
        await self.actor.put.remote(item, timeout)

    def put_nowait(self, item: Any) -> None:
        """``put(item, block=False)``.

        Raises:
            Full: the queue is full.
        """
        return self.put(item, block=False)

    def put_nowait_batch(self, items: Iterable[Any]) -> None:
        """Add all ``items`` in order, in one call: all of them or none.

        Raises:
            TypeError: ``items`` is not iterable.
            Full: they do not all fit (nothing is added).
        """
        if not isinstance(items, Iterable):
            raise TypeError("Argument 'items' must be an Iterable")
        asyncray.get(self.actor.put_nowait_batch.remote(list(items)))

    # ------------------------------------------------------------ get

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the oldest item.

        Args:
            block: wait up to ``timeout`` for an item; if False, fail at once when empty.
            timeout: seconds to wait when blocking; None waits forever.

        Raises:
            Empty: the queue is empty and ``block`` is False, or stayed empty for ``timeout``.
            ValueError: ``timeout`` is negative.
        """
        if not block:
            item = asyncray.get(self.actor.get_nowait.remote())
            if item is _WOULD_BLOCK:
                raise Empty
            return item
        _check_timeout(timeout)
        return asyncray.get(self.actor.get.remote(timeout))

    async def get_async(self, block: bool = True, timeout: float | None = None) -> Any:
        """The awaitable twin of ``get``; concurrent calls share actor calls (see above)."""
        if block:
            _check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        item = await self._coalescer().get()
        if item is not _WOULD_BLOCK:
            return item
        if not block:
            raise Empty
        return await self.actor.get.remote(_remaining(deadline))

    def _coalescer(self) -> _Coalescer:
        """The coalescer of the running loop (a queue may be used from several loops)."""
        loop = asyncio.get_running_loop()
        current = self.__dict__.get("_coalescer_state")
        if current is None or current.loop is not loop:
            current = self._coalescer_state = _Coalescer(loop, self.actor)
        return current

    def __getstate__(self) -> dict[str, Any]:
        # The coalescer belongs to this process's loop; a copy elsewhere makes its own.
        return {"maxsize": self.maxsize, "actor": self.actor}

    def get_nowait(self) -> Any:
        """``get(block=False)``.

        Raises:
            Empty: the queue is empty.
        """
        return self.get(block=False)

    def get_nowait_batch(self, num_items: int) -> list[Any]:
        """Remove and return the ``num_items`` oldest items, in one call: all or none.

        Raises:
            TypeError: ``num_items`` is not an int.
            ValueError: ``num_items`` is negative.
            Empty: fewer than ``num_items`` items are queued (nothing is removed).
        """
        if not isinstance(num_items, int):
            raise TypeError("Argument 'num_items' must be an int")
        if num_items < 0:
            raise ValueError("'num_items' must be nonnegative")
        return asyncray.get(self.actor.get_nowait_batch.remote(num_items))  # type: ignore[no-any-return]

    # ------------------------------------------------------------ shutdown

    def shutdown(self, force: bool = False, grace_period_s: float = 5) -> None:
        """End the queue actor; the queue is unusable afterwards (``actor`` is None).

        Calls still blocked in the actor (a ``get`` on an empty queue, a
        ``put`` on a full one) fail with ``RayActorError`` instead of hanging.

        Args:
            force: kill the actor at once instead of asking it to exit.
            grace_period_s: how long a polite exit may take before the actor is killed.
        """
        if self.actor:
            if not force:
                done = self.actor.__ray_terminate__.remote()
                asyncray.wait([done], timeout=grace_period_s)
            # Kill even after a polite exit: a get or put still blocked in the
            # actor waits for an item or a slot that no later call can bring
            # (an exiting actor takes no more calls), so it would keep the actor,
            # and its caller, waiting for ever (Ray leaves them hanging). Every
            # call that was not blocked has been answered by now.
            asyncray.kill(self.actor, no_restart=True)
        self.actor = None
        self.__dict__.pop("_coalescer_state", None)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class _Coalescer:
    """Turns the ``put_async``/``get_async`` calls of one loop turn into one actor call each.

    The first call of a turn schedules ``flush`` with ``call_soon``; calls
    made before it runs join the batch. Each caller awaits its own future:
    for a put, True if its item went in; for a get, its item or
    ``_WOULD_BLOCK``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, actor: Any) -> None:
        self.loop = loop
        self.actor = actor
        self.puts: list[tuple[Any, asyncio.Future[bool]]] = []
        self.gets: list[asyncio.Future[Any]] = []
        self.scheduled = False

    def put(self, item: Any) -> asyncio.Future[bool]:
        future: asyncio.Future[bool] = self.loop.create_future()
        self.puts.append((item, future))
        self._schedule()
        return future

    def get(self) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self.loop.create_future()
        self.gets.append(future)
        self._schedule()
        return future

    def _schedule(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        puts, self.puts = self.puts, []
        gets, self.gets = self.gets, []
        if puts:
            items = [item for item, _ in puts]
            ref = self.actor.put_many.remote(items)
            futures = [f for _, f in puts]
            self.loop.create_task(_deliver(ref, futures, lambda n, i: i < n))
        if gets:
            ref = self.actor.get_many.remote(len(gets))
            self.loop.create_task(
                _deliver(ref, gets, lambda got, i: got[i] if i < len(got) else _WOULD_BLOCK)
            )


async def _deliver(
    ref: Any, futures: list[asyncio.Future[Any]], pick: Callable[[Any, int], Any]
) -> None:
    """Await one batched call and hand each waiting caller its share."""
    try:
        reply = await ref
    except asyncio.CancelledError:  # the loop is going away
        for future in futures:
            future.cancel()
        raise
    except Exception as error:  # e.g. the actor died: every caller sees it
        for future in futures:
            if not future.done():
                future.set_exception(error)
        return
    for i, future in enumerate(futures):
        if not future.done():  # a cancelled caller's item is lost, as with a cancelled call
            future.set_result(pick(reply, i))


class _QueueActor:
    """The queue itself: an ``asyncio.Queue`` in an async actor.

    Sync methods run on the actor's loop without a task switch; the async
    ones wait only when they have to.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)

    def qsize(self) -> int:
        return self.queue.qsize()

    def empty(self) -> bool:
        return self.queue.empty()

    def full(self) -> bool:
        return self.queue.full()

    async def put(self, item: Any, timeout: float | None = None) -> None:
        if not self.queue.full():
            self.queue.put_nowait(item)  # what queue.put does when there is room
            return
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except asyncio.TimeoutError:
            raise Full

    async def get(self, timeout: float | None = None) -> Any:
        if not self.queue.empty():
            return self.queue.get_nowait()  # what queue.get does when there is an item
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            raise Empty

    def put_nowait(self, item: Any) -> Any:
        if self.queue.full():
            return _WOULD_BLOCK
        self.queue.put_nowait(item)
        return None

    def get_nowait(self) -> Any:
        if self.queue.empty():
            return _WOULD_BLOCK
        return self.queue.get_nowait()

    def put_nowait_batch(self, items: list[Any]) -> None:
        if self.maxsize > 0 and len(items) + self.qsize() > self.maxsize:
            raise Full(
                f"Cannot add {len(items)} items to queue of size "
                f"{self.qsize()} and maxsize {self.maxsize}."
            )
        for item in items:
            self.queue.put_nowait(item)

    def put_many(self, items: list[Any]) -> int:
        """Put the longest prefix of ``items`` that fits; how many went in."""
        queue = self.queue
        for n, item in enumerate(items):
            if queue.full():
                return n
            queue.put_nowait(item)
        return len(items)

    def get_many(self, num_items: int) -> list[Any]:
        """Up to ``num_items`` items, as many as are queued now."""
        queue = self.queue
        return [queue.get_nowait() for _ in range(min(num_items, queue.qsize()))]

    def get_nowait_batch(self, num_items: int) -> list[Any]:
        if num_items > self.qsize():
            raise Empty(f"Cannot get {num_items} items from queue of size {self.qsize()}.")
        return [self.queue.get_nowait() for _ in range(num_items)]


_actor_class: Any = None


def _queue_actor_class() -> Any:
    """``remote(_QueueActor)``, made once per process."""
    global _actor_class
    if _actor_class is None:
        _actor_class = asyncray.remote(_QueueActor)
    return _actor_class
