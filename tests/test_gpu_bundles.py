"""Fractional GPUs in placement-group bundles, end to end (no real GPU is needed:
GPUs are counted slots with device ids).

A bundle ``{"GPU": 0.5}`` reserves half of one device; tasks asking for that
share (or less) run in it and see that device's id, as in Ray.
"""

from __future__ import annotations

import pytest

import asyncray as ray
from asyncray.util.placement_group import placement_group, remove_placement_group
from asyncray.util.scheduling_strategies import PlacementGroupSchedulingStrategy as InGroup

pytestmark = pytest.mark.timeout(30)


@ray.remote(num_cpus=0)
def gpu_ids() -> list[int]:
    return ray.get_gpu_ids()


def test_a_task_asking_for_a_bundles_gpu_fraction_runs_on_its_device(shutdown_only):
    ray.init(num_cpus=2, num_gpus=2)
    whole = placement_group([{"GPU": 1}])
    half = placement_group([{"GPU": 0.5}])
    assert ray.get(half.ready(), timeout=10) == half
    assert ray.get(whole.ready(), timeout=10) == whole
    in_half = InGroup(half, placement_group_bundle_index=0)
    # The half and the whole GPU are on different devices.
    (device,) = ray.get(
        gpu_ids.options(num_gpus=0.5, scheduling_strategy=in_half).remote(), timeout=10
    )
    assert ray.get(
        gpu_ids.options(num_gpus=1, scheduling_strategy=InGroup(whole)).remote(), timeout=10
    ) == [1 - device]
    quarters = [
        gpu_ids.options(num_gpus=0.25, scheduling_strategy=in_half).remote() for _ in range(4)
    ]
    assert ray.get(quarters, timeout=10) == [[device]] * 4
    remove_placement_group(half)
    remove_placement_group(whole)
    assert ray.available_resources().get("GPU") == 2.0


def test_fractional_bundles_that_fit_only_on_different_devices_are_placed(shutdown_only):
    ray.init(num_cpus=2, num_gpus=2)

    @ray.remote(num_cpus=0, num_gpus=0.6)
    class Holder:
        def ids(self) -> list[int]:
            return ray.get_gpu_ids()

    holders = [Holder.remote() for _ in range(2)]
    assert sorted(ray.get([h.ids.remote() for h in holders], timeout=10)) == [[0], [1]]
    pg = placement_group([{"GPU": 0.4}, {"GPU": 0.4}])
    assert pg.wait(10)
    too_big = placement_group([{"GPU": 0.5}])  # 0.8 GPU is free, but no device has 0.5
    assert not too_big.wait(0.3)
    ray.kill(holders[0])
    assert too_big.wait(10)
