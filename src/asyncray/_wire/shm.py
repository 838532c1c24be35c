"""Shared-memory segments for large buffers: written once, mapped zero-copy.

A value whose pickle (protocol 5) has out-of-band buffers at or above
``SHM_THRESHOLD`` is stored as one segment — a file in ``/dev/shm`` holding
those buffers back to back — plus a small payload::

    MARKER | u32 len(pickle) | pickle (in-band part) | u32 len(name) | name | offsets...

Only the producer copies the data (into the segment). The runtime forwards
the payload without reading the segment, and frees the segment when the
object is freed. Readers map the file read-only, so a numpy array from
``get`` is a read-only view of shared memory, as in Ray; two gets, or ten
tasks reading one argument, share the same pages.

Segment names carry the session's tag (the driver's pid, for people, and a
random part), so ``shutdown()`` — or the zygote, if the driver died — removes
a session's segments. Whether the session of a tag still runs is judged by
its lock file (``session_lock``), never by the pid, so a later session's
sweep removes the files of sessions that are gone and never those of a live
one, whatever PID namespace it runs in. If ``/dev/shm`` is missing or too
small (containers), a file-backed directory is used instead, with one warning.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import re
import shutil
import struct
import sys
import tempfile
import threading
import uuid
import warnings
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

from . import session_lock
from .refs import MARKER as _REFS_MARKER
from .refs import inner as _refs_inner

# Out-of-band buffers at least this large go to shared memory (Ray stores
# objects up to 100 KiB inline). Smaller ones are cheaper to copy than to map.
DEFAULT_SHM_THRESHOLD = 100 * 1024
SHM_THRESHOLD = DEFAULT_SHM_THRESHOLD
MARKER = b"\x00ARSHM1"
PREFIX = "asyncray_"
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
# /dev/shm must have this much free space for a new session to use it.
MIN_SHM_FREE_BYTES = 256 * 1024 * 1024

# A session's lock file is LOCK_PREFIX + tag. Not PREFIX + anything: what
# counts a session's segments or spill files by PREFIX (tests, people) does
# not count it, and older asyncrays' sweeps, which look only at PREFIX names,
# leave it alone.
LOCK_PREFIX = "asyncray-lock_"
# A file of a session: asyncray_{pid}-{hex} then "_..." (a segment) or
# nothing (a spill directory), or its lock file. Group 1 is the tag.
_SESSION_FILE = re.compile(rf"^(?:{LOCK_PREFIX}|{PREFIX})(\d+-[0-9a-f]+)(?:_|$)")

_directory: str | None = None
_spill_directory: str | None = None
_session_tag = ""
# The session's locks (fd, path), one per directory it writes to. Inherited
# by the zygote and the children; released by ``remove_session``.
_locks: list[tuple[int, str]] = []


class SegmentHooks(NamedTuple):
    """How this process's segments reach the runtime; the client installs them.

    The wire never calls up into a client: the client passes these down
    (``install_hooks``) when it becomes the process's current client.
    """

    # Asks the runtime for a segment of n bytes: (name, recycled); raises
    # ObjectStoreFullError when there is no room.
    reserve: Callable[[int], tuple[str, bool]]
    # Tells the runtime a reservation will not be used (the producer failed).
    abandon: Callable[[str], None]
    # In the driver: a view of a segment closed (the runtime may be waiting to
    # recycle it). None in children, which report views in batches instead.
    view_closed: Callable[[str], None] | None = None


_hooks: SegmentHooks | None = None
# Producers keep their writable mappings of segments open, so a recycled
# segment is written again without setting up page tables (most of the cost
# of a large put beyond the copy). The runtime closes the driver's when it
# removes a segment, and tells children to close theirs (``DropMappings``).
cache_writable = False
_writable: dict[str, mmap.mmap] = {}
# In children: segments mapped / unmapped since the last report to the
# runtime, which recycles a segment only when nobody views it.
report_views = False
mapped_log: list[str] = []
unmapped_log: list[str] = []
_log_lock = threading.Lock()
# Mappings this process has open, by segment path. Weak: a mapping lives as
# long as the values that view it, so freed objects give their memory back.
_maps: weakref.WeakValueDictionary[str, mmap.mmap] = weakref.WeakValueDictionary()


def install_hooks(hooks: SegmentHooks | None) -> None:
    """Route reservations and view reports through ``hooks`` (None: no runtime to ask)."""
    global _hooks
    _hooks = hooks


def configure(session_tag: str, threshold: int | None = None, spill_root: str | None = None) -> str:
    """Pick the segment and spill directories for a new session (once per driver).

    Children inherit these settings: they are forked after this runs.
    """
    global _directory, _spill_directory, _session_tag, SHM_THRESHOLD
    global cache_writable
    SHM_THRESHOLD = DEFAULT_SHM_THRESHOLD if threshold is None else threshold
    cache_writable = True  # the driver: see ``cache_writable``
    _session_tag = session_tag
    _directory = _pick_directory()
    root = spill_root or os.path.join(tempfile.gettempdir(), "asyncray-spill")
    os.makedirs(root, mode=0o700, exist_ok=True)
    _spill_directory = os.path.join(root, f"{PREFIX}{session_tag}")
    # Locked before any file of the tag exists, and before sweeping, so no
    # sweep (ours or another session's) can take this session for a dead one.
    for base in dict.fromkeys((_directory, root)):
        path = lock_path(base, session_tag)
        _locks.append((session_lock.hold(path), path))
    sweep_stale(_directory)
    sweep_stale(root)
    return _directory


def keep_in_band() -> None:
    """Debug mode: no segment is ever written; every buffer stays in its pickle.

    ``configure`` (the next normal session) sets the threshold again.
    """
    global SHM_THRESHOLD
    SHM_THRESHOLD = sys.maxsize


def join_session(tag: str, directory: str, spill_directory: str, threshold: int) -> None:
    """A driver connected to a shared head: use the head's segments, as its workers do.

    The head owns the session's files (and their locks); this process only
    writes the segments the head reserves for it and maps the ones it reads,
    reporting its views like a child so the head recycles none in use.
    """
    global _directory, _spill_directory, _session_tag, SHM_THRESHOLD
    global cache_writable, report_views
    _session_tag = tag
    _directory = directory
    _spill_directory = spill_directory
    SHM_THRESHOLD = threshold
    cache_writable = False
    report_views = True


def leave_session() -> None:
    """The head's connection ended: forget its settings (views are no longer reported)."""
    global report_views
    report_views = False
    take_view_reports()
    for name in list(_writable):
        _forget_writable(name)


