"""Concurrency groups on async and threaded actors."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time

import pytest
from _compat import ON_RAY

import asyncray as ray
from asyncray.exceptions import RayActorError


@ray.remote(concurrency_groups={"io": 2, "compute": 1})
class AsyncGroups:
    @ray.method(concurrency_group="io")
    async def io(self, seconds):
        start = time.monotonic()
        await asyncio.sleep(seconds)
        return start, time.monotonic()

    @ray.method(concurrency_group="compute")
    async def compute(self, seconds):
        start = time.monotonic()
        await asyncio.sleep(seconds)
        return start, time.monotonic()

    @ray.method(concurrency_group="compute")
    async def compute_until(self, path):
        while not os.path.exists(path):
            await asyncio.sleep(0.01)

    async def default(self, seconds):
        start = time.monotonic()
        await asyncio.sleep(seconds)
        return start, time.monotonic()

    async def thread_name(self):
        return threading.current_thread().name

    @ray.method(concurrency_group="io")
    async def io_thread_name(self):
        return threading.current_thread().name


@ray.remote(concurrency_groups={"io": 2, "compute": 1})
class ThreadedGroups:
    @ray.method(concurrency_group="io")
    def io(self, seconds):
        start = time.monotonic()
        time.sleep(seconds)
        return start, time.monotonic()

    @ray.method(concurrency_group="compute")
    def compute(self, seconds):
        start = time.monotonic()
        time.sleep(seconds)
        return start, time.monotonic()

    @ray.method(concurrency_group="compute")
    def compute_until(self, path):
        while not os.path.exists(path):
            time.sleep(0.01)

    def default(self, seconds):
        start = time.monotonic()
        time.sleep(seconds)
        return start, time.monotonic()


def _overlap(spans):
    """Whether every span overlaps every other one."""
    return max(s for s, _ in spans) < min(e for _, e in spans)


def _serial(spans):
    spans = sorted(spans)
    return all(b[0] >= a[1] for a, b in itertools.pairwise(spans))


KINDS = [AsyncGroups, ThreadedGroups]
KIND_IDS = ["async", "threaded"]


def _started(actor):
    ray.get(actor.default.remote(0))


@pytest.mark.parametrize("cls", KINDS, ids=KIND_IDS)
def test_a_group_of_two_runs_two_calls_at_once(cls):
    actor = cls.remote()
    _started(actor)
    assert _overlap(ray.get([actor.io.remote(0.25) for _ in range(2)]))
    ray.kill(actor)


@pytest.mark.parametrize("cls", KINDS, ids=KIND_IDS)
def test_a_group_of_one_runs_calls_one_after_another(cls):
    actor = cls.remote()
    _started(actor)
    assert _serial(ray.get([actor.compute.remote(0.1) for _ in range(3)]))
    ray.kill(actor)


@pytest.mark.parametrize("cls", KINDS, ids=KIND_IDS)
def test_groups_do_not_block_each_other(cls, tmp_path):
    actor = cls.remote()
    _started(actor)
    gate = tmp_path / "gate"
    blocker = actor.compute_until.remote(str(gate))  # holds the compute group
    ray.get(actor.io.remote(0), timeout=30)
    ray.get(actor.default.remote(0), timeout=30)
    assert ray.wait([blocker], timeout=0)[0] == []  # neither waited for it
    gate.touch()
    ray.get(blocker, timeout=30)
    ray.kill(actor)


@pytest.mark.parametrize("cls", KINDS, ids=KIND_IDS)
def test_group_chosen_at_call_time(cls):
    actor = cls.remote()
    _started(actor)
    # ``default`` called in the "compute" group (one at a time) runs serially.
    refs = [actor.default.options(concurrency_group="compute").remote(0.1) for _ in range(3)]
    assert _serial(ray.get(refs))
    ray.kill(actor)


def test_thread_of_the_async_default_group():
    actor = AsyncGroups.remote()
    name = ray.get(actor.thread_name.remote())
    if ON_RAY:
        # Ray runs an async actor's default group on an event loop of its own,
        # in a thread (docs/ray-compatibility.md: "thread of an async actor's
        # default group").
        assert name == "AsyncIO Thread: default"
    else:
        # asyncray runs it on the main thread's loop, saving a hand-off between
        # threads (same row of docs/ray-compatibility.md).
        assert name == "MainThread"
    # Any other group has a loop of its own in a thread named as in Ray.
    assert ray.get(actor.io_thread_name.remote()) == "AsyncIO Thread: io"
    ray.kill(actor)


def test_unknown_group_at_call_time():
    actor = AsyncGroups.remote()
    _started(actor)
    if ON_RAY:
        # Ray crashes the actor process; later calls raise ActorDiedError
        # (docs/ray-compatibility.md: "unknown concurrency group at call time").
        ref = actor.default.options(concurrency_group="nope").remote(0)
        with pytest.raises(RayActorError):
            ray.get(ref, timeout=30)
        with pytest.raises(RayActorError):
            ray.get(actor.default.remote(0), timeout=30)
    else:
        # asyncray refuses the call naming the declared groups: a typo should
        # not kill an actor (same row).
        with pytest.raises(ValueError, match="nope"):
            actor.default.options(concurrency_group="nope").remote(0)
        ray.get(actor.default.remote(0))
    ray.kill(actor)
