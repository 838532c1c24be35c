"""Every wire message survives ``frame`` / ``frame_many`` and the decoder unchanged.

The message types are discovered from the ``Message`` and ``ZygoteMessage``
unions, and each instance is built from its field annotations by a small
sample generator, so a message added to a union later is covered without
touching this file (and a field of a type the generator does not know fails
loudly rather than being skipped).
"""

from __future__ import annotations

import enum
import inspect
import itertools
import types
import typing
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from asyncray._wire import protocol as P

# ====================================================================== discovery


def union_members(union: Any) -> tuple[type[msgspec.Struct], ...]:
    """The Struct types of a union (also behind a ``type X = ...`` alias)."""
    union = getattr(union, "__value__", union)
    members = typing.get_args(union)
    assert members, f"{union!r} is not a union of message types"
    for member in members:
        assert isinstance(member, type) and issubclass(member, msgspec.Struct), member
    return members


MESSAGES = union_members(P.Message)
ZYGOTE_MESSAGES = union_members(P.ZygoteMessage)
HANDSHAKE_MESSAGES = union_members(P.HandshakeMessage)
CASES = [(cls, P.decoder) for cls in MESSAGES]
CASES += [(cls, P.zygote_decoder) for cls in ZYGOTE_MESSAGES]
CASES += [(cls, P.handshake_decoder) for cls in HANDSHAKE_MESSAGES]


def tag_of(cls: type[msgspec.Struct]) -> Any:
    return cls.__struct_config__.tag


# ====================================================================== sample values

VARIANTS = ("typical", "empty", "extreme")
_NONE_TYPE = type(None)


class Sampler:
    """Values for annotations: distinct per call, shaped by the variant.

    ``typical``: small ordinary values. ``empty``: zeros, empty strings and
    containers, ``None`` for optionals. ``extreme``: the int64/uint64 limits,
    huge and infinite floats, long non-ASCII strings and bytes past the 64 KiB
    msgpack length boundary, several-item containers.
    """

    def __init__(self, variant: str) -> None:
        assert variant in VARIANTS
        self.variant = variant
        self._n = itertools.count(1)
        self._choices = itertools.count()  # union picks: their own sequence

    def value(self, tp: Any) -> Any:
        n = next(self._n)
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if tp is Any:
            return self.value(str)
        if origin is typing.Union or isinstance(tp, types.UnionType):
            return self._union(args, next(self._choices))
        if origin is typing.Literal:
            return args[n % len(args)]
        if origin is list:
            return [self.value(args[0]) for _ in range(self._size())]
        if origin in (set, frozenset):
            return origin(self._distinct(args[0], self._size()))
        if origin is dict:
            keys = self._distinct(args[0], self._size())
            return {k: self.value(args[1]) for k in keys}
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(self.value(args[0]) for _ in range(self._size()))
            return tuple(self.value(a) for a in args)
        if isinstance(tp, type):
            if issubclass(tp, msgspec.Struct):
                return build(tp, self)
            if issubclass(tp, enum.Enum):
                members = list(tp)
                return members[n % len(members)]
            if tp is bool:
                return self.variant != "empty" and n % 2 == 1
            if issubclass(tp, int):
                return self._int(n)
            if tp is float:
                return self._float(n)
            if tp is str:
                return self._str(n)
            if tp in (bytes, bytearray):
                return tp(self._bytes(n))
            if tp is _NONE_TYPE:
                return None
        raise TypeError(f"no sample generator for the annotation {tp!r}: extend Sampler")

    def _size(self) -> int:
        return {"typical": 2, "empty": 0, "extreme": 5}[self.variant]

    def _distinct(self, tp: Any, k: int) -> list[Any]:
        found: list[Any] = []
        for _ in range(50 * k):
            if len(found) == k:
                break
            candidate = self.value(tp)
            if candidate not in found:
                found.append(candidate)
        assert len(found) == k, f"cannot make {k} distinct values of {tp!r}"
        return found

    def _union(self, args: tuple[Any, ...], n: int) -> Any:
        real = [a for a in args if a is not _NONE_TYPE]
        # Optionals: always None when empty, every other one when extreme (so a
        # list[Optional[...]] mixes both), never when typical.
        if _NONE_TYPE in args and (
            self.variant == "empty" or (self.variant == "extreme" and n % 2 == 0)
        ):
            return None
        return self.value(real[n % len(real)])

    def _int(self, n: int) -> int:
        if self.variant == "empty":
            return 0
        if self.variant == "extreme":
            return (2**64 - 1 - n, -(2**63) + n, 2**32 + n)[n % 3]
        return n * 7 + 1

    def _float(self, n: int) -> float:
        if self.variant == "empty":
            return 0.0
        if self.variant == "extreme":
            return (1.5e308, -2.5e-308, float("inf"), -float("inf"), 2.0**-1074)[n % 5]
        return n + 0.25

    def _str(self, n: int) -> str:
        if self.variant == "empty":
            return ""
        if self.variant == "extreme":
            return f"{n}:" + "é☃\x00🚀" * 6_600
        return f"s{n}-é"

    def _bytes(self, n: int) -> bytes:
        if self.variant == "empty":
            return b""
        if self.variant == "extreme":
            return bytes((i + n) % 256 for i in range(256)) * 300
        return bytes([n % 256]) * 3 + b"\x00\xff"


