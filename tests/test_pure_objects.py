"""The object table's reference counts and the segment store's budget, as pure logic.

No runtime, no processes. Payloads are built by hand in the formats that
``_wire/refs.py`` (refs prefix) and ``_wire/shm.py`` (segment payload)
document. Segment files live in a per-test directory: ``shm.directory`` and
``shm.session_tag`` are monkeypatched, so nothing is ever written to
``/dev/shm`` and the module is back as it was after each test.
"""

from __future__ import annotations

import os
import struct
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from asyncray._core import object_table, store
from asyncray._wire import refs, shm

ObjectTable = object_table.ObjectTable
SegmentStore = store.SegmentStore
StoreFull = store.StoreFull

_U32 = struct.Struct("<I")


def oid(n: int) -> bytes:
    """An object id of the usual 28 bytes."""
    return n.to_bytes(4, "big") * 7


def segment_payload(name: str, pickled: bytes = b"in-band") -> bytes:
    """A shared-memory payload naming segment ``name`` (no buffers: the table never reads them)."""
    name_b = name.encode()
    return b"".join(
        (shm.MARKER, _U32.pack(len(pickled)), pickled, _U32.pack(len(name_b)), name_b, _U32.pack(0))
    )


class FakeChild:
    """A child process as the store sees it: the segments it views."""

    def __init__(self) -> None:
        self.views: dict[str, int] = {}


