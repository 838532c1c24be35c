"""Reading frames: the one reader every socket of asyncray goes through.

A frame is ``protocol.HEADER`` (the body's length) and a msgpack body. Bytes
arrive in chunks of any size; ``take_frames`` decodes every whole frame in a
buffer and leaves a partial one for the next chunk. It refuses a length over
``protocol.MAX_FRAME`` at once (``FrameTooLarge``): only a corrupted or
hostile stream sends one, and waiting for its body would buffer without end.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from typing import Any

from .protocol import HEADER, HEADER_SIZE, MAX_FRAME

# The most one read of a blocking socket takes (``read_buffer``).
READ_BYTES = 1 << 18


def read_buffer() -> memoryview:
    """A buffer for one socket's reads (``recv_into``), kept for the socket's life.

    ``recv(READ_BYTES)`` allocates a fresh ``bytes`` over malloc's mmap
    threshold on every read: a map, a shrink and an unmap per message (and
    an unmap in a process of several threads flushes the other cores'
    TLBs). An anonymous mapping, not a ``bytearray``: only the pages reads
    reach are ever touched, so a thousand idle actors do not each hold
    256 KiB.
    """
    return memoryview(mmap.mmap(-1, READ_BYTES))


class FrameTooLarge(ConnectionError):
    """A frame's length prefix is over ``protocol.MAX_FRAME``: the stream is corrupt."""

    def __init__(self, length: int, limit: int = MAX_FRAME) -> None:
        super().__init__(
            f"asyncray received a frame of {length} bytes, over the limit of {limit}: "
            "the connection is corrupt and was dropped"
        )
        self.length = length


def take_frames(buf: bytearray, decode: Callable[[Any], Any]) -> list[Any]:
    """Decode and remove every whole frame at the front of ``buf``.

    A partial frame stays in ``buf``. ``decode`` gets a memoryview of each
    body (msgspec decoders take one without copying).

    Raises:
        FrameTooLarge: a length prefix over ``MAX_FRAME``.
    """
    msgs = []
    pos = 0
    end = len(buf)
    unpack = HEADER.unpack_from
    with memoryview(buf) as view:
        while end - pos >= HEADER_SIZE:
            (n,) = unpack(buf, pos)
            if n > MAX_FRAME:
                raise FrameTooLarge(n)
            start = pos + HEADER_SIZE
            if end - start < n:
                break
            msgs.append(decode(view[start : start + n]))
            pos = start + n
    if pos:
        del buf[:pos]
    return msgs


def has_whole_frame(buf: bytearray) -> bool:
    """Whether ``buf`` starts with a whole frame (checks the length prefix).

    Raises:
        FrameTooLarge: a length prefix over ``MAX_FRAME``.
    """
    if len(buf) < HEADER_SIZE:
        return False
    (n,) = HEADER.unpack_from(buf)
    if n > MAX_FRAME:
        raise FrameTooLarge(n)
    return len(buf) >= HEADER_SIZE + n


def take_first_frame(buf: bytearray, decode: Callable[[Any], Any], max_frame: int) -> Any:
    """Decode and remove the first frame of ``buf`` if it is whole; None if not yet.

    For a connection's first message (a handshake), which has its own
    decoder and a smaller limit than the frames that may follow it.

    Raises:
        FrameTooLarge: a length prefix over ``max_frame``.
    """
    if len(buf) < HEADER_SIZE:
        return None
    (n,) = HEADER.unpack_from(buf)
    if n > max_frame:
        raise FrameTooLarge(n, max_frame)
    if len(buf) < HEADER_SIZE + n:
        return None
    msg = decode(bytes(buf[HEADER_SIZE : HEADER_SIZE + n]))
    del buf[: HEADER_SIZE + n]
    return msg
