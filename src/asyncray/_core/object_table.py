"""The object table: every object's state, value bytes and waiters.

An entry is *pending* (its task has not finished), *ready* (``data`` holds
the serialized value) or *failed* (``data`` holds a pickled exception and
``is_error`` is set). The runtime never unpickles ``data``: it forwards the
bytes to whoever asks, so a value is serialized once, by its producer.

Waiters are plain callbacks run when the entry is sealed; gets, waits and
tasks waiting on dependencies all use them.

Lifetime: an entry is dropped when its owner releases it and nothing else
needs it. A client releases only refs that never left its process (see
``ObjectRef``), so an entry released while pending is dropped as soon as it
is sealed.
"""

from __future__ import annotations

from collections.abc import Callable

from .._wire import shm

Callback = Callable[["ObjectEntry"], None]


class ObjectEntry:
    __slots__ = ("callbacks", "data", "is_error", "released")

    def __init__(self) -> None:
        self.data: bytes | None = None
        self.is_error = False
        self.callbacks: list[Callback] | None = None
        self.released = False

    @property
    def ready(self) -> bool:
        return self.data is not None


class ObjectTable:
    """Owned by the runtime loop; no locking."""

    def __init__(self) -> None:
        self._entries: dict[bytes, ObjectEntry] = {}
        # Waits over long lists watch a set of ids instead of putting a
        # callback on every pending entry: O(1) per seal, not O(n) per wait.
        self._watchers: list[tuple[set[bytes], Callback]] = []
        # Bytes of shared-memory segments held by live entries.
        self.shm_bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, object_id: bytes) -> ObjectEntry | None:
        return self._entries.get(object_id)

    def create(self, object_id: bytes) -> ObjectEntry:
        """A pending entry for an object some task will produce."""
        entry = self._entries.get(object_id)
        if entry is None:
            entry = self._entries[object_id] = ObjectEntry()
        return entry

    def seal(self, object_id: bytes, data: bytes, is_error: bool = False) -> None:
        """Store the value and run the entry's waiters."""
        entry = self._entries.get(object_id)
        if entry is None:
            entry = self._entries[object_id] = ObjectEntry()
        elif entry.data is not None:
            return  # sealed already (a retried task finishing late): first value wins
        entry.data = data
        entry.is_error = is_error
        if data[:7] == shm.MARKER:
            self.shm_bytes += shm.segment_size(shm.segment_name(data))
        callbacks, entry.callbacks = entry.callbacks, None
        if entry.released:
            del self._entries[object_id]
            self._free(data)
        if callbacks:
            for cb in callbacks:
                cb(entry)
        if self._watchers:
            for ids, cb in list(self._watchers):
                if object_id in ids:
                    cb(entry)

    def watch(self, ids: set[bytes], callback: Callback) -> None:
        """Run ``callback(entry)`` whenever one of ``ids`` is sealed, until ``unwatch``."""
        self._watchers.append((ids, callback))

    def unwatch(self, callback: Callback) -> None:
        self._watchers = [w for w in self._watchers if w[1] is not callback]

    def on_ready(self, entry: ObjectEntry, callback: Callback) -> None:
        """Run ``callback(entry)`` once the pending entry is sealed."""
        if entry.callbacks is None:
            entry.callbacks = [callback]
        else:
            entry.callbacks.append(callback)

    def release(self, object_id: bytes) -> None:
        """The owner dropped its ref: free a ready entry now, a pending one when sealed."""
        entry = self._entries.get(object_id)
        if entry is None:
            return
        if entry.data is not None:
            del self._entries[object_id]
            self._free(entry.data)
        else:
            entry.released = True

    def _free(self, data: bytes) -> None:
        """A dropped entry's shared-memory segment goes too (readers keep their mapping)."""
        if data[:7] == shm.MARKER:
            self.shm_bytes -= shm.unlink(shm.segment_name(data))
