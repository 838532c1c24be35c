"""ActorPool: map, map_unordered, submit / get_next, idle actors."""

from __future__ import annotations

import time

import pytest

import asyncray as ray
from asyncray.util import ActorPool
from asyncray.util.actor_pool import ActorPool as ActorPoolFromModule


@ray.remote
class Doubler:
    def double(self, x):
        return 2 * x

    def slow_double(self, pair):
        seconds, x = pair
        time.sleep(seconds)
        return 2 * x


@pytest.fixture
def actors():
    handles = [Doubler.remote() for _ in range(2)]
    yield handles
    for handle in handles:
        ray.kill(handle)


def test_both_import_paths_name_the_same_class():
    assert ActorPool is ActorPoolFromModule


def test_map_returns_results_in_input_order(actors):
    pool = ActorPool(actors)
    values = [(0.2, 1), (0.0, 2), (0.1, 3), (0.0, 4)]
    assert list(pool.map(lambda a, v: a.slow_double.remote(v), values)) == [2, 4, 6, 8]


def test_map_unordered_returns_every_result(actors):
    pool = ActorPool(actors)
    values = [(0.3, 1), (0.0, 2), (0.0, 3)]
    out = list(pool.map_unordered(lambda a, v: a.slow_double.remote(v), values))
    assert sorted(out) == [2, 4, 6]


def test_submit_and_get_next_in_submission_order(actors):
    pool = ActorPool(actors)
    for i in range(5):
        pool.submit(lambda a, v: a.double.remote(v), i)
    assert pool.has_next()
    out = []
    while pool.has_next():
        out.append(pool.get_next())
    assert out == [0, 2, 4, 6, 8]
    assert not pool.has_next()


def test_get_next_unordered_returns_the_first_done(actors):
    pool = ActorPool(actors)
    pool.submit(lambda a, v: a.slow_double.remote(v), (0.5, 1))
    pool.submit(lambda a, v: a.slow_double.remote(v), (0.0, 2))
    assert pool.get_next_unordered(timeout=30) == 4
    assert pool.get_next_unordered(timeout=30) == 2


def test_get_next_timeout_raises_timeout_error(actors):
    pool = ActorPool(actors)
    pool.submit(lambda a, v: a.slow_double.remote(v), (0.5, 1))
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.1)
    assert pool.get_next(timeout=30) == 2


def test_get_next_with_nothing_pending_raises_stop_iteration(actors):
    pool = ActorPool(actors)
    with pytest.raises(StopIteration):
        pool.get_next()


def test_has_free_pop_idle_and_push(actors):
    pool = ActorPool(actors[:1])
    assert pool.has_free()
    pool.submit(lambda a, v: a.slow_double.remote(v), (0.2, 5))
    assert not pool.has_free()
    assert pool.pop_idle() is None
    assert pool.get_next() == 10
    idle = pool.pop_idle()
    assert idle is actors[0]
    assert not pool.has_free()
    pool.push(actors[1])
    assert pool.has_free()
    assert list(pool.map(lambda a, v: a.double.remote(v), [1, 2])) == [2, 4]


def test_more_submissions_than_actors_wait_for_a_free_actor(actors):
    pool = ActorPool(actors)
    for i in range(6):
        pool.submit(lambda a, v: a.slow_double.remote(v), (0.05, i))
    assert [pool.get_next() for _ in range(6)] == [0, 2, 4, 6, 8, 10]


def test_an_error_in_a_call_is_raised_by_get_next(actors):
    pool = ActorPool(actors)
    pool.submit(lambda a, v: a.double.remote(v), None)
    with pytest.raises(TypeError):
        pool.get_next()
