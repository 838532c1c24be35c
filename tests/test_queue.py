"""Queue: FIFO, blocking and non-blocking calls, batches, errors, tasks and actors, shutdown.

Expected behaviour is Ray 2.60's (ray-semantics.md §10); the checks marked
"Ray:" were run against real Ray. Where asyncray differs on purpose (it has
no queue actor) the test says so. Waits that must still be blocked when the
test acts are seen through ``qsize`` or the queue's count of blocked
callers, never through sleeps.
"""

from __future__ import annotations

import asyncio
import gc
import os
import pickle
import queue as stdlib_queue
import time

import pytest
from _helpers import wait_for_condition

import asyncray
from asyncray._wire import shm
from asyncray.exceptions import ActorDiedError, RayActorError, RayTaskError
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


@asyncray.remote
def make_queue(items):
    q = Queue(maxsize=len(items) + 1)
    for item in items:
        q.put(item)
    return q


@asyncray.remote
def get_or_empty(q, timeout):
    try:
        return q.get(timeout=timeout)
    except Empty:
        return "empty"


@asyncray.remote
def take(q, n):
    return [q.get(timeout=WAIT_S) for _ in range(n)]


@asyncray.remote
def total(q):
    return float(q.get(timeout=WAIT_S).sum())


@asyncray.remote
def call_on(q, method):
    try:
        getattr(q, method)()
    except ActorDiedError as error:
        return str(error)
    return "no error"


@asyncray.remote
class Consumer:
    def __init__(self):
        self.q = Queue()

    def queue(self):
        return self.q

    def take(self, n):
        return [self.q.get(timeout=WAIT_S) for _ in range(n)]


def waiters(q):
    """How many callers are blocked on ``q`` in the runtime (a queue the driver can see)."""
    state = asyncray._api.client().runtime.queues.get(q._id)
    return len(state.getters) + len(state.putters)


def segments():
    """This session's shared-memory segments in use (recycled ones are free memory)."""
    prefix = f"{shm.PREFIX}{shm.session_tag()}_"
    recycled = set(asyncray._api.client().query("stats")["store_recycled_names"])
    return {
        name
        for name in os.listdir(shm.directory())
        if name.startswith(prefix) and name not in recycled
    }


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
    q.put_nowait("x")  # answered at once while a get is waiting
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


def test_a_queue_pickles_as_its_id_and_maxsize(ray_start):
    q = Queue(maxsize=3)
    data = pickle.dumps(q)
    assert len(data) < 200
    copy = pickle.loads(data)
    assert copy.maxsize == 3
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


async def test_async_calls_on_a_shut_down_queue_raise_actor_died_error(ray_start):
    q = Queue()
    q.shutdown()
    with pytest.raises(RayActorError):
        await asyncio.gather(q.put_async(1), q.put_async(2))
    with pytest.raises(ActorDiedError):
        await q.get_async(timeout=WAIT_S)


async def test_put_async_of_a_ref_stores_its_value(ray_start):
    q = Queue()
    await q.put_async(asyncray.put("v"))
    assert await q.get_async() == "v"


# ---------------------------------------------------------------- items


def test_an_item_is_a_copy_taken_when_it_is_put(ray_start):
    # Ray: the item is pickled into the actor call, so later changes do not show.
    q = Queue()
    item = [1]
    q.put(item)
    item.append(2)
    assert q.get() == [1]


def test_a_large_item_goes_through_shared_memory_freed_by_its_taker(ray_start):
    np = pytest.importorskip("numpy")
    q = Queue()
    before = segments()
    q.put(np.arange(1_000_000))
    assert len(segments() - before) == 1
    value = q.get()
    assert value.sum() == 499999500000 and not value.flags.writeable
    assert segments() == before
    asyncray.get(produce.remote(q, [np.ones(500_000)]))
    assert len(segments() - before) == 1
    assert asyncray.get(total.remote(q)) == 500_000  # taken in a task
    assert segments() == before
    q.put(np.ones(500_000))
    q.shutdown()  # an item never taken is freed with its queue
    assert segments() == before


# ---------------------------------------------------------------- workers


def test_a_queue_made_in_a_task_lives_on_after_the_task(ray_start):
    q = asyncray.get(make_queue.remote(["a", "b"]))
    assert q.maxsize == 3 and q.qsize() == 2
    assert [q.get(), q.get_nowait()] == ["a", "b"]
    q.put("c")
    assert asyncray.get(take.remote(q, 1)) == ["c"]


