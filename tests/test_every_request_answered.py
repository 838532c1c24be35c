"""Every request gets an answer: nothing a caller does can leave it waiting for ever.

A blocking call keeps its timeout even when the kernel never answers; a
message the wire cannot carry fails its own task or call, not the handler
that happened to send it; a bug while starting a task fails that task; and
a burst of actor creations is paced instead of overflowing the zygote's
control socket.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import subprocess
import sys
import time

import psutil
import pytest

import asyncray
from asyncray._clients.base import REPLY_GRACE_S
from asyncray._wire import protocol as P
from asyncray.exceptions import ActorDiedError, GetTimeoutError, RaySystemError
from asyncray.util.queue import Empty, Queue

pytestmark = pytest.mark.timeout(60)


def _runtime():
    return asyncray._api.client().runtime


def _silence(monkeypatch: pytest.MonkeyPatch, msg_type: type) -> None:
    """Make the kernel swallow every ``msg_type``: it never answers one."""
    runtime = _runtime()
    handlers = dict(runtime._handlers)
    handlers[msg_type] = lambda conn, msg: None
    monkeypatch.setattr(runtime, "_handlers", handlers)


@asyncray.remote
def sleeper():
    time.sleep(60)


# ------------------------------------------------------------ timeouts without the kernel


def _assert_in_time(started: float, timeout: float) -> None:
    took = time.monotonic() - started
    assert timeout <= took < timeout + REPLY_GRACE_S + 1.0, took


def test_get_keeps_its_timeout_when_the_kernel_never_answers(ray_start, monkeypatch):
    ref = sleeper.remote()
    _silence(monkeypatch, P.GetObjects)
    started = time.monotonic()
    with pytest.raises(GetTimeoutError):
        asyncray.get(ref, timeout=0.2)
    _assert_in_time(started, 0.2)
    asyncray.cancel(ref, force=True)


def test_wait_keeps_its_timeout_when_the_kernel_never_answers(ray_start, monkeypatch):
    ref = sleeper.remote()
    _silence(monkeypatch, P.WaitObjects)
    started = time.monotonic()
    assert asyncray.wait([ref], timeout=0.2) == ([], [ref])
    _assert_in_time(started, 0.2)
    asyncray.cancel(ref, force=True)


def test_queue_get_keeps_its_timeout_when_the_kernel_never_answers(ray_start, monkeypatch):
    queue = Queue()
    _silence(monkeypatch, P.QueueOp)
    started = time.monotonic()
    with pytest.raises(Empty):
        queue.get(timeout=0.2)
    _assert_in_time(started, 0.2)


async def test_get_async_keeps_its_timeout_when_the_kernel_never_answers(ray_start, monkeypatch):
    ref = sleeper.remote()
    _silence(monkeypatch, P.GetObjects)
    started = time.monotonic()
    with pytest.raises(GetTimeoutError):
        await asyncray.get_async(ref, timeout=0.2)
    _assert_in_time(started, 0.2)
    assert await asyncray.wait_async([ref], timeout=0) == ([], [ref])
    asyncray.cancel(ref, force=True)


@asyncray.remote
def get_with_timeout(refs, timeout):
    started = time.monotonic()
    try:
        asyncray.get(refs[0], timeout=timeout)
    except GetTimeoutError:
        return time.monotonic() - started
    return None


def test_a_workers_get_keeps_its_timeout_when_the_kernel_never_answers(ray_start, monkeypatch):
    blocked = sleeper.remote()
    runtime = _runtime()
    handlers = dict(runtime._handlers)
    real = handlers[P.GetObjects]

    def answer_only_the_driver(conn, msg):
        if conn.worker is None:
            real(conn, msg)

    handlers[P.GetObjects] = answer_only_the_driver
    monkeypatch.setattr(runtime, "_handlers", handlers)
    took = asyncray.get(get_with_timeout.remote([blocked], 0.2), timeout=20)
    assert took is not None and 0.2 <= took < 0.2 + REPLY_GRACE_S + 1.0
    asyncray.cancel(blocked, force=True)


@asyncray.remote
class AsyncGetter:
    async def get_with_timeout(self, refs, timeout):
        started = time.monotonic()
        try:
            await asyncray.get_async(refs[0], timeout=timeout)
        except GetTimeoutError:
            return time.monotonic() - started
        return None


def test_an_async_actors_get_keeps_its_timeout_when_the_kernel_never_answers(
    ray_start, monkeypatch
):
    blocked = sleeper.remote()
    actor = AsyncGetter.remote()
    asyncray.get(actor.__ray_ready__.remote(), timeout=20)
    runtime = _runtime()
    handlers = dict(runtime._handlers)
    real = handlers[P.GetObjects]
    handlers[P.GetObjects] = lambda conn, msg: real(conn, msg) if conn.worker is None else None
    monkeypatch.setattr(runtime, "_handlers", handlers)
    took = asyncray.get(actor.get_with_timeout.remote([blocked], 0.2), timeout=20)
    assert took is not None and 0.2 <= took < 0.2 + REPLY_GRACE_S + 1.0
    asyncray.cancel(blocked, force=True)


def test_a_reply_after_the_caller_gave_up_is_discarded(ray_start, monkeypatch):
    """A late reply finds no waiter: it is dropped (its refs given back), nothing breaks."""
    runtime = _runtime()
    handlers = dict(runtime._handlers)
    real = handlers[P.GetObjects]

    def answer_late(conn, msg):
        runtime.loop.call_later(REPLY_GRACE_S + 0.5, real, conn, msg)

    handlers[P.GetObjects] = answer_late
    monkeypatch.setattr(runtime, "_handlers", handlers)
    ref = sleeper.remote()
    with pytest.raises(GetTimeoutError):
        asyncray.get(ref, timeout=0.1)
    time.sleep(REPLY_GRACE_S + 0.7)  # the late answer arrives now: to nobody
    monkeypatch.undo()
    asyncray.cancel(ref, force=True)
    assert asyncray.get(asyncray.put(7), timeout=10) == 7
    assert not asyncray._api.client().waiters


# ------------------------------------------------------------ messages the wire cannot carry


@asyncray.remote
def one():
    return 1


def _unencodable(monkeypatch: pytest.MonkeyPatch, msg_type: type, field: str) -> None:
    """Make the kernel receive ``msg_type`` with ``field`` out of the wire's range.

    The call site validates options; this plants the value behind it, as a
    kernel bug or a new option without a check would.
    """
    runtime = _runtime()
    handlers = dict(runtime._handlers)
    real = handlers[msg_type]

    def plant(conn, msg):
        setattr(msg, field, 10**30)
        real(conn, msg)

    handlers[msg_type] = plant
    monkeypatch.setattr(runtime, "_handlers", handlers)


def _assert_resources_return(total):
    deadline = time.monotonic() + 10
    while asyncray.available_resources().get("CPU") != total["CPU"]:
        assert time.monotonic() < deadline, asyncray.available_resources()
        time.sleep(0.02)


def test_a_task_the_wire_cannot_carry_fails_alone_and_gives_its_cpu_back(ray_start, monkeypatch):
    total = asyncray.cluster_resources()
    _unencodable(monkeypatch, P.SubmitTask, "backpressure")
    with pytest.raises(RaySystemError, match=r"could not send task .*one.*OverflowError"):
        asyncray.get(one.remote(), timeout=10)
    monkeypatch.undo()
    _assert_resources_return(total)
    assert asyncray.get([one.remote() for _ in range(4)], timeout=10) == [1] * 4


@asyncray.remote
class Counter:
    def __init__(self):
        self.n = 0

    def add(self):
        self.n += 1
        return self.n


def test_an_actor_call_the_wire_cannot_carry_fails_alone(ray_start, monkeypatch):
    actor = Counter.remote()
    assert asyncray.get(actor.add.remote(), timeout=20) == 1
    _unencodable(monkeypatch, P.CallActor, "backpressure")
    with pytest.raises(RaySystemError, match="could not send actor call add"):
        asyncray.get(actor.add.remote(), timeout=10)
    monkeypatch.undo()
    assert asyncray.get(actor.add.remote(), timeout=10) == 2  # the failed call never ran


def test_an_actor_whose_creation_the_wire_cannot_carry_dies_with_the_reason(ray_start, monkeypatch):
    total = asyncray.cluster_resources()
    runtime = _runtime()
    handlers = dict(runtime._handlers)
    real = handlers[P.CreateActor]

    def plant(conn, msg):
        real(conn, msg)
        runtime.functions[msg.class_id] = object()  # no wire can carry this class blob

    handlers[P.CreateActor] = plant
    monkeypatch.setattr(runtime, "_handlers", handlers)
    actor = Counter.options(num_cpus=1).remote()
    with pytest.raises(ActorDiedError, match="creation could not be sent"):
        asyncray.get(actor.add.remote(), timeout=20)
    monkeypatch.undo()
    _assert_resources_return(total)


@pytest.mark.plants_internal_errors
def test_a_failed_actor_creation_fails_its_calls_with_the_reason(ray_start, monkeypatch):
    runtime = _runtime()
    handlers = dict(runtime._handlers)

    def broken(conn, msg):
        raise ZeroDivisionError("creation bug planted by the test")

    handlers[P.CreateActor] = broken
    monkeypatch.setattr(runtime, "_handlers", handlers)
    actor = Counter.remote()
    with pytest.raises(ActorDiedError, match="creation bug planted by the test"):
        asyncray.get(actor.add.remote(), timeout=20)


# ------------------------------------------------------------ bugs in the batch machinery


@pytest.mark.plants_internal_errors
def test_a_bug_while_starting_a_task_fails_that_task_and_dispatch_goes_on(
    ray_start, monkeypatch, caplog
):
    total = asyncray.cluster_resources()
    runtime = _runtime()
    real = runtime._start_task
    planted = []

    def start_or_fail(task, worker, pool):
        if not planted:
            planted.append(task.spec.name)
            pool.acquire(task.shape)  # half done, as a real bug would leave it
            task.pool = pool
            raise ZeroDivisionError("start bug planted by the test")
        real(task, worker, pool)

    monkeypatch.setattr(runtime, "_start_task", start_or_fail)
    with caplog.at_level(logging.ERROR, logger="asyncray"):
        refs = [one.remote() for _ in range(3)]
        outcomes = []
        for ref in refs:
            try:
                outcomes.append(asyncray.get(ref, timeout=20))
            except RaySystemError as e:
                assert "start bug planted by the test" in str(e)
                outcomes.append("failed")
    assert sorted(outcomes, key=str) == [1, 1, "failed"]
    assert any("internal error starting task" in r.getMessage() for r in caplog.records)
    monkeypatch.undo()
    _assert_resources_return(total)
    assert asyncray.get(one.remote(), timeout=10) == 1


@pytest.mark.plants_internal_errors
def test_a_bug_in_end_of_batch_dispatch_still_writes_held_messages(ray_start, monkeypatch):
    runtime = _runtime()
    real = runtime.dispatch
    calls = []

    def dispatch_then_fail():
        real()
        if not calls:
            calls.append(1)
            raise ZeroDivisionError("dispatch bug planted by the test")

    monkeypatch.setattr(runtime, "dispatch", dispatch_then_fail)
    refs = [one.remote() for _ in range(4)]
    assert asyncray.get(refs, timeout=20) == [1] * 4
    assert calls
    assert not runtime._batching  # later sends are written at once again


# ------------------------------------------------------------ bursts of actors


@asyncray.remote(num_cpus=0)
class Tiny:
    def pid(self):
        return os.getpid()


def _session_children() -> int:
    return len(psutil.Process().children(recursive=True))


@pytest.mark.timeout(120)
def test_a_burst_of_a_thousand_actor_creations_completes(ray_start):
    handles = [Tiny.remote() for _ in range(1000)]
    # Paced: the zygote never has more than its window of forks outstanding.
    assert _runtime().zygote.in_flight <= 16
    pids = asyncray.get([h.pid.remote() for h in handles], timeout=100)
    assert len(set(pids)) == 1000
    for h in handles:
        asyncray.kill(h)
    del handles


async def test_an_awaited_get_with_a_timeout_still_returns_its_value(ray_start):
    """The backstop never shortens a call the kernel answers in time."""
    assert await asyncio.wait_for(asyncray.get_async(one.remote(), timeout=5), 10) == 1


def test_a_get_with_a_timeout_still_returns_a_value_that_comes_late(ray_start):
    @asyncray.remote
    def slow():
        time.sleep(0.3)
        return 2

    assert asyncray.get(slow.remote(), timeout=5) == 2


_FEW_FILES_DRIVER = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
import asyncray
from asyncray.exceptions import ActorDiedError
asyncray.init(num_cpus=2)

@asyncray.remote(num_cpus=0)
class Tiny:
    def ping(self):
        return 1

handles = [Tiny.remote() for _ in range(400)]
ok = died = 0
for h in handles:
    try:
        ok += asyncray.get(h.ping.remote(), timeout=60)
    except ActorDiedError as e:
        assert "open-files limit" in str(e), e
        died += 1
for h in handles:
    asyncray.kill(h)
del handles

@asyncray.remote
def two():
    return 2

print(ok, died, asyncray.get([two.remote() for _ in range(4)], timeout=30))
"""


