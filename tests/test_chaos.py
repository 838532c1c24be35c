"""Chaos under load: workers and actors SIGKILLed at random while work is in flight.

Tasks (retried and not), actor calls (restartable actors with and without
call retries, actors that never restart) and streaming generators run while
a thread SIGKILLs random processes of the session. When the killing stops,
every call ends within a deadline with its value or its documented error:

- task with ``max_retries=-1``: its value;
- task with ``max_retries=0``: its value or ``WorkerCrashedError``;
- task with ``max_retries=-1`` blocked in ``get`` on such a task: its value;
- call on an actor (sync or async) with ``max_restarts=-1, max_task_retries=-1``:
  its value;
- call on an actor with ``max_restarts=-1, max_task_retries=0``: its value or
  ``ActorUnavailableError`` (it was in flight when the process died);
- call on an actor with ``max_restarts=0``: its value or ``ActorDiedError``;
- task generator: its items in order (a crashed one is run again, as in
  Ray), possibly cut short by one ``WorkerCrashedError`` item once its
  retries are used up;
- generator call on the restartable actor: all its items, in order.

Afterwards ``available_resources()`` is back to the total and the runtime
runs new work. ``test_chaos_soak`` is the same loop for longer: briefly in
the suite, for ``ASYNCRAY_SOAK_S`` seconds when set (``.ci/run`` style).
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import threading
import time

import pytest
from _helpers import wait_for_condition

import asyncray as ray
from asyncray.exceptions import (
    ActorDiedError,
    ActorUnavailableError,
    WorkerCrashedError,
)

SEED = int(os.environ.get("ASYNCRAY_CHAOS_SEED", "1404"))
# The brief run in the suite; the soak runs ASYNCRAY_SOAK_S seconds if set.
CHAOS_S = 4.0
SOAK_S = float(os.environ.get("ASYNCRAY_SOAK_S", "2"))
# A kill every 50..250 ms: several per second, yet most work finishes between kills.
KILL_GAP_S = (0.05, 0.25)
# Calls in flight at most; older ones are resolved before more are submitted.
MAX_IN_FLIGHT = 120
# Every call must end this long after the killing stops.
SETTLE_S = 30.0
WORK_S = 0.005  # each task, call and generator item takes about this long
ITEMS = 4


@ray.remote(max_retries=-1)
def sturdy(i: int) -> int:
    time.sleep(WORK_S)
    return i * i


@ray.remote(max_retries=0)
def fragile(i: int) -> int:
    time.sleep(WORK_S)
    return -i


@ray.remote(max_retries=-1)
def sturdy_parent(i: int) -> int:
    """Blocks in get (lending its CPU) on a child task: either may be killed."""
    return ray.get(sturdy.remote(i)) + 1


@ray.remote(max_retries=0)
def numbers(n: int):
    for i in range(n):
        time.sleep(WORK_S)
        yield i


@ray.remote
class Doubler:
    def double(self, x: int) -> int:
        time.sleep(WORK_S)
        return 2 * x

    def count(self, n: int):
        for i in range(n):
            time.sleep(WORK_S)
            yield i


@ray.remote
class AsyncDoubler:
    async def double(self, x: int) -> int:
        await asyncio.sleep(WORK_S)
        return 2 * x


class Chaos:
    """Submits work, kills at random, then checks that every call ended as documented."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.submitted: collections.Counter[str] = collections.Counter()
        self.kills = 0
        self.pending: collections.deque[tuple[str, object, object]] = collections.deque()
        self.stop = threading.Event()
        self.client = ray._api.client()
        # Actors: always back with every call retried; back but calls not retried.
        self.sturdy_actor = Doubler.options(max_restarts=-1, max_task_retries=-1).remote()
        self.restarting = Doubler.options(max_restarts=-1, max_task_retries=0).remote()
        self.mortal = Doubler.options(max_restarts=0).remote()
        self.sturdy_async = AsyncDoubler.options(max_restarts=-1, max_task_retries=-1).remote()

    # ------------------------------------------------------------ killing

    def kill_loop(self) -> None:
        rng = random.Random(self.rng.random())
        while not self.stop.wait(rng.uniform(*KILL_GAP_S)):
            pids = self.client.query("stats")["pids"]
            if not pids:
                continue
            try:
                os.kill(rng.choice(pids), signal.SIGKILL)
                self.kills += 1
            except ProcessLookupError:
                pass  # exited meanwhile (retired, or killed just before)

    # ------------------------------------------------------------ load

    def submit(self, i: int) -> None:
        def add(call: tuple[str, object, object]) -> None:
            self.submitted[call[0]] += 1
            self.pending.append(call)

        add(("sturdy task", sturdy.remote(i), i * i))
        add(("fragile task", fragile.remote(i), -i))
        add(("sturdy actor call", self.sturdy_actor.double.remote(i), 2 * i))
        add(("restarting actor call", self.restarting.double.remote(i), 2 * i))
        add(("mortal actor call", self.mortal.double.remote(i), 2 * i))
        add(("sturdy async actor call", self.sturdy_async.double.remote(i), 2 * i))
        if i % 3 == 0:
            add(("sturdy nested task", sturdy_parent.remote(i), i * i + 1))
        if i % 4 == 0:
            add(("task generator", numbers.remote(ITEMS), list(range(ITEMS))))
            gen = self.sturdy_actor.count.options(num_returns="streaming").remote(ITEMS)
            add(("actor generator", gen, list(range(ITEMS))))
        if i % 10 == 9:
            # The mortal actor may be dead by now: later calls get its death, a new one lives.
            self.mortal = Doubler.options(max_restarts=0).remote()

    def resolve(self, kind: str, ref: object, expected: object) -> None:
        if kind.endswith("generator"):
            self.outcomes[f"{kind}: {self._drain(kind, ref, expected)}"] += 1
            return
        try:
            value = ray.get(ref, timeout=SETTLE_S)
        except WorkerCrashedError:
            assert kind == "fragile task", kind
            self.outcomes[f"{kind}: WorkerCrashedError"] += 1
            return
        except ActorUnavailableError:
            assert kind == "restarting actor call", kind
            self.outcomes[f"{kind}: ActorUnavailableError"] += 1
            return
        except ActorDiedError:
            assert kind == "mortal actor call", kind
            self.outcomes[f"{kind}: ActorDiedError"] += 1
            return
        assert value == expected, (kind, value, expected)
        self.outcomes[f"{kind}: value"] += 1

    def _drain(self, kind: str, gen: object, expected: object) -> str:
        got = []
        deadline = time.monotonic() + SETTLE_S
        for ref in gen:  # type: ignore[attr-defined]
            try:
                got.append(ray.get(ref, timeout=max(0.1, deadline - time.monotonic())))
            except WorkerCrashedError:
                assert kind == "task generator", kind
                assert got == expected[: len(got)], (kind, got)  # type: ignore[index]
                assert next(gen, None) is None, "nothing follows the crash"  # type: ignore[call-overload]
                return "cut short by WorkerCrashedError"
        assert got == expected, (kind, got, expected)
        return "all items"

    def run(self, seconds: float) -> None:
        killer = threading.Thread(target=self.kill_loop, name="chaos-killer", daemon=True)
        killer.start()
        deadline = time.monotonic() + seconds
        i = 0
        try:
            while time.monotonic() < deadline:
                self.submit(i)
                i += 1
                while len(self.pending) > MAX_IN_FLIGHT:
                    self.resolve(*self.pending.popleft())
        finally:
            self.stop.set()
            killer.join()
        settle_by = time.monotonic() + SETTLE_S
        while self.pending:
            self.resolve(*self.pending.popleft())
        assert time.monotonic() < settle_by, "every call ended within the deadline"

    def check_runtime(self) -> None:
        totals = ray.cluster_resources()
        # Actors hold no CPU once placed; the pool may be short of workers for a moment.
        wait_for_condition(lambda: ray.available_resources() == totals, timeout=10)
        assert ray.get([sturdy.remote(3), self.sturdy_actor.double.remote(4)], timeout=10) == [9, 8]


