"""Queue: FIFO, blocking and non-blocking calls, batches, errors, tasks and actors, shutdown.

Expected behaviour is Ray 2.60's (ray-semantics.md §10); the checks marked
"Ray:" were run against real Ray. Waits that must still be blocked when the
test acts are seen through ``qsize`` or file gates, never through sleeps.
"""

from __future__ import annotations

import asyncio
import pickle
import queue as stdlib_queue
import time

import pytest
from _helpers import wait_for_condition

import asyncray
from asyncray.exceptions import RayActorError, RayTaskError
from asyncray.util.queue import Empty, Full, Queue

pytestmark = pytest.mark.timeout(30)

# Long enough to never fire in a passing test, short enough to fail fast.
WAIT_S = 10


@asyncray.remote
def drain(q):
    """The seed example's consumer: take items until one second passes without one."""
    got = []
    while True:
        try:
            got.append(q.get(block=True, timeout=1))
        except Empty:
            return got


@asyncray.remote
def produce(q, items):
    for item in items:
        q.put(item)
    return len(items)


@asyncray.remote
def get_one(q, timeout=WAIT_S):
    return q.get(timeout=timeout)


@asyncray.remote
class Producer:
    def __init__(self, q):
        self.q = q

    def put_all(self, items):
        for item in items:
            self.q.put(item)


@asyncray.remote
class AsyncProducer:
    def __init__(self, q):
        self.q = q

    async def put_all(self, items):
        for item in items:
            await self.q.put_async(item)


@asyncray.remote
class Holder:
    def value(self):
        return 1


# ---------------------------------------------------------------- seed and basics


def test_seed_example_two_tasks_drain_ten_items_exactly_once(ray_start):
    q = Queue()
    for i in range(10):
        q.put(i)
    first, second = asyncray.get([drain.remote(q), drain.remote(q)])
    assert sorted(first + second) == list(range(10))
    assert first == sorted(first) and second == sorted(second)  # FIFO within each


def test_put_then_get_is_fifo_and_sizes_follow(ray_start):
    q = Queue()
    assert q.empty() and not q.full()
    assert (q.qsize(), q.size(), len(q)) == (0, 0, 0)
    for size, item in enumerate("abcde", start=1):
        q.put(item)
        assert q.qsize() == size
    assert [q.get() for _ in range(5)] == list("abcde")
    assert q.empty()


@pytest.mark.parametrize("maxsize", [0, -1])
def test_a_maxsize_of_zero_or_less_is_unbounded(ray_start, maxsize):
    # Ray: Queue(maxsize=-1) is never full.
    q = Queue(maxsize)
    q.put_nowait_batch(range(100))
    q.put_nowait(100)
    assert not q.full() and q.qsize() == 101


def test_a_bounded_queue_is_full_at_maxsize(ray_start):
    q = Queue(maxsize=2)
    q.put(1)
    assert not q.full()
    q.put(2)
    assert q.full() and q.maxsize == 2


def test_items_keep_their_type(ray_start):
    q = Queue()
    items = [None, 0, "s", b"b", (1, 2), {"k": [1]}, Holder.remote()]
    q.put_nowait_batch(items[:3])
    for item in items[3:]:
        q.put(item)
    got = [q.get() for _ in items]
    assert got[:-1] == items[:-1]
    assert asyncray.get(got[-1].value.remote()) == 1


def test_a_top_level_ref_is_stored_as_its_value(ray_start):
    # Ray: put(ref) passes the ref as an argument, so the actor stores its value;
    # a ref inside a container stays a ref.
    q = Queue()
    ref = asyncray.put(5)
    q.put(ref)
    q.put([ref])
    assert q.get() == 5
    assert q.get() == [ref]


# ---------------------------------------------------------------- errors and timeouts


def test_get_on_an_empty_queue_raises_empty(ray_start):
    q = Queue()
    for call in (q.get_nowait, lambda: q.get(block=False)):
        with pytest.raises(Empty) as info:
            call()
        assert isinstance(info.value, stdlib_queue.Empty)
        assert not isinstance(info.value, RayTaskError)  # Ray: the client raises a bare Empty


def test_put_on_a_full_queue_raises_full(ray_start):
    q = Queue(maxsize=1)
    q.put(1)
    for call in (lambda: q.put_nowait(2), lambda: q.put(2, block=False)):
        with pytest.raises(Full) as info:
            call()
        assert isinstance(info.value, stdlib_queue.Full)
    assert q.get() == 1


def test_get_with_a_timeout_raises_empty_after_the_timeout(ray_start):
    q = Queue()
    start = time.monotonic()
    with pytest.raises(Empty) as info:
        q.get(timeout=0.2)
    assert time.monotonic() - start >= 0.2
    assert isinstance(info.value, RayTaskError)  # Ray: RayTaskError(Empty), raised in the actor
    with pytest.raises(Empty):
        q.get(timeout=0)


