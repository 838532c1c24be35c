"""Frame fuzzing from a child's socket: a corrupt or hostile child is dropped, nothing else.

A task writes frames straight onto its own socket to the kernel, then
returns. Whatever it wrote, the task ends with its value (the kernel heard
the frames and went on) or with ``WorkerCrashedError`` naming the reason it
was *dropped* (reported at ERROR, killed); the kernel logs no internal
error, ``available_resources()`` comes back to the total, the driver's own
objects and stream are untouched, and the runtime goes on running tasks.

Rounds, all seeded (``ASYNCRAY_FUZZ_SEED``; ``ASYNCRAY_FUZZ_ROUNDS`` scales
the random classes):

- *garbage*: random bytes behind a true length prefix;
- *mutated*: a real message's body with bytes flipped, inserted or cut;
- *random messages*: well-typed messages of every kind a child may send,
  with hostile values (other users' ids, negative and huge numbers, NaN);
- *hostile*: a fixed list of messages that would corrupt the kernel if it
  believed them, each with the outcome it must have.

Every frame keeps a true length prefix (or one over the limit): the kernel
cannot tell a frame cut short from one still arriving.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import random
import types
import typing

import msgspec
import pytest
from _helpers import wait_for_condition, wait_for_file

import asyncray as ray
from asyncray._wire import protocol as P
from asyncray._wire import refs
from asyncray.exceptions import (
    ActorDiedError,
    ActorUnavailableError,
    RayTaskError,
    TaskCancelledError,
    WorkerCrashedError,
)
from asyncray.util.queue import Queue

SEED = int(os.environ.get("ASYNCRAY_FUZZ_SEED", "20261204"))
# Rounds of each random class (the hostile list always runs whole).
ROUNDS = int(os.environ.get("ASYNCRAY_FUZZ_ROUNDS", "60"))

# Stands for the hostile task's own task id; the task swaps its real id in
# (same length, so a msgpack body stays well-formed).
SELF = b"\xee" * 24
SELF_RETURN = SELF + (1).to_bytes(4, "little")

# Messages a child may send that *act* (start work, reserve resources): sent
# at random they would rightly change what the runtime holds. Their hostile
# forms are in the fixed list instead.
ACTIONS = {
    P.SubmitTask,
    P.CreateActor,
    P.CallActor,
    P.CreatePlacementGroup,
    P.CreateQueue,
    P.CancelTask,  # may name the driver's stream: cancelling it is a child's right
}
RANDOM_TYPES = [t for t in typing.get_args(P.Message) if t not in ACTIONS]

# About 30 ms a round on 2 busy cores; each round plays three frames.
pytestmark = pytest.mark.timeout(60 + ROUNDS * 0.3)


def write_frames(frames: list[bytes]) -> str:
    """Write ``frames`` onto this process's socket to the kernel, as they are."""
    from asyncray import _task_context
    from asyncray._clients import base

    me = _task_context.current_task().task_id
    channel = base.current().channel  # type: ignore[union-attr]
    data = b"".join(frames).replace(SELF, me)
    with channel._writer._lock:
        channel.sock.sendall(data)
    return "heard"


@ray.remote(max_retries=0)
def hostile(frames: list[bytes]) -> str:
    return write_frames(frames)


@ray.remote
class HostileActor:
    """The same from an actor process (restarted after each drop; calls not retried)."""

    def send(self, frames: list[bytes]) -> str:
        return write_frames(frames)


@ray.remote
def read(refs_in: list) -> list:
    return ray.get(refs_in)


@ray.remote(num_cpus=0)
def numbers(n: int, go_on: str):
    """Yields ``n`` numbers, then stays open until ``go_on`` exists (holding no CPU)."""
    yield from range(n)
    wait_for_file(go_on, timeout=60)


@ray.remote
def one() -> int:
    return 1


def _frame_body(body: bytes) -> bytes:
    return P.HEADER.pack(len(body)) + body


