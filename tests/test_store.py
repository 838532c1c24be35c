"""The bounded object store: budget, spilling to disk, ObjectStoreFullError, recycling."""

from __future__ import annotations

import gc
import os
import time

import numpy as np
import pytest
from _helpers import wait_for_condition

import asyncray
from asyncray._wire import shm
from asyncray.exceptions import ObjectStoreFullError

pytestmark = pytest.mark.timeout(60)

MB = 1024 * 1024
CHUNK = 20 * MB


def _stats() -> dict:
    return asyncray._api.client().query("stats")


def _chunk(fill: int) -> np.ndarray:
    return np.full(CHUNK, fill, dtype=np.uint8)


def _spill_files(directory: str) -> list[str]:
    found = []
    for root, _, files in os.walk(directory):
        found += [os.path.join(root, f) for f in files if f.startswith(shm.PREFIX)]
    return found


@asyncray.remote
def make_chunk(fill):
    return np.full(CHUNK, fill, dtype=np.uint8)


def test_object_store_memory_is_the_reported_resource(shutdown_only):
    asyncray.init(num_cpus=1, object_store_memory=50 * MB)
    assert asyncray.cluster_resources()["object_store_memory"] == 50 * MB
    assert _stats()["store_capacity"] == 50 * MB


@pytest.mark.parametrize("bad", [0, -1, 1.5, "1GB", True])
def test_a_bad_object_store_memory_is_refused(shutdown_only, bad):
    with pytest.raises(ValueError, match="object_store_memory"):
        asyncray.init(num_cpus=1, object_store_memory=bad)


def test_a_full_store_spills_the_oldest_objects_and_reads_them_back(shutdown_only, tmp_path):
    asyncray.init(num_cpus=1, object_store_memory=50 * MB, object_spilling_directory=str(tmp_path))
    refs = [asyncray.put(_chunk(i)) for i in range(5)]  # 100 MB into a 50 MB store
    stats = _stats()
    assert stats["store_resident"] <= 50 * MB
    assert stats["spilled_bytes"] >= 3 * CHUNK
    assert len(_spill_files(str(tmp_path))) >= 3
    for i, ref in enumerate(refs):  # spilled ones come back transparently, from disk
        value = asyncray.get(ref)
        assert value.shape == (CHUNK,) and value[0] == i and value[-1] == i
    del refs, value
    gc.collect()
    wait_for_condition(lambda: _stats()["spilled_bytes"] == 0)
    assert _spill_files(str(tmp_path)) == []  # a freed spilled object leaves no file


def test_a_task_reads_a_spilled_argument(shutdown_only, tmp_path):
    asyncray.init(num_cpus=1, object_store_memory=50 * MB, object_spilling_directory=str(tmp_path))

    @asyncray.remote
    def first_and_last(array):
        return int(array[0]), int(array[-1])

    refs = [asyncray.put(_chunk(i)) for i in range(4)]
    assert _stats()["spilled_bytes"] > 0
    assert asyncray.get([first_and_last.remote(r) for r in refs]) == [(i, i) for i in range(4)]


def test_an_object_larger_than_the_store_raises_object_store_full(shutdown_only):
    asyncray.init(num_cpus=1, object_store_memory=10 * MB)
    with pytest.raises(ObjectStoreFullError, match=r"of 20971\d+ bytes.*larger than the object"):
        asyncray.put(_chunk(1))
    assert _stats()["store_used"] == 0  # nothing half-made stays behind
    assert asyncray.get(asyncray.put(np.zeros(10))).sum() == 0  # and the runtime goes on


def test_a_store_of_objects_in_use_raises_object_store_full_with_the_numbers(shutdown_only):
    asyncray.init(num_cpus=1, object_store_memory=50 * MB)
    # Views held in the driver pin their objects: spilling them frees nothing.
    refs = [asyncray.put(_chunk(i)) for i in range(2)]
    held = [asyncray.get(r) for r in refs]
    with pytest.raises(ObjectStoreFullError) as info:
        asyncray.put(_chunk(9))
    message = str(info.value)
    assert f"{CHUNK} bytes" in message and f"of {50 * MB} bytes" in message
    assert "object_store_memory" in message
    del held, refs
    gc.collect()
    assert asyncray.get(asyncray.put(_chunk(9)))[0] == 9  # room again once they are dropped


def test_a_task_result_that_cannot_fit_fails_the_task_with_object_store_full(shutdown_only):
    asyncray.init(num_cpus=1, object_store_memory=10 * MB)
    with pytest.raises(ObjectStoreFullError):
        asyncray.get(make_chunk.remote(3))
    assert asyncray.get(asyncray.put(np.zeros(10))).sum() == 0  # the runtime goes on


def test_freed_segments_are_recycled_and_trimmed_when_idle(shutdown_only):
    asyncray.init(num_cpus=1)
    ref = asyncray.put(_chunk(1))
    del ref
    gc.collect()
    wait_for_condition(lambda: len(_stats()["store_recycled_names"]) == 1)
    (recycled,) = _stats()["store_recycled_names"]
    again = asyncray.put(_chunk(2))  # same size: reuses the pages, no new segment
    assert _stats()["store_recycled_names"] == []
    assert asyncray.get(again)[0] == 2
    del again
    gc.collect()
    _stats()
    # Unused recycled memory goes back to the system after a short idle time.
    wait_for_condition(lambda: not os.path.exists(os.path.join(shm.directory(), recycled)))
    assert _stats()["store_recycled"] == 0


