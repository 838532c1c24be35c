"""cancel: running and queued tasks, force, async actor calls, finished tasks."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from _compat import NUM_CPUS, ON_RAY, eventually

import asyncray as ray
from asyncray.exceptions import (
    RayError,
    TaskCancelledError,
)


@ray.remote
def spin(marker=None):
    # Short sleeps in a Python loop: a non-forced cancel lands between them in
    # both (Ray does not interrupt one long time.sleep, Ray #32954; see
    # docs/ray-compatibility.md, "non-forced cancel").
    if marker:
        open(marker, "w").close()
    while True:
        time.sleep(0.01)


@ray.remote
def quick():
    return "done"


def _wait_for(path, timeout=30):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.01)


def test_cancel_a_running_task_raises_task_cancelled(tmp_path):
    marker = str(tmp_path / "started")
    ref = spin.remote(marker)
    _wait_for(marker)
    ray.cancel(ref)
    with pytest.raises(TaskCancelledError) as info:
        ray.get(ref, timeout=30)
    assert isinstance(info.value, RayError)
    # The runtime still runs tasks afterwards.
    assert ray.get(quick.remote(), timeout=30) == "done"


def test_cancel_a_queued_task(tmp_path):
    marker = str(tmp_path / "started")
    blocker = spin.options(num_cpus=NUM_CPUS).remote(marker)  # takes every CPU
    _wait_for(marker)
    # Cannot start while the blocker runs, so the cancel cannot race its
    # completion (a race that aborts Ray 2.60's driver: "Check failed: it !=
    # submissible_tasks_.end() Tried to complete task that was not pending").
    queued = quick.remote()
    ray.cancel(queued)
    with pytest.raises(TaskCancelledError):
        ray.get(queued, timeout=30)
    ray.cancel(blocker)
    with pytest.raises(TaskCancelledError):
        ray.get(blocker, timeout=30)


def test_force_cancel_kills_the_worker(tmp_path):
    marker = str(tmp_path / "started")
    ref = spin.remote(marker)
    _wait_for(marker)
    ray.cancel(ref, force=True)
    with pytest.raises(TaskCancelledError):
        ray.get(ref, timeout=30)
    assert ray.get(quick.remote(), timeout=30) == "done"


@pytest.mark.skipif(
    ON_RAY,
    reason="Ray 2.60 bug: cancelling a task that just finished can abort the driver "
    "(task_manager.cc 'Check failed: it != submissible_tasks_.end() Tried to complete "
    "task that was not pending'), which ends the whole session",
)
def test_cancel_a_finished_task_changes_nothing():
    ref = quick.remote()
    assert ray.get(ref) == "done"
    ray.cancel(ref)
    assert ray.get(ref) == "done"


def test_cancel_is_recursive_by_default(tmp_path):
    marker = str(tmp_path / "child")

    @ray.remote
    def parent(marker):
        return ray.get(spin.remote(marker))

    ref = parent.remote(marker)
    _wait_for(marker)
    ray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        ray.get(ref, timeout=30)


@ray.remote
class AsyncWorker:
    def __init__(self):
        self.started = False
        self.cancelled = False

    async def wait_forever(self):
        self.started = True
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled = True
            raise

    async def was_started(self):
        return self.started

    async def was_cancelled(self):
        return self.cancelled


def test_cancel_an_async_actor_call():
    actor = AsyncWorker.remote()
    ref = actor.wait_forever.remote()
    eventually(lambda: ray.get(actor.was_started.remote()), what="the call's start")
    ray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        ray.get(ref, timeout=30)
    assert ray.get(actor.was_cancelled.remote()) is True
    ray.kill(actor)


def test_force_cancel_of_an_actor_call_is_refused():
    actor = AsyncWorker.remote()
    ref = actor.wait_forever.remote()
    with pytest.raises(ValueError):
        ray.cancel(ref, force=True)
    ray.cancel(ref)
    ray.kill(actor)
