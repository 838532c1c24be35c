"""``ActorPool``: spread work over a fixed set of actors (``ray.util.ActorPool``).

A pure driver-side helper built on the public API (``asyncray.wait``,
``asyncray.get`` and their awaitable twins); it owns no actor of its own. The
bookkeeping is Ray's, so programs behave the same:

* idle actors form a stack (``pop()`` takes the one returned last);
* ``submit`` calls ``fn(actor, value)`` on an idle actor at once, or queues
  ``(fn, value)`` in ``_pending_submits`` (FIFO) when none is idle;
* an actor goes back to the pool only when its result is taken with
  ``get_next``/``get_next_unordered`` (or ``map``), which also dispatches the
  oldest pending submit; an actor whose call raised ``ActorDiedError`` is
  dropped instead.

Beyond Ray: ``get_next_async``, ``get_next_unordered_async``, ``map_async``
and ``map_unordered_async`` for ``await``/``async for``, and ``submit_future``,
which returns a ``PoolFuture`` for one submission. Its task stays out of the
``get_next`` stream, and its actor comes back to the pool as soon as the task
finishes. Differences from Ray 2.60, both bug fixes: ``get_next_unordered(...,
ignore_if_timedout=True)`` raises ``TimeoutError`` (Ray raises
``UnboundLocalError``), and methods with ``num_returns > 1`` also work with
``get_next_unordered`` and with timeouts.

Like Ray's, a pool is not thread-safe: use it from one thread (or one loop).
"""

from __future__ import annotations

import concurrent.futures
import functools
import sys
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar, Union

import asyncray
from asyncray._options import check_timeout
from asyncray.actor import ActorHandle
from asyncray.exceptions import ActorDiedError
from asyncray.object_ref import ObjectRef

if TYPE_CHECKING:
    import asyncio

V = TypeVar("V")
R = TypeVar("R")

# What ``fn(actor, value)`` returns: one ref, or a list of them (num_returns > 1).
Refs = Union[ObjectRef[Any], list[ObjectRef[Any]]]
PoolFn = Callable[[ActorHandle[Any], Any], Any]

_TIMEOUT_MSG = "Timed out waiting for result"


def _key(refs: Refs) -> Any:
    """A hashable key for what ``fn`` returned (a tuple for a list, as Ray keys it)."""
    return tuple(refs) if isinstance(refs, list) else refs


def _probe(key: Any) -> ObjectRef[Any]:
    """The ref to ``wait`` on: all returns of one call become ready together."""
    return key[0] if isinstance(key, tuple) else key


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """This thread's running event loop, if any (asyncio is not imported to find out)."""
    if "asyncio" not in sys.modules:
        return None  # nothing runs a loop yet: a sync pool never imports asyncio
    import asyncio

    return asyncio.events._get_running_loop()


def _ignored(refs: Refs) -> TimeoutError:
    return TimeoutError(f"{_TIMEOUT_MSG}. The task {refs} has been ignored.")


class _PendingCall(tuple):
    """A pending submit_future call: Ray's ``(fn, value)`` shape, plus its future."""

    future: PoolFuture[Any]

    def __new__(cls, fn: PoolFn, value: Any, future: PoolFuture[Any]) -> _PendingCall:
        entry = super().__new__(cls, (fn, value))
        entry.future = future
        return entry


def _future_of(entry: tuple[PoolFn, Any]) -> PoolFuture[Any] | None:
    """The future of a pending entry; None for a plain submit."""
    return entry.future if type(entry) is _PendingCall else None


class PoolFuture(concurrent.futures.Future, Generic[R]):
    """The result of one ``ActorPool.submit_future`` call.

    A ``concurrent.futures.Future`` that is also awaitable on any event loop:
    ``await fut`` or ``fut.result(timeout)``. Both also keep the pool moving:
    while the call still waits for an actor, they hand actors freed by other
    ``submit_future`` calls to the oldest pending submits. ``object_ref`` is
    the call's ref (or list of refs) once it has been dispatched, else None.
    Cancelling the future does not cancel the call.
    """

    def __init__(self, pool: ActorPool) -> None:
        super().__init__()
        self._pool = pool
        self.object_ref: Refs | None = None
        # Completed (with True if the actor died) when the call itself has
        # finished, whatever happens to this future (it may be cancelled).
        self._call_done: concurrent.futures.Future[bool] = concurrent.futures.Future()
        # The loop to run the pool's bookkeeping on when the call finishes.
        self._loop = _running_loop()

    def result(self, timeout: float | None = None) -> R:
        """The call's value (or its exception raised), waiting up to ``timeout`` seconds."""
        self._pool._drive(self, timeout)
        if not self.done():
            raise TimeoutError(f"{_TIMEOUT_MSG} of a submit_future call")
        return super().result(timeout=0)

    def __await__(self) -> Generator[Any, None, R]:
        return self._pool._drive_async(self).__await__()


