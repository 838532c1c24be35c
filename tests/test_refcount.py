"""Reference counting: an object lives while any ref to it lives, anywhere, and no longer.

Each test makes a large object (so it has a shared-memory segment and counts
in the store's bytes), hands refs to it around — nested in other objects, as
arguments of pending tasks, into actors, back out of tasks — drops the
driver's own ref, checks the object is still readable where a ref remains,
then drops the rest and checks the store returns to its baseline: no bytes
in use, no segment file, no table entry.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import time

import numpy as np
import pytest
from _helpers import wait_for_condition

import asyncray
from asyncray._wire import shm

pytestmark = pytest.mark.timeout(60)

BIG = 1_000_000  # 8 MB of int64: well above the shared-memory threshold


def _segments() -> list[str]:
    """Segments of live objects (recycled ones are free memory kept for reuse)."""
    recycled = set(_stats()["store_recycled_names"])
    mine = f"{shm.PREFIX}{shm.session_tag()}_"  # this session's only
    return [n for n in os.listdir(shm.directory()) if n.startswith(mine) and n not in recycled]


def _stats() -> dict:
    return asyncray._api.client().query("stats")


def _big(seed: int = 0) -> np.ndarray:
    return np.arange(seed, seed + BIG, dtype=np.int64)


def _settle() -> None:
    """Collect dropped refs in the driver and let their releases reach the runtime."""
    gc.collect()
    _stats()  # any message flushes the driver's pending releases


def _assert_baseline(objects_before: int) -> None:
    def at_baseline() -> bool:
        _settle()
        stats = _stats()
        return stats["shm_bytes"] == 0 and not _segments() and stats["objects"] <= objects_before

    wait_for_condition(at_baseline)


@asyncray.remote
def first_of(items):
    return int(asyncray.get(items[0])[-1])


@asyncray.remote
def last_value(array):
    return int(array[-1])


@asyncray.remote
def wait_for_file(path):
    import time

    while not os.path.exists(path):
        time.sleep(0.01)
    return True


@asyncray.remote
def make_nested():
    return [asyncray.put(_big(7))]


@asyncray.remote
class Keeper:
    def __init__(self):
        self.kept = None

    def keep(self, items):
        self.kept = items[0]
        return True

    def read(self):
        return int(asyncray.get(self.kept)[-1])

    def forget(self):
        self.kept = None
        return True

    def pid(self):
        return os.getpid()


def test_a_ref_nested_in_a_stored_object_keeps_its_object_alive(ray_start):
    before = _stats()["objects"]
    inner = asyncray.put(_big())
    outer = asyncray.put([inner])
    del inner
    _settle()
    assert len(_segments()) == 1
    (got,) = asyncray.get(outer)
    assert asyncray.get(got)[-1] == BIG - 1
    del got, outer
    _assert_baseline(before)


def test_nested_objects_free_as_a_chain(ray_start):
    before = _stats()["objects"]
    ref = asyncray.put(_big())
    for _ in range(50):
        ref = asyncray.put([ref])
    _settle()
    assert len(_segments()) == 1
    value = asyncray.get(ref)
    for _ in range(50):
        value = asyncray.get(value[0])
    assert value[-1] == BIG - 1
    del ref, value
    _assert_baseline(before)


def test_a_pending_task_keeps_its_nested_argument_alive(ray_start, tmp_path):
    before = _stats()["objects"]
    gate = str(tmp_path / "go")
    blockers = [wait_for_file.remote(gate) for _ in range(2)]  # both CPUs busy
    inner = asyncray.put(_big())
    result = first_of.remote([inner])
    del inner
    _settle()
    assert len(_segments()) == 1  # held by the queued task's arguments
    open(gate, "w").close()
    assert asyncray.get(result) == BIG - 1
    assert asyncray.get(blockers) == [True, True]
    del result, blockers
    _assert_baseline(before)


def test_a_pending_task_keeps_its_top_level_argument_alive(ray_start, tmp_path):
    before = _stats()["objects"]
    gate = str(tmp_path / "go")
    blockers = [wait_for_file.remote(gate) for _ in range(2)]
    ref = asyncray.put(_big())
    result = last_value.remote(ref)
    del ref
    _settle()
    assert len(_segments()) == 1
    open(gate, "w").close()
    assert asyncray.get(result) == BIG - 1
    del result, blockers
    _assert_baseline(before)


def test_a_ref_returned_from_a_task_outlives_the_task(ray_start):
    before = _stats()["objects"]
    (inner,) = asyncray.get(make_nested.remote())
    _settle()
    assert asyncray.get(inner)[-1] == 7 + BIG - 1
    del inner
    _assert_baseline(before)


def test_an_actor_keeps_a_ref_it_stored_until_it_lets_go(ray_start):
    before = _stats()["objects"]
    keeper = Keeper.remote()
    ref = asyncray.put(_big())
    assert asyncray.get(keeper.keep.remote([ref]))
    del ref
    _settle()
    assert asyncray.get(keeper.read.remote()) == BIG - 1
    assert len(_segments()) == 1
    assert asyncray.get(keeper.forget.remote())
    assert asyncray.get(keeper.pid.remote())  # flushes the actor's release
    wait_for_condition(lambda: not _segments())
    del keeper
    _assert_baseline(before)


def test_an_actor_that_dies_gives_back_what_it_held(ray_start):
    before = _stats()["objects"]
    keeper = Keeper.remote()
    ref = asyncray.put(_big())
    assert asyncray.get(keeper.keep.remote([ref]))
    pid = asyncray.get(keeper.pid.remote())
    del ref
    _settle()
    assert len(_segments()) == 1
    os.kill(pid, signal.SIGKILL)
    wait_for_condition(lambda: not _segments())
    del keeper
    _assert_baseline(before)


def test_a_borrowed_ref_is_released_when_the_task_ends(ray_start):
    before = _stats()["objects"]
    ref = asyncray.put(_big())
    assert asyncray.get([first_of.remote([ref]) for _ in range(5)]) == [BIG - 1] * 5
    del ref
    _assert_baseline(before)


def test_refs_inside_a_get_that_raised_are_given_back(ray_start):
    before = _stats()["objects"]

    @asyncray.remote
    def fails():
        raise ValueError("boom")

    holder = asyncray.put([asyncray.put(_big())])
    with pytest.raises(ValueError):
        asyncray.get([holder, fails.remote()])
    del holder
    _assert_baseline(before)


def test_a_ref_pickled_outside_asyncray_pins_its_object(ray_start):
    ref = asyncray.put(_big())
    blob = pickle.dumps(ref)  # out-of-band: cannot be followed, as in Ray
    del ref
    _settle()
    assert len(_segments()) == 1
    assert asyncray.get(pickle.loads(blob))[-1] == BIG - 1


def test_copies_of_a_ref_are_the_same_ref(ray_start):
    import copy

    ref = asyncray.put(1)
    assert copy.copy(ref) is ref
    assert copy.deepcopy([ref])[0] is ref


def test_many_nested_refs_round_trip_and_free(ray_start):
    before = _stats()["objects"]
    refs = [asyncray.put(i) for i in range(10_000)]
    holder = asyncray.put(refs)
    del refs
    _settle()
    got = asyncray.get(holder)
    assert asyncray.get(got[::1000]) == list(range(0, 10_000, 1000))
    del got, holder
    _assert_baseline(before)


@asyncray.remote
class _Streamer:
    def ticks(self):
        for i in range(10_000):
            yield i
            time.sleep(0.01)

    def ping(self):
        return "pong"


def test_a_dropped_generator_whose_producer_dies_leaves_no_object(ray_start):
    actor = _Streamer.remote()
    assert asyncray.get(actor.ping.remote()) == "pong"
    before = _stats()["objects"]  # the actor's holders object is counted
    gen = actor.ticks.options(num_returns="streaming").remote()
    assert asyncray.get(next(gen)) == 0
    del gen  # released while it runs
    _settle()
    asyncray.kill(actor)  # then the stream fails: nobody takes its error or its end
    # (before: the error item and the completion, sealed again after it was freed, stayed)
    _assert_baseline(before)
