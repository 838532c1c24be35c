"""``util.as_completed``: values in the order their tasks finish, sync and async (#19)."""

from __future__ import annotations

import time

import pytest

import asyncray
from asyncray.exceptions import GetTimeoutError, RayTaskError
from asyncray.util import as_completed

pytestmark = pytest.mark.timeout(60)


@asyncray.remote
def after(delay, value):
    time.sleep(delay)
    if value == "boom":
        raise ValueError("boom")
    return value


def test_values_come_in_the_order_tasks_finish(ray_start):
    refs = [after.remote(0.6, "slow"), after.remote(0.0, "fast"), after.remote(0.3, "middle")]
    done = as_completed(refs)
    assert len(done) == 3
    assert list(done) == ["fast", "middle", "slow"]
    assert len(done) == 0


def test_a_failed_task_raises_and_the_rest_still_come(ray_start):
    refs = [after.remote(0.0, "boom"), after.remote(0.3, "ok")]
    done = as_completed(refs)
    with pytest.raises(RayTaskError, match="boom"):
        next(done)
    assert next(done) == "ok"
    with pytest.raises(StopIteration):
        next(done)


def test_timeout_bounds_the_whole_iteration(ray_start):
    refs = [after.remote(0.0, 1), after.remote(5, 2)]
    done = as_completed(refs, timeout=0.5)
    assert next(done) == 1
    start = time.monotonic()
    with pytest.raises(GetTimeoutError, match="1 of its refs not ready"):
        next(done)
    assert time.monotonic() - start < 2


async def test_async_for(ray_start):
    refs = [after.remote(0.4, "b"), after.remote(0.0, "a")]
    assert [v async for v in as_completed(refs)] == ["a", "b"]


def test_only_refs():
    with pytest.raises(TypeError, match="as_completed\\(\\) takes ObjectRefs, got int"):
        as_completed([1])


def test_a_progress_bar_sees_its_length(ray_start):
    tqdm = pytest.importorskip("tqdm").tqdm
    refs = [after.remote(0.0, i) for i in range(5)]
    bar = tqdm(as_completed(refs), disable=True)
    assert bar.total == 5
    assert sorted(bar) == list(range(5))
