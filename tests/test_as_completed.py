"""``util.as_completed`` and ``util.map_unordered``: Ray's helpers, sync and async (#19)."""

from __future__ import annotations

import time

import pytest

import asyncray
from asyncray.exceptions import RayTaskError
from asyncray.util import as_completed, map_unordered

pytestmark = pytest.mark.timeout(60)


@asyncray.remote
def after(delay, value):
    time.sleep(delay)
    if value == "boom":
        raise ValueError("boom")
    return value


def test_with_chunk_size_1_values_come_in_the_order_tasks_finish(ray_start):
    refs = [after.remote(0.6, "slow"), after.remote(0.0, "fast"), after.remote(0.3, "middle")]
    done = as_completed(refs, chunk_size=1)
    assert len(done) == 3
    assert list(done) == ["fast", "middle", "slow"]
    assert len(done) == 0


def test_rays_default_waits_for_batches_of_ten_in_submission_order(ray_start):
    refs = [after.remote(0.3, "slow"), after.remote(0.0, "fast")]
    assert list(as_completed(refs)) == ["slow", "fast"]  # one batch of both, as Ray's
    refs = [after.remote(0.3, "slow"), after.remote(0.0, "fast")]
    assert list(as_completed(refs, yield_obj_refs=True, chunk_size=1)) == refs[::-1]


def test_a_failed_task_raises_from_next(ray_start):
    refs = [after.remote(0.0, "boom"), after.remote(0.3, "ok")]
    done = as_completed(refs, chunk_size=1)
    with pytest.raises(RayTaskError, match="boom"):
        next(done)
    assert next(done) == "ok"  # beyond Ray's generator: the others still come


def test_wait_keywords_pass_through(ray_start):
    # As Ray's: the timeout bounds each wait, and the iteration waits on (polls) until done.
    refs = [after.remote(0.3, 1)]
    assert list(as_completed(refs, chunk_size=1, timeout=0.05, fetch_local=False)) == [1]
    with pytest.raises(ValueError, match="Use the `chunk_size` argument instead of"):
        as_completed(refs, num_returns=1)
    with pytest.raises(ValueError, match="`chunk_size` must be >= 1"):
        as_completed(refs, chunk_size=0)


async def test_async_for(ray_start):
    refs = [after.remote(0.4, "b"), after.remote(0.0, "a")]
    assert [v async for v in as_completed(refs, chunk_size=1)] == ["a", "b"]


def test_only_refs():
    with pytest.raises(TypeError, match="as_completed\\(\\) takes ObjectRefs, got int"):
        as_completed([1])


def test_map_unordered_keeps_at_most_backpressure_size_in_flight(ray_start):
    @asyncray.remote
    def double(x):
        return 2 * x

    assert sorted(map_unordered(double, range(25), backpressure_size=4, chunk_size=2)) == [
        2 * i for i in range(25)
    ]
    with pytest.raises(ValueError, match="backpressure_size must be positive"):
        list(map_unordered(double, [1], backpressure_size=0))


def test_a_progress_bar_sees_its_length(ray_start):
    tqdm = pytest.importorskip("tqdm").tqdm
    refs = [after.remote(0.0, i) for i in range(5)]
    bar = tqdm(as_completed(refs), disable=True)
    assert bar.total == 5
    assert sorted(bar) == list(range(5))
