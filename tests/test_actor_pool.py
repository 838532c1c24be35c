"""ActorPool: ordering, timeouts, errors, idle-actor bookkeeping, async twins, submit_future.

Expected behaviour is Ray 2.60's (ray-semantics.md §9); the checks marked
"Ray:" were run against real Ray. Tasks that must still be running when the
test looks are held on a file gate (``_helpers.wait_for_file``), never on a
sleep.
"""

from __future__ import annotations

import asyncio
from unittest.mock import MagicMock

import pytest
from _helpers import wait_for_file

import asyncray
from asyncray.exceptions import ActorDiedError, RayTaskError
from asyncray.util.actor_pool import ActorPool, PoolFuture

pytestmark = pytest.mark.timeout(30)

GATE_TIMEOUT_S = 20


@asyncray.remote
class Actor:
    def double(self, v):
        return 2 * v


@asyncray.remote
class Worker:
    def double(self, v):
        return 2 * v

    def step(self, v, wait=None, touch=None):
        """Return ``v`` after the file ``wait`` exists; create ``touch`` first if given."""
        if touch is not None:
            open(touch, "w").close()
        if wait is not None:
            wait_for_file(wait, timeout=GATE_TIMEOUT_S)
        return v

    def fail(self, v):
        raise ValueError(f"bad value {v}")

    def die(self, v):
        asyncray.actor.exit_actor()

    @asyncray.method(num_returns=2)
    def pair(self, v):
        return v, v + 1


def double(a, v):
    return a.double.remote(v)


def held(gate):
    """A pool function whose call returns its value once ``gate`` exists."""
    return lambda a, v: a.step.remote(v, wait=str(gate))


def release(gate):
    open(gate, "w").close()


# ---------------------------------------------------------------- map


def test_seed_example_map_doubles_in_input_order(ray_start):
    pool = ActorPool([Actor.remote(), Actor.remote()])
    assert list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4])) == [2, 4, 6, 8]


def test_map_keeps_input_order_when_the_first_result_finishes_last(ray_start, tmp_path):
    gate = str(tmp_path / "go")
    pool = ActorPool([Worker.remote() for _ in range(4)])

    def fn(a, v):
        # v=0 waits for the gate that v=3 opens: it finishes after v=3.
        if v == 0:
            return a.step.remote(v, wait=gate)
        return a.step.remote(v, touch=gate if v == 3 else None)

    assert list(pool.map(fn, range(4))) == [0, 1, 2, 3]


def test_map_unordered_yields_results_as_they_finish(ray_start, tmp_path):
    gate = tmp_path / "go"
    pool = ActorPool([Worker.remote() for _ in range(4)])

    def fn(a, v):
        return a.step.remote(v, wait=str(gate)) if v == 0 else a.double.remote(v)

    results = pool.map_unordered(fn, range(4))
    first = [next(results) for _ in range(3)]
    assert sorted(first) == [2, 4, 6]  # v=0 is still held
    release(gate)
    assert list(results) == [0]


def test_map_with_more_values_than_actors_yields_every_result(ray_start):
    pool = ActorPool([Worker.remote(), Worker.remote()])
    assert list(pool.map(double, range(10))) == [2 * v for v in range(10)]
    assert sorted(pool.map_unordered(double, range(10))) == [2 * v for v in range(10)]
    assert pool.has_free() and not pool.has_next()


def test_map_submits_every_value_before_returning(ray_start):
    # Ray: test_map_eager.
    pool = ActorPool([Worker.remote()])
    pool.submit = MagicMock()
    pool.map(double, range(1))
    pool.submit.assert_called()


def test_map_drops_earlier_results_not_yet_taken(ray_start, tmp_path):
    # Ray: test_map_gh23107 (results of earlier submits are not mixed in).
    gate = tmp_path / "go"
    pool = ActorPool([Worker.remote(), Worker.remote()])
    pool.submit(held(gate), 99)
    results = pool.map(double, [1, 2, 3])
    release(gate)
    assert list(results) == [2, 4, 6]
    pool.submit(held(gate), 99)
    assert sorted(pool.map_unordered(double, [1, 2, 3])) == [2, 4, 6]


# ---------------------------------------------------------------- submit / get_next


def test_submit_returns_none_and_get_next_returns_in_submission_order(ray_start):
    pool = ActorPool([Worker.remote(), Worker.remote()])
    assert pool.submit(double, 1) is None
    pool.submit(double, 2)
    pool.submit(double, 3)  # waits for an actor
    assert pool.has_next()
    assert [pool.get_next(), pool.get_next(), pool.get_next()] == [2, 4, 6]
    assert not pool.has_next()