def test_put_with_a_timeout_raises_full_after_the_timeout(ray_start):
    q = Queue(maxsize=1)
    q.put(1)
    start = time.monotonic()
    with pytest.raises(Full) as info:
        q.put(2, timeout=0.2)
    assert time.monotonic() - start >= 0.2
    assert isinstance(info.value, RayTaskError)
    assert q.qsize() == 1


def test_a_negative_timeout_is_a_value_error_when_blocking(ray_start):
    q = Queue(maxsize=1)
    q.put(1)
    for call in (lambda: q.put(1, timeout=-1), lambda: q.get(timeout=-1)):
        with pytest.raises(ValueError, match=r"^'timeout' must be a non-negative number$"):
            call()
    # Ray: the timeout is ignored when not blocking.
    assert q.get(block=False, timeout=-1) == 1
    q.put(2, block=False, timeout=-1)


def test_blocking_get_waits_for_a_put(ray_start):
    q = Queue()
    waiting = get_one.remote(q)
    assert asyncray.wait([waiting], timeout=0.1)[1] == [waiting]  # it cannot finish yet
    q.put("late")
    assert asyncray.get(waiting, timeout=WAIT_S) == "late"


def test_blocking_put_waits_for_room(ray_start):
    q = Queue(maxsize=1)
    q.put(1)
    putting = produce.remote(q, [2])
    ready, _ = asyncray.wait([putting], timeout=0.1)
    assert not ready and q.qsize() == 1
    assert q.get() == 1
    assert asyncray.get(putting, timeout=WAIT_S) == 1
    assert q.get() == 2


def test_a_blocked_get_does_not_hold_up_other_callers(ray_start):
    q = Queue()
    blocked = get_one.remote(q)
    q.put_nowait("x")  # the actor answers while a get is waiting inside it
    assert asyncray.get(blocked, timeout=WAIT_S) == "x"
    assert q.qsize() == 0


# ---------------------------------------------------------------- batches


def test_batches_keep_order(ray_start):
    q = Queue()
    q.put_nowait_batch([1, 2, 3])
    q.put_nowait_batch(iter([4, 5]))  # any iterable
    assert q.get_nowait_batch(0) == []
    assert q.get_nowait_batch(4) == [1, 2, 3, 4]
    assert q.get_nowait_batch(1) == [5]


def test_a_batch_that_does_not_fit_adds_nothing(ray_start):
    q = Queue(maxsize=2)
    q.put(0)
    with pytest.raises(Full, match=r"Cannot add 2 items to queue of size 1 and maxsize 2\."):
        q.put_nowait_batch([1, 2])
    assert q.qsize() == 1
    q.put_nowait_batch([1])
    assert q.full()


def test_a_batch_larger_than_the_queue_removes_nothing(ray_start):
    q = Queue()
    q.put(0)
    with pytest.raises(Empty, match=r"Cannot get 2 items from queue of size 1\.") as info:
        q.get_nowait_batch(2)
    assert isinstance(info.value, RayTaskError)
    assert q.get_nowait_batch(1) == [0]


def test_batch_arguments_are_checked(ray_start):
    q = Queue()
    with pytest.raises(TypeError, match=r"^Argument 'items' must be an Iterable$"):
        q.put_nowait_batch(3)
    with pytest.raises(TypeError, match=r"^Argument 'num_items' must be an int$"):
        q.get_nowait_batch("2")
    with pytest.raises(ValueError, match=r"^'num_items' must be nonnegative$"):
        q.get_nowait_batch(-1)


# ---------------------------------------------------------------- tasks and actors


def test_a_queue_pickles(ray_start):
    q = Queue(maxsize=3)
    copy = pickle.loads(pickle.dumps(q))
    assert copy.maxsize == 3 and copy.actor == q.actor
    copy.put(1)
    assert q.get() == 1


def test_producer_tasks_and_the_driver_consuming(ray_start):
    q = Queue()
    producers = [produce.remote(q, [f"{p}-{i}" for i in range(5)]) for p in range(3)]
    got = [q.get(timeout=WAIT_S) for _ in range(15)]
    assert sorted(got) == sorted(f"{p}-{i}" for p in range(3) for i in range(5))
    for p in range(3):  # FIFO per producer
        assert [g for g in got if g.startswith(f"{p}-")] == [f"{p}-{i}" for i in range(5)]
    assert asyncray.get(producers) == [5, 5, 5]
    assert q.empty()


def test_consumer_tasks_blocked_before_the_driver_produces(ray_start):
    q = Queue()
    consumers = [get_one.remote(q) for _ in range(6)]
    for i in range(6):
        q.put(i)
    assert sorted(asyncray.get(consumers, timeout=WAIT_S)) == list(range(6))


def test_an_actor_puts_and_the_driver_gets(ray_start):
    q = Queue()
    asyncray.get(Producer.remote(q).put_all.remote(range(5)))
    asyncray.get(AsyncProducer.remote(q).put_all.remote(range(5, 10)))
    assert q.get_nowait_batch(10) == list(range(10))


