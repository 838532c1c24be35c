"""Large objects go through shared memory: written once, read zero-copy, freed with refs."""

from __future__ import annotations

import gc
import os
import pickle

import numpy as np
import pytest
from _helpers import wait_for_condition

import asyncray
from asyncray._wire import shm

pytestmark = pytest.mark.timeout(30)

BIG = 2_000_000  # 16 MB of int64: well above the shared-memory threshold


def _segments() -> list[str]:
    # Only this process's sessions' segments (their names carry its pid): another
    # asyncray program on the machine must not fail the test.
    mine = f"{shm.PREFIX}{os.getpid()}-"
    return [n for n in os.listdir(shm.directory()) if n.startswith(mine)]


def _store_bytes() -> int:
    return asyncray._api.client().query("stats")["shm_bytes"]


def test_a_large_array_from_get_is_a_read_only_view_of_shared_memory(ray_start):
    original = np.arange(BIG, dtype=np.int64)
    ref = asyncray.put(original)
    value = asyncray.get(ref)
    assert np.array_equal(value, original)
    assert not value.flags.writeable
    assert not np.shares_memory(value, original)  # put copies once
    with pytest.raises(ValueError, match="read-only"):
        value[0] = 1
    assert np.shares_memory(value, asyncray.get(ref))  # two gets share the same pages


def test_small_arrays_stay_inline(ray_start):
    ref = asyncray.put(np.arange(10))
    assert np.array_equal(asyncray.get(ref), np.arange(10))
    assert _segments() == []


@asyncray.remote
def summarize(array):
    return int(array[::1000].sum()), array.flags.writeable, os.getpid()


@asyncray.remote
def make_array(n):
    return np.ones(n, dtype=np.float64)


def test_one_large_argument_is_read_by_ten_tasks_from_one_segment(ray_start):
    ref = asyncray.put(np.arange(BIG, dtype=np.int64))
    assert len(_segments()) == 1
    results = asyncray.get([summarize.remote(ref) for _ in range(10)])
    assert {r[0] for r in results} == {int(np.arange(BIG, dtype=np.int64)[::1000].sum())}
    assert all(r[1] is False for r in results)  # read-only in the task too, as in Ray
    assert len(_segments()) == 1  # no copy was made for any task


def test_a_large_task_result_comes_back_through_shared_memory(ray_start):
    value = asyncray.get(make_array.remote(BIG))
    assert value.shape == (BIG,) and value.sum() == BIG
    assert not value.flags.writeable


def test_dropping_the_last_ref_frees_the_segment_and_the_store_bytes(ray_start):
    assert _store_bytes() == 0
    ref = asyncray.put(np.zeros(BIG))
    asyncray.get(summarize.remote(ref))
    assert _store_bytes() >= BIG * 8
    assert len(_segments()) == 1
    del ref
    gc.collect()
    asyncray.get(summarize.remote(np.zeros(10)))  # flushes the release
    wait_for_condition(lambda: _segments() == [] and _store_bytes() == 0)


def test_a_value_keeps_its_segment_after_the_object_is_freed(ray_start):
    ref = asyncray.put(np.arange(BIG, dtype=np.int64))
    value = asyncray.get(ref)
    del ref
    gc.collect()
    asyncray.get(summarize.remote(np.zeros(10)))
    # As in Ray, a view pins the memory: still counted, never reused under it.
    assert asyncray._api.client().query("stats")["store_used"] >= BIG * 8
    assert value[-1] == BIG - 1
    del value
    gc.collect()

    def recycled() -> bool:
        stats = asyncray._api.client().query("stats")
        return stats["store_used"] == 0 and len(stats["store_recycled_names"]) == 1

    wait_for_condition(recycled)


def test_shutdown_removes_every_segment(shutdown_only):
    asyncray.init(num_cpus=2)
    keep = [asyncray.put(np.zeros(BIG)) for _ in range(3)]
    assert len(_segments()) == 3
    asyncray.shutdown()
    assert _segments() == []
    del keep


def test_segments_of_a_dead_driver_are_swept_at_the_next_init(shutdown_only):
    stale = os.path.join(shm.directory(), f"{shm.PREFIX}999999999-deadbeef_x")
    with open(stale, "wb") as f:
        f.write(b"left behind")
    asyncray.init(num_cpus=1)
    assert not os.path.exists(stale)


def test_large_bytes_go_through_shared_memory_and_come_back_as_bytes(ray_start):
    blob = os.urandom(1024) * 2048  # 2 MiB
    ref = asyncray.put(blob)
    assert len(_segments()) == 1  # written once, not carried through the runtime
    value = asyncray.get(ref)
    assert type(value) is bytes and value == blob
    array = bytearray(blob)
    again = asyncray.get(asyncray.put(array))
    assert type(again) is bytearray and again == array


@asyncray.remote
def identity(value):
    return value


@asyncray.remote
def blob_facts(blob, *, inside):
    return type(blob).__name__, len(blob), blob[:4], inside[0] is inside[1]


def test_large_bytes_inside_task_arguments_go_through_shared_memory(ray_start):
    from asyncray._wire import serialization as ser

    blob = os.urandom(1024) * 2048  # 2 MiB
    # Inline, the call would carry 6 MiB through the runtime's sockets.
    payload = ser.dumps(((blob,), {"inside": [blob, blob]}))
    assert len(payload) < 1024
    ser.discard(payload)
    facts = asyncray.get(blob_facts.remote(blob, inside=[blob, blob]))
    assert facts == ("bytes", len(blob), blob[:4], True)  # one object stays one object
    assert asyncray.get(identity.remote([blob, {"b": blob}])) == [blob, {"b": blob}]


class Frame:
    """A user type exposing its data as a pickle-5 buffer."""

    def __init__(self, data):
        self.data = data

    def __reduce_ex__(self, protocol):
        return (Frame, (pickle.PickleBuffer(self.data),))


def test_any_object_with_pickle5_buffers_is_mapped_zero_copy(ray_start):
    frame = Frame(np.arange(BIG, dtype=np.int64).tobytes())
    ref = asyncray.put(frame)
    assert len(_segments()) == 1
    got = asyncray.get(ref)
    assert isinstance(got.data, memoryview) and got.data.readonly  # a view of the segment
    assert np.frombuffer(got.data, dtype=np.int64)[-1] == BIG - 1


def test_torch_cpu_tensors_are_mapped_from_shared_memory(ray_start):
    torch = pytest.importorskip("torch")
    tensor = torch.arange(BIG, dtype=torch.int64)
    ref = asyncray.put(tensor)
    assert len(_segments()) == 1
    assert torch.equal(asyncray.get(ref), tensor)
