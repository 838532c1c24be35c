"""Each concurrency group of an async actor runs on its own event loop (issue #15).

As in Ray 2.60: a method of group "io" that blocks its loop with a sync call
stalls neither the default group nor another group; a group keeps its own
bound; cancel, ``await ref``, generators and ``exit_actor()`` work from a
group's loop.
"""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
from _helpers import wait_for_file, wait_for_process_exit

import asyncray
from asyncray.exceptions import ActorDiedError, TaskCancelledError

# A call that must not be stalled by the blocked group answers well within this.
ANSWER_S = 10.0
# How long a blocked method waits for its gate before giving up (never, in a passing run).
GATE_S = 20.0
POLL_S = 0.01


@asyncray.remote
def _double(x: int) -> int:
    return 2 * x


@asyncray.remote(concurrency_groups={"io": 2, "other": 1})
class Grouped:
    def __init__(self) -> None:
        self.active = 0
        self.most = 0

    async def ping(self) -> str:
        return threading.current_thread().name

    @asyncray.method(concurrency_group="io")
    async def block(self, started: str, gate: str) -> bool:
        open(started, "w").close()
        return wait_for_file(gate, GATE_S)  # a sync wait: this group's loop is stalled

    @asyncray.method(concurrency_group="other")
    async def other(self) -> str:
        return threading.current_thread().name

    @asyncray.method(concurrency_group="io")
    async def bounded(self) -> tuple[int, str]:
        self.active += 1  # one loop per group: no lock needed within it
        self.most = max(self.most, self.active)
        await asyncio.sleep(0.2)
        self.active -= 1
        return self.most, threading.current_thread().name

    @asyncray.method(concurrency_group="io")
    async def forever(self, started: str, cancelled: str) -> None:
        open(started, "w").close()
        try:
            await asyncio.sleep(GATE_S)
        except asyncio.CancelledError:
            open(cancelled, "w").close()
            raise

    @asyncray.method(concurrency_group="io")
    async def nested(self, x: int) -> tuple[int, int, str]:
        # Not the loop that reads the socket: the replies come by a helper thread.
        first = await _double.remote(x)
        second = await asyncray.get_async(_double.remote(first))
        return first, second, threading.current_thread().name

    @asyncray.method(concurrency_group="io")
    async def count(self, n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            await asyncio.sleep(0)
            yield (i, threading.current_thread().name)

    @asyncray.method(concurrency_group="io")
    async def pid(self) -> int:
        return os.getpid()

    @asyncray.method(concurrency_group="io")
    async def wait_gate(self, started: str, gate: str) -> str:
        open(started, "w").close()
        while not os.path.exists(gate):
            await asyncio.sleep(POLL_S)
        return "finished"

    @asyncray.method(concurrency_group="other")
    async def leave(self) -> None:
        asyncray.actor.exit_actor()

    async def leave_default(self) -> None:
        asyncray.actor.exit_actor()


@pytest.mark.timeout(40)
def test_blocked_group_stalls_neither_default_nor_other_group(ray_start, tmp_path):
    actor = Grouped.remote()
    started, gate = str(tmp_path / "started"), str(tmp_path / "gate")
    blocked = actor.block.remote(started, gate)
    assert wait_for_file(started)
    # Ray names the thread of a group's loop "AsyncIO Thread: <group>".
    assert asyncray.get(actor.ping.remote(), timeout=ANSWER_S) == "MainThread"
    assert asyncray.get(actor.other.remote(), timeout=ANSWER_S) == "AsyncIO Thread: other"
    open(gate, "w").close()
    assert asyncray.get(blocked, timeout=ANSWER_S) is True


@pytest.mark.timeout(30)
def test_group_keeps_its_max_concurrency(ray_start):
    actor = Grouped.remote()
    results = asyncray.get([actor.bounded.remote() for _ in range(5)], timeout=ANSWER_S)
    assert max(most for most, _ in results) == 2
    assert {thread for _, thread in results} == {"AsyncIO Thread: io"}


@pytest.mark.timeout(30)
def test_cancel_a_call_running_in_a_group(ray_start, tmp_path):
    actor = Grouped.remote()
    started, cancelled = str(tmp_path / "started"), str(tmp_path / "cancelled")
    ref = actor.forever.remote(started, cancelled)
    assert wait_for_file(started)
    asyncray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        asyncray.get(ref, timeout=ANSWER_S)
    assert os.path.exists(cancelled)  # the method's CancelledError handler ran
    assert asyncray.get(actor.ping.remote(), timeout=ANSWER_S) == "MainThread"


@pytest.mark.timeout(30)
def test_await_refs_inside_a_group(ray_start):
    actor = Grouped.remote()
    assert asyncray.get(actor.nested.remote(3), timeout=ANSWER_S) == (6, 12, "AsyncIO Thread: io")


@pytest.mark.timeout(30)
def test_generator_in_a_group_with_backpressure(ray_start):
    actor = Grouped.remote()
    # Backpressure makes the producer wait for credit on the group's loop.
    gen = actor.count.options(_generator_backpressure_num_objects=1).remote(5)
    items = [asyncray.get(ref, timeout=ANSWER_S) for ref in gen]
    assert items == [(i, "AsyncIO Thread: io") for i in range(5)]


@pytest.mark.timeout(30)
def test_exit_actor_from_a_group_ends_the_process(ray_start):
    actor = Grouped.remote()
    pid = asyncray.get(actor.pid.remote(), timeout=ANSWER_S)
    with pytest.raises(ActorDiedError, match="INTENDED_USER_EXIT"):
        asyncray.get(actor.leave.remote(), timeout=ANSWER_S)
    wait_for_process_exit(pid)
    with pytest.raises(ActorDiedError):
        asyncray.get(actor.ping.remote(), timeout=ANSWER_S)


@pytest.mark.timeout(30)
def test_exit_actor_lets_calls_on_other_loops_finish(ray_start, tmp_path):
    actor = Grouped.remote()
    pid = asyncray.get(actor.pid.remote(), timeout=ANSWER_S)
    started, gate = str(tmp_path / "started"), str(tmp_path / "gate")
    running = actor.wait_gate.remote(started, gate)
    assert wait_for_file(started)
    with pytest.raises(ActorDiedError):
        asyncray.get(actor.leave_default.remote(), timeout=ANSWER_S)
    open(gate, "w").close()
    # The call already running on the "io" loop finished before the process exited.
    assert asyncray.get(running, timeout=ANSWER_S) == "finished"
    wait_for_process_exit(pid)