@pytest.mark.timeout(120)
def test_actors_beyond_the_open_files_limit_die_with_the_reason_and_the_runtime_goes_on(
    tmp_path,
):
    script = tmp_path / "few_files.py"
    script.write_text(_FEW_FILES_DRIVER)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=100
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ok, died, values = done.stdout.split(maxsplit=2)
    assert int(ok) + int(died) == 400
    assert int(ok) > 100 and int(died) > 0
    assert values.strip() == "[2, 2, 2, 2]"
    assert "could not start" not in done.stdout


# ------------------------------------------------------------ forks that fail, a zygote that dies


@pytest.fixture
def failing_forks(tmp_path, monkeypatch):
    """While the returned flag file exists, the zygote's forks fail with EAGAIN.

    ``os.fork`` is wrapped before ``init`` forks the zygote, so the zygote
    (and only it: the driver forks nothing else) runs the wrapper.
    """
    flag = tmp_path / "fail-forks"
    real_fork = os.fork
    driver = os.getpid()

    def fork():
        if os.getpid() != driver and flag.exists():
            raise BlockingIOError(11, "Resource temporarily unavailable (planted)")
        return real_fork()

    monkeypatch.setattr(os, "fork", fork)
    asyncray.init(num_cpus=2)
    monkeypatch.undo()
    yield flag
    asyncray.shutdown()