def lock_path(base: str, tag: str) -> str:
    """The lock file of session ``tag`` in directory ``base``."""
    return os.path.join(base, f"{LOCK_PREFIX}{tag}")


def become_child() -> None:
    """In a forked child: drop writable mappings inherited from the parent; report views."""
    global report_views
    report_views = True
    for name in list(_writable):
        _forget_writable(name)


def take_view_reports() -> tuple[list[str], list[str]]:
    """Segments mapped and unmapped since the last call (children).

    Under a lock: a mapping reported late could let the runtime recycle a
    segment a value here still views.
    """
    global mapped_log, unmapped_log
    with _log_lock:
        mapped, mapped_log = mapped_log, []
        unmapped, unmapped_log = unmapped_log, []
    return mapped, unmapped


def spill_directory() -> str:
    return _spill_directory or os.path.join(tempfile.gettempdir(), "asyncray-spill")


def free_bytes() -> int:
    """Free space where segments go (bounds the default store size)."""
    try:
        st = os.statvfs(directory())
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def _pick_directory() -> str:
    try:
        st = os.statvfs("/dev/shm")
        if st.f_bavail * st.f_frsize >= MIN_SHM_FREE_BYTES and os.access("/dev/shm", os.W_OK):
            return "/dev/shm"
    except OSError:
        pass
    fallback = os.path.join(tempfile.gettempdir(), "asyncray-shm")
    os.makedirs(fallback, mode=0o700, exist_ok=True)
    warnings.warn(
        "/dev/shm is missing or small: asyncray stores large objects in "
        f"{fallback} (file-backed, slower). Give the container more /dev/shm to avoid this.",
        RuntimeWarning,
        stacklevel=3,
    )
    return fallback


