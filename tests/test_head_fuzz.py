"""Frame fuzzing from an admitted driver's socket: a bad driver is dropped, nobody else.

A raw client is admitted by a shared head (a hello with the token read from
the head's 0600 file), then sends what no asyncray driver sends: garbage,
mutated messages, length prefixes over the limit, messages only a worker or
only the runtime sends, handshake and zygote messages, hostile values aimed
at another driver's objects. Each round ends with a ``QueryState`` sentinel:
the round is *heard* when its reply comes back, *dropped* when the head
closes the connection instead — and then the head log says "dropped driver"
with the reason. Meanwhile this test process is a well-behaved driver of the
same head (``connected``): its objects survive every round, the head logs no
internal error, resources come back to the total, and a task runs at the end,
here and in a new driver. Random tasks, actors, groups and queues from raw
drivers go with their jobs; and pickles that leave a mark when loaded, in
every payload field a driver fills, are loaded by workers, never by the head.

Seeded (``ASYNCRAY_FUZZ_SEED``); ``ASYNCRAY_HEAD_FUZZ_ROUNDS`` sets the rounds
of the random loop.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import pickle
import random
import time
import types
import typing

import msgspec
import numpy as np
import pytest
from _head import Head
from _helpers import wait_for_condition
from test_head_security import hello, raw_connect, read_answer, token_of

import asyncray as ray
from asyncray._wire import protocol as P
from asyncray._wire.framing import FrameTooLarge, take_frames

SEED = int(os.environ.get("ASYNCRAY_FUZZ_SEED", "20261204"))
ROUNDS = int(os.environ.get("ASYNCRAY_HEAD_FUZZ_ROUNDS", "300"))

pytestmark = pytest.mark.timeout(60 + ROUNDS * 0.1)

# The QueryState that ends each round; no fuzzed request uses this id.
SENTINEL = 987_654_321

# Messages a driver may send that *act* (start work, take resources): sent
# at random they would rightly run or hold things. Their hostile forms are
# in the fixed list instead.
ACTIONS = {P.SubmitTask, P.CreateActor, P.CallActor, P.CreatePlacementGroup, P.CreateQueue}
RANDOM_TYPES = [t for t in typing.get_args(P.Message) if t not in ACTIONS]

# What only a worker sends, and what only the runtime sends: always dropped.
CHILD_ONLY = {P.TaskDone, P.StreamItem, P.ActorStarted, P.ActorExiting, P.WorkerHello, P.Log}
RUNTIME_ONLY = {
    P.ExecuteTask,
    P.StartActor,
    P.ExecuteActorCall,
    P.StreamCredit,
    P.CancelActorCall,
    P.Shutdown,
    P.RevokeTasks,
    P.DropMappings,
    P.InterruptTask,
    P.SetJob,
    *P.REPLY_TYPES,
}
DRIVER_TYPES = [t for t in RANDOM_TYPES if t not in CHILD_ONLY | RUNTIME_ONLY]


def _frame_body(body: bytes) -> bytes:
    return P.HEADER.pack(len(body)) + body


class Client:
    """A raw driver: admitted, then speaks whatever it is told to."""

    def __init__(self, head: Head) -> None:
        self.sock = raw_connect(head.socket)
        self.sock.sendall(hello(token_of(head), namespace="fuzz"))
        answer = read_answer(self.sock)
        assert type(answer) is P.Welcome, answer
        self.job_id = answer.job_id

    def play(self, data: bytes) -> str:
        """Send ``data`` and the sentinel; "heard" if it is answered, "dropped" if cut off."""
        sock = self.sock
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data + P.frame(P.QueryState(SENTINEL, "available")))
        buf = bytearray()
        while True:
            try:
                chunk = sock.recv(1 << 16)
            except ConnectionResetError:
                return "dropped"
            if not chunk:
                return "dropped"
            buf += chunk
            try:
                msgs = take_frames(buf, P.decoder.decode)
            except (FrameTooLarge, msgspec.DecodeError) as e:
                raise AssertionError(f"the head sent a frame no driver can read: {e}") from e
            for msg in msgs:
                if type(msg) is P.StateReply and msg.req_id == SENTINEL:
                    return "heard"

    def close(self) -> None:
        self.sock.close()


class Fuzzer:
    """Seeded generators of what a driver should never send."""

    def __init__(self, rng: random.Random, ids: list[bytes]) -> None:
        self.rng = rng
        self.ids = ids  # the well-behaved driver's objects

    def an_id(self) -> bytes:
        rng = self.rng
        pick = rng.random()
        if pick < 0.5:
            return rng.choice(self.ids)
        if pick < 0.8:
            return rng.randbytes(rng.choice((16, 24, 28)))
        return rng.randbytes(rng.randrange(0, 40))

    def value(self, name: str, hint: typing.Any) -> typing.Any:
        rng = self.rng
        origin = typing.get_origin(hint)
        if origin is list:
            (inner,) = typing.get_args(hint)
            return [self.value(name, inner) for _ in range(rng.choice((0, 1, 2, 3, 40)))]
        if origin is dict:
            _, value_hint = typing.get_args(hint)
            return {rng.choice(("CPU", "GPU", "memory", "x")): self.value(name, value_hint)}
        if origin is typing.Union or isinstance(hint, types.UnionType):  # X | None
            if rng.random() < 0.3:
                return None
            inner = next(a for a in typing.get_args(hint) if a is not type(None))
            return self.value(name, inner)
        if isinstance(hint, type) and issubclass(hint, msgspec.Struct):  # e.g. WorkerEnv
            hints = typing.get_type_hints(hint)
            return hint(**{f: self.value(f, hints[f]) for f in hint.__struct_fields__})
        if hint is bytes:
            if "id" in name:
                return self.an_id()
            return rng.randbytes(rng.randrange(0, 32))
        if hint is bool:
            return rng.random() < 0.5
        if hint is int:
            return rng.choice((0, 1, -1, 2, 7, 1 << 31, (1 << 32) - 1, (1 << 63) - 1, -(1 << 63)))
        if hint is float:
            return rng.choice((0.0, -1.0, 1e-3, 0.5, 1e300, math.inf, -math.inf, math.nan))
        if hint is str:
            return rng.choice(("", "x", "available", "stats", "status", "\x00", "é" * 40))
        raise AssertionError(f"no generator for {name}: {hint}")

    def random_message(self) -> msgspec.Struct:
        rng = self.rng
        # Mostly what a driver does send (heard or dropped for its values).
        cls = rng.choice(DRIVER_TYPES if rng.random() < 0.75 else RANDOM_TYPES)
        hints = typing.get_type_hints(cls)
        return cls(**{f: self.value(f, hints[f]) for f in cls.__struct_fields__})

    def garbage(self) -> bytes:
        return _frame_body(self.rng.randbytes(self.rng.randrange(0, 64)))

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

    def frames(self) -> bytes:
        rng = self.rng
        out = []
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            pick = rng.random()
            if pick < 0.25:
                out.append(self.garbage())
            elif pick < 0.6:
                out.append(self.mutated())
            elif pick < 0.97:
                out.append(P.frame(self.random_message()))
            else:
                out.append(P.HEADER.pack(rng.randrange(P.MAX_FRAME + 1, 1 << 32)))
        return b"".join(out)


def hostile_list(small: bytes, large: bytes) -> list[tuple[str, bytes, str]]:
    """(what, bytes on the wire, outcome): "dropped", or "heard" (the head went on)."""
    x = b"\x80\x04N."  # pickle of None: the head must never unpickle it anyway
    f = P.frame
    task = os.urandom(24)
    hello_again = P.ClientHello(P.HANDSHAKE_VERSION, "t", 1, "ns", False)
    cases: list[tuple[str, bytes, str]] = [
        ("garbage", _frame_body(b"\xc1\xc1\xc1"), "dropped"),
        ("an empty frame", _frame_body(b""), "dropped"),
        ("a length over the limit", P.HEADER.pack(P.MAX_FRAME + 1), "dropped"),
        ("the largest length there is", P.HEADER.pack((1 << 32) - 1), "dropped"),
        ("an unknown tag", _frame_body(P.encoder.encode([999, 1, 2])), "dropped"),
        ("a second hello", f(hello_again), "dropped"),
        ("a welcome", f(P.Welcome("j", "n", "x", {}, "t", "/d", "/s", 1, "/x")), "dropped"),
        ("a zygote message", f(P.Spawn(1, "task", {"LD_PRELOAD": "/x"})), "dropped"),
        ("a valid message, then garbage", f(P.QueryState(1, "stats")) + b"\1\0\0\0\xc1", "dropped"),
        # What only a worker sends.
        ("TaskDone", f(P.TaskDone(task, [x], False)), "dropped"),
        ("StreamItem", f(P.StreamItem(task, 1, x, False)), "dropped"),
        ("WorkerHello", f(P.WorkerHello(1)), "dropped"),
        ("Log", f(P.Log(1, "spoofed output")), "dropped"),
        ("ActorStarted", f(P.ActorStarted(True, b"")), "dropped"),
        ("ActorExiting", f(P.ActorExiting(task)), "dropped"),
        # What only the runtime sends.
        ("ExecuteTask", f(P.ExecuteTask(task, b"", b"", "", x, [], [], 1, b"", {}, [])), "dropped"),
        ("ObjectsReply", f(P.ObjectsReply(1, [x], [False], False)), "dropped"),
        ("ErrorReply", f(P.ErrorReply(1, "no")), "dropped"),
        ("Shutdown", f(P.Shutdown()), "dropped"),
        ("SetJob", f(P.SetJob("02000000", "ns")), "dropped"),
        ("DropMappings", f(P.DropMappings(["asyncray_x"])), "dropped"),
        # Hostile values in messages a driver does send.
        ("a put over another driver's object", f(P.PutObject(small, x)), "dropped"),
        ("a put over another driver's large object", f(P.PutObject(large, x)), "dropped"),
        ("releasing objects it never held", f(P.ReleaseObjects([small, large] * 3)), "heard"),
        ("pinning another driver's object", f(P.HoldObjects([small, large])), "dropped"),
        ("a negative segment", f(P.ReserveSegment(5, -4096)), "dropped"),
        ("a segment never reserved", f(P.DropReservation("asyncray_nope")), "heard"),
        ("views of segments it never had", f(P.SegmentMaps([], ["asyncray_nope"])), "heard"),
        ("a wait for a billion", f(P.WaitObjects(3, [small], 10**9, 0.0)), "heard"),
        ("a NaN timeout", f(P.GetObjects(6, [os.urandom(28)], math.nan)), "heard"),
        ("a get of another driver's object", f(P.GetObjects(7, [small], 0.0)), "heard"),
        ("an unknown query", f(P.QueryState(8, "nonsense", "\x00")), "heard"),
        ("a negative stream index", f(P.StreamNext(7, task, -1, 0.0)), "dropped"),
        ("a queue op no queue has", f(P.QueueOp(9, os.urandom(16), 99)), "dropped"),
        (
            "a bundle of -4 CPUs",
            f(P.CreatePlacementGroup(os.urandom(16), [{"CPU": -4.0}], "PACK", "", "", False, b"")),
            "dropped",
        ),
        (
            "a bundle of NaN CPUs",
            f(
                P.CreatePlacementGroup(
                    os.urandom(16), [{"CPU": math.nan}], "PACK", "", "", False, b""
                )
            ),
            "dropped",
        ),
    ]
    return cases


def _dropped_count(head: Head) -> int:
    return head.read_log().count("dropped driver")


def _wait_dropped(head: Head, count: int) -> str:
    deadline = time.monotonic() + 10
    while _dropped_count(head) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return head.read_log()


@ray.remote
def double(x):
    return 2 * x


def _object_count() -> int:
    from asyncray._clients import base

    return base.current().query("stats")["objects"]  # type: ignore[union-attr]


def test_a_driver_sending_what_no_driver_sends_is_dropped_alone(head, connected):
    before = _object_count()
    small = ray.put("mine")
    large = ray.put(np.arange(300_000, dtype=np.int64))
    total = ray.cluster_resources()
    dropped = 0
    for what, data, expected in hostile_list(small.binary(), large.binary()):
        client = Client(head)
        try:
            outcome = client.play(data)
        finally:
            client.close()
        assert outcome == expected, (what, outcome, head.read_log()[-2000:])
        if outcome == "dropped":
            dropped += 1
            log = _wait_dropped(head, dropped)
            assert _dropped_count(head) == dropped, (what, log[-2000:])
            last = log[log.rindex("dropped driver") :].splitlines()[0]
            assert f"(job {client.job_id})" in last, (what, last)
    log = head.read_log()
    assert "internal error" not in log, log
    assert "only a worker sends" in log and "only the runtime sends" in log
    assert "over the limit" in log and "no asyncray message" in log
    _still_serving(head, small, large, total)
    del small, large  # nobody else pinned them: they go
    wait_for_condition(lambda: _object_count() == before, timeout=10)


def test_random_and_mutated_frames_from_an_admitted_driver(head, connected):
    small = ray.put("mine")
    large = ray.put(np.arange(300_000, dtype=np.int64))
    total = ray.cluster_resources()
    rng = random.Random(SEED)
    fuzz = Fuzzer(rng, [small.binary(), large.binary()])
    outcomes: collections.Counter[str] = collections.Counter()
    kept = None
    for i in range(ROUNDS):
        if kept is None:
            kept = Client(head)
        client = kept
        data = fuzz.frames()
        try:
            outcome = client.play(data)
        except TimeoutError:
            pytest.fail(f"round {i}: the head neither answered nor dropped {data[:200]!r}")
        outcomes[outcome] += 1
        if outcome == "dropped" or rng.random() < 0.2:
            client.close()  # sometimes leave mid-stream, with requests still waiting
            kept = None
    if kept is not None:
        kept.close()
    assert min(outcomes["dropped"], outcomes["heard"]) > ROUNDS // 10, outcomes
    log = _wait_dropped(head, outcomes["dropped"])
    assert _dropped_count(head) == outcomes["dropped"], outcomes
    assert "internal error" not in log, log
    assert "Traceback" not in log, log
    _still_serving(head, small, large, total)


ACTION_ROUNDS = int(os.environ.get("ASYNCRAY_HEAD_FUZZ_ACTION_ROUNDS", "60"))


def test_random_actions_from_a_driver_are_released_with_its_job(head, connected):
    """Tasks, actors, groups and queues with hostile values, then the driver leaves.

    Whatever the head made of them (ran, queued, refused, dropped the driver),
    all of it goes with the job: resources come back to the total.
    """
    small = ray.put("mine")
    large = ray.put(np.arange(300_000, dtype=np.int64))
    total = ray.cluster_resources()
    rng = random.Random(SEED + 1)
    fuzz = Fuzzer(rng, [small.binary(), large.binary()])
    outcomes: collections.Counter[str] = collections.Counter()
    actions = sorted(ACTIONS, key=lambda t: t.__name__)
    for _ in range(ACTION_ROUNDS):
        client = Client(head)
        try:
            msgs = []
            for _ in range(rng.randrange(1, 4)):
                cls = rng.choice(actions)
                hints = typing.get_type_hints(cls)
                fields = {f: fuzz.value(f, hints[f]) for f in cls.__struct_fields__}
                if "detached" in fields:
                    fields["detached"] = False  # a detached one rightly outlives its job
                msgs.append(cls(**fields))
            outcomes[client.play(P.frame_many(msgs))] += 1
        finally:
            client.close()
    assert min(outcomes["heard"], outcomes["dropped"]) > ACTION_ROUNDS // 10, outcomes
    log = _wait_dropped(head, outcomes["dropped"])
    assert _dropped_count(head) == outcomes["dropped"], outcomes
    assert "internal error" not in log, log
    _still_serving(head, small, large, total)


class _Marker:
    """Unpickling it leaves ``{path}.{pid of the process that unpickled it}``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        code = f"import os; open({self.path!r} + '.' + str(os.getpid()), 'w').close()"
        return (exec, (code,))


