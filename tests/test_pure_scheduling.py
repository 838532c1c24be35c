"""Resource accounting and placement-group placement as pure logic: no runtime, no processes.

``scheduler.ResourcePool`` and ``ReadyQueue`` are used directly.
``placement.PlacementGroupManager`` is driven through a tiny fake runtime
holding only what the manager touches: a real ``ResourcePool`` (the host)
and a real ``ObjectTable`` (the ``pg.ready()`` objects), plus recorders for
the calls that reach tasks, actors and dispatch.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from asyncray import exceptions as exc
from asyncray._core import object_table, placement, scheduler
from asyncray._wire import protocol as P

shape_of = scheduler.shape_of
ResourcePool = scheduler.ResourcePool


# ====================================================================== shape_of


def test_a_shape_is_sorted_and_independent_of_key_order():
    assert shape_of({"GPU": 1, "CPU": 2, "custom": 0.5}) == (
        ("CPU", 2),
        ("GPU", 1),
        ("custom", 0.5),
    )
    assert shape_of({"b": 1.0, "a": 2.0}) == shape_of({"a": 2.0, "b": 1.0})


def test_a_shape_leaves_out_zero_and_negative_quantities():
    assert shape_of({"CPU": 1, "GPU": 0, "memory": -5}) == (("CPU", 1),)
    assert shape_of({"CPU": 0}) == ()


def test_a_shape_is_hashable_and_different_requests_give_different_shapes():
    a, b = shape_of({"CPU": 1}), shape_of({"CPU": 2})
    assert {a: "one", b: "two"}[shape_of({"CPU": 1})] == "one"
    assert a != b


def test_the_same_request_dict_gives_the_same_shape_object():
    request = {"CPU": 1.0, "GPU": 1.0}
    assert shape_of(request) is shape_of(request)
    # An equal but distinct dict gives an equal shape.
    assert shape_of(dict(request)) == shape_of(request)


def test_the_shape_cache_stays_bounded(monkeypatch):
    monkeypatch.setattr(scheduler, "_shapes", {})
    monkeypatch.setattr(scheduler, "_SHAPE_CACHE_SIZE", 8)
    requests = [{"CPU": float(i + 1)} for i in range(50)]
    shapes = [shape_of(r) for r in requests]
    assert len(scheduler._shapes) <= 8
    assert shapes == [(("CPU", float(i + 1)),) for i in range(50)]


# ====================================================================== ResourcePool: counters


def test_totals_are_floats_and_start_all_available():
    pool = ResourcePool({"CPU": 4, "memory": 1000, "custom": 2})
    assert pool.totals == {"CPU": 4.0, "memory": 1000.0, "custom": 2.0}
    assert all(isinstance(v, float) for v in pool.totals.values())
    assert pool.available == pool.totals
    assert pool.available is not pool.totals


def test_acquire_and_release_cpu():
    pool = ResourcePool({"CPU": 4})
    two = shape_of({"CPU": 2})
    assert pool.fits(two)
    assert pool.acquire(two) == []  # no GPU: no ids
    assert pool.available["CPU"] == 2.0
    assert pool.fits(two)
    pool.acquire(two)
    assert pool.available["CPU"] == 0.0
    assert not pool.fits(shape_of({"CPU": 1}))
    pool.release(two, [])
    assert pool.available["CPU"] == 2.0
    assert pool.fits(two)
    assert not pool.fits(shape_of({"CPU": 3}))
    assert pool.totals["CPU"] == 4.0  # totals never move


def test_a_request_larger_than_the_total_never_fits():
    pool = ResourcePool({"CPU": 2})
    assert not pool.fits(shape_of({"CPU": 3}))
    assert not pool.fits(shape_of({"CPU": 2.5}))


def test_every_resource_of_a_request_must_fit():
    pool = ResourcePool({"CPU": 4, "memory": 100})
    assert pool.fits(shape_of({"CPU": 1, "memory": 100}))
    assert not pool.fits(shape_of({"CPU": 1, "memory": 101}))
    assert not pool.fits(shape_of({"CPU": 5, "memory": 1}))


def test_a_resource_the_host_does_not_have_never_fits():
    pool = ResourcePool({"CPU": 4})
    assert not pool.fits(shape_of({"CPU": 1, "accelerator": 1}))
    assert not pool.fits(shape_of({"GPU": 1}))
    # A zero request of it is no request at all.
    assert pool.fits(shape_of({"CPU": 1, "accelerator": 0}))


def test_the_empty_shape_always_fits():
    pool = ResourcePool({"CPU": 1})
    pool.acquire(shape_of({"CPU": 1}))
    assert pool.fits(())
    assert pool.acquire(()) == []
    assert pool.available == {"CPU": 0.0}


def test_custom_resources_are_counted_like_cpus():
    pool = ResourcePool({"CPU": 8, "special_hardware": 1, "pool_slots": 3})
    need = shape_of({"special_hardware": 1, "pool_slots": 2})
    assert pool.fits(need)
    pool.acquire(need)
    assert pool.available == {"CPU": 8.0, "special_hardware": 0.0, "pool_slots": 1.0}
    assert not pool.fits(shape_of({"special_hardware": 0.5}))
    assert pool.fits(shape_of({"pool_slots": 1}))
    pool.release(need, [])
    assert pool.available == pool.totals


def test_fractional_quantities_add_up_within_the_epsilon():
    pool = ResourcePool({"CPU": 0.3})
    pool.acquire(shape_of({"CPU": 0.1}))
    # 0.3 - 0.1 is 0.19999999999999998 in floating point: 0.2 must still fit.
    assert pool.available["CPU"] < 0.2
    assert pool.fits(shape_of({"CPU": 0.2}))
    assert not pool.fits(shape_of({"CPU": 0.21}))
    pool = ResourcePool({"CPU": 1})
    for _ in range(10):
        pool.acquire(shape_of({"CPU": 0.1}))
    assert pool.available["CPU"] != 0.0  # the rounding error of ten subtractions
    assert not pool.fits(shape_of({"CPU": 0.01}))
    assert pool.snapshot_available() == {}  # reported as none left


def test_point_one_plus_point_two_fits_in_point_three():
    pool = ResourcePool({"custom": 0.3})
    pool.acquire(shape_of({"custom": 0.1}))
    assert pool.fits(shape_of({"custom": 0.2}))
    pool.acquire(shape_of({"custom": 0.2}))
    assert not pool.fits(shape_of({"custom": 0.01}))


def test_fits_against_an_explicit_availability():
    pool = ResourcePool({"CPU": 4})
    assert pool.fits(shape_of({"CPU": 2}), {"CPU": 2.0})
    assert not pool.fits(shape_of({"CPU": 3}), {"CPU": 2.0})
    assert not pool.fits(shape_of({"CPU": 1}), {})
    # The pool's own availability is not what was asked about.
    assert pool.available["CPU"] == 4.0


def test_adjust_lends_and_takes_back_a_resource():
    pool = ResourcePool({"CPU": 1})
    one = shape_of({"CPU": 1})
    pool.acquire(one)
    assert not pool.fits(one)
    pool.adjust("CPU", 1.0)  # a blocked task lends its CPU back
    assert pool.fits(one)
    pool.acquire(one)
    pool.adjust("CPU", -1.0)  # it unblocks and takes it back: oversubscribed for a while
    assert pool.available["CPU"] == -1.0
    assert not pool.fits(shape_of({"CPU": 0.5}))
    pool.release(one, [])
    pool.release(one, [])
    assert pool.available["CPU"] == 1.0


def test_snapshot_available_leaves_out_exhausted_resources():
    pool = ResourcePool({"CPU": 2, "custom": 1, "memory": 50})
    pool.acquire(shape_of({"custom": 1, "CPU": 0.5}))
    pool.adjust("memory", -60)
    assert pool.snapshot_available() == {"CPU": 1.5}


# ====================================================================== ResourcePool: GPU ids


def test_whole_gpus_get_distinct_device_ids_and_come_back():
    pool = ResourcePool({"CPU": 4, "GPU": 4})
    two = shape_of({"GPU": 2})
    assert pool.acquire(two) == [0, 1]
    assert pool.acquire(shape_of({"GPU": 1})) == [2]
    assert pool.available["GPU"] == 1.0
    pool.release(two, [0, 1])
    assert pool.available["GPU"] == 3.0
    assert pool.acquire(shape_of({"GPU": 3})) == [0, 1, 3]
    assert not pool.fits(shape_of({"GPU": 1}))


def test_gpu_ids_given_to_the_pool_name_its_devices():
    pool = ResourcePool({"GPU": 2}, gpu_ids=[3, 7])
    assert pool.acquire(shape_of({"GPU": 1})) == [3]
    assert pool.acquire(shape_of({"GPU": 1})) == [7]
    pool.release(shape_of({"GPU": 1}), [3])
    assert pool.acquire(shape_of({"GPU": 1})) == [3]


def test_fractional_gpus_pack_onto_the_fullest_device_that_fits():
    pool = ResourcePool({"GPU": 2})
    half, quarter = shape_of({"GPU": 0.5}), shape_of({"GPU": 0.25})
    assert pool.acquire(half) == [0]
    assert pool.acquire(quarter) == [0]  # device 0 is fuller than device 1 and still fits
    assert pool.acquire(half) == [1]  # device 0 has only 0.25 left
    assert pool.acquire(quarter) == [0]  # fills device 0
    assert pool.available["GPU"] == pytest.approx(0.5)
    assert pool.fits(half)  # device 1 has 0.5 left
    assert not pool.fits(shape_of({"GPU": 1}))


def test_a_whole_gpu_needs_a_wholly_free_device():
    pool = ResourcePool({"GPU": 2})
    assert pool.acquire(shape_of({"GPU": 0.5})) == [0]
    assert pool.fits(shape_of({"GPU": 1}))  # device 1 is free
    assert pool.acquire(shape_of({"GPU": 1})) == [1]
    assert not pool.fits(shape_of({"GPU": 1}))
    assert pool.fits(shape_of({"GPU": 0.5}))


def test_gpu_counters_are_not_enough_the_request_must_fit_one_device():
    pool = ResourcePool({"GPU": 2})
    assert pool.acquire(shape_of({"GPU": 0.6})) == [0]
    assert pool.acquire(shape_of({"GPU": 0.6})) == [1]
    # 0.8 GPU is free in total, but no single device has 0.5 of it.
    assert pool.available["GPU"] == pytest.approx(0.8)
    assert not pool.fits(shape_of({"GPU": 0.5}))
    assert pool.fits(shape_of({"GPU": 0.4}))
    # Against an explicit availability only the counters are compared.
    assert pool.fits(shape_of({"GPU": 0.5}), dict(pool.available))


def test_releasing_a_fractional_gpu_frees_its_share_of_the_device():
    pool = ResourcePool({"GPU": 1})
    half = shape_of({"GPU": 0.5})
    a = pool.acquire(half)
    b = pool.acquire(half)
    assert a == b == [0]
    assert not pool.fits(half)
    pool.release(half, a)
    assert pool.fits(half)
    assert not pool.fits(shape_of({"GPU": 1}))
    pool.release(half, b)
    assert pool.fits(shape_of({"GPU": 1}))
    assert pool.acquire(shape_of({"GPU": 1})) == [0]


def test_a_gpu_request_checks_the_other_resources_too():
    pool = ResourcePool({"CPU": 1, "GPU": 1})
    pool.acquire(shape_of({"CPU": 1}))
    assert not pool.fits(shape_of({"CPU": 1, "GPU": 1}))
    assert not pool.fits(shape_of({"GPU": 1, "zzz": 1}))  # a name sorted after GPU
    assert pool.fits(shape_of({"GPU": 1}))


def test_a_bundle_with_a_fractional_gpu_runs_a_task_asking_for_that_fraction():
    host = ResourcePool({"GPU": 1})
    ids = host.acquire(shape_of({"GPU": 0.5}))
    assert ids == [0]
    bundle = ResourcePool({"GPU": 0.5}, gpu_ids=ids)
    assert bundle.fits(shape_of({"GPU": 0.5}))
    assert bundle.acquire(shape_of({"GPU": 0.5})) == [0]


def test_a_fractional_gpu_bundle_is_one_slot_its_tasks_share_and_give_back():
    host = ResourcePool({"GPU": 2})
    assert host.acquire(shape_of({"GPU": 1})) == [0]
    ids = host.acquire(shape_of({"GPU": 0.5}))
    assert ids == [1]
    bundle = ResourcePool({"GPU": 0.5}, gpu_ids=ids)
    quarter = shape_of({"GPU": 0.25})
    assert not bundle.fits(shape_of({"GPU": 1}))  # a share of a device is no whole one
    assert not bundle.fits(shape_of({"GPU": 0.75}))
    assert bundle.acquire(quarter) == [1]
    assert bundle.acquire(quarter) == [1]
    assert not bundle.fits(quarter)
    bundle.release(quarter, [1])
    bundle.release(quarter, [1])
    assert bundle.fits(shape_of({"GPU": 0.5}))
    bundle.release(quarter, [1])  # an extra release never grows the slot past its share
    assert not bundle.fits(shape_of({"GPU": 0.75}))


def test_a_gpu_and_a_half_takes_a_whole_device_and_half_of_another():
    host = ResourcePool({"GPU": 2})
    ids = host.acquire(shape_of({"GPU": 1.5}))
    assert ids == [0, 1]
    assert host.fits(shape_of({"GPU": 0.5}))
    assert not host.fits(shape_of({"GPU": 0.6}))
    bundle = ResourcePool({"GPU": 1.5}, gpu_ids=ids)
    assert bundle.acquire(shape_of({"GPU": 1})) == [0]
    assert bundle.acquire(shape_of({"GPU": 0.5})) == [1]
    host.release(shape_of({"GPU": 1.5}), ids)
    assert host.acquire(shape_of({"GPU": 2})) == [0, 1]


def test_acquire_all_is_all_or_nothing_and_keeps_the_order_of_its_shapes():
    host = ResourcePool({"CPU": 2, "GPU": 2})
    assert host.acquire(shape_of({"GPU": 0.5})) == [0]
    before = (dict(host.available), list(host._gpu_free))
    # Two whole GPUs do not fit beside the half: nothing is taken.
    assert (
        host.acquire_all([shape_of({"CPU": 1}), shape_of({"GPU": 1}), shape_of({"GPU": 1})]) is None
    )
    assert (host.available, host._gpu_free) == before
    # The counters must fit summed.
    assert host.acquire_all([shape_of({"CPU": 1.5}), shape_of({"CPU": 1})]) is None
    assert (host.available, host._gpu_free) == before
    got = host.acquire_all([shape_of({"GPU": 0.5}), shape_of({"CPU": 1}), shape_of({"GPU": 1})])
    assert got == [[0], [], [1]]
    assert host.available == {"CPU": 1.0, "GPU": 0.0}


def test_acquire_all_places_the_largest_fractions_first():
    host = ResourcePool({"GPU": 2})
    assert host.acquire(shape_of({"GPU": 0.5})) == [0]
    assert host.acquire(shape_of({"GPU": 0.6})) == [1]
    # Free: 0.5 on device 0, 0.4 on device 1. Best fit in the given order would put
    # 0.1 on device 1 and then find no room for the second 0.4; largest first fits all.
    bundles = [shape_of({"GPU": 0.1}), shape_of({"GPU": 0.4}), shape_of({"GPU": 0.4})]
    assert host.acquire_all(bundles) == [[0], [1], [0]]
    assert host.available["GPU"] == pytest.approx(0.0)
    assert not host.fits(shape_of({"GPU": 0.01}))


# ====================================================================== ReadyQueue


def test_ready_queue_is_fifo_per_shape():
    q = scheduler.ReadyQueue()
    small, big = shape_of({"CPU": 1}), shape_of({"CPU": 8})
    for item in ("s1", "b1", "s2", "b2", "s3"):
        q.push(big if item.startswith("b") else small, item)
    assert len(q) == 5
    assert q.has(small) and q.has(big)
    assert [q.pop(small) for _ in range(3)] == ["s1", "s2", "s3"]
    assert not q.has(small)  # an emptied shape is gone
    assert len(q) == 2
    assert q.pop(big) == "b1"
    assert q.pop(big) == "b2"
    assert len(q) == 0
    assert list(q.shapes()) == []
    with pytest.raises(KeyError):
        q.pop(big)


def test_ready_queue_push_front_goes_first():
    q = scheduler.ReadyQueue()
    s = shape_of({"CPU": 1})
    q.push(s, "a")
    q.push(s, "b")
    q.push_front(s, "retry")
    assert [q.pop(s) for _ in range(3)] == ["retry", "a", "b"]
    q.push_front(s, "only")  # on a shape not queued yet
    assert q.has(s) and len(q) == 1
    assert q.pop(s) == "only"


def test_ready_queue_remove():
    q = scheduler.ReadyQueue()
    s, other = shape_of({"CPU": 1}), shape_of({"GPU": 1})
    q.push(s, "a")
    q.push(s, "b")
    assert q.remove(s, "a") is True
    assert len(q) == 1
    assert q.remove(s, "a") is False  # not there any more
    assert q.remove(other, "b") is False  # no such shape
    assert len(q) == 1
    assert q.remove(s, "b") is True
    assert not q.has(s)
    assert len(q) == 0


def test_ready_queue_shapes_may_change_while_iterated():
    q = scheduler.ReadyQueue()
    a, b, c = shape_of({"CPU": 1}), shape_of({"CPU": 2}), shape_of({"CPU": 3})
    q.push(a, 1)
    q.push(b, 2)
    seen = []
    for shape, items in q.shapes():
        seen.append((shape, list(items)))
        q.pop(shape)
        q.push(c, 3)  # a retry adds a shape mid-dispatch
    assert seen == [(a, [1]), (b, [2])]
    assert [s for s, _ in q.shapes()] == [c]
    assert len(q) == 2


def test_a_task_that_does_not_fit_does_not_block_a_smaller_one():
    """The dispatch loop the runtime runs: walk the shapes, pop what fits."""
    pool = ResourcePool({"CPU": 2})
    q = scheduler.ReadyQueue()
    big, small = shape_of({"CPU": 4}), shape_of({"CPU": 1})
    q.push(big, "big")
    q.push(small, "s1")
    q.push(small, "s2")
    q.push(small, "s3")
    started = []
    for shape, _ in q.shapes():
        while q.has(shape) and pool.fits(shape):
            pool.acquire(shape)
            started.append(q.pop(shape))
    assert started == ["s1", "s2"]
    assert len(q) == 2
    assert q.has(big)
    assert pool.available["CPU"] == 0.0


# ====================================================================== placement groups


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []


class _FakeActors(_Recorder):
    def end_group_actors(self, pg_id: bytes) -> None:
        self.calls.append(("end_group_actors", pg_id))


class FakeRuntime(_Recorder):
    """Only what ``PlacementGroupManager`` touches."""

    def __init__(self, totals: dict[str, float]) -> None:
        super().__init__()
        self.resources = ResourcePool(totals)
        # Handles and errors here are plain bytes: the store is never consulted.
        self.objects = object_table.ObjectTable(store=None)  # type: ignore[arg-type]
        self.actors = _FakeActors()
        self.dispatched = 0

    def fail_group_tasks(self, pg_id: bytes, error: bytes) -> None:
        self.calls.append(("fail_group_tasks", pg_id, error))

    def dispatch(self) -> None:
        self.dispatched += 1


def _spec(
    bundles: list[dict[str, float]],
    strategy: str = "PACK",
    pg_id: bytes = b"G" * 16,
    name: str = "",
    namespace: str = "ns",
) -> P.CreatePlacementGroup:
    return P.CreatePlacementGroup(
        pg_id=pg_id,
        bundles=[{k: float(v) for k, v in b.items()} for b in bundles],
        strategy=strategy,
        name=name,
        namespace=namespace,
        detached=False,
        handle=b"handle-of-" + pg_id,
    )


def _manager(totals: dict[str, float]) -> tuple[placement.PlacementGroupManager, FakeRuntime]:
    rt = FakeRuntime(totals)
    return placement.PlacementGroupManager(rt), rt  # type: ignore[arg-type]


class _FakeDriver:
    """The peer that creates groups: the placement code reads only its job."""

    job = "01000000"


DRIVER = _FakeDriver()


def _ready(rt: FakeRuntime, pg_id: bytes) -> object_table.ObjectEntry | None:
    return rt.objects.get(P.pg_ready_object_id(pg_id))


def test_the_ready_object_id_of_a_group():
    pg_id = bytes(range(16))
    assert P.pg_ready_object_id(pg_id) == b"pgready-" + pg_id + b"\x00\x00\x00\x00"
    assert P.pg_ready_object_id(b"a" * 16) != P.pg_ready_object_id(b"b" * 16)


@pytest.mark.parametrize("strategy", ["PACK", "SPREAD", "STRICT_PACK"])
def test_a_group_that_fits_is_created_at_once(strategy):
    mgr, rt = _manager({"CPU": 4, "memory": 100})
    spec = _spec([{"CPU": 1}, {"CPU": 2, "memory": 30}], strategy)
    mgr.on_create(DRIVER, spec)
    group = mgr.get(spec.pg_id)
    assert group is not None and group.state == "CREATED"
    assert group.owner is DRIVER and group.job == "01000000"
    assert mgr.pending == []
    assert rt.resources.available == {"CPU": 1.0, "memory": 70.0}
    assert [b.totals for b in group.bundles] == [{"CPU": 1.0}, {"CPU": 2.0, "memory": 30.0}]
    assert group.gpu_ids == [[], []]
    entry = _ready(rt, spec.pg_id)
    assert entry is not None and entry.ready
    assert entry.data == spec.handle and not entry.is_error
    assert list(mgr) == [group]


def test_strict_spread_with_one_bundle_is_created():
    mgr, rt = _manager({"CPU": 2})
    spec = _spec([{"CPU": 2}], "STRICT_SPREAD")
    mgr.on_create(DRIVER, spec)
    assert mgr.get(spec.pg_id).state == "CREATED"
    assert rt.resources.available == {"CPU": 0.0}


def test_strict_spread_with_several_bundles_stays_pending_on_one_host():
    mgr, rt = _manager({"CPU": 8})
    spec = _spec([{"CPU": 1}, {"CPU": 1}], "STRICT_SPREAD")
    mgr.on_create(DRIVER, spec)
    group = mgr.get(spec.pg_id)
    assert group.state == "PENDING"
    assert group.bundles == []
    assert mgr.pending == [group]
    assert rt.resources.available == {"CPU": 8.0}  # nothing taken
    entry = _ready(rt, spec.pg_id)
    assert entry is not None and not entry.ready  # pg.ready() waits
    mgr.place_pending()
    assert group.state == "PENDING"
    assert mgr.pending == [group]


def test_a_group_is_all_or_nothing():
    mgr, rt = _manager({"CPU": 4})
    spec = _spec([{"CPU": 2}, {"CPU": 3}])  # each bundle fits alone, not together
    mgr.on_create(DRIVER, spec)
    group = mgr.get(spec.pg_id)
    assert group.state == "PENDING"
    assert group.bundles == [] and group.gpu_ids == []
    assert rt.resources.available == {"CPU": 4.0}
    assert not _ready(rt, spec.pg_id).ready


def test_a_bundle_asking_for_a_missing_resource_stays_pending():
    mgr, rt = _manager({"CPU": 4})
    spec = _spec([{"CPU": 1}, {"TPU": 1}])
    mgr.on_create(DRIVER, spec)
    assert mgr.get(spec.pg_id).state == "PENDING"
    assert rt.resources.available == {"CPU": 4.0}


def test_a_pending_group_is_created_once_resources_come_back():
    mgr, rt = _manager({"CPU": 4})
    task = shape_of({"CPU": 3})
    rt.resources.acquire(task)
    spec = _spec([{"CPU": 1}, {"CPU": 1}])
    mgr.on_create(DRIVER, spec)
    assert mgr.get(spec.pg_id).state == "PENDING"
    rt.resources.release(task, [])
    mgr.place_pending()
    assert mgr.get(spec.pg_id).state == "CREATED"
    assert mgr.pending == []
    assert rt.resources.available == {"CPU": 2.0}
    assert _ready(rt, spec.pg_id).data == spec.handle


def test_a_pending_group_does_not_block_a_smaller_one_created_after_it():
    mgr, rt = _manager({"CPU": 4})
    task = shape_of({"CPU": 3})
    rt.resources.acquire(task)
    big, small = _spec([{"CPU": 2}], pg_id=b"B" * 16), _spec([{"CPU": 1}], pg_id=b"S" * 16)
    mgr.on_create(DRIVER, big)
    mgr.on_create(DRIVER, small)
    assert mgr.get(big.pg_id).state == "PENDING"
    assert mgr.get(small.pg_id).state == "CREATED"
    assert [g.pg_id for g in mgr.pending] == [big.pg_id]
    rt.resources.release(task, [])
    mgr.place_pending()
    assert mgr.get(big.pg_id).state == "CREATED"
    assert rt.resources.available == {"CPU": 1.0}


def test_pending_groups_are_placed_in_creation_order():
    mgr, rt = _manager({"CPU": 2})
    task = shape_of({"CPU": 2})
    rt.resources.acquire(task)
    first, second = _spec([{"CPU": 2}], pg_id=b"1" * 16), _spec([{"CPU": 2}], pg_id=b"2" * 16)
    mgr.on_create(DRIVER, first)
    mgr.on_create(DRIVER, second)
    rt.resources.release(task, [])
    mgr.place_pending()
    assert mgr.get(first.pg_id).state == "CREATED"
    assert mgr.get(second.pg_id).state == "PENDING"
    assert [g.pg_id for g in mgr.pending] == [second.pg_id]


def test_gpu_bundles_own_the_host_devices_they_took():
    mgr, rt = _manager({"CPU": 4, "GPU": 3})
    rt.resources.acquire(shape_of({"GPU": 1}))  # device 0 is busy
    spec = _spec([{"CPU": 1, "GPU": 1}, {"GPU": 1}])
    mgr.on_create(DRIVER, spec)
    group = mgr.get(spec.pg_id)
    assert group.state == "CREATED"
    assert group.gpu_ids == [[1], [2]]
    assert not rt.resources.fits(shape_of({"GPU": 1}))
    # A task in bundle 1 is told the host's device id, not 0.
    pool = group.pool_for(1, shape_of({"GPU": 1}))
    assert pool is group.bundles[1]
    assert pool.acquire(shape_of({"GPU": 1})) == [2]
    assert group.pool_for(1, shape_of({"GPU": 1})) is None


def test_a_group_with_more_whole_gpus_than_free_devices_stays_pending():
    mgr, rt = _manager({"GPU": 2})
    rt.resources.acquire(shape_of({"GPU": 0.5}))
    spec = _spec([{"GPU": 1}, {"GPU": 1}])
    mgr.on_create(DRIVER, spec)
    assert mgr.get(spec.pg_id).state == "PENDING"
    assert rt.resources.available == {"GPU": 1.5}


def test_pool_for_a_created_group():
    mgr, _ = _manager({"CPU": 4})
    spec = _spec([{"CPU": 1}, {"CPU": 2}])
    mgr.on_create(DRIVER, spec)
    group = mgr.get(spec.pg_id)
    one, two = shape_of({"CPU": 1}), shape_of({"CPU": 2})
    assert group.pool_for(0, one) is group.bundles[0]
    assert group.pool_for(0, two) is None  # bundle 0 has only 1 CPU
    assert group.pool_for(1, two) is group.bundles[1]
    assert group.pool_for(2, one) is None  # no such bundle
    assert group.pool_for(-1, two) is group.bundles[1]  # any bundle: the first that fits
    assert group.pool_for(-1, one) is group.bundles[0]
    group.bundles[0].acquire(one)
    assert group.pool_for(-1, one) is group.bundles[1]
    assert group.pool_for(-1, shape_of({"CPU": 3})) is None


def test_pool_for_a_group_that_is_not_created_is_none():
    mgr, _ = _manager({"CPU": 1})
    spec = _spec([{"CPU": 2}])
    mgr.on_create(DRIVER, spec)
    group = mgr.get(spec.pg_id)
    assert group.state == "PENDING"
    assert group.pool_for(-1, shape_of({"CPU": 1})) is None
    assert group.pool_for(0, ()) is None


def test_removing_a_created_group_returns_its_resources_and_fails_its_work():
    mgr, rt = _manager({"CPU": 4, "GPU": 2})
    spec = _spec([{"CPU": 1, "GPU": 1}, {"CPU": 2}])
    mgr.on_create(DRIVER, spec)
    assert rt.resources.available == {"CPU": 1.0, "GPU": 1.0}
    mgr.on_remove(None, P.RemovePlacementGroup(spec.pg_id))
    group = mgr.get(spec.pg_id)
    assert group.state == "REMOVED"
    assert rt.resources.available == {"CPU": 4.0, "GPU": 2.0}
    assert rt.resources.acquire(shape_of({"GPU": 2})) == [0, 1]  # the device came back
    assert group.pool_for(-1, shape_of({"CPU": 1})) is None
    # Its tasks and actors are told, then dispatch runs with the freed resources.
    (call,) = rt.calls
    assert call[:2] == ("fail_group_tasks", spec.pg_id)
    assert isinstance(pickle.loads(call[2]), exc.TaskPlacementGroupRemoved)
    assert rt.actors.calls == [("end_group_actors", spec.pg_id)]
    assert rt.dispatched == 1
    # pg.ready()'s object is freed; a get of it raises from its id.
    assert _ready(rt, spec.pg_id) is None
    error = pickle.loads(mgr.ready_gone_payload(P.pg_ready_object_id(spec.pg_id)))
    assert isinstance(error, exc.TaskPlacementGroupRemoved)
    assert str(error) == "The placement group corresponding to this task has been removed."
    assert mgr.ready_gone_payload(b"x" * 28) is None  # not a pg.ready() object


def test_removing_a_pending_group_takes_nothing_back_and_never_creates_it():
    mgr, rt = _manager({"CPU": 2})
    task = shape_of({"CPU": 2})
    rt.resources.acquire(task)
    spec = _spec([{"CPU": 1}])
    mgr.on_create(DRIVER, spec)
    mgr.on_remove(None, P.RemovePlacementGroup(spec.pg_id))
    assert rt.resources.available == {"CPU": 0.0}  # not given back: never taken
    assert _ready(rt, spec.pg_id) is None
    rt.resources.release(task, [])
    mgr.place_pending()
    assert mgr.get(spec.pg_id).state == "REMOVED"
    assert mgr.pending == []
    assert rt.resources.available == {"CPU": 2.0}


def test_removing_twice_or_an_unknown_group_does_nothing():
    mgr, rt = _manager({"CPU": 2})
    spec = _spec([{"CPU": 1}])
    mgr.on_create(DRIVER, spec)
    mgr.on_remove(None, P.RemovePlacementGroup(spec.pg_id))
    mgr.on_remove(None, P.RemovePlacementGroup(spec.pg_id))
    mgr.on_remove(None, P.RemovePlacementGroup(b"unknown" * 2))
    assert rt.resources.available == {"CPU": 2.0}  # released once, not twice
    assert rt.dispatched == 1
    assert len(rt.calls) == 1
    assert mgr.get(b"unknown" * 2) is None


def test_table_rows():
    mgr, _ = _manager({"CPU": 2})
    made = _spec([{"CPU": 1}, {"CPU": 1}], "SPREAD", pg_id=b"m" * 16, name="made")
    waiting = _spec([{"CPU": 4}], "PACK", pg_id=b"w" * 16)
    mgr.on_create(DRIVER, made)
    mgr.on_create(DRIVER, waiting)
    assert mgr.table(made.pg_id) == {
        "placement_group_id": made.pg_id.hex(),
        "name": "made",
        "bundles": {0: {"CPU": 1.0}, 1: {"CPU": 1.0}},
        "bundles_to_node_id": {0: "local", 1: "local"},
        "strategy": "SPREAD",
        "state": "CREATED",
        "creator_job_id": DRIVER.job,
        "is_detached": False,
        "stats": {"scheduling_state": "FINISHED"},
    }
    row = mgr.table(waiting.pg_id)
    assert row["state"] == "PENDING"
    assert row["bundles_to_node_id"] == {}
    assert row["stats"] == {"scheduling_state": "PENDING"}
    assert set(mgr.table()) == {made.pg_id.hex(), waiting.pg_id.hex()}
    assert mgr.table(b"x" * 16) is None


def test_lookup_by_name_and_namespace():
    mgr, _ = _manager({"CPU": 2})
    spec = _spec([{"CPU": 1}], name="mine", namespace="ns1")
    mgr.on_create(DRIVER, spec)
    assert mgr.lookup("ns1", "mine") == spec.handle
    assert mgr.lookup("ns2", "mine") is None
    assert mgr.lookup("ns1", "other") is None
    mgr.on_remove(None, P.RemovePlacementGroup(spec.pg_id))
    assert mgr.lookup("ns1", "mine") is None


def test_derived_resources_name_each_bundle_and_the_group():
    mgr, _ = _manager({"CPU": 4, "GPU": 1})
    spec = _spec([{"CPU": 1, "GPU": 1}, {"CPU": 2}])
    mgr.on_create(DRIVER, spec)
    mgr.on_create(DRIVER, _spec([{"CPU": 8}], pg_id=b"p" * 16))  # pending: not reported
    gid = spec.pg_id.hex()
    units = placement.BUNDLE_UNITS
    expected_totals = {
        f"CPU_group_0_{gid}": 1.0,
        f"GPU_group_0_{gid}": 1.0,
        f"CPU_group_1_{gid}": 2.0,
        f"CPU_group_{gid}": 3.0,
        f"GPU_group_{gid}": 1.0,
        f"bundle_group_0_{gid}": units,
        f"bundle_group_1_{gid}": units,
        f"bundle_group_{gid}": 2 * units,
    }
    assert mgr.derived_resources(available=False) == expected_totals
    # A task holding bundle 0's GPU: it is left out of what is available.
    group = mgr.get(spec.pg_id)
    group.bundles[0].acquire(shape_of({"GPU": 1}))
    group.bundles[1].acquire(shape_of({"CPU": 0.5}))
    available = mgr.derived_resources(available=True)
    assert f"GPU_group_0_{gid}" not in available
    assert f"GPU_group_{gid}" not in available
    assert available[f"CPU_group_1_{gid}"] == 1.5
    assert available[f"CPU_group_{gid}"] == 2.5
    assert available[f"bundle_group_{gid}"] == 2 * units
    assert mgr.derived_resources(available=False) == expected_totals


def test_a_group_whose_fractional_gpu_bundle_fits_no_device_stays_pending():
    mgr, rt = _manager({"GPU": 3})
    assert rt.resources.acquire(shape_of({"GPU": 0.6})) == [0]
    assert rt.resources.acquire(shape_of({"GPU": 0.6})) == [1]
    # Free: 0.4 on device 0, 0.4 on device 1, all of device 2. The whole GPU takes
    # device 2; no device is left with 0.5 for the second bundle.
    spec = _spec([{"GPU": 1}, {"GPU": 0.5}])
    mgr.on_create(DRIVER, spec)
    group = mgr.get(spec.pg_id)
    assert group.state == "PENDING", f"created with GPU ids {group.gpu_ids}"
    assert rt.resources.available["GPU"] == pytest.approx(1.8)


def test_fractional_gpu_bundles_may_go_to_different_devices():
    mgr, rt = _manager({"GPU": 2})
    assert rt.resources.acquire(shape_of({"GPU": 0.6})) == [0]
    assert rt.resources.acquire(shape_of({"GPU": 0.6})) == [1]
    spec = _spec([{"GPU": 0.4}, {"GPU": 0.4}])  # 0.4 is free on each device
    mgr.on_create(DRIVER, spec)
    group = mgr.get(spec.pg_id)
    assert group.state == "CREATED"
    assert sorted(group.gpu_ids) == [[0], [1]]