def test_a_queue_made_in_an_actor_serves_tasks_and_the_driver(ray_start):
    consumer = Consumer.remote()
    q = asyncray.get(consumer.queue.remote())
    taking = consumer.take.remote(4)
    asyncray.get(produce.remote(q, [0, 1]))
    q.put_nowait_batch([2, 3])
    assert asyncray.get(taking, timeout=WAIT_S) == [0, 1, 2, 3]
    assert q.empty()


def test_many_workers_contend_on_a_small_queue_and_every_item_arrives_once(ray_start):
    q = Queue(maxsize=3)
    items = {p: [f"{p}-{i}" for i in range(150)] for p in range(3)}
    producers = [produce.remote(q, chunk) for chunk in items.values()]
    consumers = [take.remote(q, 150) for _ in range(3)]
    got = asyncray.get(consumers, timeout=WAIT_S * 2)
    assert asyncray.get(producers) == [150, 150, 150]
    assert sorted(x for part in got for x in part) == sorted(x for c in items.values() for x in c)
    for part in got:  # each producer's items stay in order within each consumer
        for p in items:
            mine = [x for x in part if x.startswith(f"{p}-")]
            assert mine == sorted(mine, key=lambda x: int(x.split("-")[1]))
    assert waiters(q) == 0 and q.empty()


def test_tasks_blocked_in_get_lend_their_cpus(ray_start):
    # Two consumers hold both CPUs; the producer can only run on the CPUs they lend.
    q = Queue()
    consumers = [get_one.remote(q) for _ in range(2)]
    wait_for_condition(lambda: waiters(q) == 2)
    wait_for_condition(lambda: asyncray.available_resources().get("CPU") == 2)
    asyncray.get(produce.remote(q, ["x", "y"]), timeout=WAIT_S)
    assert sorted(asyncray.get(consumers, timeout=WAIT_S)) == ["x", "y"]
    wait_for_condition(lambda: asyncray.available_resources().get("CPU") == 2)


def test_a_waiter_that_timed_out_is_gone(ray_start):
    q = Queue()
    assert asyncray.get(get_or_empty.remote(q, 0.1), timeout=WAIT_S) == "empty"
    assert waiters(q) == 0
    q.put(1)  # nobody takes it away
    assert q.qsize() == 1