def test_a_segment_a_driver_value_still_views_is_recycled_only_after_the_view_goes(
    shutdown_only,
):
    asyncray.init(num_cpus=1)
    ref = asyncray.put(_chunk(5))
    view = asyncray.get(ref)
    del ref
    gc.collect()
    _stats()
    assert _stats()["store_recycled_names"] == []
    assert _stats()["store_used"] >= CHUNK  # still in use: the view holds its pages
    other = asyncray.put(_chunk(6))
    assert view[0] == 5 and view[-1] == 5  # not overwritten by the next put
    del view
    gc.collect()
    wait_for_condition(lambda: len(_stats()["store_recycled_names"]) == 1)
    del other


def test_the_segment_of_a_large_argument_is_recycled_after_its_task(shutdown_only):
    asyncray.init(num_cpus=1)

    @asyncray.remote
    def first(array):
        return int(array[0])

    assert asyncray.get(first.remote(_chunk(4))) == 4  # the argument is not a put object
    wait_for_condition(lambda: len(_stats()["store_recycled_names"]) == 1)
    assert _stats()["store_used"] == 0


def test_a_segment_sent_to_a_worker_is_never_recycled(shutdown_only):
    asyncray.init(num_cpus=1)

    @asyncray.remote
    class Holder:
        def keep(self, array):
            self.array = array
            return True

        def first(self):
            return int(self.array[0])

    holder = Holder.remote()
    ref = asyncray.put(_chunk(7))
    assert asyncray.get(holder.keep.remote(ref))
    del ref
    gc.collect()
    _stats()
    assert _stats()["store_recycled_names"] == []
    filler = [asyncray.put(_chunk(8)) for _ in range(2)]
    assert asyncray.get(holder.first.remote()) == 7
    del filler


def test_the_shared_memory_threshold_is_configurable(shutdown_only):
    asyncray.init(num_cpus=1, _system_config={"max_direct_call_object_size": 10 * 1024})
    ref = asyncray.put(np.zeros(50 * 1024, dtype=np.uint8))
    assert _stats()["store_resident"] >= 50 * 1024
    assert not asyncray.get(ref).flags.writeable
    del ref


def test_spilled_objects_are_removed_at_shutdown(shutdown_only, tmp_path):
    asyncray.init(num_cpus=1, object_store_memory=30 * MB, object_spilling_directory=str(tmp_path))
    keep = [asyncray.put(_chunk(i)) for i in range(3)]
    assert _spill_files(str(tmp_path))
    asyncray.shutdown()
    assert _spill_files(str(tmp_path)) == []
    del keep


def test_ray_spilling_config_names_the_directory(shutdown_only, tmp_path):
    import json

    config = {"type": "filesystem", "params": {"directory_path": str(tmp_path)}}
    asyncray.init(
        num_cpus=1,
        object_store_memory=30 * MB,
        _system_config={"object_spilling_config": json.dumps(config)},
    )
    keep = [asyncray.put(_chunk(i)) for i in range(3)]
    start = time.monotonic()
    while not _spill_files(str(tmp_path)) and time.monotonic() - start < 5:
        time.sleep(0.01)
    assert _spill_files(str(tmp_path))
    del keep


def test_a_worker_lets_go_of_a_segment_it_wrote_once_it_is_removed(shutdown_only):
    asyncray.init(num_cpus=1)

    @asyncray.remote
    def put_and_drop():
        asyncray.put(np.full(CHUNK, 1, dtype=np.uint8))  # the ref is dropped at once
        asyncray.put(np.zeros(10))  # a message after it carries the release
        return os.getpid()

    pid = asyncray.get(put_and_drop.remote())

    def mapped_segments() -> list[str]:
        with open(f"/proc/{pid}/maps") as maps:
            return [line for line in maps if shm.PREFIX in line]

    # The worker keeps its writable mapping while the segment waits for reuse...
    wait_for_condition(lambda: len(_stats()["store_recycled_names"]) == 1)
    assert mapped_segments()
    # ...and closes it when the idle segment is removed, so its memory returns.
    wait_for_condition(lambda: _stats()["store_recycled_names"] == [])
    wait_for_condition(lambda: mapped_segments() == [])


def test_a_segment_read_by_a_finished_task_is_recycled(shutdown_only):
    asyncray.init(num_cpus=1)

    @asyncray.remote
    def total(array):
        return int(array[::4096].sum())

    ref = asyncray.put(_chunk(1))
    assert asyncray.get(total.remote(ref)) == len(range(0, CHUNK, 4096))
    del ref
    gc.collect()
    # The task's view closed with it, so the pages are kept for the next put.
    wait_for_condition(lambda: len(_stats()["store_recycled_names"]) == 1)