def _report(name: str, chaos: Chaos, seconds: float) -> None:
    counts = dict(sorted(chaos.outcomes.items()))
    print(f"\n{name}: {seconds:g} s, {chaos.kills} SIGKILLs, seed {SEED}: {counts}")


@pytest.mark.timeout(90)
def test_every_call_ends_as_documented_while_processes_are_killed(ray_start):
    chaos = Chaos(SEED)
    chaos.run(CHAOS_S)
    chaos.check_runtime()
    _report("chaos", chaos, CHAOS_S)
    _check_counts(chaos)
    assert chaos.kills >= 5


def _check_counts(chaos: Chaos) -> None:
    """Each call ended exactly once; the retried kinds always with their values."""
    outcomes, submitted = chaos.outcomes, chaos.submitted
    for kind, n in submitted.items():
        assert sum(v for k, v in outcomes.items() if k.startswith(f"{kind}: ")) == n, kind
    assert outcomes["sturdy task: value"] == submitted["sturdy task"]
    assert outcomes["sturdy actor call: value"] == submitted["sturdy actor call"]
    assert outcomes["sturdy async actor call: value"] == submitted["sturdy async actor call"]
    assert outcomes["sturdy nested task: value"] == submitted["sturdy nested task"]
    assert outcomes["actor generator: all items"] == submitted["actor generator"]


