"""util.queue.Queue: FIFO order, Empty and Full, batches, async, from tasks."""

from __future__ import annotations

import queue as stdlib_queue
import time

import pytest
from _compat import ON_RAY

import asyncray as ray
from asyncray.util.queue import Empty, Full, Queue


@pytest.fixture
def make_queue():
    made = []

    def make(*args, **kwargs):
        q = Queue(*args, **kwargs)
        made.append(q)
        return q

    yield make
    for q in made:
        q.shutdown()


def test_put_get_fifo_and_sizes(make_queue):
    q = make_queue()
    assert q.empty() and q.qsize() == 0 and len(q) == 0
    for i in range(5):
        q.put(i)
    assert q.qsize() == 5 and q.size() == 5 and not q.empty()
    assert [q.get() for _ in range(5)] == [0, 1, 2, 3, 4]
    assert q.empty()


def test_maxsize_full_and_put_nowait_raises_full(make_queue):
    q = make_queue(maxsize=2)
    q.put_nowait("a")
    q.put("b")
    assert q.full()
    with pytest.raises(Full):
        q.put_nowait("c")
    with pytest.raises(Full):
        q.put("c", block=False)
    start = time.monotonic()
    with pytest.raises(Full):
        q.put("c", timeout=0.2)
    assert time.monotonic() - start >= 0.15
    assert q.get() == "a"


def test_get_nowait_on_empty_raises_empty(make_queue):
    q = make_queue()
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(block=False)
    start = time.monotonic()
    with pytest.raises(Empty):
        q.get(timeout=0.2)
    assert time.monotonic() - start >= 0.15


def test_empty_and_full_are_the_standard_librarys():
    assert issubclass(Empty, stdlib_queue.Empty)
    assert issubclass(Full, stdlib_queue.Full)


def test_batches(make_queue):
    q = make_queue(maxsize=3)
    q.put_nowait_batch([1, 2])
    with pytest.raises(Full):
        q.put_nowait_batch([3, 4])  # all or nothing
    assert q.qsize() == 2
    with pytest.raises(Empty):
        q.get_nowait_batch(3)
    assert q.get_nowait_batch(2) == [1, 2]


def test_a_task_puts_the_driver_gets(make_queue):
    q = make_queue()

    @ray.remote
    def produce(q, n):
        for i in range(n):
            q.put(i)
        return "produced"

    assert ray.get(produce.remote(q, 4)) == "produced"
    assert [q.get(timeout=10) for _ in range(4)] == [0, 1, 2, 3]


def test_a_blocked_get_in_a_task_is_woken_by_the_driver(make_queue):
    q = make_queue()

    @ray.remote
    def consume(q):
        return q.get(timeout=30)

    ref = consume.remote(q)
    time.sleep(0.2)
    q.put("wake")
    assert ray.get(ref, timeout=30) == "wake"


def test_an_actor_consumes(make_queue):
    q = make_queue()

    @ray.remote
    class Consumer:
        def drain(self, q, n):
            return [q.get(timeout=10) for _ in range(n)]

    consumer = Consumer.remote()
    for i in range(3):
        q.put(i)
    assert ray.get(consumer.drain.remote(q, 3)) == [0, 1, 2]
    ray.kill(consumer)


async def test_async_put_and_get(make_queue):
    q = make_queue(maxsize=1)
    await q.put_async("x")
    with pytest.raises(Full):
        await q.put_async("y", timeout=0.1)
    assert await q.get_async() == "x"
    with pytest.raises(Empty):
        await q.get_async(timeout=0.1)


def test_queue_argument_checks(make_queue):
    q = make_queue()
    with pytest.raises(ValueError):
        q.get(timeout=-1)
    with pytest.raises(TypeError):
        q.put_nowait_batch(5)
    assert q.get_nowait_batch(0) == []
    assert not make_queue(maxsize=-1).full()  # maxsize <= 0: unbounded


def test_actor_options_and_the_queue_actor(make_queue):
    q = make_queue(actor_options={"num_cpus": 0})
    q.put(1)
    assert q.get() == 1
    if ON_RAY:
        # Ray's queue is an actor: q.actor is its handle;
        # docs/ray-compatibility.md: "Queue(actor_options=...), q.actor".
        assert isinstance(q.actor, ray.actor.ActorHandle)
    else:
        # asyncray's queue has no actor (its items live in the runtime); the
        # options are checked, then ignored (same row).
        with pytest.raises(AttributeError):
            q.actor