class Targets:
    """Ids a hostile child aims at: the driver's objects and stream, its own task."""

    def __init__(self, small: bytes, large: bytes, stream: bytes, queue: bytes) -> None:
        self.small = small
        self.large = large
        self.stream = stream
        self.queue = queue
        self.items = [stream + i.to_bytes(4, "little") for i in (1, 2, 3, 4)]
        self.ids = [small, large, SELF, SELF_RETURN, stream, queue, *self.items]


class Fuzzer:
    """Seeded generators of frames a child should never send."""

    def __init__(self, rng: random.Random, targets: Targets) -> None:
        self.rng = rng
        self.t = targets

    # ------------------------------------------------------------ values

    def an_id(self) -> bytes:
        rng = self.rng
        pick = rng.random()
        if pick < 0.6:
            return rng.choice(self.t.ids)
        if pick < 0.8:
            return rng.randbytes(rng.choice((24, 28)))
        return rng.randbytes(rng.randrange(0, 40))

    def an_int(self) -> int:
        return self.rng.choice(
            (0, 1, -1, 2, 3, 4, 7, 1 << 31, (1 << 32) - 1, 1 << 32, (1 << 63) - 1, -(1 << 63))
        )

    def a_float(self) -> float:
        return self.rng.choice((0.0, -1.0, 1e-3, 0.5, 1.0, 1e300, math.inf, -math.inf, math.nan))

    def a_payload(self) -> bytes:
        rng = self.rng
        pick = rng.random()
        if pick < 0.3:
            return rng.randbytes(rng.randrange(0, 32))
        if pick < 0.5:
            return P.STREAM_END
        if pick < 0.8:  # claims to carry refs: to other users' objects, or cut short
            payload = refs.wrap([self.an_id() or b"x"], rng.randbytes(4))
            return payload[: rng.randrange(7, len(payload) + 1)]
        return b""

    def value(self, name: str, hint: typing.Any) -> typing.Any:
        rng = self.rng
        origin = typing.get_origin(hint)
        if origin is list:
            (inner,) = typing.get_args(hint)
            n = rng.choice((0, 1, 2, 3, 50))
            return [self.value(name, inner) for _ in range(n)]
        if origin is dict:
            _, value_hint = typing.get_args(hint)
            value = self.a_float() if value_hint is float else self.value(name, value_hint)
            return {rng.choice(("CPU", "GPU", "memory", "x")): value}
        if origin is typing.Union or isinstance(hint, types.UnionType):  # X | None
            if rng.random() < 0.3:
                return None
            inner = next(a for a in typing.get_args(hint) if a is not type(None))
            return self.a_payload() if inner is bytes else self.value(name, inner)
        if isinstance(hint, type) and issubclass(hint, msgspec.Struct):  # e.g. WorkerEnv
            hints = typing.get_type_hints(hint)
            return hint(**{f: self.value(f, hints[f]) for f in hint.__struct_fields__})
        if hint is bytes:
            if "id" in name or name == "blob":
                return self.an_id()
            return self.a_payload()
        if hint is bool:
            return rng.random() < 0.5
        if hint is int:
            return self.an_int()
        if hint is float:
            return self.a_float()
        if hint is str:
            return rng.choice(("", "x", "available", "stats", "CPU", "\x00", "é" * 40))
        raise AssertionError(f"no generator for {name}: {hint}")

    # ------------------------------------------------------------ frames

    def random_message(self) -> msgspec.Struct:
        cls = self.rng.choice(RANDOM_TYPES)
        hints = typing.get_type_hints(cls)
        return cls(**{f: self.value(f, hints[f]) for f in cls.__struct_fields__})

    def garbage(self) -> bytes:
        rng = self.rng
        return _frame_body(rng.randbytes(rng.randrange(0, 64)))

    def mutated(self) -> bytes:
        rng = self.rng
        body = bytearray(P.encoder.encode(self.random_message()))
        for _ in range(rng.randrange(1, 5)):
            if not body:
                break
            i = rng.randrange(len(body))
            how = rng.randrange(4)
            if how == 0:
                body[i] ^= 1 << rng.randrange(8)
            elif how == 1:
                body[i] = rng.randrange(256)
            elif how == 2:
                body.insert(i, rng.randrange(256))
            else:
                del body[i : i + rng.randrange(1, 8)]
        return _frame_body(bytes(body))