def test_a_failed_fork_fails_that_actor_and_the_session_goes_on(failing_forks):
    assert asyncray.get(one.remote(), timeout=20) == 1
    failing_forks.touch()
    actor = Counter.remote()
    with pytest.raises(ActorDiedError, match=r"could not be started: \[Errno 11\]"):
        asyncray.get(actor.add.remote(), timeout=20)
    failing_forks.unlink()
    assert asyncray.get(Counter.remote().add.remote(), timeout=20) == 1
    assert asyncray.get([one.remote() for _ in range(4)], timeout=20) == [1] * 4


def test_a_dead_zygote_fails_what_waits_for_a_worker_instead_of_hanging(ray_start, caplog):
    zygote = _runtime().zygote.pid
    assert asyncray.get([one.remote() for _ in range(2)], timeout=20) == [1, 1]  # no fork left
    blockers = [sleeper.remote() for _ in range(2)]  # both CPUs busy: the next task queues
    queued = one.remote()
    with caplog.at_level(logging.ERROR, logger="asyncray"):
        os.kill(zygote, 9)
        with pytest.raises(RaySystemError, match=r"zygote process .* exited"):
            asyncray.get(queued, timeout=20)
    assert any("zygote process" in r.getMessage() for r in caplog.records)
    with pytest.raises(ActorDiedError, match="has exited"):
        asyncray.get(Counter.remote().add.remote(), timeout=20)
    with pytest.raises(RaySystemError, match="zygote"):
        asyncray.get(one.remote(), timeout=20)
    del blockers
    asyncray.shutdown()
    asyncray.init(num_cpus=2)  # a new session forks a new zygote
    assert asyncray.get(one.remote(), timeout=20) == 1