def test_get_next_unordered_returns_whichever_finishes_first(ray_start, tmp_path):
    gate = tmp_path / "go"
    pool = ActorPool([Worker.remote(), Worker.remote()])
    pool.submit(held(gate), 1)
    pool.submit(double, 2)
    assert pool.get_next_unordered() == 4
    release(gate)
    assert pool.get_next_unordered() == 1
    assert not pool.has_next()


@pytest.mark.parametrize("getter", ["get_next", "get_next_unordered"])
def test_getting_from_an_empty_pool_raises_stop_iteration(ray_start, getter):
    pool = ActorPool([Worker.remote()])
    with pytest.raises(StopIteration, match=r"^No more results to get$"):
        getattr(pool, getter)()


@pytest.mark.parametrize("getter", ["get_next", "get_next_unordered"])
def test_timeout_raises_timeout_error_and_keeps_the_task(ray_start, tmp_path, getter):
    gate = tmp_path / "go"
    pool = ActorPool([Worker.remote()])
    pool.submit(held(gate), 7)
    with pytest.raises(TimeoutError) as info:
        getattr(pool, getter)(timeout=0.05)
    assert str(info.value) == "Timed out waiting for result"
    assert pool.has_next() and not pool.has_free()
    release(gate)
    assert getattr(pool, getter)(timeout=GATE_TIMEOUT_S) == 7


@pytest.mark.parametrize("getter", ["get_next", "get_next_unordered"])
def test_ignore_if_timedout_drops_the_task_and_frees_its_actor(ray_start, tmp_path, getter):
    # Ray 2.60's get_next_unordered raises UnboundLocalError here; we raise TimeoutError.
    gate = tmp_path / "go"
    pool = ActorPool([Worker.remote()])
    pool.submit(held(gate), 7)
    ignored = r"^Timed out waiting for result\. The task .* has been ignored\.$"
    with pytest.raises(TimeoutError, match=ignored):
        getattr(pool, getter)(timeout=0.05, ignore_if_timedout=True)
    assert not pool.has_next()
    assert pool.has_free()
    release(gate)
    pool.submit(double, 4)  # runs after the ignored call on the same actor
    assert pool.get_next() == 8


def test_get_next_after_get_next_unordered_went_past_the_head_raises(ray_start, tmp_path):
    gate = tmp_path / "go"
    pool = ActorPool([Worker.remote(), Worker.remote()])
    pool.submit(held(gate), 1)
    pool.submit(double, 2)
    assert pool.get_next_unordered() == 4
    with pytest.raises(
        ValueError, match=r"^It is not allowed to call get_next\(\) after get_next_unordered\(\)\.$"
    ):
        pool.get_next()
    release(gate)
    assert pool.get_next_unordered() == 1


def test_a_task_error_propagates_and_the_actor_returns_to_the_pool(ray_start):
    pool = ActorPool([Worker.remote()])
    pool.submit(lambda a, v: a.fail.remote(v), 3)
    with pytest.raises(ValueError, match="bad value 3") as info:
        pool.get_next()
    assert isinstance(info.value, RayTaskError)
    assert pool.has_free()
    assert list(pool.map(double, [5])) == [10]


def test_an_actor_that_died_is_dropped_from_the_pool(ray_start):
    dying, healthy = Worker.remote(), Worker.remote()
    pool = ActorPool([healthy, dying])  # a stack: ``dying`` is popped first
    pool.submit(lambda a, v: a.die.remote(v), 0)
    with pytest.raises(ActorDiedError):
        pool.get_next()
    assert pool._idle_actors == [healthy]
    assert list(pool.map(double, [1, 2, 3])) == [2, 4, 6]


def test_multiple_returns_come_back_as_a_list(ray_start):
    # Ray: test_multiple_returns; Ray 2.60 fails on the unordered/timeout variants.
    pool = ActorPool([Worker.remote(), Worker.remote()])
    pair = lambda a, v: a.pair.remote(v)  # noqa: E731
    for v in range(4):
        pool.submit(pair, v)
    assert pool.get_next() == [0, 1]
    assert pool.get_next(timeout=GATE_TIMEOUT_S) == [1, 2]
    assert sorted([pool.get_next_unordered(), pool.get_next_unordered(timeout=10)]) == [
        [2, 3],
        [3, 4],
    ]
    assert list(pool.map(pair, [5])) == [[5, 6]]


