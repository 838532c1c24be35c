"""Refs inside payloads: which ``ObjectRef`` s a serialized value carries.

Reference counting needs to know, without unpickling, which objects a
payload refers to. ``serialization.dumps`` collects the id of every ref it
pickles (``ObjectRef.__reduce__`` appends to ``state.collecting``) and, when
there are any, prefixes the payload with them::

    MARKER | u32 len(ids) | u8 id size | ids back to back | inner payload

(id size 0: ids of varying size, each behind its u8 length). The list has
one entry per pickled ref *object* (pickle's memo pickles a ref
object once however often it appears), so it matches the ``ObjectRef``
instances unpickling will create one for one. The runtime reads the list to
count the references a stored object holds and to grant one unit per entry
to every process it sends the payload to; each unpickled instance owns one
unit and gives it back when dropped. A payload without refs has no prefix,
so the common case costs nothing.
"""

from __future__ import annotations

import struct
import threading

MARKER = b"\x00ARREF1"
_HEADER = struct.Struct("<IB")  # length of the id block, id size (0: varying)
_BODY = 7 + _HEADER.size
MAX_REFS = 1 << 24


class _State(threading.local):
    # Ids of refs pickled by the dumps running on this thread (None: not in one).
    collecting: list[bytes] | None = None


state = _State()


class RebuiltCount:
    """Refs rebuilt from payloads so far, in this process (``ObjectRef`` counts them).

    A failed load compares it before and after to know how many of the
    payload's refs exist (refs are rebuilt in pickling order). Not per
    thread: it costs less on the hot path, and concurrent loads that fail at
    once could only keep objects too long.
    """

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


rebuilt = RebuiltCount()


def wrap(ids: list[bytes], payload: bytes) -> bytes:
    """Prefix ``payload`` with the ids of the refs it contains."""
    if len(ids) > MAX_REFS:
        raise ValueError(
            f"A value may contain at most {MAX_REFS} ObjectRefs, not {len(ids)}: "
            "put them in several objects."
        )
    size = len(ids[0])
    if 0 < size < 256 and all(len(oid) == size for oid in ids):
        block = b"".join(ids)  # the common case: same-size ids, back to back
    else:
        size = 0
        block = b"".join(len(oid).to_bytes(1, "little") + oid for oid in ids)
    return b"".join((MARKER, _HEADER.pack(len(block), size), block, payload))


def has_refs(payload: bytes) -> bool:
    return payload[:7] == MARKER


def contained(payload: bytes) -> list[bytes]:
    """The ids of the refs a payload contains, in pickling order (cheap: no unpickling).

    Never raises: the runtime reads this from payloads another process sent,
    so a header cut short or a length past the end yields the ids that fit
    (the same ones each time, so the units counted for them balance).
    """
    if payload[:7] != MARKER:
        return []
    if len(payload) < _BODY:
        return []
    length, size = _HEADER.unpack_from(payload, 7)
    end = min(_BODY + length, len(payload))
    if size:
        return [payload[i : i + size] for i in range(_BODY, end, size)]
    ids = []
    pos = _BODY
    while pos < end:
        n = payload[pos]
        ids.append(payload[pos + 1 : pos + 1 + n])
        pos += 1 + n
    return ids


def inner(payload: bytes) -> bytes:
    """The payload without its refs prefix (empty if the prefix is cut short)."""
    if payload[:7] != MARKER:
        return payload
    if len(payload) < _BODY:
        return b""
    (length,) = struct.unpack_from("<I", payload, 7)
    return payload[_BODY + length :]