def test_the_head_unpickles_no_payload_of_a_driver(head, tmp_path):
    """Pickles that leave a mark in every payload field a driver fills; none from the head."""
    marks_dir = tmp_path / "marks"
    marks_dir.mkdir()
    marker = str(marks_dir / "unpickled")
    evil = pickle.dumps(_Marker(marker))
    pickle.loads(evil)  # the mark works: this process's
    assert os.listdir(marks_dir) == [f"unpickled.{os.getpid()}"]
    os.unlink(f"{marker}.{os.getpid()}")

    def an_id(n: int = 24) -> bytes:
        return os.urandom(n)

    put, failed = an_id() + bytes(4), an_id() + bytes(4)
    func, task, dep_task, actor, queue = an_id(16), an_id(), an_id(), an_id(16), an_id(16)
    msgs: list[msgspec.Struct] = [
        P.PutObject(put, evil),
        P.PutObject(failed, evil, is_error=True),
        P.RegisterFunction(func, evil),
        # Run (the worker unpickles, as it may), fail, retry on exceptions named by a pickle.
        P.SubmitTask(task, func, "t", evil, [put], [task + b"\1\0\0\0"], {}, 2, evil),
        # A dependency that failed: its error goes to the return as it is.
        P.SubmitTask(dep_task, func, "d", evil, [failed], [dep_task + b"\1\0\0\0"], {}, 0, b""),
        P.CreateActor(
            actor, func, 1, "evil", "fuzz", False, False, evil, [], {}, {}, 0, "Evil", evil, evil
        ),
        P.CallActor(an_id(), actor, "m", evil, [], [an_id() + b"\1\0\0\0"], "", 0),
        P.CreateQueue(queue, 0),
        P.QueueOp(0, queue, P.QUEUE_PUT, [evil]),
        P.QueueOp(0, queue, P.QUEUE_PUT_BATCH, [evil, evil]),
        P.CreatePlacementGroup(an_id(16), [{"CPU": 1.0}], "PACK", "", "", False, evil),
        P.GetObjects(1, [put, failed, task + b"\1\0\0\0", dep_task + b"\1\0\0\0"], 5.0),
        P.QueueOp(2, queue, P.QUEUE_GET_BATCH, [], 2),
    ]
    client = Client(head)
    try:
        assert client.play(P.frame_many(msgs)) == "heard"
        # Whatever ran on workers has run (or failed) by the time the gets are answered.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
            n.startswith("unpickled.") for n in os.listdir(marks_dir)
        ):
            time.sleep(0.05)
        time.sleep(1.0)  # and the actor, the retries, the call
    finally:
        client.close()
    head_pids = {str(p.pid) for p in head.processes()[:2]}  # the head and its zygote
    marks = {n.rsplit(".", 1)[1] for n in os.listdir(marks_dir)}
    assert marks, "no worker ran the task: the test did not exercise the payloads"
    assert not marks & head_pids, f"the head unpickled a driver's payload: {marks}"
    log = head.read_log()
    assert "internal error" not in log, log
    out = head.run_driver(
        "import asyncray as ray\nray.init(address='auto')\n"
        "print(ray.get(ray.remote(lambda: 21 * 2).remote()))"
    )
    assert out.stdout.strip() == "42"


def _still_serving(head: Head, small, large, total) -> None:
    """The head runs, the well-behaved driver's objects are intact, and tasks run."""
    assert head.processes(), "the head died"
    assert ray.get(small) == "mine"
    assert int(ray.get(large).sum()) == int(np.arange(300_000, dtype=np.int64).sum())
    assert ray.get([double.remote(i) for i in range(4)]) == [0, 2, 4, 6]
    from asyncray._clients import base

    me = ray.get_runtime_context().get_job_id()
    # Every raw driver's job was released, dropped or not: only this one is left.
    wait_for_condition(
        lambda: [d["job_id"] for d in base.current().query("status")["drivers"]] == [me],  # type: ignore[union-attr]
        timeout=10,
    )
    try:
        wait_for_condition(lambda: ray.available_resources() == total, timeout=10)
    except AssertionError:
        status = base.current().query("status")  # type: ignore[union-attr]
        raise AssertionError(
            f"resources not back: {ray.available_resources()} of {total}\n{status}"
        ) from None
    out = head.run_driver(
        "import asyncray as ray\nray.init(address='auto')\n"
        "print(ray.get(ray.remote(lambda: 21 * 2).remote()))"
    )
    assert out.stdout.strip() == "42"