@pytest.mark.soak
@pytest.mark.timeout(SOAK_S + 120)
def test_chaos_soak(ray_start):
    chaos = Chaos(SEED + 1)
    chaos.run(SOAK_S)
    chaos.check_runtime()
    _report("soak", chaos, SOAK_S)
    _check_counts(chaos)


# ---------------------------------------------------------------- single faults


@ray.remote(num_cpus=0)
def five():
    yield from range(5)


@ray.remote(max_retries=0)
def take_one_then_die() -> None:
    gen = five.remote()
    ray.get(next(gen))
    ray.wait([gen.completed()])  # all five items are stored
    os.kill(os.getpid(), signal.SIGKILL)


@ray.remote
def take_one_then_return() -> int:
    gen = five.remote()
    ray.get(next(gen))
    ray.wait([gen.completed()])
    return 1


def _objects() -> int:
    return ray._api.client().query("stats")["objects"]


def test_a_consumer_killed_mid_stream_leaves_no_items_behind(ray_start):
    assert ray.get(take_one_then_return.remote(), timeout=10) == 1
    wait_for_condition(lambda: _objects() == 0)
    with pytest.raises(WorkerCrashedError, match="SIGKILL"):
        ray.get(take_one_then_die.remote(), timeout=10)
    # The items it took and never took, the end marker and the completion object.
    wait_for_condition(lambda: _objects() == 0)


@ray.remote(max_retries=0)
def reserve_then_die(size: int) -> None:
    """What a large put or result does first, then a SIGKILL before it is stored."""
    from asyncray._clients import base
    from asyncray._wire import protocol as P

    client = base.current()
    client.request(P.ReserveSegment(client.next_req_id(), size))  # type: ignore[union-attr]
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_reservation_of_a_killed_child_is_given_back(shutdown_only):
    ray.init(num_cpus=2, object_store_memory=200 << 20)
    for _ in range(3):
        with pytest.raises(WorkerCrashedError):
            ray.get(reserve_then_die.remote(50 << 20), timeout=10)
    wait_for_condition(lambda: ray._api.client().query("stats")["store_used"] == 0, timeout=1)


@ray.remote
class Sink:
    def __init__(self):
        self.total = -1

    def hold(self, seconds: float) -> None:
        time.sleep(seconds)

    def take(self, array) -> None:
        self.total = int(array.sum())

    def total_seen(self) -> int:
        return self.total


@ray.remote(max_retries=0)
def send_large_then_die(sink) -> None:
    import numpy as np

    sink.take.remote(np.ones(4 << 20, dtype=np.uint8))  # its argument goes to shared memory
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_childs_segment_that_a_call_holds_is_kept(shutdown_only):
    """Only reservations nobody took over go with their dead writer."""
    ray.init(num_cpus=2)
    sink = Sink.remote()
    busy = sink.hold.remote(1.0)  # the call from the dying task queues behind this
    with pytest.raises(WorkerCrashedError):
        ray.get(send_large_then_die.remote(sink), timeout=10)
    ray.get(busy, timeout=10)
    assert ray.get(sink.total_seen.remote(), timeout=10) == 4 << 20