# ---------------------------------------------------------------- idle actors


def test_has_free_and_pop_idle_follow_busy_actors(ray_start):
    # Ray: test_pop_idle.
    a1 = Worker.remote()
    pool = ActorPool([a1])
    pool.submit(double, 1)
    assert pool.pop_idle() is None
    assert pool.has_free() is False
    assert pool.get_next() == 2
    assert pool.has_free() is True
    assert pool.pop_idle() == a1
    assert pool.has_free() is False
    assert pool.pop_idle() is None


def test_idle_actors_are_a_stack(ray_start):
    a1, a2 = Worker.remote(), Worker.remote()
    pool = ActorPool([a1, a2])
    assert pool.pop_idle() == a2
    pool.push(a2)
    assert pool.pop_idle() == a2
    assert pool.pop_idle() == a1


def test_push_adds_an_actor_that_takes_a_pending_submit(ray_start):
    # Ray: test_push.
    a1, a2, a3 = Worker.remote(), Worker.remote(), Worker.remote()
    pool = ActorPool([a1])
    pool.submit(double, 1)
    assert pool.has_free() is False
    with pytest.raises(ValueError, match=r"^Actor already belongs to current ActorPool$"):
        pool.push(a1)
    pool.push(a2)
    assert pool.has_free()
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(a2)
    pool.submit(double, 2)
    pool.submit(double, 3)
    assert pool.has_free() is False
    assert len(pool._pending_submits) == 1
    pool.push(a3)
    assert pool.has_free() is False  # a3 took the pending submit
    assert len(pool._pending_submits) == 0
    assert [pool.get_next() for _ in range(3)] == [2, 4, 6]


def test_a_pool_without_actors_keeps_submits_pending(ray_start):
    pool = ActorPool([])
    pool.submit(double, 1)
    assert not pool.has_next() and not pool.has_free()
    assert list(pool.map(double, [2])) == []  # Ray: nothing dispatched, nothing yielded
    pool.push(Worker.remote())
    assert [pool.get_next(), pool.get_next()] == [2, 4]


# ---------------------------------------------------------------- async twins


async def test_map_async_keeps_input_order(ray_start, tmp_path):
    gate = str(tmp_path / "go")
    pool = ActorPool([Worker.remote() for _ in range(3)])

    def fn(a, v):
        if v == 0:
            return a.step.remote(v, wait=gate)
        return a.step.remote(v, touch=gate if v == 2 else None)

    assert [v async for v in pool.map_async(fn, range(5))] == [0, 1, 2, 3, 4]


async def test_map_unordered_async_yields_results_as_they_finish(ray_start, tmp_path):
    gate = tmp_path / "go"
    pool = ActorPool([Worker.remote() for _ in range(3)])

    def fn(a, v):
        return a.step.remote(v, wait=str(gate)) if v == 0 else a.double.remote(v)

    results = pool.map_unordered_async(fn, range(3))
    first = [await results.__anext__(), await results.__anext__()]
    assert sorted(first) == [2, 4]
    release(gate)
    assert [v async for v in results] == [0]


async def test_get_next_async_twins_follow_the_sync_rules(ray_start, tmp_path):
    gate = tmp_path / "go"
    pool = ActorPool([Worker.remote(), Worker.remote()])
    with pytest.raises(StopAsyncIteration, match="No more results to get"):
        await pool.get_next_async()
    pool.submit(held(gate), 1)
    pool.submit(double, 2)
    with pytest.raises(TimeoutError, match=r"^Timed out waiting for result$"):
        await pool.get_next_async(timeout=0.05)
    assert await pool.get_next_unordered_async() == 4
    with pytest.raises(ValueError, match="not allowed"):
        await pool.get_next_async()
    with pytest.raises(TimeoutError, match="has been ignored"):
        await pool.get_next_unordered_async(timeout=0.05, ignore_if_timedout=True)
    assert not pool.has_next() and pool.has_free()
    release(gate)
    pool.submit(double, 5)
    assert await pool.get_next_async(timeout=GATE_TIMEOUT_S) == 10


async def test_get_next_async_raises_task_errors_and_keeps_the_actor(ray_start):
    pool = ActorPool([Worker.remote()])
    pool.submit(lambda a, v: a.fail.remote(v), 1)
    with pytest.raises(ValueError, match="bad value 1"):
        await pool.get_next_async()
    assert pool.has_free()


# ---------------------------------------------------------------- submit_future