def hostile_list(t: Targets) -> list[tuple[str, list[msgspec.Struct | bytes], str]]:
    """(what, frames, outcome): outcome "dropped" or "heard" (the kernel went on)."""
    x = b"\x80\x04N."  # pickle of None
    return [
        ("hello twice", [P.WorkerHello(1)], "dropped"),
        ("no results for a 1-return task", [P.TaskDone(SELF, [], False)], "dropped"),
        ("two results for a 1-return task", [P.TaskDone(SELF, [x, x], False)], "dropped"),
        ("an error without its payload", [P.TaskDone(SELF, [], True)], "dropped"),
        (
            "a stream count for a plain task",
            [P.TaskDone(SELF, [x], False, stream_count=5)],
            "dropped",
        ),
        ("done for a task it never ran", [P.TaskDone(t.stream, [x], False)], "heard"),
        ("an item of the driver's stream", [P.StreamItem(t.stream, 4, x, False)], "dropped"),
        ("an item of its own non-stream", [P.StreamItem(SELF, 1, x, False)], "heard"),
        ("taking the driver's stream", [P.StreamNext(0, t.stream, 3, 0.0)], "dropped"),
        ("a negative stream index", [P.StreamNext(7, SELF, -1, 0.0)], "dropped"),
        ("an index past the id space", [P.StreamNext(7, SELF, 1 << 32, 0.0)], "dropped"),
        ("releasing the driver's stream", [P.ReleaseStream(t.stream)], "dropped"),
        ("releasing objects it never held", [P.ReleaseObjects([t.small, t.large] * 3)], "heard"),
        ("a put over the driver's object", [P.PutObject(t.small, x)], "dropped"),
        ("a put over its own result", [P.PutObject(SELF_RETURN, x)], "dropped"),
        ("a put of a future stream item", [P.PutObject(t.stream + b"\x09\0\0\0", x)], "dropped"),
        (
            "a put with a malformed refs header",
            [P.PutObject(SELF + bytes(4), refs.MARKER)],
            "heard",
        ),
        ("a negative segment", [P.ReserveSegment(5, -4096)], "dropped"),
        ("dropping a segment never reserved", [P.DropReservation("asyncray_nope")], "heard"),
        ("a task under its own task id", [_submit(SELF)], "dropped"),
        ("a task returning the driver's object", [_submit(os.urandom(24), [t.small])], "dropped"),
        ("an actor call under its own id", [_call(SELF)], "dropped"),
        ("a wait for a billion", [P.WaitObjects(3, [t.small], 10**9, 0.0)], "heard"),
        ("a wait for minus five", [P.WaitObjects(4, [t.small], -5, 1e300)], "heard"),
        ("a get that waits for 1e300 s", [P.GetObjects(5, [SELF_RETURN], 1e300)], "heard"),
        ("a NaN timeout", [P.GetObjects(6, [SELF_RETURN], math.nan)], "heard"),
        ("an unknown query", [P.QueryState(8, "nonsense", "\x00")], "heard"),
        ("output on stream 99", [P.Log(99, "")], "heard"),
        ("cancelling a waiter it never had", [P.CancelWaiter(123456)], "heard"),
        (
            "actor messages from a task worker",
            [P.ActorStarted(True, b""), P.ActorExiting(SELF)],
            "heard",
        ),
        (
            "a call to run a task",
            [P.ExecuteTask(SELF, b"", b"", "", b"", [], [], 1, b"", {}, [])],
            "dropped",
        ),
        ("a reply", [P.ObjectsReply(1, [None], [False], False)], "dropped"),
        ("a shutdown", [P.Shutdown()], "dropped"),
        ("an oversized frame", [P.HEADER.pack(P.MAX_FRAME + 1)], "dropped"),
        ("a queue call with no such op", [P.QueueOp(9, t.queue, 99)], "dropped"),
        ("a queue put of nothing", [P.QueueOp(9, t.queue, P.QUEUE_PUT, [])], "dropped"),
        ("a queue batch of -1", [P.QueueOp(9, t.queue, P.QUEUE_GET_BATCH, [], -1)], "dropped"),
        ("a queue over the driver's", [P.CreateQueue(t.queue, 1)], "dropped"),
        ("a bundle of -4 CPUs", [_group([{"CPU": 5.0}, {"CPU": -4.0}])], "dropped"),
        ("a bundle of NaN CPUs", [_group([{"CPU": math.nan}])], "dropped"),
        ("a zygote message", [_frame_body(P.encoder.encode(P.Reaped(1, 0)))], "dropped"),
    ]


