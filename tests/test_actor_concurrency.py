"""Actor kinds and concurrency: plain, async and threaded actors; concurrency groups.

Overlap is measured inside the actor. A metered call counts itself as
running under a key, waits until the key's peak reaches the concurrency the
test expects (so an actor that runs fewer calls at once than it should shows
up as a lower peak), then stays running for a short grace so that any call
beyond the limit would overlap it and raise the peak. The test then asserts
the peak exactly.
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import time
import warnings

import pytest
from _helpers import wait_for_file

import asyncray

pytestmark = pytest.mark.timeout(30)

# How long a metered call waits for the expected number of peers.
REACH_S = 3.0
# How long it keeps running after that, so that an extra call would overlap it.
GRACE_S = 0.2
POLL_S = 0.005
# How long a gated call waits for its gate before giving up (and failing the test).
GATE_S = 20.0


class Meter:
    """Per-key count of running calls, their peak and the threads they ran on.

    A plain base class (actor classes may inherit from one); the counters are
    guarded by a lock so the meter is right for threaded actors too.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._active = collections.Counter()
        self._peak = collections.Counter()
        self._threads = collections.defaultdict(set)

    def _enter(self, key):
        with self._lock:
            self._active[key] += 1
            self._peak[key] = max(self._peak[key], self._active[key])
            self._threads[key].add(threading.get_ident())

    def _leave(self, key):
        with self._lock:
            self._active[key] -= 1

    def _reached(self, key, expected):
        with self._lock:
            return self._peak[key] >= expected

    def peaks(self):
        with self._lock:
            return dict(self._peak)

    def thread_counts(self):
        with self._lock:
            return {key: len(idents) for key, idents in self._threads.items()}


class SyncMeter(Meter):
    """The meter for sync methods. (Any ``async def`` member, even an inherited
    private one, would make the actor an async actor, in Ray as in asyncray.)"""

    def _hold_sync(self, key, expected):
        self._enter(key)
        try:
            deadline = time.monotonic() + REACH_S
            while not self._reached(key, expected) and time.monotonic() < deadline:
                time.sleep(POLL_S)
            time.sleep(GRACE_S)
        finally:
            self._leave(key)
        return threading.get_ident()


class AsyncMeter(Meter):
    """The meter for coroutines."""

    async def _hold_async(self, key, expected):
        self._enter(key)
        try:
            deadline = time.monotonic() + REACH_S
            while not self._reached(key, expected) and time.monotonic() < deadline:
                await asyncio.sleep(POLL_S)
            await asyncio.sleep(GRACE_S)
        finally:
            self._leave(key)
        return threading.get_ident()


def wait_gate_sync(started, gate):
    open(started, "w").close()
    if not wait_for_file(gate, timeout=GATE_S):
        raise TimeoutError("gate never opened")
    return "released"


async def wait_gate_async(started, gate):
    open(started, "w").close()
    deadline = time.monotonic() + GATE_S
    while not os.path.exists(gate):
        if time.monotonic() >= deadline:
            raise TimeoutError("gate never opened")
        await asyncio.sleep(POLL_S)
    return "released"


# ====================================================================== plain actors


@asyncray.remote
class Recorder(SyncMeter):
    def __init__(self):
        super().__init__()
        self.items = []

    def add(self, item):
        self.items.append(item)
        return len(self.items)

    def add_marking(self, item, directory):
        open(os.path.join(directory, f"ran-{item}"), "w").close()
        self.items.append(item)

    def read(self):
        return list(self.items)

    def hold(self, key, expected):
        return self._hold_sync(key, expected)

    def on_main_thread(self):
        return threading.current_thread() is threading.main_thread()


@asyncray.remote
def released_value(gate, value):
    if not wait_for_file(gate, timeout=GATE_S):
        raise TimeoutError("gate never opened")
    return value


@asyncray.remote
def append_tagged(recorder, tag, count):
    refs = [recorder.add.remote((tag, i)) for i in range(count)]
    asyncray.get(refs)
    return tag


