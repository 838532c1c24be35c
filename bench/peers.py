"""Standard-library and loky peers: the pools and the workloads they can run.

Each peer system is a :class:`~bench.spec.PeerPool` adapter over one pool:

=========  =============================================  ==========================
system     pool                                           ``call`` / ``many``
=========  =============================================  ==========================
``mp``     ``multiprocessing.Pool(n)``                    ``apply`` / ``apply_async``
``mp-map`` ``multiprocessing.Pool(n)``                    - / ``starmap`` (chunked)
``cf``     ``concurrent.futures.ProcessPoolExecutor(n)``  ``submit().result()`` / ``submit``
``loky``   ``loky.get_reusable_executor(n)``              ``submit().result()`` / ``submit``
=========  =============================================  ==========================

``n`` is ``os.cpu_count()``, like Ray's default ``num_cpus``, except in the
worker-scaling groups. Pools use their default start method. Peer setups
mirror the runtime workloads of the same name: ``call`` for one synchronous
round trip, ``many`` for "submit a batch, then get every result".
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import time
from collections.abc import Callable
from typing import Any

from bench import tasks
from bench.spec import PeerCtx, PeerPool, Prepared
from bench.workloads import BATCH, MIN_BATCH, BusyThread, latency_metrics


class MpPool:
    """``multiprocessing.Pool`` driven with ``apply`` / ``apply_async``."""

    ops = frozenset({"call", "many"})

    def __init__(self, workers: int) -> None:
        self.pool = multiprocessing.Pool(workers)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.pool.apply(fn, args)

    def many(self, fn: Callable[..., Any], args: list[tuple[Any, ...]]) -> list[Any]:
        pending = [self.pool.apply_async(fn, a) for a in args]
        return [p.get() for p in pending]

    def close(self) -> None:
        self.pool.close()
        self.pool.join()


class MpMapPool(MpPool):
    """``multiprocessing.Pool`` driven with ``starmap`` (batches only)."""

    ops = frozenset({"many"})

    def many(self, fn: Callable[..., Any], args: list[tuple[Any, ...]]) -> list[Any]:
        return self.pool.starmap(fn, args)


class ExecutorPool:
    """A ``concurrent.futures.Executor`` (the stdlib one, or loky's)."""

    ops = frozenset({"call", "many"})

    def __init__(self, executor: concurrent.futures.Executor) -> None:
        self.executor = executor

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.executor.submit(fn, *args).result()

    def many(self, fn: Callable[..., Any], args: list[tuple[Any, ...]]) -> list[Any]:
        futures = [self.executor.submit(fn, *a) for a in args]
        return [f.result() for f in futures]

    def close(self) -> None:
        self.executor.shutdown(wait=True)


def _cf(workers: int) -> PeerPool:
    return ExecutorPool(concurrent.futures.ProcessPoolExecutor(workers))


def _loky(workers: int) -> PeerPool:
    import loky

    return ExecutorPool(loky.get_reusable_executor(max_workers=workers))


POOLS: dict[str, Callable[[int], PeerPool]] = {
    "mp": MpPool,
    "mp-map": MpMapPool,
    "cf": _cf,
    "loky": _loky,
}
"""Peer system name -> pool factory taking the number of workers."""

PEER_OPS: dict[str, frozenset[str]] = {
    "mp": MpPool.ops,
    "mp-map": MpMapPool.ops,
    "cf": ExecutorPool.ops,
    "loky": ExecutorPool.ops,
}
"""Which operations each peer system offers, known without creating a pool."""


# ---------------------------------------------------------------- workloads


def setup_tasks_sync(ctx: PeerCtx) -> Prepared:
    return Prepared(lambda: ctx.pool.call(tasks.small_value))


def _batch(ctx: PeerCtx, fn: Callable[..., Any], args: tuple[Any, ...], n: int) -> Prepared:
    batch = [args] * n
    return Prepared(lambda: ctx.pool.many(fn, batch), multiplier=n)


def setup_tasks_async(ctx: PeerCtx) -> Prepared:
    return _batch(ctx, tasks.small_value, (), ctx.n(BATCH, minimum=MIN_BATCH))


def setup_tasks_batch(ctx: PeerCtx) -> Prepared:
    prepared = _batch(ctx, tasks.small_value, (), ctx.n(BATCH, minimum=MIN_BATCH))
    prepared.multiplier /= BATCH
    return prepared


def setup_tasks_async_busy_driver(ctx: PeerCtx) -> Prepared:
    busy = BusyThread()
    prepared = _batch(ctx, tasks.small_value, (), ctx.n(BATCH, minimum=MIN_BATCH))
    prepared.cleanup = busy.stop
    return prepared


def setup_payload(size: int, batch: int) -> Callable[[PeerCtx], Prepared]:
    """Peer twin of :func:`bench.workloads.setup_payload`."""

    def setup(ctx: PeerCtx) -> Prepared:
        return _batch(ctx, tasks.echo, (b"x" * size,), ctx.n(batch, minimum=5))

    return setup


def setup_latency(n_samples: int) -> Callable[[PeerCtx], Prepared]:
    """Peer twin of :func:`bench.workloads.setup_latency`."""

    def setup(ctx: PeerCtx) -> Prepared:
        def fn() -> dict[str, float]:
            samples = []
            for _ in range(ctx.n(n_samples, minimum=20)):
                t0 = time.perf_counter()
                ctx.pool.call(tasks.small_value)
                samples.append((time.perf_counter() - t0) * 1e3)
            return latency_metrics(samples)

        return Prepared(fn)

    return setup
