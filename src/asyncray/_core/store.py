"""The object store's memory: a bounded budget of shared-memory segments.

Every large object is one segment file (see ``_wire/shm.py``). Before a
producer writes one it asks the runtime for a name (``ReserveSegment``):
that is where the budget (``object_store_memory``) is enforced and where
room is made when it is short:

1. recycled segments are evicted first (free memory kept for reuse);
2. then sealed objects are *spilled*, oldest first: copied to the spill
   directory on disk, then removed from shared memory. Their payload does
   not change — readers look for a segment in shared memory first and in
   the spill directory second — so a spilled object is read back
   transparently (mapped from the file, through the page cache);
3. if that still leaves too little room, the reservation fails and the
   producer raises ``ObjectStoreFullError`` with the numbers.

Recycling is what makes repeated large puts fast: a freshly created tmpfs
file page-faults and zeroes every page on first touch, so the segment of a
freed object keeps its pages and is handed to the next producer of a
similar size — but only if no process still holds a view of it: the driver
(checked directly, it is this process) and children, which report the
segments they map and unmap (``SegmentMaps``: a map is reported before
the message that could let its object go, so the count is never late).

Owned by the runtime loop, like the object table it serves.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

from .._wire import shm

# A recycled segment is reused for a request of at least this fraction of
# its size (larger would waste the pages the shrink gives back).
REUSE_MIN_FRACTION = 0.5


class StoreFull(Exception):
    """No room can be made for a reservation; the message carries the numbers."""


class SegmentStore:
    """Budget, recycled segments and spilling of the session's segments."""

    def __init__(self, capacity: int, spill_directory: str) -> None:
        self.capacity = capacity
        self.spill_directory = spill_directory
        # Bytes of segments reserved or holding live objects in shared memory.
        self.used = 0
        # Reserved segments whose object has not been stored yet: name -> size.
        self.reservations: dict[str, int] = {}
        # Segments of live objects still in shared memory, oldest first.
        self.resident: dict[str, int] = {}
        self.resident_bytes = 0
        # Recycled segments ready for reuse: name -> (size, when recycled), oldest
        # first; their bytes are ``cached``.
        self.recycled: dict[str, tuple[int, float]] = {}
        self.cached = 0
        self.spilled: dict[str, int] = {}
        self.spilled_total = 0
        self._names = 0
        # Called when a segment is recycled (the owner schedules trimming).
        self.on_recycle: Callable[[], None] = lambda: None
        # Children that wrote a segment keep a writable mapping of it for
        # reuse; when it is removed they are told to close it.
        self.writers: dict[str, list[Any]] = {}
        self.on_removed: Callable[[Any, str], None] = lambda writer, name: None
        # Views children hold, by segment, and by child (dropped if it dies).
        self.child_views: dict[str, int] = {}
        # Says whether the driver (this process) holds a view of a segment.
        self.driver_views: Callable[[str], bool] = shm.is_mapped
        # Segments whose object (or call) ended while someone still viewed
        # them: still counted in ``used``; recycled when the last view closes.
        self.retired: dict[str, int] = {}

    # ------------------------------------------------------------ reservations

    def reserve(self, size: int, writer: Any = None) -> tuple[str, bool]:
        """A segment name for ``size`` bytes and whether it is a recycled one.

        ``writer`` is the child that will write it (None: the driver).
        Raises ``StoreFull`` if no room can be made.
        """
        if size > self.capacity:
            raise StoreFull(
                f"Failed to put an object of {size} bytes: it is larger than the object "
                f"store ({self.capacity} bytes). Pass a larger object_store_memory to init()."
            )
        name = self._take_recycled(size)
        recycled = name is not None
        if name is None:
            self._make_room(size)
            self._names += 1
            name = f"{shm.PREFIX}{shm.session_tag()}_{self._names:x}"
        self.used += size
        self.reservations[name] = size
        if writer is not None:
            writers = self.writers.setdefault(name, [])
            if writer not in writers:
                writers.append(writer)
        return name, recycled

    def _take_recycled(self, size: int) -> str | None:
        best = None
        for name, (have, _) in self.recycled.items():
            fits = have * REUSE_MIN_FRACTION <= size <= have
            if fits and (best is None or have < self.recycled[best][0]):
                best = name
        if best is not None:
            self.cached -= self.recycled.pop(best)[0]
        return best

    def _viewed(self, name: str) -> bool:
        """Some process holds a view of the segment (spilling it would free nothing)."""
        return name in self.child_views or self.driver_views(name)

    def _make_room(self, size: int) -> None:
        while self.recycled and self.used + self.cached + size > self.capacity:
            name, (have, _) = next(iter(self.recycled.items()))
            del self.recycled[name]
            self.cached -= have
            self._remove(name)
        if self.used + size <= self.capacity:
            return
        for name in list(self.resident):
            if self.used + size <= self.capacity:
                return
            if not self._viewed(name):
                self._spill(name)
        if self.used + size > self.capacity:
            raise StoreFull(
                f"Failed to put an object of {size} bytes: the object store is full "
                f"({self.used} of {self.capacity} bytes in use by objects that cannot be "
                "spilled now). Free some objects (drop their refs), or pass a larger "
                "object_store_memory to init()."
            )

    def cancel(self, name: str) -> None:
        """A segment that will never be stored (producer failed, duplicate result): remove it."""
        size = self.reservations.pop(name, None)
        if size is not None:
            self.used -= size
        self._remove(name)

    def call_ended(self, name: str) -> None:
        """The task or actor call whose large arguments the segment holds has ended."""
        size = self.reservations.pop(name, None)
        if size is None:
            self._remove(name)
        else:
            self._release(name, size)

    def _release(self, name: str, size: int) -> None:
        """A segment nobody needs any more: recycled once no process views it."""
        if self._viewed(name):
            self.retired[name] = size  # its bytes stay in use until the views close
            return
        self.used -= size
        if self.used + self.cached + size <= self.capacity:
            self.recycled[name] = (size, time.monotonic())
            self.cached += size
            self.on_recycle()
        else:
            self._remove(name)

    def views_closed(self, names: list[str]) -> None:
        """Views of these segments closed somewhere: finish retiring the unviewed ones."""
        retired = self.retired
        for name in names:
            if name in retired and not self._viewed(name):
                self._release(name, retired.pop(name))

    # ------------------------------------------------------------ lifetime

    def sealed(self, name: str) -> None:
        """An object's segment is stored: the reservation becomes a resident segment."""
        size = self.reservations.pop(name, None)
        if size is None:  # written without a reservation (a process with no runtime link)
            size = shm.segment_size(name)
            self.used += size
        self.resident[name] = size
        self.resident_bytes += size

    def trim(self, older_than: float) -> None:
        """Give recycled segments unused since ``older_than`` (monotonic) back to the system."""
        for name, (size, when) in list(self.recycled.items()):
            if when > older_than:
                break
            del self.recycled[name]
            self.cached -= size
            self._remove(name)

    def child_mapped(self, child: Any, mapped: list[str], unmapped: list[str]) -> None:
        views = self.child_views
        mine = child.views
        for name in mapped:
            views[name] = views.get(name, 0) + 1
            mine[name] = mine.get(name, 0) + 1
        for name in unmapped:
            if mine.get(name, 0) > 0:
                mine[name] -= 1
                self._views_gone(name, 1)
        if unmapped and self.retired:
            self.views_closed(unmapped)

    def _views_gone(self, name: str, n: int) -> None:
        left = self.child_views.get(name, 0) - n
        if left > 0:
            self.child_views[name] = left
        else:
            self.child_views.pop(name, None)

    def child_gone(self, child: Any) -> None:
        """A dead child's views went with it."""
        for name, n in child.views.items():
            self._views_gone(name, n)
        names, child.views = list(child.views), {}
        if self.retired:
            self.views_closed(names)

    def freed(self, name: str) -> int:
        """The object is gone: recycle or remove its segment; returns the bytes freed."""
        size = self.resident.pop(name, None)
        if size is None:
            size = self.spilled.pop(name, None)
            if size is not None:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.spill_directory, name))
            return 0
        self.resident_bytes -= size
        self._release(name, size)
        return size

    def _spill(self, name: str) -> None:
        """Copy a resident segment to disk, then drop it from shared memory."""
        size = self.resident.pop(name)
        os.makedirs(self.spill_directory, mode=0o700, exist_ok=True)
        source = os.path.join(shm.directory(), name)
        target = os.path.join(self.spill_directory, name)
        partial = target + ".partial"
        try:
            shutil.copyfile(source, partial)
            os.replace(partial, target)  # readers see the whole file or none
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            self.resident[name] = size  # could not spill: keep it where it is
            return
        self._remove(name)
        self.used -= size
        self.resident_bytes -= size
        self.spilled[name] = size
        self.spilled_total += size

    def _remove(self, name: str) -> None:
        shm.unlink(name)
        writers = self.writers.pop(name, None)
        if writers:
            for writer in writers:
                self.on_removed(writer, name)

    def stats(self) -> dict[str, int | list[str]]:
        return {
            "store_capacity": self.capacity,
            "store_used": self.used,
            "store_resident": self.resident_bytes,
            "store_recycled": self.cached,
            "spilled_bytes": sum(self.spilled.values()),
            "spilled_total": self.spilled_total,
            "store_recycled_names": list(self.recycled),
        }
