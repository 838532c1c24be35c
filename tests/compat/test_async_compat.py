"""asyncio: awaiting refs, gathering them, and async actors."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import pytest
from _compat import ON_RAY

import asyncray as ray
from asyncray.exceptions import RayTaskError


@ray.remote
def slow_square(x, seconds=0.0):
    time.sleep(seconds)
    return x * x


@ray.remote
def fail():
    raise KeyError("async-missing")


@ray.remote
class AsyncCounter:
    def __init__(self):
        self.value = 0

    async def incr(self, by=1):
        await asyncio.sleep(0)
        self.value += by
        return self.value

    async def nap(self, seconds):
        await asyncio.sleep(seconds)
        return seconds

    async def square_via_task(self, x):
        return await slow_square.remote(x)

    def plain(self):
        return "sync method of an async actor"


async def test_await_a_ref():
    assert await slow_square.remote(4) == 16
    assert await ray.put("put") == "put"


async def test_gather_refs_keeps_their_order():
    refs = [slow_square.remote(i, 0.05 * (5 - i)) for i in range(5)]
    assert await asyncio.gather(*refs) == [0, 1, 4, 9, 16]


async def test_await_a_failed_task_raises_its_cause():
    with pytest.raises(KeyError) as info:
        await fail.remote()
    assert isinstance(info.value, RayTaskError)


async def test_wait_for_a_ref_times_out():
    ref = slow_square.remote(1, 0.5)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(ref, 0.1)
    assert await ref == 1


def test_ref_future_is_a_concurrent_future():
    fut = slow_square.remote(3).future()
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(timeout=30) == 9


async def test_wrap_future_of_ref_future():
    # ``ref.as_future()`` is deprecated in both (Ray logs it, asyncray emits a
    # DeprecationWarning); this is the form both recommend.
    fut = asyncio.wrap_future(slow_square.remote(5).future())
    assert asyncio.isfuture(fut)
    assert await fut == 25


async def test_async_actor_methods_are_awaitable_and_keep_state():
    counter = AsyncCounter.remote()
    assert await counter.incr.remote() == 1
    assert await counter.incr.remote(5) == 6
    assert await asyncio.gather(counter.incr.remote(), counter.incr.remote()) == [7, 8]
    ray.kill(counter)


async def test_async_actor_runs_calls_concurrently():
    actor = AsyncCounter.remote()
    await actor.incr.remote()  # started
    start = time.monotonic()
    naps = await asyncio.gather(*[actor.nap.remote(0.5) for _ in range(8)])
    assert naps == [0.5] * 8
    assert time.monotonic() - start < 3.0  # 8 x 0.5 s one after another would be 4 s
    ray.kill(actor)


async def test_async_actor_awaits_a_task_it_submits():
    actor = AsyncCounter.remote()
    assert await actor.square_via_task.remote(6) == 36
    ray.kill(actor)


def test_async_actor_sync_method_and_blocking_get_from_the_driver():
    actor = AsyncCounter.remote()
    assert ray.get(actor.plain.remote()) == "sync method of an async actor"
    assert ray.get([actor.incr.remote() for _ in range(3)]) == [1, 2, 3]
    ray.kill(actor)


async def test_asyncio_wait_on_refs():
    refs = [slow_square.remote(i) for i in range(3)]
    if ON_RAY:
        # Ray's refs are not futures: asyncio.wait() on them fails on Python
        # >= 3.11 (Ray #31606; docs/ray-compatibility.md, "asyncio.wait([ref])").
        with pytest.raises((AttributeError, TypeError)):
            await asyncio.wait(refs)
        done = await asyncio.gather(*refs)
        assert done == [0, 1, 4]
    else:
        # asyncray's refs are awaitables that asyncio.ensure_future accepts (same row).
        done, pending = await asyncio.wait(refs)
        assert pending == set()
        assert sorted(f.result() for f in done) == [0, 1, 4]
