"""Streaming generators: ObjectRefGenerator from tasks and every actor kind.

Each producer body exists in four shapes (sync task, async task, sync actor
method, async actor method) so one test runs against every kind of producer:
a plain task, an async-generator task, a plain actor, a threaded actor
(``max_concurrency > 1``) and an async actor.
"""

from __future__ import annotations

import asyncio
import gc
import pickle
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import asyncray
from asyncray.exceptions import RayTaskError
from tests._helpers import wait_for_condition, wait_for_file

# How long a producer that ignores backpressure gets to show it: these
# producers have no work between yields, so they would finish in a few ms.
RUN_AHEAD_WINDOW_S = 0.5
# How long a producer waits for the consumer's acknowledgement of item 0.
ACK_TIMEOUT_S = 5.0


def produced(path: Path) -> int:
    """How many items a ``progress`` producer has started (one line each)."""
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


# ---------------------------------------------------------------- producer bodies


def _count(n, fail_at):
    for i in range(n):
        if i == fail_at:
            raise ValueError(f"boom at {i}")
        yield i


def _handshake(directory):
    """Yield 0, then whether the consumer acknowledged it while we were still running."""
    yield 0
    yield wait_for_file(Path(directory) / "ack0", timeout=ACK_TIMEOUT_S)


def _progress(path, n, done):
    for i in range(n):
        with open(path, "a") as f:
            f.write(f"{i}\n")
        yield i
    Path(done).touch()


async def _acount(n, fail_at):
    for i in range(n):
        await asyncio.sleep(0)
        if i == fail_at:
            raise ValueError(f"boom at {i}")
        yield i


async def _ahandshake(directory):
    yield 0
    ack = Path(directory) / "ack0"
    deadline = time.monotonic() + ACK_TIMEOUT_S
    while not ack.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    yield ack.exists()


async def _aprogress(path, n, done):
    for i in range(n):
        with open(path, "a") as f:
            f.write(f"{i}\n")
        yield i
        await asyncio.sleep(0)
    Path(done).touch()


@asyncray.remote
def count_task(n, fail_at=None):
    yield from _count(n, fail_at)


@asyncray.remote
def handshake_task(directory):
    yield from _handshake(directory)


@asyncray.remote
def progress_task(path, n, done):
    yield from _progress(path, n, done)


@asyncray.remote
async def count_async_task(n, fail_at=None):
    async for i in _acount(n, fail_at):
        yield i


@asyncray.remote
async def handshake_async_task(directory):
    async for v in _ahandshake(directory):
        yield v


@asyncray.remote
async def progress_async_task(path, n, done):
    async for i in _aprogress(path, n, done):
        yield i


@asyncray.remote
class SyncProducer:
    def count(self, n, fail_at=None):
        yield from _count(n, fail_at)

    def handshake(self, directory):
        yield from _handshake(directory)

    def progress(self, path, n, done):
        yield from _progress(path, n, done)

    def ping(self):
        return "pong"


@asyncray.remote
class AsyncProducer:
    async def count(self, n, fail_at=None):
        async for i in _acount(n, fail_at):
            yield i

    async def handshake(self, directory):
        async for v in _ahandshake(directory):
            yield v

    async def progress(self, path, n, done):
        async for i in _aprogress(path, n, done):
            yield i

    async def ping(self):
        return "pong"


@asyncray.remote
def square(x):
    return x * x


@asyncray.remote
def take(arg):
    return "took it"


PRODUCER_KINDS = ["task", "async_task", "actor", "threaded_actor", "async_actor"]


def make_producer(kind: str) -> SimpleNamespace:
    """The producer methods (``count``, ``handshake``, ``progress``) of one kind."""
    if kind == "task":
        return SimpleNamespace(count=count_task, handshake=handshake_task, progress=progress_task)
    if kind == "async_task":
        return SimpleNamespace(
            count=count_async_task, handshake=handshake_async_task, progress=progress_async_task
        )
    if kind == "actor":
        actor = SyncProducer.remote()
    elif kind == "threaded_actor":
        actor = SyncProducer.options(max_concurrency=4).remote()
    else:
        actor = AsyncProducer.remote()
    return SimpleNamespace(
        count=actor.count, handshake=actor.handshake, progress=actor.progress, actor=actor
    )


@pytest.fixture(params=PRODUCER_KINDS)
def producer(request, ray_start):
    return make_producer(request.param)


# ---------------------------------------------------------------- what .remote() returns


def test_generator_producers_return_object_ref_generators_in_order(producer):
    gen = producer.count.remote(5)
    assert isinstance(gen, asyncray.ObjectRefGenerator)
    refs = list(gen)
    assert all(isinstance(ref, asyncray.ObjectRef) for ref in refs)
    assert asyncray.get(refs) == [0, 1, 2, 3, 4]