class ActorPool:
    """Operate on a fixed pool of actors.

    Args:
        actors: the actor handles to use; all start idle.

    Example:
        >>> pool = ActorPool([Actor.remote(), Actor.remote()])
        >>> list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4]))
        [2, 4, 6, 8]
    """

    def __init__(self, actors: Iterable[ActorHandle[Any]]) -> None:
        self._idle_actors: list[ActorHandle[Any]] = list(actors)
        # key of a dispatched submit() -> (task index, actor)
        self._future_to_actor: dict[Any, tuple[int, ActorHandle[Any]]] = {}
        # task index -> what fn returned
        self._index_to_future: dict[int, Refs] = {}
        self._next_task_index = 0
        self._next_return_index = 0
        # (fn, value) not yet dispatched, oldest first; Ray's name and shape.
        self._pending_submits: list[tuple[PoolFn, Any]] = []
        # Dispatched submit_future calls still running -> their actor.
        self._detached: dict[PoolFuture[Any], ActorHandle[Any]] = {}

    # ------------------------------------------------------------ submitting

    def submit(self, fn: PoolFn, value: Any) -> None:
        """Schedule ``fn(actor, value)`` on an idle actor, or queue it until one is free.

        ``fn`` must return an ``ObjectRef`` (or a list of them); the actor is
        busy until that result is taken with ``get_next``/``get_next_unordered``.
        """
        self._reap()
        if self._idle_actors:
            self._dispatch(fn, value, None)
        else:
            self._pending_submits.append((fn, value))

    def submit_future(self, fn: PoolFn, value: Any) -> PoolFuture[Any]:
        """Like ``submit``, but return a ``PoolFuture`` for this call's result.

        The call is not part of the ``get_next``/``map`` stream: its result is
        read only through the future (``await fut`` or ``fut.result()``), and
        its actor returns to the pool by itself once the call finishes (an
        actor that died is dropped). A call that waits for an actor is
        dispatched in FIFO order with ordinary submits; an actor held by an
        ordinary submit comes back only when that result is taken, as in Ray.

        Returns:
            A ``PoolFuture``: a ``concurrent.futures.Future`` that is awaitable.
        """
        self._reap()
        future: PoolFuture[Any] = PoolFuture(self)
        if self._idle_actors:
            self._dispatch(fn, value, future)
        else:
            self._pending_submits.append(_PendingCall(fn, value, future))
        return future

    def _dispatch(self, fn: PoolFn, value: Any, future: PoolFuture[Any] | None) -> None:
        actor = self._idle_actors.pop()
        try:
            refs = fn(actor, value)
        except BaseException as error:
            self._idle_actors.append(actor)  # Ray loses the actor here
            if future is None or not isinstance(error, Exception):
                raise
            _settle(future, error=error)  # a submit_future's error goes to its future
            return
        if future is not None:
            self._detached[future] = actor
            future.object_ref = refs
            _chain(refs, future, self._reap)
            return
        self._future_to_actor[_key(refs)] = (self._next_task_index, actor)
        self._index_to_future[self._next_task_index] = refs
        self._next_task_index += 1

    def _return_actor(self, actor: ActorHandle[Any], is_alive: bool = True) -> None:
        # A dead actor stays out: submit() would keep picking it otherwise.
        if is_alive:
            self._idle_actors.append(actor)
        while self._pending_submits and self._idle_actors:
            entry = self._pending_submits.pop(0)
            self._dispatch(entry[0], entry[1], _future_of(entry))

    def _reap(self) -> None:
        """Take back the actors of finished ``submit_future`` calls."""
        if not self._detached:
            return
        for future in [f for f in self._detached if f._call_done.done()]:
            actor = self._detached.pop(future)
            self._return_actor(actor, is_alive=not future._call_done.result())

    # ------------------------------------------------------------ state

    def has_next(self) -> bool:
        """Whether any submitted result has not been returned yet.

        As in Ray, submits still waiting for an actor count only once they
        are dispatched, except when the actors they wait for are busy with
        ``submit_future`` calls (which free them without a ``get_next``).
        """
        self._reap()
        return bool(self._future_to_actor) or self._blocked_regular()

    def _blocked_regular(self) -> bool:
        """A plain submit waits for an actor that a submit_future call will free."""
        if not self._detached:
            return False
        return any(_future_of(entry) is None for entry in self._pending_submits)

    def has_free(self) -> bool:
        """Whether an actor is idle and no submit is waiting for one."""
        self._reap()
        return len(self._idle_actors) > 0 and len(self._pending_submits) == 0

    def pop_idle(self) -> ActorHandle[Any] | None:
        """Remove and return an idle actor if ``has_free()``, else None."""
        if self.has_free():
            return self._idle_actors.pop()
        return None

    def push(self, actor: ActorHandle[Any]) -> None:
        """Add an actor to the pool; it takes the oldest pending submit at once.

        Raises:
            ValueError: the actor is already in this pool (idle or busy).
        """
        self._reap()
        busy = [a for _, a in self._future_to_actor.values()]
        busy.extend(self._detached.values())
        if actor in self._idle_actors or actor in busy:
            raise ValueError("Actor already belongs to current ActorPool")
        self._return_actor(actor)

    # ------------------------------------------------------------ results (sync)

    def get_next(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """The next result in submission order.

        Args:
            timeout: seconds to wait for it; None waits forever.
            ignore_if_timedout: on timeout, drop that task (its actor goes
                back to the pool) before raising.

        Raises:
            StopIteration: nothing is pending ("No more results to get").
            TimeoutError: not ready within ``timeout``.
            ValueError: ``get_next_unordered`` already returned a later result.
        """
        deadline = _deadline(timeout)
        if not self._await_dispatch(deadline):
            return self._ignore_pending(ignore_if_timedout)
        self._check_ordered()
        refs = self._index_to_future[self._next_return_index]
        ready = True
        if timeout is not None:
            ready = bool(asyncray.wait([_probe(_key(refs))], timeout=_remaining(deadline))[0])
            if not ready and not ignore_if_timedout:
                raise TimeoutError(_TIMEOUT_MSG)
        actor = self._pop_ordered(refs)
        if not ready:
            self._return_actor(actor)
            raise _ignored(refs)
        return self._get_result(refs, actor)

    def get_next_unordered(
        self, timeout: float | None = None, ignore_if_timedout: bool = False
    ) -> Any:
        """Whichever pending result is ready first.

        Args:
            timeout: seconds to wait; None waits forever.
            ignore_if_timedout: on timeout, drop the oldest pending task (its
                actor goes back to the pool) before raising ``TimeoutError``.
                Ray 2.60 raises ``UnboundLocalError`` here instead.

        Raises:
            StopIteration: nothing is pending ("No more results to get").
            TimeoutError: nothing became ready within ``timeout``.
        """
        deadline = _deadline(timeout)
        if not self._await_dispatch(deadline):
            return self._ignore_pending(ignore_if_timedout)
        probes = {_probe(k): k for k in self._future_to_actor}
        ready, _ = asyncray.wait(list(probes), num_returns=1, timeout=_remaining(deadline))
        return self._take_unordered(probes, ready, ignore_if_timedout)

    def _get_result(self, refs: Refs, actor: ActorHandle[Any]) -> Any:
        is_alive = True
        try:
            return asyncray.get(refs)
        except ActorDiedError:
            is_alive = False
            raise
        finally:
            self._return_actor(actor, is_alive=is_alive)

    def _await_dispatch(self, deadline: float | None) -> bool:
        """Wait until a plain submit is dispatched; False on timeout.

        Raises StopIteration when nothing is pending. Only a ``submit_future``
        call can free the actor that a waiting plain submit needs.
        """
        self._reap()
        while not self._future_to_actor:
            if not self._blocked_regular():
                raise StopIteration("No more results to get")
            remaining = _remaining(deadline)
            if remaining == 0:
                return False
            calls = [f._call_done for f in self._detached]
            concurrent.futures.wait(calls, remaining, concurrent.futures.FIRST_COMPLETED)
            self._reap()
        return True

    def _drive(self, future: PoolFuture[Any], timeout: float | None) -> None:
        """``future.result()``: hand freed actors on while ``future`` waits for one."""
        deadline = _deadline(timeout)
        while True:
            self._reap()
            if future.done() or future.object_ref is not None or not self._detached:
                concurrent.futures.wait([future], _remaining(deadline))
                return
            if _remaining(deadline) == 0:
                return
            calls = [f._call_done for f in self._detached]
            concurrent.futures.wait(
                [future, *calls], _remaining(deadline), concurrent.futures.FIRST_COMPLETED
            )

    # ------------------------------------------------------------ results (async)

    async def get_next_async(
        self, timeout: float | None = None, ignore_if_timedout: bool = False
    ) -> Any:
        """The awaitable twin of ``get_next``: same order, errors and bookkeeping.

        Raises:
            StopAsyncIteration: nothing is pending (a coroutine cannot raise
                ``StopIteration``).
            TimeoutError, ValueError: as ``get_next``.
        """
        deadline = _deadline(timeout)
        if not await self._await_dispatch_async(deadline):
            return self._ignore_pending(ignore_if_timedout)
        self._check_ordered()
        refs = self._index_to_future[self._next_return_index]
        ready = True
        if timeout is not None:
            probe = [_probe(_key(refs))]
            ready = bool((await asyncray.wait_async(probe, timeout=_remaining(deadline)))[0])
            if not ready and not ignore_if_timedout:
                raise TimeoutError(_TIMEOUT_MSG)
        actor = self._pop_ordered(refs)
        if not ready:
            self._return_actor(actor)
            raise _ignored(refs)
        return await self._get_result_async(refs, actor)

    async def get_next_unordered_async(
        self, timeout: float | None = None, ignore_if_timedout: bool = False
    ) -> Any:
        """The awaitable twin of ``get_next_unordered``.

        Raises:
            StopAsyncIteration: nothing is pending.
            TimeoutError: as ``get_next_unordered``.
        """
        deadline = _deadline(timeout)
        if not await self._await_dispatch_async(deadline):
            return self._ignore_pending(ignore_if_timedout)
        probes = {_probe(k): k for k in self._future_to_actor}
        ready, _ = await asyncray.wait_async(
            list(probes), num_returns=1, timeout=_remaining(deadline)
        )
        refs, actor = self._pop_unordered(probes, ready, ignore_if_timedout)
        return await self._get_result_async(refs, actor)

    async def _get_result_async(self, refs: Refs, actor: ActorHandle[Any]) -> Any:
        is_alive = True
        try:
            return await asyncray.get_async(refs)
        except ActorDiedError:
            is_alive = False
            raise
        finally:
            self._return_actor(actor, is_alive=is_alive)

    async def _await_dispatch_async(self, deadline: float | None) -> bool:
        import asyncio

        self._reap()
        while not self._future_to_actor:
            if not self._blocked_regular():
                # StopIteration cannot cross a coroutine boundary; Ray's getters raise it.
                raise StopAsyncIteration("No more results to get")
            remaining = _remaining(deadline)
            if remaining == 0:
                return False
            waiting = [asyncio.wrap_future(f._call_done) for f in self._detached]
            await asyncio.wait(waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            self._reap()
        return True

    async def _drive_async(self, future: PoolFuture[Any]) -> Any:
        """``await future``: hand freed actors on while ``future`` waits for one."""
        import asyncio

        mine = asyncio.wrap_future(future)
        while True:
            self._reap()
            if future.done() or future.object_ref is not None or not self._detached:
                return await mine
            calls = [asyncio.wrap_future(f._call_done) for f in self._detached]
            await asyncio.wait([mine, *calls], return_when=asyncio.FIRST_COMPLETED)

    # ------------------------------------------------------------ shared steps

    def _check_ordered(self) -> None:
        if self._next_return_index >= self._next_task_index:
            raise ValueError("It is not allowed to call get_next() after get_next_unordered().")

    def _pop_ordered(self, refs: Refs) -> ActorHandle[Any]:
        del self._index_to_future[self._next_return_index]
        self._next_return_index += 1
        return self._future_to_actor.pop(_key(refs))[1]

    def _pop_unordered(
        self, probes: dict[ObjectRef[Any], Any], ready: list[Any], ignore_if_timedout: bool
    ) -> tuple[Refs, ActorHandle[Any]]:
        if ready:
            key = probes[ready[0]]
        elif not ignore_if_timedout:
            raise TimeoutError(_TIMEOUT_MSG)
        else:
            # Ray 2.60 raises UnboundLocalError here; drop the oldest task instead.
            key = min(self._future_to_actor, key=lambda k: self._future_to_actor[k][0])
        index, actor = self._future_to_actor.pop(key)
        refs = self._index_to_future.pop(index)
        self._next_return_index = max(self._next_return_index, index + 1)
        if not ready:
            self._return_actor(actor)
            raise _ignored(refs)
        return refs, actor

    def _take_unordered(
        self, probes: dict[ObjectRef[Any], Any], ready: list[Any], ignore_if_timedout: bool
    ) -> Any:
        refs, actor = self._pop_unordered(probes, ready, ignore_if_timedout)
        return self._get_result(refs, actor)

    def _ignore_pending(self, ignore_if_timedout: bool) -> Any:
        """A plain submit timed out before it got an actor: maybe drop it, then raise."""
        if not ignore_if_timedout:
            raise TimeoutError(_TIMEOUT_MSG)
        for i, entry in enumerate(self._pending_submits):
            if _future_of(entry) is None:
                del self._pending_submits[i]
                raise TimeoutError(
                    f"{_TIMEOUT_MSG}. The submit of {entry[1]!r}, still waiting for an "
                    "actor, has been ignored."
                )
        raise TimeoutError(_TIMEOUT_MSG)  # pragma: no cover - _blocked_regular() was True

    # ------------------------------------------------------------ map

    def map(self, fn: PoolFn, values: Iterable[Any]) -> Iterator[Any]:
        """Apply ``fn(actor, value)`` over ``values``; results come back in input order.

        Results of earlier submits not yet taken are dropped first (as in
        Ray); every value is submitted before this returns.
        """
        while self.has_next():
            try:
                self.get_next(timeout=0, ignore_if_timedout=True)
            except TimeoutError:
                pass
        for v in values:
            self.submit(fn, v)

        def results() -> Iterator[Any]:
            while self.has_next():
                yield self.get_next()

        return results()

    def map_unordered(self, fn: PoolFn, values: Iterable[Any]) -> Iterator[Any]:
        """Like ``map``, but yield results as they finish."""
        while self.has_next():
            try:
                self.get_next_unordered(timeout=0)
            except TimeoutError:
                pass
        for v in values:
            self.submit(fn, v)

        def results() -> Iterator[Any]:
            while self.has_next():
                yield self.get_next_unordered()

        return results()

    async def map_async(self, fn: PoolFn, values: Iterable[Any]) -> AsyncIterator[Any]:
        """``async for`` twin of ``map``: results in input order.

        An async generator runs nothing until iterated, so earlier results are
        dropped and ``values`` submitted at the first ``__anext__``.
        """
        while self.has_next():
            try:
                await self.get_next_async(timeout=0, ignore_if_timedout=True)
            except TimeoutError:
                pass
        for v in values:
            self.submit(fn, v)
        while self.has_next():
            yield await self.get_next_async()

    async def map_unordered_async(self, fn: PoolFn, values: Iterable[Any]) -> AsyncIterator[Any]:
        """``async for`` twin of ``map_unordered``: results as they finish."""
        while self.has_next():
            try:
                await self.get_next_unordered_async(timeout=0)
            except TimeoutError:
                pass
        for v in values:
            self.submit(fn, v)
        while self.has_next():
            yield await self.get_next_unordered_async()


# ---------------------------------------------------------------- helpers


def _deadline(timeout: float | None) -> float | None:
    """When a wait of ``timeout`` seconds ends (None: never).

    Raises:
        TypeError, ValueError: ``timeout`` is not a number, is NaN or negative.
    """
    seconds = check_timeout("timeout", timeout)
    return None if seconds is None else time.monotonic() + seconds


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _chain(refs: Refs, future: PoolFuture[Any], reap: Callable[[], None]) -> None:
    """Complete ``future`` with the value(s) of ``refs``; then let the pool reap."""
    inner = [refs] if isinstance(refs, ObjectRef) else list(refs)
    values: list[Any] = [None] * len(inner)
    left = [len(inner)]

    def one_done(i: int, done: concurrent.futures.Future[Any]) -> None:
        error = done.exception()
        if error is None:
            values[i] = done.result()
        left[0] -= 1
        # The call is done (its actor reclaimable) before anyone awaiting the
        # future can resume and look at the pool.
        if left[0] == 0 or isinstance(error, ActorDiedError):
            _settle(future._call_done, value=isinstance(error, ActorDiedError))
        if error is not None:
            _settle(future, error=error)
        elif left[0] == 0:
            _settle(future, value=values[0] if isinstance(refs, ObjectRef) else values)

    for i, ref in enumerate(inner):
        ref.future().add_done_callback(functools.partial(one_done, i))

    def schedule_reap(_: Any) -> None:
        loop = future._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(reap)
            except RuntimeError:  # the loop closed meanwhile
                pass

    future._call_done.add_done_callback(schedule_reap)


def _settle(
    future: concurrent.futures.Future[Any], value: Any = None, error: BaseException | None = None
) -> None:
    """Set a result once; a second settle (another return's error) is ignored."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)
    except concurrent.futures.InvalidStateError:
        pass  # already settled, or cancelled by its holder