async def test_an_async_driver_waiter_that_timed_out_or_was_cancelled_is_gone(ray_start):
    q = Queue()
    with pytest.raises(Empty):
        await q.get_async(timeout=0.05)
    assert waiters(q) == 0
    waiting = asyncio.ensure_future(q.get_async())
    await asyncio.sleep(0)
    wait_for_condition(lambda: waiters(q) == 1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    wait_for_condition(lambda: waiters(q) == 0)
    q.put(1)
    assert q.get_nowait() == 1


@pytest.mark.parametrize("force", [False, True])
def test_a_task_cancelled_or_killed_while_blocked_stops_waiting(ray_start, force):
    full, empty = Queue(maxsize=1), Queue()
    full.put("old")
    blocked = [produce.remote(full, ["never"]), get_one.remote(empty, None)]
    wait_for_condition(lambda: waiters(full) == 1 and waiters(empty) == 1)
    for ref in blocked:
        asyncray.cancel(ref, force=force)
    for ref in blocked:
        with pytest.raises(asyncray.exceptions.RayError):
            asyncray.get(ref, timeout=WAIT_S)
    wait_for_condition(lambda: waiters(full) == 0 and waiters(empty) == 0)
    assert full.get() == "old" and full.empty()  # the blocked put's item never went in
    empty.put("kept")  # no dead getter takes it
    assert empty.qsize() == 1
    wait_for_condition(lambda: asyncray.available_resources().get("CPU") == 2)


# ---------------------------------------------------------------- options and shutdown


def test_a_queue_holds_no_cpu(ray_start):
    before = asyncray.available_resources().get("CPU")
    q = Queue()
    q.put(1)
    assert asyncray.available_resources().get("CPU") == before


def test_actor_options_are_checked_but_no_actor_is_made(ray_start):
    # asyncray: there is no queue actor, so options that would place or name it do nothing.
    q = Queue(actor_options={"name": "jobs", "num_cpus": 1})
    q.put("a")
    assert asyncray.available_resources().get("CPU") == 2
    with pytest.raises(ValueError):
        asyncray.get_actor("jobs")
    with pytest.raises(AttributeError, match="has no actor"):
        q.actor
    with pytest.raises(ValueError, match="Invalid option keyword num_cpu for actors"):
        Queue(actor_options={"num_cpu": 1})
    with pytest.raises(TypeError, match="actor_options must be a dict"):
        Queue(actor_options=[("num_cpus", 1)])
    with pytest.raises(TypeError, match="maxsize must be an int"):
        Queue(maxsize="2")


@pytest.mark.parametrize("force", [False, True])
def test_shutdown_frees_the_queue_and_later_calls_fail_clearly(ray_start, force):
    q = Queue()
    q.put(1)
    copy = pickle.loads(pickle.dumps(q))
    q.shutdown(force=force)
    assert q._id not in asyncray._api.client().runtime.queues.queues
    for call in (lambda: q.put(1), q.get_nowait, q.qsize, lambda: copy.get(timeout=1)):
        with pytest.raises(ActorDiedError, match="This Queue has been shut down"):
            call()
    assert "shut down" in asyncray.get(call_on.remote(q, "get_nowait"), timeout=WAIT_S)
    q.shutdown()  # a second shutdown does nothing


async def test_shutdown_fails_calls_still_blocked(ray_start):
    # Ray leaves them hanging after __ray_terminate__; asyncray fails them.
    q = Queue(maxsize=1)
    q.put(0)
    blocked_put = produce.remote(q, [1])
    empty = Queue()
    blocked_get = get_one.remote(empty, None)
    blocked_async = asyncio.ensure_future(empty.get_async())
    await asyncio.sleep(0)  # it runs up to its wait in the runtime
    wait_for_condition(lambda: waiters(q) == 1 and waiters(empty) == 2)
    start = time.monotonic()
    q.shutdown(grace_period_s=WAIT_S)
    empty.shutdown()
    assert time.monotonic() - start < WAIT_S
    for ref in (blocked_put, blocked_get):
        with pytest.raises(ActorDiedError):
            await asyncio.wait_for(ref, WAIT_S)
    with pytest.raises(ActorDiedError):
        await asyncio.wait_for(blocked_async, WAIT_S)


def test_a_dropped_queue_is_freed_unless_it_was_pickled(ray_start):
    registry = asyncray._api.client().runtime.queues
    q = Queue()
    qid = q._id
    del q
    wait_for_condition(lambda: registry.get(qid) is None)
    shared = Queue()
    asyncray.get(produce.remote(shared, [1]))  # pickled into a task: a copy may live on
    qid = shared._id
    del shared
    assert registry.get(qid) is not None


def test_asyncray_shutdown_frees_every_queue(shutdown_only):
    asyncray.init(num_cpus=2)
    q = Queue()
    q.put(1)
    state = asyncray._api.client().runtime.queues.get(q._id)
    asyncray.shutdown()
    assert state.closed and not state.items
    with pytest.raises(ActorDiedError):
        q.get_nowait()
    q.shutdown()  # nothing left to shut down


# ---------------------------------------------------------------- refs in items


@asyncray.remote
def take_ref_value(queue):
    (ref,) = queue.get(timeout=10)
    return asyncray.get(ref)


@asyncray.remote
def put_a_ref(queue):
    queue.put([asyncray.put("from a task")])
    return True


def _settle_refs():
    gc.collect()
    asyncray._api.client().query("stats")  # flushes the driver's releases


@pytest.mark.timeout(60)
def test_a_ref_inside_a_queued_item_keeps_its_object_alive(ray_start):
    q = Queue()
    q.put([asyncray.put(5)])  # the driver's own ref is dropped at once
    _settle_refs()
    (ref,) = q.get()
    assert asyncray.get(ref) == 5


@pytest.mark.timeout(60)
def test_a_ref_queued_by_the_driver_is_readable_in_a_task(ray_start):
    q = Queue()
    q.put([asyncray.put("from the driver")])
    _settle_refs()
    assert asyncray.get(take_ref_value.remote(q)) == "from the driver"


@pytest.mark.timeout(60)
def test_a_ref_queued_by_a_task_is_readable_in_the_driver(ray_start):
    q = Queue()
    assert asyncray.get(put_a_ref.remote(q))
    _settle_refs()
    (ref,) = q.get(timeout=10)
    assert asyncray.get(ref) == "from a task"


@pytest.mark.timeout(60)
def test_queued_refs_are_freed_once_taken_and_dropped_or_shut_down(ray_start):
    before = asyncray._api.client().query("stats")["objects"]
    q = Queue()
    q.put_nowait_batch([[asyncray.put(i)] for i in range(20)])
    (ref,) = q.get()
    assert asyncray.get(ref) == 0
    del ref
    q.shutdown()  # the other 19 items are dropped with their refs

    def back_to_baseline():
        _settle_refs()
        return asyncray._api.client().query("stats")["objects"] <= before

    wait_for_condition(back_to_baseline)
