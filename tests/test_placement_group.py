"""Placement groups: atomic reservations, scheduling into bundles, removal, accounting."""

from __future__ import annotations

import pytest
from _helpers import wait_for_condition

import asyncray
from asyncray.exceptions import ActorDiedError, TaskPlacementGroupRemoved
from asyncray.util import (
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from asyncray.util.scheduling_strategies import PlacementGroupSchedulingStrategy as InGroup

pytestmark = pytest.mark.timeout(30)


@asyncray.remote
def where():
    ctx = asyncray.get_runtime_context()
    return ctx.get_placement_group_id(), ctx.get_assigned_resources()


@asyncray.remote
class Pinger:
    def ping(self):
        return "pong"


def _free_cpu() -> float:
    return asyncray.available_resources().get("CPU", 0.0)


def test_a_group_reserves_its_bundles_and_ready_resolves_to_it(ray_start):
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK")
    assert asyncray.get(pg.ready(), timeout=5) == pg
    assert pg.wait(5) is True
    assert pg.bundle_count == 2 and pg.bundle_specs == [{"CPU": 1.0}, {"CPU": 1.0}]
    wait_for_condition(lambda: _free_cpu() == 0)
    assert "CPU" not in asyncray.available_resources()  # Ray leaves out exhausted keys
    assert asyncray.cluster_resources()[f"CPU_group_{pg.id.hex()}"] == 2.0
    remove_placement_group(pg)
    wait_for_condition(lambda: _free_cpu() == 2)
    assert placement_group_table(pg)["state"] == "REMOVED"


def test_a_group_that_does_not_fit_yet_waits_and_is_created_when_resources_return(ray_start):
    first = placement_group([{"CPU": 2}])
    assert first.wait(5)
    second = placement_group([{"CPU": 1}])
    assert second.wait(0.3) is False
    assert placement_group_table(second)["state"] == "PENDING"
    remove_placement_group(first)
    assert second.wait(5) is True


def test_strict_spread_with_two_bundles_stays_pending_on_one_host(ray_start):
    pg = placement_group([{"CPU": 0.5}, {"CPU": 0.5}], strategy="STRICT_SPREAD")
    assert pg.wait(0.3) is False
    ready, _ = asyncray.wait([pg.ready()], timeout=0.2)
    assert ready == []
    assert placement_group_table(pg)["state"] == "PENDING"
    assert placement_group([{"CPU": 0.5}], strategy="STRICT_SPREAD").wait(5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bundles": {"CPU": 1}}, "must be a list"),
        ({"bundles": []}, "non-empty list"),
        ({"bundles": [{}]}, "cannot be an empty dictionary"),
        ({"bundles": [{"CPU": 1}], "strategy": "FOO"}, "Invalid placement group strategy"),
        ({"bundles": [{"CPU": 1}], "lifetime": "x"}, "lifetime"),
        ({"bundles": [{"CPU": 3}]}, "can never be placed"),
    ],
)
def test_bad_arguments_raise_value_error_at_once(ray_start, kwargs, message):
    with pytest.raises(ValueError, match=message):
        placement_group(**kwargs)


def test_tasks_in_a_bundle_draw_from_it_and_see_their_group(ray_start):
    pg = placement_group([{"CPU": 1}, {"CPU": 1}])
    assert pg.wait(5)
    group_id, resources = asyncray.get(where.options(scheduling_strategy=InGroup(pg, 1)).remote())
    assert group_id == pg.id.hex()
    assert resources == {"CPU": 1.0}
    assert get_current_placement_group() is None  # in the driver


def test_a_task_outside_the_group_waits_while_the_group_holds_every_cpu(ray_start):
    pg = placement_group([{"CPU": 2}])
    assert pg.wait(5)
    outside = where.remote()
    with pytest.raises(asyncray.exceptions.GetTimeoutError):
        asyncray.get(outside, timeout=0.3)
    remove_placement_group(pg)
    assert asyncray.get(outside, timeout=5) == (None, {"CPU": 1.0})


def test_a_request_that_fits_no_bundle_or_a_bad_index_raises_at_remote(ray_start):
    pg = placement_group([{"CPU": 0.5}, {"CPU": 0.5}])
    with pytest.raises(ValueError, match="cannot fit into any bundles"):
        where.options(scheduling_strategy=InGroup(pg)).remote()
    with pytest.raises(ValueError, match="bundle index 5 is invalid"):
        where.options(num_cpus=0.5, scheduling_strategy=InGroup(pg, 5)).remote()


def test_captured_child_tasks_run_in_the_parents_group(ray_start):
    @asyncray.remote(num_cpus=0.5)
    def parent():
        return asyncray.get(where.options(num_cpus=0.5).remote())

    pg = placement_group([{"CPU": 1}])
    assert pg.wait(5)
    captured = parent.options(
        scheduling_strategy=InGroup(pg, placement_group_capture_child_tasks=True)
    )
    assert asyncray.get(captured.remote(), timeout=10)[0] == pg.id.hex()
    free = parent.options(scheduling_strategy=InGroup(pg))
    assert asyncray.get(free.remote(), timeout=10)[0] is None


def test_removing_a_group_ends_its_actors_fails_its_queued_tasks_and_ready(ray_start):
    pg = placement_group([{"CPU": 1}])
    assert pg.wait(5)
    actor = Pinger.options(num_cpus=1, scheduling_strategy=InGroup(pg, 0)).remote()
    assert asyncray.get(actor.ping.remote()) == "pong"
    queued = where.options(scheduling_strategy=InGroup(pg, 0)).remote()  # the actor holds the CPU
    remove_placement_group(pg)
    with pytest.raises(ActorDiedError):
        asyncray.get(actor.ping.remote(), timeout=10)
    with pytest.raises(TaskPlacementGroupRemoved):
        asyncray.get(queued, timeout=10)
    with pytest.raises(TaskPlacementGroupRemoved):
        asyncray.get(pg.ready(), timeout=5)
    with pytest.raises(Exception, match="does not exist"):
        pg.wait(1)
    wait_for_condition(lambda: _free_cpu() == 2)


def test_groups_are_found_by_name_in_the_namespace(ray_start):
    pg = placement_group([{"CPU": 1}], name="named")
    assert get_placement_group("named") == pg
    with pytest.raises(ValueError, match="Failed to look up placement group"):
        get_placement_group("nope")
    table = placement_group_table()
    assert table[pg.id.hex()]["name"] == "named"