def test_explicit_streaming_num_returns_gives_a_generator(producer):
    gen = producer.count.options(num_returns="streaming").remote(3)
    assert isinstance(gen, asyncray.ObjectRefGenerator)
    assert [asyncray.get(ref) for ref in gen] == [0, 1, 2]


def test_streaming_num_returns_in_the_decorator(ray_start):
    @asyncray.remote(num_returns="streaming")
    def gen_fn(n):
        yield from _count(n, None)

    @asyncray.remote
    class Declared:
        @asyncray.method(num_returns="streaming")
        def gen(self, n):
            yield from _count(n, None)

    task_gen = gen_fn.remote(3)
    actor_gen = Declared.remote().gen.remote(2)
    assert isinstance(task_gen, asyncray.ObjectRefGenerator)
    assert isinstance(actor_gen, asyncray.ObjectRefGenerator)
    assert asyncray.get(list(task_gen)) == [0, 1, 2]
    assert asyncray.get(list(actor_gen)) == [0, 1]


def test_empty_generator_stops_at_once(producer):
    gen = producer.count.remote(0)
    with pytest.raises(StopIteration):
        next(gen)


def test_items_are_delivered_while_the_producer_still_runs(producer, tmp_path):
    start = time.monotonic()
    gen = producer.handshake.remote(str(tmp_path))
    assert asyncray.get(next(gen)) == 0
    item0_after = time.monotonic() - start
    (tmp_path / "ack0").touch()
    # True only if the producer was still running (waiting for the ack) when
    # the consumer received item 0.
    assert asyncray.get(next(gen)) is True
    assert item0_after < ACK_TIMEOUT_S
    with pytest.raises(StopIteration):
        next(gen)


# ---------------------------------------------------------------- the generator API


def test_object_ref_generator_is_importable_from_both_paths():
    from asyncray._raylet import ObjectRefGenerator

    assert asyncray.ObjectRefGenerator is ObjectRefGenerator


def test_get_of_a_generator_returns_the_generator(ray_start):
    gen = count_task.remote(2)
    assert asyncray.get(gen) is gen
    assert asyncray.get(list(gen)) == [0, 1]


def test_next_blocks_until_the_item_exists_and_stops_for_good(ray_start):
    gen = count_task.remote(2)
    first = next(gen)
    second = next(gen)
    assert asyncray.get([first, second]) == [0, 1]
    for _ in range(3):
        with pytest.raises(StopIteration):
            next(gen)


def test_for_loop_consumes_every_item(producer):
    values = []
    for ref in producer.count.remote(4):
        values.append(asyncray.get(ref))
    assert values == [0, 1, 2, 3]


async def test_async_for_consumes_a_generator_on_a_user_loop(producer):
    gen = producer.count.remote(4)
    values = [await ref async for ref in gen]
    assert values == [0, 1, 2, 3]
    with pytest.raises(StopAsyncIteration):
        await anext(gen)


async def test_anext_does_not_block_the_event_loop(producer, tmp_path):
    gen = producer.handshake.remote(str(tmp_path))
    assert await (await anext(gen)) == 0
    pending = asyncio.ensure_future(anext(gen))
    await asyncio.sleep(0.05)
    # The ack is written from this loop; if anext blocked the loop the
    # producer would time out and yield False.
    (tmp_path / "ack0").touch()
    ref = await asyncio.wait_for(pending, timeout=10)
    assert await ref is True
    with pytest.raises(StopAsyncIteration):
        await anext(gen)


def test_completed_is_ready_only_when_the_producer_finished(ray_start, tmp_path):
    gen = handshake_task.remote(str(tmp_path))
    done = gen.completed()
    assert asyncray.get(next(gen)) == 0
    # The producer is parked waiting for the ack: not completed.
    ready, _ = asyncray.wait([done], timeout=RUN_AHEAD_WINDOW_S)
    assert ready == []
    (tmp_path / "ack0").touch()
    assert asyncray.get(done, timeout=10) is None
    assert asyncray.get(next(gen)) is True


def test_completed_is_none_even_when_the_generator_raised(producer):
    gen = producer.count.remote(3, fail_at=1)
    assert asyncray.get(gen.completed(), timeout=10) is None


def test_is_finished_once_every_item_was_consumed(producer):
    gen = producer.count.remote(2)
    assert not gen.is_finished()
    refs = [next(gen), next(gen)]
    # Wait for the stream's end: the generator is ready once it has finished.
    ready, _ = asyncray.wait([gen], timeout=10)
    assert ready == [gen]
    assert gen.is_finished()
    with pytest.raises(StopIteration):
        next(gen)
    assert gen.is_finished()
    assert asyncray.get(refs) == [0, 1]


def test_is_finished_is_false_while_items_remain(ray_start):
    gen = count_task.remote(3)
    assert asyncray.get(next(gen)) == 0
    asyncray.get(gen.completed(), timeout=10)
    assert not gen.is_finished()