def directory() -> str:
    return _directory or "/dev/shm"


def session_tag() -> str:
    return _session_tag


def dumps_large(pickled: bytes, buffers: list[pickle.PickleBuffer]) -> bytes:
    """Write ``buffers`` into a new segment; return the payload that names it."""
    views = [b.raw() for b in buffers]
    total = max(sum(v.nbytes for v in views), 1)
    hooks = _hooks
    if hooks is not None:
        name, recycled = hooks.reserve(total)  # may raise ObjectStoreFullError
    else:  # no runtime to ask (a bare process): a fresh private name
        name, recycled = f"{PREFIX}{_session_tag}_{uuid.uuid4().hex[:16]}", False
    path = os.path.join(directory(), name)
    try:
        m = _writable_map(name, path, total, recycled)
    except BaseException:
        abandon(name)
        raise
    try:
        pos = 0
        offsets = []
        for v in views:
            m[pos : pos + v.nbytes] = v
            offsets.append((pos, v.nbytes))
            pos += v.nbytes
    except BaseException:
        abandon(name)
        raise
    finally:
        if not cache_writable:
            m.close()
    name_b = name.encode()
    parts = [MARKER, _U32.pack(len(pickled)), pickled, _U32.pack(len(name_b)), name_b]
    parts.append(_U32.pack(len(offsets)))
    for off, n in offsets:
        parts.append(_U64.pack(off))
        parts.append(_U64.pack(n))
    return b"".join(parts)


_MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


def _writable_map(name: str, path: str, total: int, recycled: bool) -> mmap.mmap:
    """A writable mapping of ``total`` bytes of the segment: the cached one if it fits."""
    if recycled:
        cached = _writable.pop(name, None)
        if cached is not None:
            if len(cached) == total:
                _writable[name] = cached
                return cached  # page tables already set up: just copy
            cached.close()
    fd = os.open(path, os.O_RDWR if recycled else os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if os.fstat(fd).st_size != total:
            os.ftruncate(fd, total)
        # Populate: one call maps every page (recycled pages need no zeroing).
        m = mmap.mmap(fd, total, flags=mmap.MAP_SHARED | _MAP_POPULATE)
    finally:
        os.close(fd)
    if cache_writable:
        _writable[name] = m
    return m


def forget_writable(names: list[str]) -> None:
    """The runtime removed these segments: close the writable mappings kept of them."""
    for name in names:
        _forget_writable(name)


def _forget_writable(name: str) -> None:
    m = _writable.pop(name, None)
    if m is not None:
        with contextlib.suppress(BufferError, ValueError):
            m.close()


def abandon(name: str) -> None:
    """A written segment whose payload will never be sent: remove it, give back its room."""
    unlink(name)
    hooks = _hooks
    if hooks is not None:
        with contextlib.suppress(Exception):
            hooks.abandon(name)


def is_shm(payload: bytes) -> bool:
    return payload[:7] == MARKER


def segment_of(payload: bytes) -> str | None:
    """The segment a stored payload (possibly prefixed with refs) names, or None."""
    if payload[:7] == _REFS_MARKER:
        payload = _refs_inner(payload)
    if payload[:7] != MARKER:
        return None
    return segment_name(payload)


def segment_name(payload: bytes) -> str:
    """The segment a payload names (cheap: no unpickling)."""
    (n,) = _U32.unpack_from(payload, 7)
    pos = 11 + n
    (m,) = _U32.unpack_from(payload, pos)
    return payload[pos + 4 : pos + 4 + m].decode()


def loads_large(payload: bytes) -> Any:
    """Unpickle a shared-memory payload; its buffers are read-only views of the segment."""
    (n,) = _U32.unpack_from(payload, 7)
    pickled = payload[11 : 11 + n]
    pos = 11 + n
    (m,) = _U32.unpack_from(payload, pos)
    name = payload[pos + 4 : pos + 4 + m].decode()
    pos += 4 + m
    (count,) = _U32.unpack_from(payload, pos)
    pos += 4
    mapping = _map(name)
    view = memoryview(mapping)
    buffers = []
    for _ in range(count):
        (off,) = _U64.unpack_from(payload, pos)
        (size,) = _U64.unpack_from(payload, pos + 8)
        pos += 16
        buffers.append(view[off : off + size])
    return pickle.loads(pickled, buffers=buffers)


def is_mapped(name: str) -> bool:
    """Whether this process holds a view of the segment (its values still live)."""
    return os.path.join(directory(), name) in _maps


def _map(name: str) -> mmap.mmap:
    path = os.path.join(directory(), name)
    mapping = _maps.get(path)
    if mapping is None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            fd = _open_spilled(name)
        try:
            size = os.fstat(fd).st_size
            mapping = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        _maps[path] = mapping
        if report_views:
            with _log_lock:
                mapped_log.append(name)
            weakref.finalize(mapping, _unmapped, name)
        elif _hooks is not None and _hooks.view_closed is not None:
            weakref.finalize(mapping, _driver_unmapped, path, name)
    return mapping


def _driver_unmapped(path: str, name: str) -> None:
    # Gone from ``_maps`` first, so the runtime either still sees the view
    # (and retires the segment, which the hook then reports) or no longer does.
    if path in _maps and _maps.get(path) is None:
        _maps.pop(path, None)
    hooks = _hooks
    if hooks is not None and hooks.view_closed is not None:
        hooks.view_closed(name)


def _unmapped(name: str) -> None:
    with _log_lock:
        unmapped_log.append(name)


def _open_spilled(name: str) -> int:
    """A segment spilled to disk is read from there (mapped through the page cache)."""
    try:
        return os.open(os.path.join(spill_directory(), name), os.O_RDONLY)
    except FileNotFoundError:
        from ..exceptions import ObjectLostError

        raise ObjectLostError(
            name, "", "Its shared-memory segment is gone (freed, or removed at shutdown)."
        ) from None


def unlink(name: str) -> None:
    """Remove a segment (mappings stay valid until closed)."""
    if _writable:
        _forget_writable(name)
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(directory(), name))


