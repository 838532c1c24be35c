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

Segment names carry the session id and the driver's pid, so ``shutdown()``
removes a session's segments and a later session can sweep those of drivers
that died. If ``/dev/shm`` is missing or too small (containers), a
file-backed directory is used instead, with one warning.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import struct
import tempfile
import uuid
import warnings
import weakref
from typing import Any

from .refs import MARKER as _REFS_MARKER
from .refs import inner as _refs_inner

# Out-of-band buffers at least this large go to shared memory (Ray stores
# objects up to 100 KiB inline). Smaller ones are cheaper to copy than to map.
SHM_THRESHOLD = 100 * 1024
MARKER = b"\x00ARSHM1"
PREFIX = "asyncray_"
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
# /dev/shm must have this much free space for a new session to use it.
MIN_SHM_FREE_BYTES = 256 * 1024 * 1024

_directory: str | None = None
_session_tag = ""
# Mappings this process has open, by segment path. Weak: a mapping lives as
# long as the values that view it, so freed objects give their memory back.
_maps: weakref.WeakValueDictionary[str, mmap.mmap] = weakref.WeakValueDictionary()


def configure(session_tag: str, threshold: int | None = None) -> str:
    """Pick the segment directory for a new session (once per driver); returns it."""
    global _directory, _session_tag, SHM_THRESHOLD
    if threshold is not None:
        SHM_THRESHOLD = threshold
    _session_tag = session_tag
    _directory = _pick_directory()
    sweep_stale(_directory)
    return _directory


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
    total = sum(v.nbytes for v in views)
    name = f"{PREFIX}{_session_tag}_{uuid.uuid4().hex[:16]}"
    path = os.path.join(directory(), name)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, max(total, 1))
        with mmap.mmap(fd, max(total, 1)) as m:
            pos = 0
            offsets = []
            for v in views:
                m[pos : pos + v.nbytes] = v
                offsets.append((pos, v.nbytes))
                pos += v.nbytes
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)
    name_b = name.encode()
    parts = [MARKER, _U32.pack(len(pickled)), pickled, _U32.pack(len(name_b)), name_b]
    parts.append(_U32.pack(len(offsets)))
    for off, n in offsets:
        parts.append(_U64.pack(off))
        parts.append(_U64.pack(n))
    return b"".join(parts)


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


def _map(name: str) -> mmap.mmap:
    path = os.path.join(directory(), name)
    mapping = _maps.get(path)
    if mapping is None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            from ..exceptions import ObjectLostError

            raise ObjectLostError(
                name, "", "Its shared-memory segment is gone (freed, or removed at shutdown)."
            ) from None
        try:
            size = os.fstat(fd).st_size
            mapping = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        _maps[path] = mapping
    return mapping


def unlink(name: str) -> int:
    """Remove a segment (mappings stay valid until closed); returns the bytes freed."""
    path = os.path.join(directory(), name)
    try:
        size = os.stat(path).st_size
        os.unlink(path)
        return size
    except OSError:
        return 0


def segment_size(name: str) -> int:
    try:
        return os.stat(os.path.join(directory(), name)).st_size
    except OSError:
        return 0


def remove_session(tag: str) -> None:
    """Remove every segment of a session (at shutdown)."""
    base = directory()
    prefix = f"{PREFIX}{tag}_"
    with contextlib.suppress(OSError):
        for entry in os.listdir(base):
            if entry.startswith(prefix):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(base, entry))


def sweep_stale(base: str) -> None:
    """Remove segments left by drivers that died (their pid is in the session tag)."""
    with contextlib.suppress(OSError):
        for entry in os.listdir(base):
            if not entry.startswith(PREFIX):
                continue
            pid_text = entry[len(PREFIX) :].split("-", 1)[0]
            if pid_text.isdigit() and not _alive(int(pid_text)):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(base, entry))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
