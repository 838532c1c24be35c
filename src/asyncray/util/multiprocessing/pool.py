"""``Pool``: ``multiprocessing.Pool``'s API on asyncray actors (Ray's
``ray.util.multiprocessing.Pool``).

The pool starts ``processes`` actors (default: the session's CPUs); each runs
``initializer(*initargs)`` once, in its own worker process. Work goes out in
chunks, round robin over the actors; an actor runs a chunk's calls one after
the other and returns, per call, its value or the exception it raised, so one
failing call fails only its own result. With ``maxtasksperchild=N`` an actor is
retired after ``N`` chunks (a ``map`` chunk or one ``apply``) and a fresh one,
which runs the initializer again, takes its place.

As in Ray: ``map``/``starmap`` raise the call's own exception (not a
``RayTaskError``); ``AsyncResult.wait`` takes seconds and never raises;
``get(timeout)`` and ``imap``'s ``next(timeout)`` raise
``multiprocessing.TimeoutError``; the context manager's exit terminates the
pool; ``context=`` is not supported here and raises ``ValueError`` (Ray only
logs that it ignores it).

Callbacks (``callback``, ``error_callback``) run on one thread of the pool, in
the order results complete, as multiprocessing's result-handler thread runs them.
"""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from multiprocessing import TimeoutError
from typing import Any, Optional

import asyncray
from asyncray.actor import ActorHandle
from asyncray.object_ref import ObjectRef

__all__ = ["AsyncResult", "Pool"]