# ---------------------------------------------------------------- errors mid-stream


def test_exception_is_delivered_at_its_position(producer):
    gen = producer.count.remote(5, fail_at=2)
    refs = list(gen)
    assert len(refs) == 3
    assert asyncray.get(refs[0]) == 0
    assert asyncray.get(refs[1]) == 1
    with pytest.raises(ValueError, match="boom at 2") as excinfo:
        asyncray.get(refs[2])
    assert isinstance(excinfo.value, RayTaskError)
    with pytest.raises(StopIteration):
        next(gen)


def test_exception_before_the_first_yield_is_the_only_item(producer):
    gen = producer.count.remote(5, fail_at=0)
    ref = next(gen)
    with pytest.raises(RayTaskError) as excinfo:
        asyncray.get(ref)
    assert isinstance(excinfo.value, ValueError)
    with pytest.raises(StopIteration):
        next(gen)
    with pytest.raises(StopIteration):
        next(gen)


async def test_exception_item_raises_when_awaited(producer):
    gen = producer.count.remote(3, fail_at=1)
    assert await (await anext(gen)) == 0
    with pytest.raises(ValueError, match="boom at 1"):
        await (await anext(gen))
    with pytest.raises(StopAsyncIteration):
        await anext(gen)


# ---------------------------------------------------------------- wait


def test_wait_seed_loop_collects_every_value_from_generators_and_refs(ray_start):
    actor = SyncProducer.remote()
    async_actor = AsyncProducer.remote()
    gens = [count_task.remote(3), actor.count.remote(2), async_actor.count.remote(4)]
    refs = [square.remote(i) for i in (5, 6)]
    unready = [*gens, *refs]
    values = []
    while unready:
        ready, unready = asyncray.wait(unready, timeout=10)
        assert ready, "wait timed out although something was pending"
        for item in ready:
            if isinstance(item, asyncray.ObjectRefGenerator):
                assert item in gens
                try:
                    ref = next(item)
                except StopIteration:
                    continue
                values.append(asyncray.get(ref))
                unready.append(item)
            else:
                values.append(asyncray.get(item))
    assert sorted(values) == sorted([0, 1, 2, 0, 1, 0, 1, 2, 3, 25, 36])


def test_exhausted_generator_is_ready_in_wait(ray_start):
    gen = count_task.remote(2)
    assert asyncray.get(list(gen)) == [0, 1]
    ready, not_ready = asyncray.wait([gen], timeout=0)
    assert ready == [gen] and ready[0] is gen
    assert not_ready == []


def test_generator_is_ready_only_when_its_next_item_exists(ray_start, tmp_path):
    gen = handshake_task.remote(str(tmp_path))
    assert asyncray.get(next(gen)) == 0
    ready, not_ready = asyncray.wait([gen], timeout=RUN_AHEAD_WINDOW_S)
    assert ready == [] and not_ready == [gen]
    (tmp_path / "ack0").touch()
    ready, not_ready = asyncray.wait([gen], timeout=10)
    assert ready == [gen] and not_ready == []
    assert asyncray.get(next(gen)) is True


def test_wait_with_num_returns_counts_generators_and_refs(ray_start):
    gen = count_task.remote(1)
    ref = square.remote(3)
    ready, not_ready = asyncray.wait([gen, ref], num_returns=2, timeout=10)
    assert len(ready) == 2 and not_ready == []
    assert gen in ready and ref in ready


# ---------------------------------------------------------------- backpressure


def wait_produced(progress: Path, at_least: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while produced(progress) < at_least:
        if time.monotonic() >= deadline:
            pytest.fail(f"producer stuck at {produced(progress)} items, expected {at_least}")
        time.sleep(0.01)


def assert_backpressured(gen, progress: Path, total: int, limit: int) -> None:
    """Consume ``gen``, checking the producer stays exactly ``limit`` items ahead."""
    wait_produced(progress, limit)
    time.sleep(RUN_AHEAD_WINDOW_S)  # room for a producer ignoring the limit to run ahead
    assert produced(progress) == limit, "producer ran ahead before anything was consumed"
    refs = []
    for consumed in range(1, total + 1):
        refs.append(next(gen))  # reading the ref is consuming; no get needed
        allowed = min(consumed + limit, total)
        wait_produced(progress, allowed)  # as in Ray: the limit counts from the refs read
        assert produced(progress) <= allowed, f"ran ahead after {consumed} consumed"
    with pytest.raises(StopIteration):
        next(gen)
    assert asyncray.get(refs) == list(range(total))


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("kind", "limit"),
    [("task", 1), ("task", 2), *((kind, 2) for kind in PRODUCER_KINDS[1:])],
)
def test_backpressure_pauses_the_producer(ray_start, tmp_path, kind, limit):
    producer = make_producer(kind)
    progress, done = tmp_path / "progress", tmp_path / "done"
    gen = producer.progress.options(_generator_backpressure_num_objects=limit).remote(
        str(progress), 5, str(done)
    )
    assert_backpressured(gen, progress, 5, limit)
    assert wait_for_file(done)