def build(cls: type[msgspec.Struct], sampler: Sampler) -> msgspec.Struct:
    """An instance of ``cls`` with a sample for every field, defaults included."""
    values = {f.name: sampler.value(f.type) for f in msgspec.structs.fields(cls)}
    return cls(**values)


# ====================================================================== framing helpers


def split_frames(data: bytes) -> list[bytes]:
    """The bodies of a buffer of frames, checking every length prefix."""
    bodies = []
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= P.HEADER_SIZE, "a truncated header"
        (length,) = P.HEADER.unpack_from(data, pos)
        pos += P.HEADER_SIZE
        assert pos + length <= len(data), "a frame longer than the buffer"
        bodies.append(data[pos : pos + length])
        pos += length
    return bodies


def round_trip(msg: msgspec.Struct, decode: Callable[[bytes], Any]) -> Any:
    data = P.frame(msg)
    (length,) = P.HEADER.unpack_from(data, 0)
    assert length == len(data) - P.HEADER_SIZE
    return decode(data[P.HEADER_SIZE :])


def assert_same(decoded: Any, original: msgspec.Struct) -> None:
    assert type(decoded) is type(original)
    assert decoded == original
    # Field by field as well: Struct equality is structural, this names the culprit.
    for f in msgspec.structs.fields(type(original)):
        got, want = getattr(decoded, f.name), getattr(original, f.name)
        assert got == want, f"{type(original).__name__}.{f.name}: {got!r} != {want!r}"
        assert type(got) is type(want), f"{type(original).__name__}.{f.name} changed type"


# ====================================================================== the unions


def test_the_header_is_a_4_byte_little_endian_length():
    assert P.HEADER_SIZE == P.HEADER.size == 4
    assert P.HEADER.pack(1) == b"\x01\x00\x00\x00"


def test_every_message_type_is_covered():
    """One pass over both unions: each type round-trips, and none is left out."""
    unions = (
        (P.Message, P.decoder),
        (P.ZygoteMessage, P.zygote_decoder),
        (P.HandshakeMessage, P.handshake_decoder),
    )
    expected = sum(len(typing.get_args(getattr(u, "__value__", u))) for u, _ in unions)
    round_tripped: set[str] = set()
    for union, decoder in unions:
        for cls in union_members(union):
            for variant in VARIANTS:
                msg = build(cls, Sampler(variant))
                assert_same(round_trip(msg, decoder.decode), msg)
            round_tripped.add(cls.__name__)
    assert expected >= 2
    assert len(round_tripped) >= expected
    # The parametrized tests below see the same types.
    assert {cls.__name__ for cls, _ in CASES} == round_tripped
    assert len(CASES) == expected


def test_every_struct_the_module_defines_is_in_a_union():
    """A message defined but left out of its union could not be decoded."""
    in_unions = set(MESSAGES) | set(ZYGOTE_MESSAGES) | set(HANDSHAKE_MESSAGES)
    defined = {
        obj
        for name, obj in vars(P).items()
        if inspect.isclass(obj)
        and issubclass(obj, msgspec.Struct)
        and obj.__struct_config__.tag is not None  # a message (not a field's struct)
        and obj.__module__ == P.__name__
        and not name.startswith("_")
    }
    assert defined, "no Struct found in the protocol module"
    assert sorted(c.__name__ for c in defined - in_unions) == []