class _Failed:
    """A call that raised: travels back in place of its value."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __reduce__(self) -> Any:
        return (_Failed, (self.error,))


class _PoolActor:
    def __init__(self, initializer: Optional[Callable[..., Any]], initargs: tuple[Any, ...]):
        self._init_globals: Optional[dict[str, Any]] = None
        if initializer is not None:
            initializer(*initargs)
            self._init_globals = getattr(initializer, "__globals__", None)

    def _share_globals(self, func: Callable[..., Any]) -> None:
        """Let ``func`` see the globals the initializer set.

        A function of an unimportable module (``__main__``) arrives by value
        with a globals dict of its own, so ``global G`` in the initializer
        would be invisible to it (Ray's pool has this limitation). Names
        ``func``'s module does not define are taken from the initializer's.
        """
        init_globals = self._init_globals
        func_globals = getattr(func, "__globals__", None)
        if init_globals is None or func_globals is None or func_globals is init_globals:
            return
        if func_globals.get("__name__") != init_globals.get("__name__"):
            return
        for name, value in init_globals.items():
            func_globals.setdefault(name, value)

    def ping(self) -> None:
        pass

    def run_batch(self, func: Callable[..., Any], batch: list[tuple[tuple[Any, ...], dict]]):
        self._share_globals(func)
        results: list[Any] = []
        for args, kwargs in batch:
            try:
                results.append(func(*args, **kwargs))
            except Exception as e:
                results.append(_Failed(e))
        return results


def _unwrap(results: list[Any]) -> list[Any]:
    """The values of a chunk; raises the first call's exception."""
    for value in results:
        if isinstance(value, _Failed):
            raise value.error
    return results


def _chunk_values(fut: concurrent.futures.Future[Any]) -> list[Any]:
    """A finished chunk's values, or ``[_Failed]`` if the actor itself failed."""
    error = fut.exception()
    if error is not None:
        return [_Failed(error)]
    return list(fut.result())


class AsyncResult:
    """The result of ``apply_async``, ``map_async`` or ``starmap_async``."""

    def __init__(
        self,
        pool: Pool,
        chunks: list[concurrent.futures.Future[Any]],
        single: bool,
        callback: Optional[Callable[[Any], None]],
        error_callback: Optional[Callable[[BaseException], None]],
    ) -> None:
        self._pool = pool
        self._single = single
        self._callback = callback
        self._announced = threading.Event()  # its callback has run (join waits for it)
        if callback is not None or error_callback is not None:
            pool._unannounced.add(self)
        self._error_callback = error_callback
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._chunks: list[Optional[list[Any]]] = [None] * len(chunks)
        self._left = len(chunks)
        self._error: Optional[BaseException] = None
        self._value: Any = None
        if not chunks:
            self._finish()
        for i, chunk in enumerate(chunks):
            chunk.add_done_callback(functools.partial(self._chunk_done, i))

    def _chunk_done(self, index: int, fut: concurrent.futures.Future[Any]) -> None:
        values = _chunk_values(fut)
        with self._lock:
            if self._event.is_set():
                return
            self._chunks[index] = values
            self._left -= 1
            failed = next((v.error for v in values if isinstance(v, _Failed)), None)
            if failed is None and self._left:
                return
            self._error = failed
            if failed is None:
                flat = [v for chunk in self._chunks for v in chunk or ()]
                self._value = flat[0] if self._single else flat
            self._event.set()
        if self._callback is not None or self._error_callback is not None:
            self._pool._run_callback(self._announce)

    def _finish(self) -> None:
        self._value = None if self._single else []
        self._event.set()
        if self._callback is not None:
            self._pool._run_callback(self._announce)

    def _announce(self) -> None:
        try:
            if self._error is not None:
                if self._error_callback is not None:
                    self._error_callback(self._error)
            elif self._callback is not None:
                self._callback(self._value)
        finally:
            self._pool._unannounced.discard(self)
            self._announced.set()

    def wait(self, timeout: Optional[float] = None) -> None:
        """Return once the result is ready or ``timeout`` seconds have passed."""
        self._event.wait(timeout)

    def get(self, timeout: Optional[float] = None) -> Any:
        """The result; raises the call's exception, or ``multiprocessing.TimeoutError``."""
        if not self._event.wait(timeout):
            raise TimeoutError
        if self._error is not None:
            raise self._error
        return self._value

    def ready(self) -> bool:
        return self._event.is_set()

    def successful(self) -> bool:
        """Whether no call raised; ``ValueError`` if the result is not ready yet."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._error is None


class _IMapIterator:
    """``imap``/``imap_unordered``: chunks go out as earlier ones come back, at
    most two per actor in flight, so an endless iterable works."""

    def __init__(
        self,
        pool: Pool,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: int,
        ordered: bool,
    ) -> None:
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize!r}")
        self._pool = pool
        self._func = func
        self._source = iter(iterable)
        self._chunksize = chunksize
        self._ordered = ordered
        self._in_flight: deque[concurrent.futures.Future[Any]] = deque()
        self._ready: deque[Any] = deque()
        self._exhausted = False
        self._fill()

    def _fill(self) -> None:
        limit = 2 * len(self._pool._actors)
        while not self._exhausted and len(self._in_flight) < limit:
            chunk = list(itertools.islice(self._source, self._chunksize))
            if not chunk:
                self._exhausted = True
                break
            self._in_flight.append(self._pool._submit(self._func, [((a,), {}) for a in chunk]))

    def __iter__(self) -> _IMapIterator:
        return self

    def __next__(self) -> Any:
        return self.next()

    def next(self, timeout: Optional[float] = None) -> Any:
        """The next result; ``multiprocessing.TimeoutError`` after ``timeout`` seconds."""
        while not self._ready:
            if not self._in_flight:
                raise StopIteration
            waiting = [self._in_flight[0]] if self._ordered else list(self._in_flight)
            done, _ = concurrent.futures.wait(
                waiting, timeout, return_when=concurrent.futures.FIRST_COMPLETED
            )
            if not done:
                raise TimeoutError
            first = next(fut for fut in waiting if fut in done)  # the oldest that is done
            self._in_flight.remove(first)
            self._ready.extend(_chunk_values(first))
            self._fill()
        value = self._ready.popleft()
        if isinstance(value, _Failed):
            raise value.error
        return value


class Pool:
    """A pool of actor processes, with ``multiprocessing.Pool``'s API.

    ``processes``: how many actors (default: the session's CPUs; more than it
    has raises ``ValueError``). ``initializer(*initargs)`` runs once in each.
    ``maxtasksperchild``: chunks an actor runs before a fresh one replaces it.
    ``ray_address``: passed to ``init`` when no session runs yet.
    ``ray_remote_args``: options of the pool's actors (``num_cpus``, ...).
    """

    def __init__(
        self,
        processes: Optional[int] = None,
        initializer: Optional[Callable[..., Any]] = None,
        initargs: Optional[Iterable[Any]] = None,
        maxtasksperchild: Optional[int] = None,
        context: Any = None,
        ray_address: Optional[str] = None,
        ray_remote_args: Optional[dict[str, Any]] = None,
    ) -> None:
        if context is not None:
            raise ValueError(
                "Pool(context=...) is not supported: asyncray starts the pool's worker "
                "processes itself; drop the context argument"
            )
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if maxtasksperchild is not None and (
            not isinstance(maxtasksperchild, int) or maxtasksperchild < 1
        ):
            raise ValueError("maxtasksperchild must be a positive int or None")
        if processes is not None and (not isinstance(processes, int) or processes < 1):
            raise ValueError("Processes in the pool must be >0.")
        if not asyncray.is_initialized():
            if ray_address is not None and ray_address != "local":
                asyncray.init(address=ray_address)
            elif ray_address is None and (
                os.environ.get("RAY_ADDRESS") or os.environ.get("ASYNCRAY_ADDRESS")
            ):
                asyncray.init()  # joins the head the variable names, as Ray's pool does
            else:
                asyncray.init(num_cpus=processes)
        cpus = int(asyncray.cluster_resources().get("CPU", 0))
        if processes is None:
            processes = max(cpus, 1)
        if cpus < processes:
            raise ValueError(
                f"Tried to start a pool with {processes} processes on an existing ray "
                f"cluster, but there are only {cpus} CPUs in the ray cluster."
            )
        self._initializer = initializer
        self._initargs = tuple(initargs or ())
        self._maxtasks = maxtasksperchild
        self._actor_cls = asyncray.remote(_PoolActor).options(**(ray_remote_args or {}))
        self._closed = False
        self._terminated = False
        self._next = 0
        self._outstanding: set[concurrent.futures.Future[Any]] = set()
        self._submit_lock = threading.Lock()  # joblib submits from the callback thread
        self._retired: list[ActorHandle[Any]] = []
        self._callbacks: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._callbacks_lock = threading.Lock()
        self._unannounced: set[AsyncResult] = set()  # results whose callback has not run
        self._actors: list[list[Any]] = [[self._new_actor(), 0] for _ in range(processes)]
        asyncray.get([actor.ping.remote() for actor, _ in self._actors])

    # -- internals -----------------------------------------------------------

    def _new_actor(self) -> ActorHandle[Any]:
        return self._actor_cls.remote(self._initializer, self._initargs)

    def _submit(self, func: Callable[..., Any], batch: list[Any]) -> concurrent.futures.Future[Any]:
        """Run ``batch`` on the next actor; the future of its list of results."""
        with self._submit_lock:
            if self._terminated:  # an imap still submitting after terminate() or join()
                raise ValueError("Pool not running")
            entry = self._actors[self._next]
            self._next = (self._next + 1) % len(self._actors)
            ref: ObjectRef[Any] = entry[0].run_batch.remote(func, batch)
            entry[1] += 1
            if self._maxtasks is not None and entry[1] >= self._maxtasks:
                self._retired.append(entry[0])  # finishes its queued chunks, then is killed
                entry[0], entry[1] = self._new_actor(), 0
            future = ref.future()
            self._outstanding.add(future)
        future.add_done_callback(self._outstanding.discard)
        return future

    def _run_callback(self, fn: Callable[[], None]) -> None:
        with self._callbacks_lock:
            if self._callbacks is None:
                self._callbacks = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix="asyncray-pool-callbacks"
                )
            executor = self._callbacks
        try:
            executor.submit(fn)
        except RuntimeError:
            pass  # the pool was terminated: nobody waits for the callback

    def _check_running(self) -> None:
        if self._closed:
            raise ValueError("Pool not running")

    def _chunks(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: Optional[int],
        star: bool,
    ) -> list[concurrent.futures.Future[Any]]:
        items = list(iterable)
        if chunksize is None:
            chunksize, extra = divmod(len(items), len(self._actors) * 4)
            chunksize = max(chunksize + (1 if extra else 0), 1)
        elif chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize!r}")
        calls: list[tuple[tuple[Any, ...], dict[str, Any]]]
        calls = [(tuple(a), {}) if star else ((a,), {}) for a in items]
        return [
            self._submit(func, calls[i : i + chunksize]) for i in range(0, len(calls), chunksize)
        ]

    # -- multiprocessing.Pool's API -------------------------------------------

    def apply(
        self,
        func: Callable[..., Any],
        args: Optional[Iterable[Any]] = (),
        kwds: Optional[dict[str, Any]] = None,
        *,
        kwargs: Optional[dict[str, Any]] = None,
    ) -> Any:
        """``func(*args, **kwds)`` on one of the actors; its value (``kwargs=`` is Ray's name)."""
        return self.apply_async(func, args, kwds, kwargs=kwargs).get()

    def apply_async(
        self,
        func: Callable[..., Any],
        args: Optional[Iterable[Any]] = (),
        kwds: Optional[dict[str, Any]] = None,
        callback: Optional[Callable[[Any], None]] = None,
        error_callback: Optional[Callable[[BaseException], None]] = None,
        *,
        kwargs: Optional[dict[str, Any]] = None,
    ) -> AsyncResult:
        """``apply`` without waiting: an ``AsyncResult``. ``kwds`` is multiprocessing's
        name for the keyword arguments, ``kwargs`` Ray's; give one of them."""
        if kwds is not None and kwargs is not None:
            raise TypeError("apply_async() takes kwds or kwargs (the same thing), not both")
        self._check_running()
        call = (tuple(args or ()), dict(kwds if kwds is not None else kwargs or {}))
        chunk = self._submit(func, [call])
        return AsyncResult(self, [chunk], True, callback, error_callback)

    def map(
        self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: Optional[int] = None
    ) -> list[Any]:
        return self.map_async(func, iterable, chunksize).get()

    def map_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: Optional[int] = None,
        callback: Optional[Callable[[Any], None]] = None,
        error_callback: Optional[Callable[[BaseException], None]] = None,
    ) -> AsyncResult:
        self._check_running()
        chunks = self._chunks(func, iterable, chunksize, star=False)
        return AsyncResult(self, chunks, False, callback, error_callback)

    def starmap(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: Optional[int] = None,
    ) -> list[Any]:
        return self.starmap_async(func, iterable, chunksize).get()

    def starmap_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: Optional[int] = None,
        callback: Optional[Callable[[Any], None]] = None,
        error_callback: Optional[Callable[[BaseException], None]] = None,
    ) -> AsyncResult:
        self._check_running()
        chunks = self._chunks(func, iterable, chunksize, star=True)
        return AsyncResult(self, chunks, False, callback, error_callback)

    def imap(
        self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int = 1
    ) -> Iterator[Any]:
        self._check_running()
        return _IMapIterator(self, func, iterable, chunksize, ordered=True)

    def imap_unordered(
        self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int = 1
    ) -> Iterator[Any]:
        self._check_running()
        return _IMapIterator(self, func, iterable, chunksize, ordered=False)

    def close(self) -> None:
        """Accept no more work; what was submitted still runs (``join`` waits for it)."""
        self._closed = True

    def terminate(self) -> None:
        """Stop at once: the actors are killed; unfinished results fail with ``ActorDiedError``."""
        self._closed = True
        if self._terminated:
            return
        self._terminated = True
        self._stop(kill=True)

    def join(self) -> None:
        """Wait for the submitted work of a closed pool, then stop its actors."""
        if not self._closed:
            raise ValueError("Pool is still running")
        if self._terminated:
            return
        concurrent.futures.wait(list(self._outstanding))
        # as in multiprocessing, the callbacks have run when join returns
        for result in list(self._unannounced):
            result._announced.wait()
        self._terminated = True
        self._stop(kill=False)

    def _stop(self, kill: bool) -> None:
        actors = [actor for actor, _ in self._actors] + self._retired
        self._actors, self._retired = [], []
        self._outstanding.clear()
        if asyncray.is_initialized():
            for actor in actors:
                asyncray.kill(actor)
        with self._callbacks_lock:
            executor, self._callbacks = self._callbacks, None
        if executor is not None:
            executor.shutdown(wait=not kill)

    def __enter__(self) -> Pool:
        self._check_running()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.terminate()

    def __reduce__(self) -> Any:
        # multiprocessing's error and words
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")