def test_submit_future_result_and_the_actor_comes_back_by_itself(ray_start):
    pool = ActorPool([Worker.remote()])
    future = pool.submit_future(double, 21)
    assert isinstance(future, PoolFuture)
    assert isinstance(future.object_ref, asyncray.ObjectRef)
    assert not pool.has_next()  # not part of the get_next stream
    assert future.result(timeout=GATE_TIMEOUT_S) == 42
    assert pool.has_free()


def test_submit_future_with_more_calls_than_actors_dispatches_as_actors_free(ray_start):
    pool = ActorPool([Worker.remote()])
    futures = [pool.submit_future(double, v) for v in range(4)]
    assert [f.object_ref is not None for f in futures] == [True, False, False, False]
    assert [f.result(timeout=GATE_TIMEOUT_S) for f in reversed(futures)] == [6, 4, 2, 0]
    assert pool.has_free()


def test_submit_future_result_times_out(ray_start, tmp_path):
    gate = tmp_path / "go"
    pool = ActorPool([Worker.remote()])
    future = pool.submit_future(held(gate), 1)
    waiting = pool.submit_future(double, 2)
    with pytest.raises(TimeoutError):
        waiting.result(timeout=0.05)
    release(gate)
    assert waiting.result(timeout=GATE_TIMEOUT_S) == 4
    assert future.result(timeout=0) == 1


def test_submit_future_carries_task_errors_and_drops_dead_actors(ray_start):
    a1, a2 = Worker.remote(), Worker.remote()
    pool = ActorPool([a1, a2])
    failing = pool.submit_future(lambda a, v: a.fail.remote(v), 1)
    dying = pool.submit_future(lambda a, v: a.die.remote(v), 2)
    with pytest.raises(ValueError, match="bad value 1"):
        failing.result(timeout=GATE_TIMEOUT_S)
    with pytest.raises(ActorDiedError):
        dying.result(timeout=GATE_TIMEOUT_S)
    assert pool._idle_actors == [a2]  # a1 died running ``die``; a2 came back


def test_a_plain_submit_waiting_behind_submit_future_calls_counts_as_pending(ray_start, tmp_path):
    gate = tmp_path / "go"
    pool = ActorPool([Worker.remote()])
    future = pool.submit_future(held(gate), 1)
    pool.submit(double, 2)  # no actor: waits for the submit_future call
    assert pool.has_next()
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.05)
    release(gate)
    assert pool.get_next() == 4
    assert future.result(timeout=0) == 1
    assert not pool.has_next()


def test_map_waits_for_actors_held_by_submit_future_calls(ray_start, tmp_path):
    gate = tmp_path / "go"
    pool = ActorPool([Worker.remote()])
    future = pool.submit_future(held(gate), 1)
    results = pool.map(double, [1, 2])
    release(gate)
    assert list(results) == [2, 4]
    assert future.result(timeout=0) == 1


async def test_submit_future_is_awaitable_and_gathers(ray_start):
    pool = ActorPool([Worker.remote(), Worker.remote()])
    futures = [pool.submit_future(double, v) for v in range(6)]
    assert await asyncio.gather(*futures) == [0, 2, 4, 6, 8, 10]
    assert pool.has_free()


async def test_submit_future_made_on_a_loop_frees_actors_without_being_driven(ray_start):
    # asyncio.wrap_future does not call back into the pool: the loop does the bookkeeping.
    pool = ActorPool([Worker.remote()])
    futures = [pool.submit_future(double, v) for v in range(3)]
    last = await asyncio.wait_for(asyncio.wrap_future(futures[-1]), GATE_TIMEOUT_S)
    assert last == 4
    assert [f.result(timeout=0) for f in futures] == [0, 2, 4]


async def test_awaiting_a_failing_submit_future_raises_the_users_error(ray_start):
    pool = ActorPool([Worker.remote()])
    with pytest.raises(ValueError, match="bad value 9"):
        await pool.submit_future(lambda a, v: a.fail.remote(v), 9)
    assert pool.has_free()


def test_an_error_raised_by_fn_keeps_the_actor(ray_start):
    def broken(a, v):
        raise KeyError(v)

    pool = ActorPool([Worker.remote()])
    with pytest.raises(KeyError):
        pool.submit(broken, 1)
    assert pool.has_free()  # Ray loses the actor here
    future = pool.submit_future(broken, 2)
    with pytest.raises(KeyError):
        future.result(timeout=0)
    assert list(pool.map(double, [3])) == [6]