def segment_size(name: str) -> int:
    try:
        return os.stat(os.path.join(directory(), name)).st_size
    except OSError:
        return 0


def remove_session(tag: str) -> None:
    """Remove every segment and spilled object of a session, then its locks.

    Runs at shutdown in the driver, and in the zygote when the driver is gone
    (after every child has been reaped): whichever runs second finds nothing
    left but its own copy of the lock fds to close.
    """
    for name in list(_writable):
        _forget_writable(name)
    if _spill_directory is not None and tag in _spill_directory:
        shutil.rmtree(_spill_directory, ignore_errors=True)
    base = directory()
    prefix = f"{PREFIX}{tag}_"
    with contextlib.suppress(OSError):
        for entry in os.listdir(base):
            if entry.startswith(prefix):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(base, entry))
    if tag == _session_tag:
        while _locks:
            session_lock.release(*_locks.pop())


def sweep_stale(base: str) -> None:
    """Remove the files in ``base`` of sessions that are gone (nobody holds their lock).

    A tag without a lock file predates session locks (or its lock was deleted
    by hand): for it, and only for it, the old rule applies — its files go
    if the pid in its name is not alive in this PID namespace.
    """
    try:
        entries = os.listdir(base)
    except OSError:
        return
    tags: dict[str, list[str]] = {}
    for entry in entries:
        match = _SESSION_FILE.match(entry)
        if match is not None and match.group(1) != _session_tag:
            tags.setdefault(match.group(1), []).append(entry)
    for tag, names in tags.items():
        lock = lock_path(base, tag)
        fd = session_lock.try_take(lock)
        if fd is None:
            continue  # alive, or cleaned by someone else just now
        if isinstance(fd, session_lock.Missing):
            if _alive(int(tag.split("-", 1)[0])):
                continue
            _remove_files(base, names)
            continue
        _remove_files(base, [n for n in names if n != os.path.basename(lock)])
        session_lock.release(fd, lock)


def _remove_files(base: str, names: list[str]) -> None:
    for name in names:
        path = os.path.join(base, name)
        if os.path.isdir(path):  # a spill directory
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
