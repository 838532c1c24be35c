"""The one frame reader: whole frames decoded, partial ones kept, oversized ones refused."""

from __future__ import annotations

import pytest

from asyncray._wire import framing
from asyncray._wire import protocol as P

pytestmark = pytest.mark.timeout(10)


def test_whole_frames_are_decoded_in_order_and_a_partial_one_waits():
    msgs = [P.ReleaseObjects([b"a" * 28]), P.Log(1, "out"), P.CancelWaiter(7)]
    data = P.frame_many(msgs)
    buf = bytearray(data[:-3])
    got = framing.take_frames(buf, P.decoder.decode)
    assert got == msgs[:2]
    assert framing.has_whole_frame(buf) is False
    buf += data[-3:]
    assert framing.has_whole_frame(buf) is True
    assert framing.take_frames(buf, P.decoder.decode) == msgs[2:]
    assert buf == bytearray()


def test_a_length_over_the_limit_is_refused_before_any_body_arrives():
    buf = bytearray(P.HEADER.pack(P.MAX_FRAME + 1))
    with pytest.raises(framing.FrameTooLarge, match="over the limit"):
        framing.take_frames(buf, P.decoder.decode)
    with pytest.raises(framing.FrameTooLarge):
        framing.has_whole_frame(buf)


def test_a_sender_refuses_a_frame_over_the_limit(monkeypatch):
    monkeypatch.setattr(P, "MAX_FRAME", 64)
    with pytest.raises(ValueError, match=r"PutObject message of \d+ bytes.*ray\.put"):
        P.frame(P.PutObject(b"x" * 28, b"y" * 100, False))
    with pytest.raises(ValueError, match="frame limit"):
        P.frame_many([P.PutObject(b"x" * 28, b"y" * 100, False)])