def test_plain_actor_runs_calls_in_submission_order_under_load(ray_start):
    recorder = Recorder.remote()
    refs = [recorder.add.remote(i) for i in range(500)]
    assert asyncray.get(recorder.read.remote(), timeout=20) == list(range(500))
    assert asyncray.get(refs) == list(range(1, 501))


def test_plain_actor_runs_one_call_at_a_time_on_the_main_thread(ray_start):
    recorder = Recorder.remote()
    threads = asyncray.get([recorder.hold.remote("one", 1) for _ in range(4)])
    assert asyncray.get(recorder.peaks.remote()) == {"one": 1}
    assert len(set(threads)) == 1
    assert asyncray.get(recorder.on_main_thread.remote()) is True


def test_order_holds_when_an_earlier_call_waits_on_an_unready_ref(ray_start, tmp_path):
    # Ray's test_actor_call_order: add(slow_ref) then add("B") gives ['A', 'B'].
    gate = tmp_path / "gate"
    recorder = Recorder.remote()
    bystander = Recorder.remote()
    asyncray.get(recorder.__ray_ready__.remote())
    slow = released_value.remote(str(gate), "A")
    first = recorder.add_marking.remote(slow, str(tmp_path))
    second = recorder.add_marking.remote("B", str(tmp_path))
    # A round trip on the same connection: the runtime has seen both calls.
    asyncray.get(bystander.add.remote("sync"))
    assert not wait_for_file(tmp_path / "ran-B", timeout=0.3), "B overtook A"
    gate.touch()
    asyncray.get([first, second], timeout=20)
    assert asyncray.get(recorder.read.remote()) == ["A", "B"]


def test_each_handle_passed_to_a_task_keeps_its_own_order(ray_start):
    recorder = Recorder.remote()
    tags = asyncray.get([append_tagged.remote(recorder, tag, 50) for tag in "xyz"], timeout=20)
    assert tags == ["x", "y", "z"]
    items = asyncray.get(recorder.read.remote())
    assert len(items) == 150
    for tag in "xyz":
        assert [i for t, i in items if t == tag] == list(range(50))


# ====================================================================== async actors