# ---------------------------------------------------------------- async


async def test_put_async_and_get_async(ray_start):
    q = Queue()
    await q.put_async(1)
    await q.put_async(2, block=False)
    assert await q.get_async() == 1
    assert await q.get_async(block=False) == 2
    with pytest.raises(Empty):
        await q.get_async(block=False)
    with pytest.raises(Empty):
        await q.get_async(timeout=0.05)
    with pytest.raises(ValueError, match="non-negative"):
        await q.get_async(timeout=-1)
    with pytest.raises(ValueError, match="non-negative"):
        await q.put_async(1, timeout=-1)


async def test_put_async_on_a_full_queue(ray_start):
    q = Queue(maxsize=1)
    await q.put_async(1)
    with pytest.raises(Full):
        await q.put_async(2, block=False)
    with pytest.raises(Full):
        await q.put_async(2, timeout=0.05)


async def test_concurrent_async_calls_keep_fifo_order(ray_start):
    q = Queue()
    await asyncio.gather(*(q.put_async(i) for i in range(200)))
    assert await asyncio.gather(*(q.get_async() for _ in range(200))) == list(range(200))


async def test_concurrent_async_puts_on_a_bounded_queue_take_what_fits(ray_start):
    q = Queue(maxsize=3)
    results = await asyncio.gather(
        *(q.put_async(i, block=False) for i in range(5)), return_exceptions=True
    )
    assert results[:3] == [None, None, None]
    assert all(isinstance(r, Full) for r in results[3:])
    assert await asyncio.gather(*(q.get_async(block=False) for _ in range(3))) == [0, 1, 2]


async def test_concurrent_blocking_async_calls_wait_for_each_other(ray_start):
    q = Queue(maxsize=2)
    getters = asyncio.gather(*(q.get_async(timeout=WAIT_S) for _ in range(6)))
    putters = asyncio.gather(*(q.put_async(i, timeout=WAIT_S) for i in range(6)))
    got, _ = await asyncio.wait_for(asyncio.gather(getters, putters), WAIT_S)
    assert sorted(got) == list(range(6))


async def test_get_async_waits_for_a_put_from_another_task(ray_start):
    q = Queue()
    waiting = asyncio.ensure_future(q.get_async())
    done, _ = await asyncio.wait([waiting], timeout=0.05)
    assert not done
    await produce.remote(q, ["hello"])
    assert await asyncio.wait_for(waiting, WAIT_S) == "hello"


async def test_async_calls_surface_a_dead_queue_actor(ray_start):
    q = Queue()
    asyncray.kill(q.actor)
    with pytest.raises(RayActorError):
        await asyncio.gather(q.put_async(1), q.put_async(2))


async def test_put_async_of_a_ref_stores_its_value(ray_start):
    q = Queue()
    await q.put_async(asyncray.put("v"))
    assert await q.get_async() == "v"


# ---------------------------------------------------------------- options and shutdown


def test_the_queue_actor_holds_no_cpu_by_default(ray_start):
    before = asyncray.available_resources().get("CPU")
    q = Queue()
    q.put(1)
    assert asyncray.available_resources().get("CPU") == before


def test_actor_options_are_passed_to_the_queue_actor(ray_start):
    q = Queue(actor_options={"name": "jobs", "num_cpus": 1})
    q.put("a")
    wait_for_condition(lambda: asyncray.available_resources().get("CPU", 0) <= 1)
    same = asyncray.get_actor("jobs")
    assert asyncray.get(same.get_nowait.remote()) == "a"


@pytest.mark.parametrize("force", [False, True])
def test_shutdown_ends_the_actor_and_the_queue(ray_start, force):
    q = Queue()
    q.put(1)
    handle = q.actor
    q.shutdown(force=force)
    assert q.actor is None
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'put'"):
        q.put(1)
    with pytest.raises(RayActorError):
        asyncray.get(handle.qsize.remote(), timeout=WAIT_S)
    q.shutdown()  # a second shutdown does nothing


def test_shutdown_fails_calls_still_blocked_in_the_actor(ray_start):
    # Ray leaves them hanging after __ray_terminate__; asyncray fails them.
    q = Queue()
    blocked = q.actor.get.remote(None)
    assert q.qsize() == 0  # answered after the get, which is now waiting inside the actor
    blocked_task = get_one.remote(q, None)  # blocked too, or fails on the dead actor
    start = time.monotonic()
    q.shutdown(grace_period_s=WAIT_S)
    assert time.monotonic() - start < WAIT_S  # the polite exit was acknowledged at once
    with pytest.raises(RayActorError):
        asyncray.get(blocked, timeout=WAIT_S)
    with pytest.raises(RayActorError):
        asyncray.get(blocked_task, timeout=WAIT_S)
