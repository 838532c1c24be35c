"""Generators: streaming tasks and streaming actor methods on the three kinds of actors."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from _compat import eventually

import asyncray as ray
from asyncray.exceptions import RayTaskError


@ray.remote(num_returns="streaming")
def count(n):
    # Not ``yield from range(n)``: Ray 2.60 calls ``send`` on the delegate and
    # fails with "'range_iterator' object has no attribute 'send'".
    for i in range(n):  # noqa: UP028
        yield i


@ray.remote
def count_default(n):
    for i in range(n):  # noqa: UP028
        yield i


@ray.remote(num_returns="streaming")
def fail_at(n, k):
    for i in range(n):
        if i == k:
            raise ValueError(f"item {k}")
        yield i


@ray.remote(num_returns=3)
def fixed(x):
    yield x
    yield x + 1
    yield x + 2


def test_streaming_generator_yields_refs_in_order_then_stops():
    gen = count.remote(4)
    assert isinstance(gen, ray.ObjectRefGenerator)
    first = next(gen)
    assert isinstance(first, ray.ObjectRef)
    assert ray.get(first) == 0
    assert [ray.get(ref) for ref in gen] == [1, 2, 3]
    with pytest.raises(StopIteration):
        next(gen)


def test_a_generator_function_streams_by_default():
    gen = count_default.remote(3)
    assert isinstance(gen, ray.ObjectRefGenerator)
    assert [ray.get(r) for r in gen] == [0, 1, 2]


def test_options_num_returns_streaming():
    gen = count_default.options(num_returns="streaming").remote(2)
    assert [ray.get(r) for r in gen] == [0, 1]


def test_an_empty_generator_stops_at_once():
    assert list(count.remote(0)) == []


def test_error_at_item_k_keeps_the_items_before_it():
    gen = fail_at.remote(5, 2)
    assert ray.get(next(gen)) == 0
    assert ray.get(next(gen)) == 1
    bad = next(gen)
    with pytest.raises(ValueError, match="item 2") as info:
        ray.get(bad)
    assert isinstance(info.value, RayTaskError)
    with pytest.raises(StopIteration):
        next(gen)


def test_fixed_num_returns_generator_gives_a_list_of_refs():
    refs = fixed.remote(10)
    assert isinstance(refs, list)
    assert ray.get(refs) == [10, 11, 12]


async def test_async_for_over_a_streaming_task():
    values = [await ref async for ref in count.remote(3)]
    assert values == [0, 1, 2]


@ray.remote
class SyncStreamer:
    def stream(self, n):
        for i in range(n):
            yield i * 10

    def stream_fail(self, n, k):
        for i in range(n):
            if i == k:
                raise RuntimeError(f"actor item {k}")
            yield i


@ray.remote(max_concurrency=4)
class ThreadedStreamer:
    def stream(self, n):
        for i in range(n):
            yield i * 10

    def stream_fail(self, n, k):
        for i in range(n):
            if i == k:
                raise RuntimeError(f"actor item {k}")
            yield i


@ray.remote
class AsyncStreamer:
    async def stream(self, n):
        for i in range(n):
            await asyncio.sleep(0)
            yield i * 10

    async def stream_fail(self, n, k):
        for i in range(n):
            if i == k:
                raise RuntimeError(f"actor item {k}")
            yield i


KINDS = [SyncStreamer, ThreadedStreamer, AsyncStreamer]
KIND_IDS = ["sync", "threaded", "async"]


@pytest.mark.parametrize("cls", KINDS, ids=KIND_IDS)
def test_actor_generator_method_streams(cls):
    actor = cls.remote()
    gen = actor.stream.options(num_returns="streaming").remote(4)
    assert isinstance(gen, ray.ObjectRefGenerator)
    assert [ray.get(r) for r in gen] == [0, 10, 20, 30]
    # A generator method streams without the option, as a generator task does.
    assert [ray.get(r) for r in actor.stream.remote(2)] == [0, 10]
    ray.kill(actor)


@pytest.mark.parametrize("cls", KINDS, ids=KIND_IDS)
def test_actor_generator_error_at_item_k(cls):
    actor = cls.remote()
    gen = actor.stream_fail.remote(4, 1)
    assert ray.get(next(gen)) == 0
    with pytest.raises(RuntimeError, match="actor item 1"):
        ray.get(next(gen))
    with pytest.raises(StopIteration):
        next(gen)
    # The actor survives an error in a generator method.
    assert [ray.get(r) for r in actor.stream.remote(1)] == [0]
    ray.kill(actor)


@pytest.mark.parametrize("cls", KINDS, ids=KIND_IDS)
async def test_actor_generator_async_iteration(cls):
    actor = cls.remote()
    values = [await ref async for ref in actor.stream.remote(3)]
    assert values == [0, 10, 20]
    ray.kill(actor)


@ray.remote(num_returns="streaming")
def slow_count(n, delay):
    import time

    for i in range(n):
        time.sleep(delay)
        yield i


def test_wait_on_a_generator_is_ready_when_its_next_item_is():
    gen = slow_count.remote(2, 0.3)
    ready, not_ready = ray.wait([gen], timeout=0)
    assert ready == [] and not_ready == [gen]
    ready, not_ready = ray.wait([gen], timeout=30)
    assert ready == [gen] and not_ready == []
    assert ray.get(next(gen)) == 0


def test_completed_is_ready_when_the_generator_ends():
    gen = slow_count.remote(3, 0.05)
    ray.get(gen.completed(), timeout=30)
    assert [ray.get(r) for r in gen] == [0, 1, 2]


def test_backpressure_bounds_the_items_produced_ahead(tmp_path):
    path = str(tmp_path / "produced")

    @ray.remote(num_returns="streaming", _generator_backpressure_num_objects=2)
    def counted(path, n):
        for i in range(n):
            with open(path, "a") as f:
                f.write("x")
            yield i

    gen = counted.remote(path, 10)
    eventually(lambda: os.path.exists(path), timeout=30, what="the first item")
    time.sleep(0.5)  # time to run ahead, were it not held back
    with open(path) as f:
        assert len(f.read()) <= 3
    assert [ray.get(r) for r in gen] == list(range(10))