@pytest.fixture
def shm_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Segments go to a private directory, named for a private session."""
    directory = tmp_path / "shm"
    directory.mkdir()
    tag = f"{os.getpid()}-puretest{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(shm, "directory", lambda: str(directory))
    monkeypatch.setattr(shm, "session_tag", lambda: tag)
    return directory


class Harness:
    """A store over ``shm_dir``, with views the test decides."""

    def __init__(self, capacity: int, shm_dir: Path, spill_dir: Path) -> None:
        self.dir = shm_dir
        self.spill_dir = spill_dir
        self.store = SegmentStore(capacity, str(spill_dir))
        self.driver_viewed: set[str] = set()
        self.store.driver_views = self.driver_viewed.__contains__
        self.recycles = 0
        self.store.on_recycle = self._recycled
        self.removed: list[tuple[Any, str]] = []
        self.store.on_removed = lambda writer, name: self.removed.append((writer, name))

    def _recycled(self) -> None:
        self.recycles += 1

    def put(self, size: int, fill: bytes = b"x", writer: Any = None) -> str:
        """Reserve, write and seal a segment of ``size`` bytes, as a producer and the runtime do."""
        name, _ = self.store.reserve(size, writer)
        (self.dir / name).write_bytes(fill * size)
        self.store.sealed(name)
        return name

    def in_shm(self, name: str) -> bool:
        return (self.dir / name).exists()

    def spilled_file(self, name: str) -> Path:
        return self.spill_dir / name


@pytest.fixture
def harness(shm_dir: Path, tmp_path: Path) -> Any:
    def make(capacity: int) -> Harness:
        return Harness(capacity, shm_dir, tmp_path / "spill")

    return make


@pytest.fixture
def table(tmp_path: Path) -> ObjectTable:
    """A table whose values are inline payloads (its store is never consulted)."""
    return ObjectTable(SegmentStore(1 << 20, str(tmp_path / "spill")))


# ====================================================================== ObjectTable: lifetime


def test_a_new_entry_is_pending_with_its_creators_unit(table):
    entry = table.create(oid(1))
    assert entry.refs == 1
    assert not entry.ready and entry.data is None and not entry.is_error
    assert table.get(oid(1)) is entry
    assert table.create(oid(1)) is entry  # creating again is the same entry
    assert len(table) == 1
    assert table.get(oid(2)) is None


def test_seal_stores_the_value(table):
    table.create(oid(1))
    table.seal(oid(1), b"value")
    entry = table.get(oid(1))
    assert entry.ready and entry.data == b"value" and not entry.is_error
    table.seal(oid(2), b"boom", is_error=True)  # sealed without a pending entry
    failed = table.get(oid(2))
    assert failed.ready and failed.is_error and failed.refs == 1


def test_the_first_value_sealed_wins(table):
    table.seal(oid(1), b"first")
    table.seal(oid(1), b"second", is_error=True)
    entry = table.get(oid(1))
    assert entry.data == b"first" and not entry.is_error


def test_a_ready_object_is_freed_when_its_count_reaches_zero(table):
    table.seal(oid(1), b"v")
    table.incref(oid(1))
    table.incref(oid(1), 2)
    assert table.get(oid(1)).refs == 4
    table.release(oid(1))
    table.release(oid(1), 2)
    assert table.get(oid(1)).refs == 1
    table.release(oid(1))
    assert table.get(oid(1)) is None
    assert len(table) == 0


def test_a_pending_object_at_zero_is_freed_when_it_is_sealed(table):
    table.create(oid(1))
    table.release(oid(1))
    pending = table.get(oid(1))
    assert pending is not None and pending.refs == 0  # its task has not finished
    seen = []
    table.on_ready(pending, lambda e: seen.append(e.data))
    table.seal(oid(1), b"late")
    assert table.get(oid(1)) is None
    assert seen == [b"late"]  # its waiters still hear of it


def test_incref_and_release_of_an_unknown_object_do_nothing(table):
    table.incref(oid(9))
    table.release(oid(9))
    table.release_many([oid(9)])
    assert table.get(oid(9)) is None
    assert len(table) == 0


def test_a_freed_object_is_not_revived_by_incref(table):
    table.seal(oid(1), b"v")
    table.release(oid(1))
    table.incref(oid(1))
    assert table.get(oid(1)) is None


def test_release_many_gives_back_one_unit_each(table):
    for n in (1, 2, 3):
        table.seal(oid(n), b"v")
    table.incref(oid(2))
    table.create(oid(4))  # pending: kept until sealed
    table.release_many([oid(1), oid(2), oid(3), oid(4), oid(5)])
    assert table.get(oid(1)) is None
    assert table.get(oid(2)).refs == 1
    assert table.get(oid(3)) is None
    assert table.get(oid(4)).refs == 0
    assert len(table) == 2
    table.release_many([oid(1), oid(1)])  # already gone: no error
    table.release_many([oid(2)])
    assert table.get(oid(2)) is None


def test_release_many_may_name_one_object_several_times(table):
    table.seal(oid(1), b"v")
    table.incref(oid(1), 2)
    table.release_many([oid(1), oid(1)])
    assert table.get(oid(1)).refs == 1
    table.release_many([oid(1)])
    assert table.get(oid(1)) is None


# ====================================================================== ObjectTable: waiters


def test_waiters_run_once_in_order_when_sealed(table):
    entry = table.create(oid(1))
    seen: list[tuple[str, bytes]] = []
    table.on_ready(entry, lambda e: seen.append(("a", e.data)))
    table.on_ready(entry, lambda e: seen.append(("b", e.data)))
    assert seen == []
    table.seal(oid(1), b"v")
    assert seen == [("a", b"v"), ("b", b"v")]
    assert entry.callbacks is None
    table.seal(oid(1), b"again")  # a duplicate seal runs nothing
    assert seen == [("a", b"v"), ("b", b"v")]


def test_a_waiter_sees_a_failure(table):
    entry = table.create(oid(1))
    seen = []
    table.on_ready(entry, lambda e: seen.append((e.data, e.is_error)))
    table.seal(oid(1), b"err", is_error=True)
    assert seen == [(b"err", True)]


def test_watchers_hear_of_every_id_they_watch_until_unwatched(table):
    ids = {oid(1), oid(2)}
    seen: list[bytes] = []

    def watcher(entry: object_table.ObjectEntry) -> None:
        seen.append(entry.data)

    table.watch(ids, watcher)
    table.seal(oid(3), b"three")  # not watched
    table.seal(oid(1), b"one")
    assert seen == [b"one"]
    table.unwatch(watcher)
    table.seal(oid(2), b"two")
    assert seen == [b"one"]


def test_unwatch_removes_only_that_watcher(table):
    a: list[bytes] = []
    b: list[bytes] = []

    def wa(e: object_table.ObjectEntry) -> None:
        a.append(e.data)

    def wb(e: object_table.ObjectEntry) -> None:
        b.append(e.data)

    table.watch({oid(1), oid(2)}, wa)
    table.watch({oid(1), oid(2)}, wb)
    table.seal(oid(1), b"one")
    table.unwatch(wa)
    table.seal(oid(2), b"two")
    assert a == [b"one"]
    assert b == [b"one", b"two"]


# ====================================================================== ObjectTable: contained refs


def test_the_refs_prefix_names_the_contained_ids():
    inner_ids = [oid(1), oid(2), oid(1)]
    payload = refs.wrap(inner_ids, b"pickled")
    assert refs.has_refs(payload)
    assert refs.contained(payload) == inner_ids
    assert refs.inner(payload) == b"pickled"
    odd = [b"short", oid(3)]  # ids of varying sizes
    assert refs.contained(refs.wrap(odd, b"p")) == odd
    assert refs.contained(b"plain") == []


def test_a_container_keeps_the_objects_it_contains_alive(table):
    table.seal(oid(1), b"inner-1")
    table.seal(oid(2), b"inner-2")
    table.seal(oid(10), refs.wrap([oid(1), oid(2)], b"outer"))
    assert table.get(oid(10)).contained == [oid(1), oid(2)]
    assert table.get(oid(1)).refs == 2
    # The owner drops its refs to the inner objects: the container still holds them.
    table.release(oid(1))
    table.release(oid(2))
    assert table.get(oid(1)).refs == 1 and table.get(oid(1)).data == b"inner-1"
    assert table.get(oid(2)).refs == 1
    # Dropping the container frees them too.
    table.release(oid(10))
    assert table.get(oid(10)) is None
    assert table.get(oid(1)) is None
    assert table.get(oid(2)) is None
    assert len(table) == 0


def test_a_contained_object_held_elsewhere_outlives_its_container(table):
    table.seal(oid(1), b"inner")
    table.seal(oid(10), refs.wrap([oid(1)], b"outer"))
    table.release(oid(10))
    assert table.get(oid(10)) is None
    inner = table.get(oid(1))
    assert inner is not None and inner.refs == 1  # the owner's unit, still there


def test_a_ref_contained_twice_holds_two_units(table):
    table.seal(oid(1), b"inner")
    table.seal(oid(10), refs.wrap([oid(1), oid(1)], b"outer"))
    assert table.get(oid(1)).refs == 3
    table.release(oid(10))
    assert table.get(oid(1)).refs == 1


def test_a_container_keeps_a_pending_object_which_is_freed_once_sealed_and_dropped(table):
    table.create(oid(1))
    table.seal(oid(10), refs.wrap([oid(1)], b"outer"))
    table.release(oid(1))  # the owner lets go while the task still runs
    assert table.get(oid(1)).refs == 1
    table.release(oid(10))
    pending = table.get(oid(1))
    assert pending is not None and pending.refs == 0  # not sealed yet: kept
    table.seal(oid(1), b"done")
    assert table.get(oid(1)) is None


def test_a_container_of_an_unknown_object_holds_nothing(table):
    table.seal(oid(10), refs.wrap([oid(1)], b"outer"))
    assert table.get(oid(1)) is None
    table.release(oid(10))
    assert len(table) == 0


def test_a_pending_container_at_zero_gives_its_units_back_when_sealed(table):
    table.seal(oid(1), b"inner")
    table.create(oid(10))
    table.release(oid(10))  # nobody wants the container's value any more
    table.seal(oid(10), refs.wrap([oid(1)], b"outer"))
    assert table.get(oid(10)) is None
    assert table.get(oid(1)).refs == 1  # incref'd by the seal, given back by the free


def test_nested_objects_free_as_a_chain(table):
    table.seal(oid(0), b"leaf")
    for n in range(1, 5):
        table.seal(oid(n), refs.wrap([oid(n - 1)], b"level"))
        table.release(oid(n - 1))  # only the next level holds it
    assert len(table) == 5
    table.release(oid(4))
    assert len(table) == 0


def test_a_deep_chain_frees_without_recursion(table):
    depth = sys.getrecursionlimit() * 3
    table.seal(oid(0), b"leaf")
    for n in range(1, depth):
        table.seal(oid(n), refs.wrap([oid(n - 1)], b"level"))
        table.release(oid(n - 1))
    assert len(table) == depth
    table.release(oid(depth - 1))
    assert len(table) == 0


def test_release_many_of_a_container_frees_what_it_contains(table):
    table.seal(oid(1), b"inner")
    table.seal(oid(10), refs.wrap([oid(1)], b"outer"))
    table.release(oid(1))
    table.release_many([oid(10)])
    assert len(table) == 0


# ====================================================================== ObjectTable with segments


def test_a_segment_payload_names_its_segment():
    assert shm.segment_of(segment_payload("asyncray_x_1")) == "asyncray_x_1"
    wrapped = refs.wrap([oid(1)], segment_payload("asyncray_x_2"))
    assert shm.segment_of(wrapped) == "asyncray_x_2"
    assert shm.segment_of(b"inline") is None


def test_sealing_and_freeing_an_object_tracks_its_segment(harness):
    h = harness(1000)
    objects = ObjectTable(h.store)
    name, recycled = h.store.reserve(100)
    assert not recycled
    (h.dir / name).write_bytes(b"z" * 100)
    objects.seal(oid(1), segment_payload(name))
    assert h.store.resident == {name: 100}
    assert objects.shm_bytes == 100
    assert h.store.reservations == {}
    objects.release(oid(1))
    assert objects.shm_bytes == 0
    # Nobody views it: recycled for the next producer, its file kept.
    assert list(h.store.recycled) == [name]
    assert h.store.cached == 100 and h.store.used == 0
    assert h.in_shm(name)


def test_a_duplicate_result_gives_its_segment_back(harness):
    h = harness(1000)
    objects = ObjectTable(h.store)
    objects.seal(oid(1), b"first")
    name, _ = h.store.reserve(100)
    (h.dir / name).write_bytes(b"z" * 100)
    objects.seal(oid(1), segment_payload(name))
    assert objects.get(oid(1)).data == b"first"
    assert h.store.used == 0 and h.store.reservations == {}
    assert not h.in_shm(name)


def test_freeing_a_container_frees_the_segments_it_kept_alive(harness):
    h = harness(1000)
    objects = ObjectTable(h.store)
    inner = h.store.reserve(100)[0]
    (h.dir / inner).write_bytes(b"i" * 100)
    objects.seal(oid(1), segment_payload(inner))
    outer = h.store.reserve(50)[0]
    (h.dir / outer).write_bytes(b"o" * 50)
    objects.seal(oid(10), refs.wrap([oid(1)], segment_payload(outer)))
    assert h.store.resident == {inner: 100, outer: 50}
    objects.release(oid(1))
    assert inner in h.store.resident
    objects.release(oid(10))
    assert h.store.resident == {}
    assert set(h.store.recycled) == {inner, outer}
    assert h.store.used == 0 and h.store.cached == 150


# ====================================================================== SegmentStore: budget


def test_a_reservation_counts_against_the_budget(harness):
    h = harness(1000)
    name, recycled = h.store.reserve(300)
    assert recycled is False
    assert name.startswith(f"{shm.PREFIX}{shm.session_tag()}_")
    assert h.store.used == 300
    assert h.store.reservations == {name: 300}
    other, _ = h.store.reserve(300)
    assert other != name
    assert h.store.used == 600


def test_an_object_larger_than_the_store_is_refused(harness):
    h = harness(1000)
    too_large = r"object of 1001 bytes: it is larger than the object store \(1000 bytes\)"
    with pytest.raises(StoreFull, match=too_large):
        h.store.reserve(1001)
    assert h.store.used == 0
    h.store.reserve(1000)  # exactly the capacity fits
    assert h.store.used == 1000


def test_sealing_makes_a_reservation_resident(harness):
    h = harness(1000)
    name = h.put(200)
    assert h.store.reservations == {}
    assert h.store.resident == {name: 200}
    assert h.store.resident_bytes == 200
    assert h.store.used == 200
    stats = h.store.stats()
    assert stats["store_capacity"] == 1000
    assert stats["store_used"] == 200
    assert stats["store_resident"] == 200
    assert stats["store_recycled"] == 0
    assert stats["spilled_bytes"] == 0


def test_a_segment_sealed_without_a_reservation_is_counted_by_its_size(harness):
    h = harness(1000)
    name = f"{shm.PREFIX}{shm.session_tag()}_unreserved"
    (h.dir / name).write_bytes(b"u" * 123)
    h.store.sealed(name)
    assert h.store.used == 123
    assert h.store.resident == {name: 123}


def test_a_cancelled_reservation_gives_back_its_room_and_file(harness):
    h = harness(1000)
    name, _ = h.store.reserve(400, writer="child-1")
    (h.dir / name).write_bytes(b"c" * 400)
    h.store.cancel(name)
    assert h.store.used == 0
    assert h.store.reservations == {}
    assert not h.in_shm(name)
    assert h.removed == [("child-1", name)]  # its writer is told to close its mapping


def test_a_freed_object_is_recycled_and_reused_for_a_similar_size(harness):
    h = harness(1000)
    name = h.put(400, writer="child-1")
    assert h.store.freed(name) == 400
    assert h.recycles == 1
    assert h.store.used == 0 and h.store.cached == 400
    assert h.store.stats()["store_recycled_names"] == [name]
    assert h.in_shm(name)
    assert h.removed == []  # recycled, not removed: the writer keeps its mapping
    again, recycled = h.store.reserve(300)
    assert (again, recycled) == (name, True)
    assert h.store.cached == 0 and h.store.used == 300
    assert h.store.recycled == {}


def test_a_recycled_segment_is_reused_only_within_its_size_range(harness):
    h = harness(10_000)
    name = h.put(400)
    h.store.freed(name)
    too_big, recycled = h.store.reserve(401)
    assert too_big != name and not recycled
    too_small, recycled = h.store.reserve(199)  # under REUSE_MIN_FRACTION of 400
    assert too_small != name and not recycled
    assert store.REUSE_MIN_FRACTION == 0.5
    half, recycled = h.store.reserve(200)
    assert (half, recycled) == (name, True)


def test_the_smallest_recycled_segment_that_fits_is_reused(harness):
    h = harness(10_000)
    big, small, mid = h.put(1000), h.put(300), h.put(500)
    for name in (big, small, mid):
        h.store.freed(name)
    assert h.store.reserve(280)[0] == small
    assert h.store.reserve(450)[0] == mid
    assert h.store.reserve(450)[0] != big  # mid is taken, big too large for 450
    assert h.store.reserve(600)[0] == big


def test_room_is_made_from_recycled_segments_first_oldest_first(harness):
    h = harness(1000)
    old, new, live = h.put(300), h.put(300), h.put(300)
    h.store.freed(old)
    h.store.freed(new)
    assert h.store.used == 300 and h.store.cached == 600
    # 300 used + 600 cached + 300 asked > 1000: drop the oldest recycled one only.
    _, recycled = h.store.reserve(350)  # too large to reuse either
    assert not recycled
    assert not h.in_shm(old)
    assert h.in_shm(new) and list(h.store.recycled) == [new]
    assert h.store.cached == 300
    assert h.store.resident == {live: 300}  # nothing spilled
    assert h.store.spilled == {}
    assert h.store.used == 650


# ====================================================================== SegmentStore: spilling


def test_the_oldest_objects_are_spilled_to_make_room(harness):
    h = harness(100)
    a = h.put(40, b"a")
    b = h.put(40, b"b")
    h.store.reserve(40)
    # a (the oldest) went to disk, byte for byte, and left shared memory.
    assert h.store.spilled == {a: 40}
    assert h.spilled_file(a).read_bytes() == b"a" * 40
    assert not h.in_shm(a)
    assert not os.path.exists(str(h.spilled_file(a)) + ".partial")
    assert h.store.resident == {b: 40}
    assert h.store.resident_bytes == 40
    assert h.store.used == 80
    stats = h.store.stats()
    assert stats["spilled_bytes"] == 40 and stats["spilled_total"] == 40


def test_only_as_much_as_needed_is_spilled(harness):
    h = harness(100)
    a, b, c = h.put(30), h.put(30), h.put(30)
    h.store.reserve(40)  # 90 + 40 > 100: one 30-byte object is enough
    assert list(h.store.spilled) == [a]
    assert list(h.store.resident) == [b, c]
    assert h.store.used == 100


def test_recycled_segments_go_before_any_object_is_spilled(harness):
    h = harness(100)
    live = h.put(40)
    freed = h.put(40)
    h.store.freed(freed)
    h.store.reserve(60)  # 40 used + 40 cached + 60 > 100, but 40 + 60 fits
    assert not h.in_shm(freed)
    assert h.store.recycled == {} and h.store.cached == 0
    assert h.store.spilled == {}
    assert h.store.resident == {live: 40}


def test_a_segment_the_driver_views_is_not_spilled(harness):
    h = harness(100)
    a, b = h.put(40), h.put(40)
    h.driver_viewed.add(a)
    h.store.reserve(40)
    assert list(h.store.spilled) == [b]
    assert list(h.store.resident) == [a]
    assert h.in_shm(a)


def test_a_segment_a_child_views_is_not_spilled(harness):
    h = harness(100)
    a, b = h.put(40), h.put(40)
    child = FakeChild()
    h.store.child_mapped(child, [a], [])
    h.store.reserve(40)
    assert list(h.store.spilled) == [b]
    assert list(h.store.resident) == [a]


def test_a_full_store_of_objects_in_use_raises_store_full_with_the_numbers(harness):
    h = harness(100)
    a, b = h.put(40), h.put(40)
    h.driver_viewed.update((a, b))
    with pytest.raises(StoreFull) as info:
        h.store.reserve(30)
    assert str(info.value).startswith(
        "Failed to put an object of 30 bytes: the object store is full "
        "(80 of 100 bytes in use by objects that cannot be spilled now)."
    )
    assert h.store.used == 80
    assert h.store.spilled == {}
    assert h.store.reservations == {}
    assert h.in_shm(a) and h.in_shm(b)


def test_reservations_not_yet_stored_cannot_be_spilled(harness):
    h = harness(100)
    h.store.reserve(60)
    with pytest.raises(StoreFull, match=r"\(60 of 100 bytes in use"):
        h.store.reserve(60)
    assert h.store.used == 60


def test_spilling_that_frees_too_little_still_raises(harness):
    h = harness(100)
    a = h.put(30)
    viewed = h.put(60)
    h.driver_viewed.add(viewed)
    with pytest.raises(StoreFull, match=r"\(60 of 100 bytes in use"):
        h.store.reserve(50)
    assert list(h.store.spilled) == [a]  # spilled on the way, though not enough


def test_a_segment_that_cannot_be_copied_stays_resident(harness):
    h = harness(100)
    a, b = h.put(40), h.put(40)
    (h.dir / a).unlink()  # its file is gone: the copy fails
    h.store.reserve(40)
    assert list(h.store.spilled) == [b]
    assert list(h.store.resident) == [a]
    assert os.listdir(h.spill_dir) == [b]  # no .partial left behind


def test_freeing_a_spilled_object_removes_its_file(harness):
    h = harness(100)
    a = h.put(60)
    h.store.reserve(60)
    assert h.store.spilled == {a: 60}
    assert h.store.freed(a) == 0  # no shared memory given back
    assert h.store.spilled == {}
    assert not h.spilled_file(a).exists()
    assert h.store.stats()["spilled_bytes"] == 0
    assert h.store.stats()["spilled_total"] == 60  # a running total


def test_freeing_an_unknown_segment_frees_nothing(harness):
    h = harness(100)
    assert h.store.freed("asyncray_nobody_1") == 0
    assert h.store.used == 0 and h.store.recycled == {}


# ====================================================================== SegmentStore: views


def test_a_freed_segment_someone_views_is_retired_until_the_view_closes(harness):
    h = harness(1000)
    name = h.put(200)
    h.driver_viewed.add(name)
    assert h.store.freed(name) == 200
    assert h.store.retired == {name: 200}
    assert h.store.used == 200  # its bytes stay in use
    assert h.store.recycled == {}
    h.store.views_closed([name])  # still viewed: nothing changes
    assert h.store.retired == {name: 200}
    h.driver_viewed.discard(name)
    h.store.views_closed([name])
    assert h.store.retired == {}
    assert h.store.used == 0
    assert list(h.store.recycled) == [name]


def test_child_views_retire_a_segment_until_every_child_unmaps_it(harness):
    h = harness(1000)
    name = h.put(200)
    one, two = FakeChild(), FakeChild()
    h.store.child_mapped(one, [name], [])
    h.store.child_mapped(two, [name, name], [])
    assert h.store.child_views == {name: 3}
    assert two.views == {name: 2}
    h.store.freed(name)
    assert name in h.store.retired
    h.store.child_mapped(one, [], [name])
    assert h.store.child_views == {name: 2}
    assert name in h.store.retired
    h.store.child_mapped(one, [], [name])  # one has no view left: ignored
    assert h.store.child_views == {name: 2}
    h.store.child_mapped(two, [], [name])
    h.store.child_mapped(two, [], [name])
    assert h.store.child_views == {}
    assert h.store.retired == {}
    assert list(h.store.recycled) == [name]


def test_a_dead_childs_views_go_with_it(harness):
    h = harness(1000)
    kept, shared = h.put(100), h.put(100)
    dead, alive = FakeChild(), FakeChild()
    h.store.child_mapped(dead, [kept, shared, shared], [])
    h.store.child_mapped(alive, [shared], [])
    h.store.freed(kept)
    h.store.freed(shared)
    assert set(h.store.retired) == {kept, shared}
    h.store.child_gone(dead)
    assert dead.views == {}
    assert h.store.child_views == {shared: 1}
    assert h.store.retired == {shared: 100}
    assert list(h.store.recycled) == [kept]


def test_a_call_that_ended_recycles_its_argument_segment(harness):
    h = harness(1000)
    name, _ = h.store.reserve(100)
    (h.dir / name).write_bytes(b"a" * 100)
    h.store.call_ended(name)  # never sealed as an object
    assert h.store.reservations == {}
    assert h.store.used == 0
    assert list(h.store.recycled) == [name]
    h.store.call_ended("asyncray_unknown_1")  # no reservation: removed (nothing to remove)
    assert h.store.used == 0


def test_trim_removes_recycled_segments_idle_since_a_time(harness):
    h = harness(1000)
    old = h.put(100)
    h.store.freed(old)
    cut = time.monotonic()
    while time.monotonic() == cut:
        pass
    young = h.put(300)  # too large to reuse the old one
    assert young != old
    h.store.freed(young)
    h.store.trim(older_than=cut)
    assert list(h.store.recycled) == [young]
    assert h.store.cached == 300
    assert not h.in_shm(old) and h.in_shm(young)
    h.store.trim(older_than=time.monotonic())
    assert h.store.recycled == {} and h.store.cached == 0
    assert not h.in_shm(young)


def test_a_writer_is_told_when_its_segment_is_removed(harness):
    h = harness(100)
    a = h.put(60, writer="child-1")
    h.store.reserve(60)  # spills a: it leaves shared memory
    assert h.removed == [("child-1", a)]
    assert h.store.writers == {}
