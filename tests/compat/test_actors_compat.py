"""Actors of each kind (sync, threaded, async), their errors, kill and exit."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time

import pytest
from _compat import eventually

import asyncray as ray
from asyncray.exceptions import ActorDiedError, RayActorError, RayTaskError


@ray.remote
class Counter:
    def __init__(self, start=0):
        self.value = start

    def incr(self, by=1):
        self.value += by
        return self.value

    def get(self):
        return self.value

    def pid(self):
        return os.getpid()

    def fail(self, message):
        raise ValueError(message)

    @ray.method(num_returns=2)
    def pair(self):
        return self.value, -self.value

    def exit(self):
        ray.actor.exit_actor()

    def actor_id(self):
        return ray.get_runtime_context().get_actor_id()


@ray.remote(max_concurrency=4)
class Threaded:
    def nap(self, seconds):
        time.sleep(seconds)
        return threading.current_thread().name

    def nap_and_report(self, seconds):
        start = time.monotonic()
        time.sleep(seconds)
        return start, time.monotonic()


@ray.remote
class Async:
    async def nap(self, seconds):
        await asyncio.sleep(seconds)
        return seconds


@ray.remote
class BadInit:
    def __init__(self):
        raise ZeroDivisionError("bad init")

    def ping(self):
        return "pong"


def _dead(handle):
    try:
        ray.get(handle.get.remote(), timeout=30)
    except RayActorError:
        return True
    return False


def test_sync_actor_keeps_state_and_runs_calls_in_order():
    counter = Counter.remote(10)
    refs = [counter.incr.remote() for _ in range(20)]
    assert ray.get(refs) == list(range(11, 31))
    assert ray.get(counter.get.remote()) == 30
    ray.kill(counter)


def test_actor_lives_in_one_process_of_its_own():
    counter = Counter.remote()
    pids = set(ray.get([counter.pid.remote() for _ in range(5)]))
    assert len(pids) == 1 and os.getpid() not in pids
    ray.kill(counter)


def test_class_options_and_keyword_constructor_arguments():
    counter = Counter.options(num_cpus=0, max_concurrency=1).remote(start=5)
    assert ray.get(counter.incr.remote(by=2)) == 7
    ray.kill(counter)


def test_method_num_returns():
    counter = Counter.remote(3)
    a, b = counter.pair.remote()
    assert ray.get([a, b]) == [3, -3]
    x, y, z = counter.incr.options(num_returns=1).remote(), *counter.pair.remote()
    assert ray.get([x, y, z]) == [4, 4, -4]
    ray.kill(counter)


def test_method_error_is_its_cause_and_the_actor_survives():
    counter = Counter.remote()
    with pytest.raises(ValueError, match="method failed") as info:
        ray.get(counter.fail.remote("method failed"))
    assert isinstance(info.value, RayTaskError)
    assert ray.get(counter.incr.remote()) == 1
    ray.kill(counter)


def test_constructor_error_makes_every_call_raise_actor_died():
    actor = BadInit.remote()
    with pytest.raises(ActorDiedError) as info:
        ray.get(actor.ping.remote(), timeout=30)
    assert isinstance(info.value, RayActorError)
    assert "bad init" in str(info.value)


def test_kill_makes_later_calls_raise_actor_died():
    counter = Counter.remote()
    assert ray.get(counter.incr.remote()) == 1
    ray.kill(counter)
    # Ray kills asynchronously: a call made just after kill() may still run.
    eventually(lambda: _dead(counter), what="the killed actor's death")
    with pytest.raises(RayActorError):
        ray.get(counter.incr.remote(), timeout=30)


def test_exit_actor_ends_it_and_later_calls_raise():
    counter = Counter.remote()
    assert ray.get(counter.incr.remote()) == 1
    with pytest.raises(RayActorError):
        ray.get(counter.exit.remote(), timeout=30)
    with pytest.raises(RayActorError):
        ray.get(counter.incr.remote(), timeout=30)


def test_handles_pass_to_tasks_and_other_actors():
    counter = Counter.remote()

    @ray.remote
    def bump(handle, times):
        return ray.get([handle.incr.remote() for _ in range(times)])[-1]

    assert ray.get(bump.remote(counter, 3)) == 3
    assert ray.get(bump.remote(counter, 2)) == 5
    ray.kill(counter)


def test_runtime_context_actor_id():
    counter = Counter.remote()
    actor_id = ray.get(counter.actor_id.remote())
    assert isinstance(actor_id, str) and actor_id
    assert ray.get_runtime_context().get_actor_id() is None
    ray.kill(counter)


def test_threaded_actor_runs_calls_in_parallel_threads():
    actor = Threaded.remote()
    ray.get(actor.nap.remote(0))  # started
    spans = ray.get([actor.nap_and_report.remote(0.3) for _ in range(4)])
    latest_start = max(s for s, _ in spans)
    earliest_end = min(e for _, e in spans)
    assert latest_start < earliest_end  # all four overlapped
    names = set(ray.get([actor.nap.remote(0.1) for _ in range(4)]))
    assert len(names) > 1
    ray.kill(actor)


def test_max_concurrency_bounds_a_threaded_actor():
    actor = Threaded.options(max_concurrency=2).remote()
    ray.get(actor.nap.remote(0))
    start = time.monotonic()
    ray.get([actor.nap.remote(0.3) for _ in range(4)])
    assert time.monotonic() - start >= 0.55  # two rounds of two
    ray.kill(actor)


def test_async_actor_max_concurrency_bounds_the_calls_in_flight():
    actor = Async.options(max_concurrency=2).remote()
    ray.get(actor.nap.remote(0))
    start = time.monotonic()
    assert ray.get([actor.nap.remote(0.3) for _ in range(4)]) == [0.3] * 4
    elapsed = time.monotonic() - start
    assert 0.55 <= elapsed < 3.0
    ray.kill(actor)


def test_sync_actor_runs_one_call_at_a_time():
    actor = Threaded.options(max_concurrency=1).remote()
    ray.get(actor.nap.remote(0))
    spans = sorted(ray.get([actor.nap_and_report.remote(0.1) for _ in range(3)]))
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end
    ray.kill(actor)


@ray.remote
class Fragile:
    def __init__(self):
        self.calls = 0

    def call(self):
        self.calls += 1
        return self.calls

    def crash(self):
        os._exit(1)


def test_an_actor_restarts_after_a_crash_with_max_restarts():
    actor = Fragile.options(max_restarts=1).remote()
    assert ray.get(actor.call.remote()) == 1
    with pytest.raises(RayActorError):
        ray.get(actor.crash.remote(), timeout=60)

    def restarted():
        try:
            return ray.get(actor.call.remote(), timeout=60) == 1  # fresh state
        except RayActorError:
            return False

    eventually(restarted, timeout=60, what="the actor's restart")
    ray.kill(actor)


def test_an_actor_without_restarts_dies_with_its_process():
    actor = Fragile.remote()
    assert ray.get(actor.call.remote()) == 1
    with pytest.raises(RayActorError):
        ray.get(actor.crash.remote(), timeout=60)
    with pytest.raises(ActorDiedError):
        ray.get(actor.call.remote(), timeout=60)


def test_misuse_of_a_handle():
    counter = Counter.remote()
    with pytest.raises(AttributeError, match="nope"):
        counter.nope
    with pytest.raises(TypeError, match="missing a required argument"):
        counter.fail.remote()
    with pytest.raises(TypeError):
        Counter.remote(1, 2)
    ray.kill(counter)