def _submit(task_id: bytes, return_ids: list[bytes] | None = None) -> P.SubmitTask:
    rids = return_ids if return_ids is not None else [task_id + b"\x01\0\0\0"]
    return P.SubmitTask(task_id, b"f" * 16, "t", b"", [], rids, {}, 0, b"")


def _group(bundles: list[dict[str, float]]) -> P.CreatePlacementGroup:
    return P.CreatePlacementGroup(os.urandom(16), bundles, "PACK", "", "", False, b"")


def _call(task_id: bytes) -> P.CallActor:
    return P.CallActor(task_id, b"a" * 16, "m", b"", [], [task_id + b"\x01\0\0\0"], "", 0)


def _encode(item: msgspec.Struct | bytes) -> bytes:
    return item if isinstance(item, bytes) else P.frame(item)  # bytes: already on the wire


class Referee:
    """Runs rounds and keeps the score; fails on anything but the allowed outcomes."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        self.counts: collections.Counter[str] = collections.Counter()
        self.totals = ray.cluster_resources()

    def play(
        self,
        kind: str,
        frames: list[bytes],
        expect: str | None = None,
        what: str = "",
        actor: typing.Any = None,
    ) -> str:
        self.caplog.clear()
        try:
            ref = hostile.remote(frames) if actor is None else actor.send.remote(frames)
            outcome = ray.get(ref, timeout=20)
        except (WorkerCrashedError, ActorUnavailableError) as e:
            text = str(e)
            assert "dropped by the runtime" in text, text
            pid = text.split("pid=")[1].split(",")[0]
            assert any(
                f"pid={pid}:" in r.getMessage() and r.levelno == logging.ERROR
                for r in self.caplog.records
            ), "a dropped child is reported at ERROR with its pid"
            outcome = "dropped"
        except ActorDiedError as e:
            # A mutated frame may decode to ActorExiting: the actor said it exits.
            assert actor is not None and "exit_actor()" in str(e), e
            outcome = "actor exited"
        except (TaskCancelledError, RayTaskError) as e:
            # A random CancelTask may name the task itself: it is cancelled.
            assert isinstance(e, TaskCancelledError) or isinstance(e.cause, TaskCancelledError), e
            outcome = "cancelled"
        except Exception as e:
            # A random TaskDone for itself may seal a garbage value: get raises unpickling it.
            assert kind != "hostile", f"{kind}: {type(e).__name__}: {e}"
            outcome = f"undecodable value ({type(e).__name__})"
        if expect is not None:
            assert outcome == expect, f"{kind} ({what}): expected {expect}, got {outcome}"
        self.counts[f"{kind}: {outcome}"] += 1
        fatal = [r for r in self.caplog.records if r.name == "asyncio" and r.levelno >= 40]
        assert not fatal, f"{kind}: the event loop logged {fatal[0].getMessage()}"
        self.check_runtime()
        return outcome

    def check_runtime(self) -> None:
        wait_for_condition(lambda: ray.available_resources() == self.totals, timeout=10)
        assert ray.get(one.remote(), timeout=10) == 1


@pytest.fixture
def arena(ray_start, caplog, tmp_path):
    """Sentinels the driver owns (a small and a large object, an open stream) and a referee."""
    caplog.set_level(logging.WARNING)
    small = ray.put("small sentinel")
    large = ray.put(b"L" * (1 << 20))  # shared memory
    go_on = tmp_path / "go-on"
    gen = numbers.remote(3, str(go_on))
    third = gen._task_id + (3).to_bytes(4, "little")
    wait_for_condition(lambda: bool(ray.wait([ray.ObjectRef(third)], timeout=0)[0]))
    queue = Queue()
    targets = Targets(small.binary(), large.binary(), gen._task_id, queue._id)
    yield targets, Referee(caplog)
    # The driver's objects and stream came through every round untouched.
    go_on.touch()
    assert ray.get([small, large], timeout=10) == ["small sentinel", b"L" * (1 << 20)]
    assert ray.get(read.remote([small, large]), timeout=10) == ["small sentinel", b"L" * (1 << 20)]
    assert [ray.get(r, timeout=10) for r in gen] == [0, 1, 2]


def test_each_hostile_message_is_heard_or_drops_its_child(arena):
    targets, referee = arena
    for what, items, expect in hostile_list(targets):
        referee.play("hostile", [_encode(i) for i in items], expect=expect, what=what)
    assert referee.counts["hostile: dropped"] >= 20


def test_an_actor_with_a_hostile_stream_is_dropped_and_restarted(arena):
    targets, referee = arena
    actor = HostileActor.options(max_restarts=-1).remote()
    x = b"\x80\x04N."
    rng = random.Random(SEED)
    fuzz = Fuzzer(rng, targets)
    cases = [
        ("garbage", [fuzz.garbage()], "dropped"),
        ("hello twice", [P.frame(P.WorkerHello(1))], "dropped"),
        ("no results", [P.frame(P.TaskDone(SELF, [], False))], "dropped"),
        ("two results", [P.frame(P.TaskDone(SELF, [x, x], False))], "dropped"),
        ("an error without its payload", [P.frame(P.TaskDone(SELF, [], True))], "dropped"),
        (
            "a stream count for a plain call",
            [P.frame(P.TaskDone(SELF, [x], False, stream_count=0))],
            "dropped",
        ),
        (
            "done for a call it never ran",
            [P.frame(P.TaskDone(targets.stream, [x], False))],
            "heard",
        ),
        ("started again", [P.frame(P.ActorStarted(True, b""))], "heard"),
        (
            "an item of the driver's stream",
            [P.frame(P.StreamItem(targets.stream, 4, x, False))],
            "dropped",
        ),
    ]
    for what, frames, expect in cases:
        referee.play("actor", frames, expect=expect, what=what, actor=actor)
    for _ in range(ROUNDS // 4):
        if referee.play("actor", [fuzz.mutated()], actor=actor) == "actor exited":
            actor = HostileActor.options(max_restarts=-1).remote()
    assert ray.get(actor.send.remote([]), timeout=10) == "heard"


def test_random_and_mutated_frames_never_hang_or_corrupt_the_kernel(arena):
    targets, referee = arena
    rng = random.Random(SEED)
    fuzz = Fuzzer(rng, targets)
    for _ in range(ROUNDS):
        referee.play("garbage", [fuzz.garbage()])
        referee.play("mutated", [fuzz.mutated()])
        # A few messages in one write: later ones act on what earlier ones did.
        msgs = [fuzz.random_message() for _ in range(rng.randrange(1, 4))]
        referee.play("random messages", [P.frame(m) for m in msgs])
    print(f"seed {SEED}:", dict(sorted(referee.counts.items())))
    assert referee.counts["garbage: dropped"] >= ROUNDS // 2
