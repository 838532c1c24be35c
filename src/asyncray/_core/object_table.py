"""The object table: every object's state, value bytes and waiters.

An entry is *pending* (its task has not finished), *ready* (``data`` holds
the serialized value) or *failed* (``data`` holds a pickled exception and
``is_error`` is set). The runtime never unpickles ``data``: it forwards the
bytes to whoever asks, so a value is serialized once, by its producer.

Waiters are plain callbacks run when the entry is sealed; gets, waits and
tasks waiting on dependencies all use them.

Lifetime (reference counting): ``refs`` counts the units held on an entry:
one per live ``ObjectRef`` in any process (the owner's from creation, a
borrower's granted when the runtime sent it a payload naming the object),
one per stored object whose value contains a ref to it, and one per pending
task or actor call that takes it as an argument. When the count reaches
zero a ready entry is freed — its shared-memory segment unlinked and the
refs its own value contained given back, which may free those in turn; a
pending entry is freed as soon as it is sealed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .._wire import refs as _refs
from .._wire import shm

if TYPE_CHECKING:
    from .store import SegmentStore

Callback = Callable[["ObjectEntry"], None]


class ObjectEntry:
    __slots__ = ("callbacks", "contained", "data", "is_error", "refs")

    def __init__(self) -> None:
        self.data: bytes | None = None
        self.is_error = False
        self.callbacks: list[Callback] | None = None
        # Units held on this entry; a new entry starts with its creator's.
        self.refs = 1
        # Ids of the refs inside ``data`` (each holding one unit while this lives).
        self.contained: list[bytes] | None = None

    @property
    def ready(self) -> bool:
        return self.data is not None


class ObjectTable:
    """Owned by the runtime loop; no locking."""

    def __init__(self, store: SegmentStore) -> None:
        self.store = store
        self._entries: dict[bytes, ObjectEntry] = {}
        # Waits over long lists watch a set of ids instead of putting a
        # callback on every pending entry: O(1) per seal, not O(n) per wait.
        self._watchers: list[tuple[set[bytes], Callback]] = []
        # Called with the id when that entry is freed (an actor's holders
        # object: its last handle is gone). Consulted only when not empty.
        self.free_hooks: dict[bytes, Callable[[bytes], None]] = {}

    @property
    def shm_bytes(self) -> int:
        """Bytes of shared-memory segments held by live entries."""
        return self.store.resident_bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, object_id: bytes) -> ObjectEntry | None:
        return self._entries.get(object_id)

    def items(self) -> list[tuple[bytes, ObjectEntry]]:
        """Every object and its entry, now (the state API's ``list_objects``)."""
        return list(self._entries.items())

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
            # Sealed already (a retried task finishing late): first value wins.
            self.discard(data)
            return
        entry.data = data
        entry.is_error = is_error
        if data[:7] == _refs.MARKER:
            entry.contained = contained = _refs.contained(data)
            incref = self.incref
            for oid in contained:
                incref(oid)
        segment = shm.segment_of(data)
        if segment is not None:
            self.store.sealed(segment)
        callbacks, entry.callbacks = entry.callbacks, None
        if entry.refs <= 0:
            del self._entries[object_id]
            self._free(entry)
            if self.free_hooks:
                self._run_hook(object_id)
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

    def incref(self, object_id: bytes, n: int = 1) -> None:
        """Someone holds ``n`` more units on the object (a no-op once it is gone)."""
        entry = self._entries.get(object_id)
        if entry is not None:
            entry.refs += n

    def release(self, object_id: bytes, n: int = 1) -> None:
        """Give back ``n`` units: at zero, free a ready entry now, a pending one when sealed."""
        entry = self._entries.get(object_id)
        if entry is None:
            return
        entry.refs -= n
        if entry.refs <= 0 and entry.data is not None:
            del self._entries[object_id]
            self._free(entry)
            if self.free_hooks:
                self._run_hook(object_id)

    def _run_hook(self, object_id: bytes) -> None:
        hook = self.free_hooks.pop(object_id, None)
        if hook is not None:
            hook(object_id)

    def discard(self, data: bytes) -> None:
        """A payload that will never be stored: its segment goes."""
        segment = shm.segment_of(data)
        if segment is not None:
            self.store.cancel(segment)

    def _free_segment(self, entry: ObjectEntry) -> None:
        segment = shm.segment_of(entry.data)  # type: ignore[arg-type]
        if segment is not None:
            self.store.freed(segment)

    def release_many(self, object_ids: list[bytes]) -> None:
        """``release`` of one unit each (a client's batch of dropped refs)."""
        entries = self._entries
        for oid in object_ids:
            entry = entries.get(oid)
            if entry is not None:
                entry.refs -= 1
                if entry.refs <= 0 and entry.data is not None:
                    del entries[oid]
                    self._free(entry)
                    if self.free_hooks:
                        self._run_hook(oid)

    def _free(self, entry: ObjectEntry) -> None:
        """A dropped entry's segment goes (readers keep their mapping), and its refs' units."""
        if entry.data is not None:
            self._free_segment(entry)
        contained, entry.contained = entry.contained, None
        if contained:
            # A chain of nested objects frees iteratively, not by recursion.
            stack = contained
            entries = self._entries
            while stack:
                oid = stack.pop()
                inner = entries.get(oid)
                if inner is None:
                    continue
                inner.refs -= 1
                if inner.refs <= 0 and inner.data is not None:
                    del entries[oid]
                    self._free_segment(inner)
                    if self.free_hooks:
                        self._run_hook(oid)
                    if inner.contained:
                        stack.extend(inner.contained)
                        inner.contained = None