def test_tags_are_unique_within_and_across_the_unions():
    tags = [tag_of(cls) for cls in MESSAGES + ZYGOTE_MESSAGES + HANDSHAKE_MESSAGES]
    assert all(t is not None for t in tags)
    duplicates = sorted({t for t in tags if tags.count(t) > 1}, key=str)
    assert duplicates == []


def test_every_reply_type_is_a_message_with_a_req_id():
    for cls in P.REPLY_TYPES:
        assert cls in MESSAGES
        fields = {f.name: f.type for f in msgspec.structs.fields(cls)}
        assert fields.get("req_id") is int, cls.__name__


# ====================================================================== round trips


@pytest.mark.parametrize(("cls", "decoder"), CASES, ids=[cls.__name__ for cls, _ in CASES])
def test_a_message_round_trips_through_a_frame(cls, decoder):
    for variant in VARIANTS:
        msg = build(cls, Sampler(variant))
        assert_same(round_trip(msg, decoder.decode), msg)
    # Only the required fields given: the defaults travel too.
    sampler = Sampler("typical")
    required = {
        f.name: sampler.value(f.type)
        for f in msgspec.structs.fields(cls)
        if f.default is msgspec.NODEFAULT and f.default_factory is msgspec.NODEFAULT
    }
    msg = cls(**required)
    assert_same(round_trip(msg, decoder.decode), msg)


def test_the_samples_are_not_trivial():
    """The generator really varies values: a typical and an empty sample differ where they can."""
    differing = 0
    for cls in MESSAGES + ZYGOTE_MESSAGES:
        if msgspec.structs.fields(cls):
            differing += build(cls, Sampler("typical")) != build(cls, Sampler("empty"))
    with_fields = [c for c in MESSAGES + ZYGOTE_MESSAGES if msgspec.structs.fields(c)]
    assert differing == len(with_fields)


def test_frame_many_round_trips_every_message_in_order():
    for variant in VARIANTS:
        sampler = Sampler(variant)
        msgs = [build(cls, sampler) for cls in MESSAGES]
        data = P.frame_many(msgs)
        assert data == b"".join(P.frame(m) for m in msgs)
        decoded = [P.decoder.decode(body) for body in split_frames(data)]
        assert len(decoded) == len(msgs) == len(MESSAGES)
        for got, want in zip(decoded, msgs):
            assert_same(got, want)


def test_frame_many_of_zygote_messages():
    msgs = [build(cls, Sampler("typical")) for cls in ZYGOTE_MESSAGES]
    decoded = [P.zygote_decoder.decode(b) for b in split_frames(P.frame_many(msgs))]
    assert decoded == msgs


def test_frame_many_of_nothing_is_empty():
    assert P.frame_many([]) == b""


def test_a_message_decoded_from_its_frame_with_the_header_left_on_fails():
    msg = build(MESSAGES[0], Sampler("typical"))
    with pytest.raises(msgspec.DecodeError):
        P.decoder.decode(P.frame(msg))


def test_a_truncated_body_fails_to_decode():
    msg = build(MESSAGES[0], Sampler("typical"))
    body = P.frame(msg)[P.HEADER_SIZE :]
    with pytest.raises(msgspec.DecodeError):
        P.decoder.decode(body[:-1])


def test_each_decoder_refuses_the_other_unions_messages():
    for cls in ZYGOTE_MESSAGES:
        body = P.frame(build(cls, Sampler("typical")))[P.HEADER_SIZE :]
        with pytest.raises(msgspec.ValidationError, match="Invalid value"):
            P.decoder.decode(body)
    for cls in MESSAGES:
        body = P.frame(build(cls, Sampler("typical")))[P.HEADER_SIZE :]
        with pytest.raises(msgspec.ValidationError, match="Invalid value"):
            P.zygote_decoder.decode(body)


def test_a_field_of_the_wrong_type_is_refused():
    cls = next(c for c in MESSAGES if any(f.type is bytes for f in msgspec.structs.fields(c)))
    msg = build(cls, Sampler("typical"))
    name = next(f.name for f in msgspec.structs.fields(cls) if f.type is bytes)
    bad = msgspec.structs.replace(msg, **{name: "not bytes"})
    with pytest.raises(msgspec.ValidationError, match="Expected `bytes`, got `str`"):
        P.decoder.decode(P.frame(bad)[P.HEADER_SIZE :])


def test_the_sampler_refuses_an_annotation_it_does_not_know():
    with pytest.raises(TypeError, match="no sample generator"):
        Sampler("typical").value(complex)