@pytest.mark.timeout(30)
def test_backpressure_set_in_the_decorators(ray_start, tmp_path):
    @asyncray.remote(_generator_backpressure_num_objects=2)
    def task_gen(path, n, done):
        yield from _progress(path, n, done)

    @asyncray.remote
    class Declared:
        @asyncray.method(_generator_backpressure_num_objects=2)
        async def gen(self, path, n, done):
            async for i in _aprogress(path, n, done):
                yield i

    for name, method in [("task", task_gen), ("async_actor", Declared.remote().gen)]:
        progress, done = tmp_path / f"{name}-progress", tmp_path / f"{name}-done"
        gen = method.remote(str(progress), 4, str(done))
        assert_backpressured(gen, progress, 4, 2)
        assert wait_for_file(done)


def test_without_backpressure_the_producer_runs_ahead(ray_start, tmp_path):
    # The control for the tests above: the same producer, unlimited.
    progress, done = tmp_path / "progress", tmp_path / "done"
    gen = progress_task.remote(str(progress), 5, str(done))
    assert wait_for_file(done)
    assert produced(progress) == 5
    assert asyncray.get(list(gen)) == [0, 1, 2, 3, 4]


def test_backpressure_of_zero_is_rejected_for_tasks():
    def gen_fn():
        yield 1

    with pytest.raises(ValueError, match="_generator_backpressure_num_objects"):
        asyncray.remote(_generator_backpressure_num_objects=0)(gen_fn)
    with pytest.raises(ValueError, match="_generator_backpressure_num_objects"):
        count_task.options(_generator_backpressure_num_objects=0)


def test_backpressure_of_zero_is_rejected_by_the_method_decorator():
    # Real Ray 2.60 accepts 0 here and silently means "no limit"; the
    # semantics (section 5.4) make 0 an error wherever the option is set.
    with pytest.raises(ValueError, match="_generator_backpressure_num_objects"):
        asyncray.method(_generator_backpressure_num_objects=0)


def test_backpressure_of_zero_is_rejected_by_actor_method_options(ray_start):
    actor = SyncProducer.remote()
    with pytest.raises(ValueError, match="_generator_backpressure_num_objects"):
        actor.count.options(_generator_backpressure_num_objects=0)


@pytest.mark.timeout(30)
def test_deleting_a_generator_releases_its_paused_producer(producer, tmp_path):
    progress, done = tmp_path / "progress", tmp_path / "done"
    gen = producer.progress.options(_generator_backpressure_num_objects=1).remote(
        str(progress), 6, str(done)
    )
    assert asyncray.get(next(gen)) == 0
    wait_for_condition(lambda: produced(progress) >= 1)
    assert not done.exists()
    del gen
    gc.collect()
    assert wait_for_file(done), "producer stayed paused after its generator was deleted"
    assert produced(progress) == 6
    if hasattr(producer, "actor"):
        assert asyncray.get(producer.actor.ping.remote(), timeout=10) == "pong"


@pytest.mark.timeout(30)
def test_deleting_a_paused_task_generator_frees_its_cpu(ray_start, tmp_path):
    progress, done = tmp_path / "progress", tmp_path / "done"
    gen = progress_task.options(_generator_backpressure_num_objects=1).remote(
        str(progress), 6, str(done)
    )
    wait_for_condition(lambda: produced(progress) >= 1)
    del gen
    assert wait_for_file(done)
    # Needs both CPUs: runs only once the producer has given its CPU back.
    assert asyncray.get(square.options(num_cpus=2).remote(7), timeout=10) == 49


# ---------------------------------------------------------------- pickling


def test_a_generator_cannot_be_passed_to_a_task(ray_start):
    gen = count_task.remote(2)
    with pytest.raises(TypeError):
        take.remote(gen)
    with pytest.raises(TypeError):
        take.remote([gen])
    with pytest.raises(TypeError):
        take.remote(arg=gen)
    # The failed submissions did not disturb the generator.
    assert asyncray.get(list(gen)) == [0, 1]


def test_a_generator_cannot_be_pickled(ray_start):
    gen = count_task.remote(1)
    with pytest.raises(TypeError):
        pickle.dumps(gen)
    assert asyncray.get(list(gen)) == [0]


def test_interleaved_generators_keep_their_own_streams(ray_start):
    a = count_task.remote(3)
    b = count_task.remote(3)
    values = [asyncray.get(next(g)) for _ in range(3) for g in (a, b)]
    assert values == [0, 0, 1, 1, 2, 2]