@asyncray.remote
class AsyncWorker(AsyncMeter):
    async def hold(self, key, expected):
        return await self._hold_async(key, expected)

    async def thread(self):
        return threading.get_ident()

    def sync_thread(self):
        return threading.get_ident()

    def block(self, started, gate):
        # A sync method of an async actor: it blocks the event loop while it runs.
        return wait_gate_sync(started, gate)

    async def quick(self):
        return "quick"

    async def await_things(self, refs, other):
        direct = await refs[0]
        gathered = await asyncio.gather(*refs)
        remote = await other.add.remote("from-async")
        return direct, gathered, remote

    async def blocking_get(self, refs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = asyncray.get(refs[0])
        return value, [(w.category.__name__, str(w.message)) for w in caught]


def test_async_actor_calls_interleave_well_beyond_the_cpu_count(ray_start):
    worker = AsyncWorker.remote()
    threads = asyncray.get([worker.hold.remote("many", 50) for _ in range(50)], timeout=20)
    assert asyncray.get(worker.peaks.remote()) == {"many": 50}
    assert len(set(threads)) == 1, "coroutines share the event loop's thread"


def test_async_actor_max_concurrency_two_caps_the_overlap_at_two(ray_start):
    worker = AsyncWorker.options(max_concurrency=2).remote()
    asyncray.get([worker.hold.remote("two", 2) for _ in range(6)], timeout=20)
    assert asyncray.get(worker.peaks.remote()) == {"two": 2}


def test_async_actor_with_max_concurrency_one_runs_one_coroutine_at_a_time(ray_start):
    worker = AsyncWorker.options(max_concurrency=1).remote()
    asyncray.get([worker.hold.remote("one", 1) for _ in range(4)], timeout=20)
    assert asyncray.get(worker.peaks.remote()) == {"one": 1}


def test_async_actor_awaits_refs_and_other_actors_calls(ray_start):
    worker = AsyncWorker.remote()
    other = Recorder.remote()
    refs = [asyncray.put(7), asyncray.put(8)]
    direct, gathered, remote = asyncray.get(worker.await_things.remote(refs, other))
    assert direct == 7
    assert gathered == [7, 8]
    assert remote == 1
    assert asyncray.get(other.read.remote()) == ["from-async"]


def test_sync_method_of_an_async_actor_runs_on_the_loop_thread(ray_start, tmp_path):
    worker = AsyncWorker.remote()
    assert asyncray.get(worker.sync_thread.remote()) == asyncray.get(worker.thread.remote())
    # Running on the loop thread, a blocked sync method stalls the coroutines.
    started, gate = tmp_path / "started", tmp_path / "gate"
    blocked = worker.block.remote(str(started), str(gate))
    assert wait_for_file(started)
    quick = worker.quick.remote()
    ready, _ = asyncray.wait([quick], timeout=0.3)
    assert ready == [], "a coroutine ran while a sync method held the loop"
    gate.touch()
    assert asyncray.get([blocked, quick], timeout=20) == ["released", "quick"]


def test_blocking_get_in_an_async_method_returns_the_value_and_warns(ray_start):
    worker = AsyncWorker.remote()
    value, caught = asyncray.get(worker.blocking_get.remote([asyncray.put(42)]))
    assert value == 42
    assert any(
        category == "RuntimeWarning" and "get_async" in message for category, message in caught
    ), caught


@asyncray.remote
def slow_value(value, delay):
    time.sleep(delay)
    return value


@asyncray.remote
class BackgroundGetter:
    """An async actor whose own thread blocks in ``get`` while the loop serves calls."""

    def __init__(self):
        self.result = None

    async def start(self, delay):
        def run():
            self.result = asyncray.get(slow_value.remote("from-thread", delay))

        self.thread = threading.Thread(target=run)
        self.thread.start()

    async def echo(self, value):
        return value

    async def joined(self):
        await asyncio.get_running_loop().run_in_executor(None, self.thread.join)
        return self.result


def test_async_actor_serves_calls_while_its_thread_blocks_in_get(ray_start):
    # The blocked thread reads the socket meanwhile: it must hand the loop
    # every call it reads, large ones included, and give the socket back.
    actor = BackgroundGetter.remote()
    asyncray.get(actor.start.remote(0.5))
    big = list(range(200_000))  # a frame far larger than the socket buffer
    assert asyncray.get([actor.echo.remote(i) for i in range(200)], timeout=20) == list(range(200))
    assert asyncray.get(actor.echo.remote(big), timeout=20) == big
    assert asyncray.get(actor.joined.remote(), timeout=20) == "from-thread"
    assert asyncray.get([actor.echo.remote(i) for i in range(50)], timeout=20) == list(range(50))


@asyncray.remote
class SlowStart:
    def __init__(self):
        self.base = asyncray.get(slow_value.remote(10, 0.3))

    async def add(self, x):
        return self.base + x


def test_async_actor_runs_calls_sent_during_a_blocking_init(ray_start):
    actor = SlowStart.remote()
    refs = [actor.add.remote(i) for i in range(5)]
    assert asyncray.get(refs, timeout=20) == [10, 11, 12, 13, 14]


# ====================================================================== threaded actors


@asyncray.remote(max_concurrency=4)
class ThreadedWorker(SyncMeter):
    def hold(self, key, expected):
        return self._hold_sync(key, expected)


def test_threaded_actor_runs_max_concurrency_calls_on_as_many_threads(ray_start):
    worker = ThreadedWorker.remote()
    threads = asyncray.get([worker.hold.remote("four", 4) for _ in range(8)], timeout=20)
    assert len(set(threads)) == 4
    assert asyncray.get(worker.peaks.remote()) == {"four": 4}


def test_threaded_actor_max_concurrency_from_options(ray_start):
    worker = ThreadedWorker.options(max_concurrency=2).remote()
    threads = asyncray.get([worker.hold.remote("two", 2) for _ in range(4)], timeout=20)
    assert len(set(threads)) == 2
    assert asyncray.get(worker.peaks.remote()) == {"two": 2}


# ====================================================================== concurrency groups


@asyncray.remote(max_concurrency=16)
class Doubler:
    def double(self, x):
        return 2 * x, threading.get_ident()


def test_threaded_actor_replies_from_many_threads_each_reach_their_caller(ray_start):
    # Threads that reply at once share one socket write: none may be lost or swapped.
    actor = Doubler.remote()
    results = asyncray.get([actor.double.remote(i) for i in range(3000)], timeout=60)
    assert [value for value, _ in results] == [2 * i for i in range(3000)]
    assert len({thread for _, thread in results}) > 1


@asyncray.remote(concurrency_groups={"io": 2, "compute": 4})
class ThreadedGroups(SyncMeter):
    @asyncray.method(concurrency_group="io")
    def io(self, key, expected):
        return self._hold_sync(key, expected)

    @asyncray.method(concurrency_group="compute")
    def compute(self, key, expected):
        return self._hold_sync(key, expected)

    def default(self, key, expected):
        return self._hold_sync(key, expected)

    @asyncray.method(concurrency_group="io")
    def io_gate(self, started, gate):
        return wait_gate_sync(started, gate)

    def default_gate(self, started, gate):
        return wait_gate_sync(started, gate)

    @asyncray.method(concurrency_group="compute")
    def compute_ping(self):
        return "compute"

    @asyncray.method(concurrency_group="io")
    def io_ping(self):
        return "io"


@asyncray.remote(concurrency_groups={"io": 2, "compute": 4})
class AsyncGroups(AsyncMeter):
    @asyncray.method(concurrency_group="io")
    async def io(self, key, expected):
        return await self._hold_async(key, expected)

    @asyncray.method(concurrency_group="compute")
    async def compute(self, key, expected):
        return await self._hold_async(key, expected)

    async def default(self, key, expected):
        return await self._hold_async(key, expected)

    @asyncray.method(concurrency_group="io")
    async def io_gate(self, started, gate):
        return await wait_gate_async(started, gate)

    async def default_gate(self, started, gate):
        return await wait_gate_async(started, gate)

    @asyncray.method(concurrency_group="compute")
    async def compute_ping(self):
        return "compute"

    @asyncray.method(concurrency_group="io")
    async def io_ping(self):
        return "io"


GROUP_KINDS = {"threaded": ThreadedGroups, "async": AsyncGroups}


@pytest.mark.parametrize(
    ("kind", "default_calls", "default_size"), [("threaded", 3, 1), ("async", 10, 10)]
)
def test_each_concurrency_group_enforces_its_own_limit(
    ray_start, kind, default_calls, default_size
):
    # The default group of an async actor allows 1000: all 10 calls offered run at once.
    actor = GROUP_KINDS[kind].remote()
    refs = [actor.io.remote("io", 2) for _ in range(6)]
    refs += [actor.compute.remote("compute", 4) for _ in range(8)]
    refs += [actor.default.remote("default", default_size) for _ in range(default_calls)]
    asyncray.get(refs, timeout=25)
    assert asyncray.get(actor.peaks.remote()) == {
        "io": 2,
        "compute": 4,
        "default": default_size,
    }
    if kind == "threaded":
        counts = asyncray.get(actor.thread_counts.remote())
        assert counts["io"] == 2
        assert counts["compute"] == 4


@pytest.mark.parametrize("kind", list(GROUP_KINDS))
def test_default_group_is_sized_by_max_concurrency(ray_start, kind):
    actor = GROUP_KINDS[kind].options(max_concurrency=3).remote()
    asyncray.get([actor.default.remote("default", 3) for _ in range(6)], timeout=20)
    assert asyncray.get(actor.peaks.remote()) == {"default": 3}


@pytest.mark.parametrize("kind", list(GROUP_KINDS))
def test_a_blocked_group_does_not_block_the_others(ray_start, tmp_path, kind):
    actor = GROUP_KINDS[kind].options(max_concurrency=1).remote()
    gate = tmp_path / "gate"
    blocked = [
        actor.io_gate.remote(str(tmp_path / "io-0"), str(gate)),
        actor.io_gate.remote(str(tmp_path / "io-1"), str(gate)),
        actor.default_gate.remote(str(tmp_path / "default-0"), str(gate)),
    ]
    for started in ("io-0", "io-1", "default-0"):
        assert wait_for_file(tmp_path / started), f"{started} never started"
    # io and the default group are full; compute still answers.
    assert asyncray.get(actor.compute_ping.remote(), timeout=10) == "compute"
    # The gates do hold: another io call waits.
    queued_io = actor.io_ping.remote()
    ready, _ = asyncray.wait([queued_io], timeout=0.3)
    assert ready == []
    gate.touch()
    assert asyncray.get([*blocked, queued_io], timeout=20) == [*["released"] * 3, "io"]


@pytest.mark.parametrize("kind", list(GROUP_KINDS))
def test_a_blocked_default_group_does_not_block_a_named_group(ray_start, tmp_path, kind):
    actor = GROUP_KINDS[kind].options(max_concurrency=1).remote()
    gate = tmp_path / "gate"
    blocked = actor.default_gate.remote(str(tmp_path / "started"), str(gate))
    assert wait_for_file(tmp_path / "started")
    assert asyncray.get(actor.io_ping.remote(), timeout=10) == "io"
    gate.touch()
    assert asyncray.get(blocked, timeout=20) == "released"


@pytest.mark.parametrize("kind", list(GROUP_KINDS))
def test_call_time_options_move_a_call_into_another_group(ray_start, kind):
    # default() belongs to the default group (size 1); moved into compute it runs 4 at a time.
    actor = GROUP_KINDS[kind].options(max_concurrency=1).remote()
    moved = actor.default.options(concurrency_group="compute")
    asyncray.get([moved.remote("moved", 4) for _ in range(4)], timeout=20)
    assert asyncray.get(actor.peaks.remote()) == {"moved": 4}


@pytest.mark.parametrize("kind", list(GROUP_KINDS))
def test_call_time_options_move_a_call_out_of_a_blocked_group(ray_start, tmp_path, kind):
    actor = GROUP_KINDS[kind].options(max_concurrency=1).remote()
    gate = tmp_path / "gate"
    blocked = actor.default_gate.remote(str(tmp_path / "started"), str(gate))
    assert wait_for_file(tmp_path / "started")
    moved = actor.default.options(concurrency_group="compute").remote("moved", 1)
    assert asyncray.get(moved, timeout=10) is not None
    gate.touch()
    assert asyncray.get(blocked, timeout=20) == "released"


@pytest.mark.parametrize("kind", list(GROUP_KINDS))
def test_unknown_group_at_call_time_raises_value_error_and_the_actor_lives_on(ray_start, kind):
    # Ray crashes the actor here; asyncray refuses the call cleanly at .remote().
    actor = GROUP_KINDS[kind].remote()
    with pytest.raises(ValueError, match="nope"):
        actor.io_ping.options(concurrency_group="nope").remote()
    assert asyncray.get(actor.io_ping.remote(), timeout=10) == "io"
    assert asyncray.get(actor.compute_ping.remote(), timeout=10) == "compute"


@pytest.mark.parametrize("declared", [{"io": 1}, None], ids=["other-group", "no-groups"])
def test_method_in_an_undeclared_group_raises_assertion_error_at_creation(ray_start, declared):
    class Misassigned:
        @asyncray.method(concurrency_group="nope")
        def f(self):
            return 1

    # As in Ray: decorating succeeds, creating the actor fails.
    decorate = asyncray.remote(concurrency_groups=declared) if declared else asyncray.remote
    actor_class = decorate(Misassigned)
    with pytest.raises(AssertionError):
        actor_class.remote()