@pytest.mark.timeout(20)
@pytest.mark.parametrize("timeout", [math.nan, -5.0])
def test_the_kernel_answers_a_timeout_no_caller_sends_at_once(ray_start, timeout):
    """The call sites refuse NaN and negatives; a request with one still gets its answer."""
    ref = sleeper.remote()
    c = asyncray._api.client()
    started = time.monotonic()
    reply = c.request(P.GetObjects(c.next_req_id(), [ref._id], timeout))
    assert reply.timed_out
    queue = Queue()
    reply = c.request(
        P.QueueOp(
            req_id=c.next_req_id(),
            queue_id=queue._id,
            op=P.QUEUE_GET,
            items=[],
            count=0,
            timeout=timeout,
        )
    )
    assert reply.status == P.QUEUE_WOULD_BLOCK
    assert time.monotonic() - started < 2.0
    asyncray.cancel(ref, force=True)


@asyncray.remote
def get_ready_with_a_long_timeout(refs):
    return asyncray.get(refs[0], timeout=1e8)  # about three years: a deadline poll cannot take


def test_a_worker_get_with_a_very_long_timeout_works(ray_start):
    ready = asyncray.put(5)
    assert asyncray.get(get_ready_with_a_long_timeout.remote([ready]), timeout=20) == 5


@asyncray.remote
def slow_items():
    yield 1
    time.sleep(60)
    yield 2


def test_a_generators_next_keeps_its_timeout_when_the_kernel_never_answers(ray_start, monkeypatch):
    gen = slow_items.remote()
    assert asyncray.get(next(gen), timeout=20) == 1
    _silence(monkeypatch, P.StreamNext)
    started = time.monotonic()
    assert gen._next_sync(timeout_s=0.2).is_nil()  # Ray's answer to a timeout: a nil ref
    _assert_in_time(started, 0.2)
    asyncray.cancel(gen, force=True)
