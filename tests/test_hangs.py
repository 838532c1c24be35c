"""Programs that hung on a one-CPU runtime (issue #15), each with a deadline.

Every test runs ``init(num_cpus=1)``, where a task blocked in ``get`` must
lend its CPU for the work it waits on to run. Each ``get`` carries a timeout
well under the test's own, so a regression fails with ``GetTimeoutError``
naming the hang instead of stopping the suite.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import asyncray
from asyncray.exceptions import GetTimeoutError, TaskCancelledError, WorkerCrashedError
from tests._helpers import wait_for_file

# How long a program that should take milliseconds may take before it counts
# as hung: generous for a loaded 2-core machine, far under the test timeout.
HANG_S = 10.0


@asyncray.remote(max_retries=0)
def crash() -> None:
    os._exit(1)


@asyncray.remote
class Counter:
    def value(self) -> int:
        return 1


@asyncray.remote
def call_and_get(actor: asyncray.actor.ActorHandle) -> int:
    return asyncray.get(actor.value.remote())


@pytest.mark.timeout(30)
def test_tasks_blocked_on_an_unstarted_actor_after_a_worker_crash(shutdown_only):
    """The crash leaves no task worker; the actor's starting process is not one, so the
    queued tasks must get a worker forked for them (before: nothing ever ran them)."""
    asyncray.init(num_cpus=1)
    with pytest.raises(WorkerCrashedError):
        asyncray.get(crash.remote(), timeout=HANG_S)
    actor = Counter.remote()
    refs = [call_and_get.remote(actor), call_and_get.remote(actor)]
    try:
        assert asyncray.get(refs, timeout=HANG_S) == [1, 1]
    except GetTimeoutError:
        pytest.fail(f"two tasks blocked on actor calls did not finish within {HANG_S} s")


@asyncray.remote
class Signal:
    """An async actor whose ``wait`` returns once ``send`` was called."""

    def __init__(self) -> None:
        import asyncio

        self.event = asyncio.Event()

    async def wait(self) -> None:
        await self.event.wait()

    async def send(self) -> None:
        self.event.set()


@asyncray.remote
def wait_for(refs: list[asyncray.ObjectRef]) -> object:
    return asyncray.get(refs[0])


@asyncray.remote
def hold_cpu(marker: str, seconds: float) -> None:
    Path(marker).touch()
    time.sleep(seconds)


@pytest.mark.timeout(30)
def test_cancelled_queued_task_fails_the_task_waiting_for_it(shutdown_only, tmp_path):
    """A chain first <- middle <- last. ``middle`` is queued (sent ahead to the worker
    that runs ``hold_cpu``) when it is cancelled; ``last`` must then fail with
    TaskCancelledError, long before ``first`` could end. Before, the worker ran the
    cancelled ``middle`` anyway, blocked on ``first``, while the kernel sent it ``last``."""
    asyncray.init(num_cpus=1)
    signal = Signal.remote()
    first = wait_for.remote([signal.wait.remote()])  # blocks in get: lends the one CPU
    marker = tmp_path / "holding"
    held = hold_cpu.remote(str(marker), 0.5)  # takes the lent CPU
    middle = wait_for.remote([first])
    last = wait_for.remote([middle])
    assert wait_for_file(marker, HANG_S), "hold_cpu never started"
    asyncray.cancel(middle)
    with pytest.raises(TaskCancelledError):
        asyncray.get(middle, timeout=HANG_S)
    try:
        with pytest.raises(TaskCancelledError):
            asyncray.get(last, timeout=HANG_S)
    except GetTimeoutError:
        pytest.fail(f"the task waiting for the cancelled one still waits after {HANG_S} s")
    assert asyncray.get(held, timeout=HANG_S) is None
    asyncray.get(signal.send.remote(), timeout=HANG_S)
    assert asyncray.get(first, timeout=HANG_S) is None


@asyncray.remote
class Recorder:
    """A plain actor that logs the calls it runs, in the order it runs them."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def record(self, name: str, *_arguments: object) -> str:
        self.calls.append(name)
        return name

    def log(self) -> list[str]:
        return self.calls


@asyncray.remote(num_cpus=0)
def record_from_a_task(recorder: asyncray.actor.ActorHandle, name: str) -> str:
    return asyncray.get(recorder.record.remote(name))


@pytest.mark.timeout(30)
def test_a_call_waiting_for_its_argument_does_not_hold_back_other_callers(shutdown_only):
    """Ray orders actor calls per caller: the task's ready call runs while the driver's
    earlier call still waits for its argument (before: it waited behind it)."""
    asyncray.init(num_cpus=1)
    signal, recorder = Signal.remote(), Recorder.remote()
    assert asyncray.get(recorder.log.remote(), timeout=HANG_S) == []
    waiting = recorder.record.remote("driver", signal.wait.remote())
    other = record_from_a_task.remote(recorder, "task")
    try:
        assert asyncray.get(other, timeout=HANG_S) == "task"
    except GetTimeoutError:
        pytest.fail("another caller's call waited behind a call whose argument is pending")
    assert asyncray.wait([waiting], timeout=0)[0] == []
    asyncray.get(signal.send.remote(), timeout=HANG_S)
    assert asyncray.get(waiting, timeout=HANG_S) == "driver"
    assert asyncray.get(recorder.log.remote(), timeout=HANG_S) == ["task", "driver"]


