"""Which ``init()``..``shutdown()`` session of this process issued an id.

Every id a client makes (objects, tasks, queues, placement groups) starts
with the tag of the session it was made in. A ref, or a placement group,
kept across ``shutdown()`` and used after the next ``init()`` names
something the new runtime never had; the tag lets the error say so ("made
in an earlier session") instead of "freed or never existed".

Only error paths and rare calls look at tags: a ``get`` or ``.remote()``
never does. The tag is rolled when a session ends (``end_session``, called
with ``base.set_current(None)`` at ``shutdown()``), before the next
session's zygote is forked, so every child of a session inherits its tag.
"""

from __future__ import annotations

import os

# Bytes of an id that name its session: 2**32 tags make a collision between
# the sessions of one process negligible, and leave 8 random bytes per
# process in a client's 12-byte id prefix (collisions among a session's
# processes are then ~n²/2**65).
TAG_SIZE = 4

_tag = os.urandom(TAG_SIZE)
_ended: set[bytes] = set()


def current_tag() -> bytes:
    """The tag of ids made now."""
    return _tag


def new_id(size: int) -> bytes:
    """A random id of ``size`` bytes carrying the current session's tag."""
    return _tag + os.urandom(size - TAG_SIZE)


def end_session() -> None:
    """The session ended: its tag is remembered as ended, and a new one is used."""
    global _tag
    _ended.add(_tag)
    _tag = os.urandom(TAG_SIZE)


def from_ended_session(any_id: bytes) -> bool:
    """Whether ``any_id`` was made in a session of this process that has ended."""
    return bool(_ended) and any_id[:TAG_SIZE] in _ended
