"""Refs inside payloads: which ``ObjectRef`` s a serialized value carries.

Reference counting needs to know, without unpickling, which objects a
payload refers to. ``serialization.dumps`` collects the id of every ref it
pickles (``ObjectRef.__reduce__`` appends to ``state.collecting``) and, when
there are any, prefixes the payload with them::

    MARKER | u16 count | (u8 len | id) * count | inner payload

The list has one entry per pickled ref *object* (pickle's memo pickles a ref
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
_U16 = struct.Struct("<H")
MAX_REFS = 0xFFFF


class _State(threading.local):
    # Ids of refs pickled by the dumps running on this thread (None: not in one).
    collecting: list[bytes] | None = None
    # Refs rebuilt by the loads running on this thread (None: not in one).
    rebuilt: list[bytes] | None = None


state = _State()


def wrap(ids: list[bytes], payload: bytes) -> bytes:
    """Prefix ``payload`` with the ids of the refs it contains."""
    if len(ids) > MAX_REFS:
        raise ValueError(
            f"A value may contain at most {MAX_REFS} ObjectRefs, not {len(ids)}: "
            "put them in several objects, or pass a list of values instead."
        )
    parts = [MARKER, _U16.pack(len(ids))]
    for oid in ids:
        parts.append(len(oid).to_bytes(1, "little"))
        parts.append(oid)
    parts.append(payload)
    return b"".join(parts)


def has_refs(payload: bytes) -> bool:
    return payload[:7] == MARKER


def split(payload: bytes) -> tuple[list[bytes], bytes]:
    """``(ids, inner payload)`` of a payload; ``([], payload)`` if it has no refs."""
    if payload[:7] != MARKER:
        return [], payload
    (count,) = _U16.unpack_from(payload, 7)
    pos = 9
    ids = []
    for _ in range(count):
        n = payload[pos]
        ids.append(payload[pos + 1 : pos + 1 + n])
        pos += 1 + n
    return ids, payload[pos:]


def contained(payload: bytes) -> list[bytes]:
    """The ids of the refs a payload contains (cheap: no unpickling)."""
    if payload[:7] != MARKER:
        return []
    return split(payload)[0]


def inner(payload: bytes) -> bytes:
    """The payload without its refs prefix."""
    if payload[:7] != MARKER:
        return payload
    return split(payload)[1]