@pytest.mark.timeout(30)
def test_calls_of_one_caller_keep_their_order_behind_a_pending_argument(shutdown_only):
    asyncray.init(num_cpus=1)
    signal, recorder = Signal.remote(), Recorder.remote()
    first = recorder.record.remote("first", signal.wait.remote())
    second = recorder.record.remote("second")
    # Bounded: "second" must still be waiting, not merely slow to show up.
    assert asyncray.wait([second], timeout=0.2)[0] == []
    asyncray.get(signal.send.remote(), timeout=HANG_S)
    assert asyncray.get([first, second], timeout=HANG_S) == ["first", "second"]
    assert asyncray.get(recorder.log.remote(), timeout=HANG_S) == ["first", "second"]


@pytest.mark.timeout(30)
def test_cancelling_a_call_waiting_for_its_argument_releases_its_callers_next_calls(
    shutdown_only,
):
    """Before, the cancelled call stayed at the head of the mailbox, and the calls behind
    it waited for ever (Ray 2.60 hangs too: see docs/ray-compatibility.md)."""
    asyncray.init(num_cpus=1)
    signal, recorder = Signal.remote(), Recorder.remote()
    # Alive first: a mailbox is sent from its head when the actor starts.
    assert asyncray.get(recorder.log.remote(), timeout=HANG_S) == []
    first = recorder.record.remote("first", signal.wait.remote())
    second = recorder.record.remote("second")
    asyncray.cancel(first)
    with pytest.raises(TaskCancelledError):
        asyncray.get(first, timeout=HANG_S)
    try:
        assert asyncray.get(second, timeout=HANG_S) == "second"
    except GetTimeoutError:
        pytest.fail("the call behind a cancelled one never ran")
    asyncray.get(signal.send.remote(), timeout=HANG_S)
    assert asyncray.get(recorder.log.remote(), timeout=HANG_S) == ["second"]


@asyncray.remote
class AsyncRecorder:
    """An async actor that logs the calls it runs, in the order it starts them."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def record(self, name: str, *_arguments: object) -> str:
        self.calls.append(name)
        return name

    async def log(self) -> list[str]:
        return self.calls


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["threaded", "async", "plain-out-of-order"])
def test_a_concurrent_actor_runs_a_callers_ready_call_past_its_waiting_one(shutdown_only, kind):
    """Threaded and async actors do not keep a caller's order (Ray 2.60 neither): a
    ready call goes past the same caller's call that waits for its argument."""
    asyncray.init(num_cpus=1)
    signal = Signal.remote()
    if kind == "threaded":
        recorder = Recorder.options(max_concurrency=2).remote()
    elif kind == "async":
        recorder = AsyncRecorder.remote()
    else:  # a plain actor that lets its callers' calls overtake (Ray's option)
        recorder = Recorder.options(allow_out_of_order_execution=True).remote()
    assert asyncray.get(recorder.log.remote(), timeout=HANG_S) == []
    first = recorder.record.remote("first", signal.wait.remote())
    second = recorder.record.remote("second")
    try:
        assert asyncray.get(second, timeout=HANG_S) == "second"
    except GetTimeoutError:
        pytest.fail(f"a {kind} actor's ready call waited behind its caller's waiting call")
    assert asyncray.wait([first], timeout=0)[0] == []
    asyncray.get(signal.send.remote(), timeout=HANG_S)
    assert asyncray.get(first, timeout=HANG_S) == "first"
    assert asyncray.get(recorder.log.remote(), timeout=HANG_S) == ["second", "first"]


@asyncray.remote
def swallow_interrupt_then_wait(marker: str, refs: list[asyncray.ObjectRef]) -> object:
    try:
        Path(marker).touch()
        time.sleep(HANG_S * 3)
    except KeyboardInterrupt:
        pass  # as if the interrupt had landed before this code ran, and been dropped
    return asyncray.get(refs[0])


@pytest.mark.timeout(30)
def test_a_cancelled_task_that_goes_on_to_wait_in_get_is_interrupted_again(shutdown_only, tmp_path):
    """A task cancelled just as it is sent can get the interrupt before its code runs
    (the worker drops it); waiting in get on what never comes, it hung, and with it a
    chain of tasks waiting for it. Deterministic stand-in: the task swallows the
    first interrupt. Its next get is interrupted again and it ends cancelled."""
    asyncray.init(num_cpus=1)
    signal = Signal.remote()
    marker = tmp_path / "started"
    task = swallow_interrupt_then_wait.remote(str(marker), [signal.wait.remote()])
    assert wait_for_file(marker, HANG_S), "the task never started"
    asyncray.cancel(task)
    try:
        with pytest.raises(TaskCancelledError):
            asyncray.get(task, timeout=HANG_S)
    except GetTimeoutError:
        pytest.fail("a cancelled task blocked in get was never interrupted again")
