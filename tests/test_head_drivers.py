"""Everything works from a driver connected to a shared head exactly as embedded.

The first part runs the API's features from this test process connected
(``init(address=...)``) to one head shared by the module (a daemon: not a
child of the test process, so the suite's leak checks judge only what each
test made). The rest runs driver processes against a head of their own:
output forwarding per job, resources and workers shared between drivers, a
job released when its driver exits, is SIGTERMed or SIGKILLed (and what
outlives it), a driver whose head is stopped under it, and a driver's own
modules imported in the head's workers. Tasks synchronise through files
(``_helpers``), never sleeps.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from _head import Head, cli
from _helpers import process_gone, wait_for_condition, wait_for_file

import asyncray as ray
from asyncray.exceptions import (
    GetTimeoutError,
    RaySystemError,
    TaskCancelledError,
)

pytestmark = pytest.mark.timeout(90)

NUM_CPUS = 2
# How long a job's release (or a lost head) may take to be seen by others.
RELEASE_S = 5.0


# ==================================================================== fixtures


@pytest.fixture(scope="module")
def shared_head(tmp_path_factory):
    """One head for the module's in-process tests (stopping it checks it left nothing)."""
    with Head(tmp_path_factory.mktemp("shared") / "head", NUM_CPUS) as running:
        yield running


@pytest.fixture
def drv(shared_head):
    """This process as a driver of the shared head, in a namespace of the test's own."""
    log_before = len(shared_head.read_log())
    ray.init(address=shared_head.socket)
    yield ray
    ray.shutdown()
    assert "internal error" not in shared_head.read_log()[log_before:]


def _driver(code: str) -> str:
    """A driver program: ``code`` after the imports every driver here uses."""
    return (
        "import os, sys, time, signal\n"
        "from pathlib import Path\n"
        "import asyncray as ray\n"
        "from _helpers import wait_for_file, wait_for_condition\n" + textwrap.dedent(code)
    )


def _status(address: str) -> dict:
    """The head's state, as ``asyncray status`` reads it, from a short-lived connection."""
    from asyncray._session import bootstrap

    was = ray.is_initialized()
    if not was:
        ray.init(address=address)
    try:
        return bootstrap.client().query("status")
    finally:
        if not was:
            ray.shutdown()


# ==================================================================== remote definitions


@ray.remote
def square(x):
    return x * x


@ray.remote
def sum_of_squares(n):
    # A nested task: submits tasks and gets them from a worker.
    return sum(ray.get([square.remote(i) for i in range(n)]))


@ray.remote
def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


@ray.remote
def wait_for(path, value, timeout=30):
    return value if wait_for_file(path, timeout=timeout) else "gave up"


@ray.remote
def hold_until_cancelled(directory):
    Path(directory, "started").write_text(str(os.getpid()))
    try:
        time.sleep(60)
    except KeyboardInterrupt:
        Path(directory, "interrupted").touch()
        raise
    return "slept"


@ray.remote
def context():
    ctx = ray.get_runtime_context()
    return ctx.get_job_id(), ctx.namespace


@ray.remote
def name_an_actor(name):
    actor = Counter.options(name=name, lifetime="detached").remote()
    return ray.get(actor.context.remote())


@ray.remote
def make_array(n):
    return np.arange(n, dtype=np.float64)


@ray.remote
def total(array):
    return float(array.sum()), array.flags.writeable


@ray.remote
def count_up(n):
    for i in range(n):
        yield i * 10


@ray.remote
class Counter:
    def __init__(self, start=0):
        self.n = start
        self.log = []

    def add(self, x):
        self.n += x
        self.log.append(x)
        return self.n

    def history(self):
        return self.log

    def double(self, x):
        return 2 * x

    def context(self):
        ctx = ray.get_runtime_context()
        return ctx.get_job_id(), ctx.namespace

    def hold(self, directory):
        Path(directory, "started").touch()
        return "released" if wait_for_file(Path(directory, "release"), 20) else "gave up"

    def touch(self, path):
        Path(path).touch()
        return "ran"


@ray.remote(max_concurrency=2)
class Threaded:
    def meet(self, directory, name):
        # Two calls at once or neither: each waits for the other's file.
        Path(directory, name).touch()
        other = "b" if name == "a" else "a"
        return wait_for_file(Path(directory, other), 10)


@ray.remote
class AsyncActor:
    def __init__(self):
        self.event = None

    async def meet(self, name):
        if self.event is None:
            self.event = asyncio.Event()
            await asyncio.wait_for(self.event.wait(), 10)
            return f"{name} waited"
        self.event.set()
        return f"{name} released"

    async def wait_cancel(self, directory):
        Path(directory, "started").touch()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            Path(directory, "cancelled").touch()
            raise
        return "slept"

    async def ping(self):
        return "pong"


@ray.remote(concurrency_groups={"io": 1, "compute": 1})
class Grouped:
    @ray.method(concurrency_group="io")
    def block_io(self, directory):
        Path(directory, "io-started").touch()
        return wait_for_file(Path(directory, "io-release"), 10)

    @ray.method(concurrency_group="compute")
    def compute(self, x):
        return x + 1

    def thread_name(self):
        return threading.current_thread().name


@ray.remote
class QueueUser:
    def take(self, queue, n):
        return [queue.get(timeout=10) for _ in range(n)]

    def give(self, queue, items):
        for item in items:
            queue.put(item, timeout=10)
        return len(items)


# ==================================================================== 1. the API, connected


def test_tasks_and_nested_tasks(drv):
    assert ray.get([square.remote(i) for i in range(20)]) == [i * i for i in range(20)]
    assert ray.get(sum_of_squares.remote(10), timeout=30) == sum(i * i for i in range(10))
    # Refs as arguments are resolved before the task runs, as embedded.
    assert ray.get(square.remote(square.remote(3))) == 81


def test_wait_and_get_timeouts(drv, tmp_path):
    gate = tmp_path / "gate"
    fast = [square.remote(i) for i in range(3)]
    slow = wait_for.remote(str(gate), "slow")
    ready, not_ready = ray.wait([*fast, slow], num_returns=3, timeout=20)
    assert sorted(ray.get(ready)) == [0, 1, 4]
    assert not_ready == [slow]
    begin = time.monotonic()
    ready, not_ready = ray.wait([slow], num_returns=1, timeout=0.3)
    assert (ready, not_ready) == ([], [slow])
    assert 0.25 < time.monotonic() - begin < 5
    with pytest.raises(GetTimeoutError, match="Get timed out"):
        ray.get(slow, timeout=0.2)
    gate.touch()
    assert ray.get(slow, timeout=20) == "slow"
    ready, not_ready = ray.wait([slow, *fast], num_returns=4, timeout=5)
    assert len(ready) == 4 and not_ready == []


def test_await_and_gather_in_an_async_function(drv):
    async def main():
        one = await square.remote(7)
        many = await asyncio.gather(*[square.remote(i) for i in range(5)])
        actor = AsyncActor.remote()
        pong = await actor.ping.remote()
        return one, many, pong

    assert asyncio.run(main()) == (49, [0, 1, 4, 9, 16], "pong")


def test_plain_actor_keeps_call_order(drv):
    c = Counter.remote(100)
    refs = [c.add.remote(i) for i in range(1, 31)]
    assert ray.get(refs) == [100 + sum(range(1, i + 1)) for i in range(1, 31)]
    assert ray.get(c.history.remote()) == list(range(1, 31))


def test_threaded_async_and_grouped_actors(drv, tmp_path):
    t = Threaded.remote()
    assert ray.get([t.meet.remote(str(tmp_path), "a"), t.meet.remote(str(tmp_path), "b")]) == [
        True,
        True,
    ]
    a = AsyncActor.remote()
    first = a.meet.remote("x")
    second = a.meet.remote("y")
    assert ray.get([first, second], timeout=20) == ["x waited", "y released"]
    g = Grouped.remote()
    blocked = g.block_io.remote(str(tmp_path))
    assert wait_for_file(tmp_path / "io-started", 20)
    # The io group is busy; the compute group still serves.
    assert ray.get(g.compute.remote(1), timeout=10) == 2
    (tmp_path / "io-release").touch()
    assert ray.get(blocked, timeout=10) is True


def test_kill_named_actors_and_get_if_exists(drv):
    ns = ray.get_runtime_context().namespace
    c = Counter.options(name="counter").remote(5)
    assert ray.get(c.add.remote(1)) == 6
    same = Counter.options(name="counter", get_if_exists=True).remote(0)
    assert ray.get(same.add.remote(1)) == 7  # the existing actor, not a new one
    found = ray.get_actor("counter")
    assert ray.get(found.add.remote(1)) == 8
    assert ray.get_actor("counter", namespace=ns)._actor_id == c._actor_id
    with pytest.raises(ValueError, match=r"The name counter .* is already taken"):
        Counter.options(name="counter").remote()
    ray.kill(c)
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(c.add.remote(1), timeout=10)
    wait_for_condition(lambda: _lookup_fails("counter"), timeout=RELEASE_S)


def _lookup_fails(name: str, namespace: str | None = None) -> bool:
    try:
        ray.get_actor(name, namespace=namespace)
    except ValueError:
        return True
    return False


def test_streaming_generators_sync_and_async(drv):
    gen = count_up.options(num_returns="streaming").remote(5)
    assert [ray.get(ref) for ref in gen] == [0, 10, 20, 30, 40]

    async def consume():
        out = []
        async for ref in count_up.options(num_returns="streaming").remote(4):
            out.append(await ref)
        return out

    assert asyncio.run(consume()) == [0, 10, 20, 30]


def test_cancel_a_running_task_and_an_actor_call(drv, tmp_path):
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    ref = hold_until_cancelled.remote(str(task_dir))
    assert wait_for_file(task_dir / "started", 20)
    begin = time.monotonic()
    ray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        ray.get(ref, timeout=10)
    assert time.monotonic() - begin < 3
    assert wait_for_file(task_dir / "interrupted", 5)
    # An async actor's running call is cancelled inside the actor.
    actor_dir = tmp_path / "actor"
    actor_dir.mkdir()
    a = AsyncActor.remote()
    call = a.wait_cancel.remote(str(actor_dir))
    assert wait_for_file(actor_dir / "started", 20)
    ray.cancel(call)
    with pytest.raises(TaskCancelledError):
        ray.get(call, timeout=10)
    assert wait_for_file(actor_dir / "cancelled", 5)
    assert ray.get(a.ping.remote(), timeout=10) == "pong"
    # A plain actor's queued call never runs.
    c = Counter.remote()
    busy = c.hold.remote(str(actor_dir))
    queued = c.touch.remote(str(actor_dir / "queued-ran"))
    ray.cancel(queued)
    with pytest.raises(TaskCancelledError):
        ray.get(queued, timeout=10)
    (actor_dir / "release").touch()
    assert ray.get(busy, timeout=10) == "released"
    assert not (actor_dir / "queued-ran").exists()


def test_large_objects_zero_copy(drv):
    big = np.arange(200_000, dtype=np.float64)  # 1.6 MB: shared memory
    ref = ray.put(big)
    got = ray.get(ref)
    assert not got.flags.writeable
    np.testing.assert_array_equal(got, big)
    # Passed to a task (read-only there too) and returned from one.
    assert ray.get(total.remote(ref)) == (float(big.sum()), False)
    returned = ray.get(make_array.remote(300_000))
    assert returned.shape == (300_000,) and float(returned[-1]) == 299_999.0
    assert not returned.flags.writeable
    del got, returned


def test_objects_spilled_by_a_small_store(tmp_path):
    mib = 1024 * 1024
    # Room for three 1 MiB objects: the rest go to the head's spill directory.
    with Head(tmp_path / "head", NUM_CPUS, "--object-store-memory", str(3 * mib + mib // 2)):
        ray.init(address=str(tmp_path / "head"))
        try:
            refs = [ray.put(np.full(mib, i, dtype=np.uint8)) for i in range(6)]
            assert _status("")["objects"]["spilled_bytes"] > 0
            assert [int(ray.get(r)[0]) for r in refs] == list(range(6))
            assert ray.get([total.remote(r) for r in refs]) == [
                (float(i * mib), False) for i in range(6)
            ]
            made = [make_array.remote(mib // 8) for _ in range(4)]  # 1 MiB each
            assert [float(ray.get(r)[-1]) for r in made] == [mib // 8 - 1.0] * 4
            del refs, made

            def released() -> bool:
                objects = _status("")["objects"]
                return objects["count"] == 0 and objects["spilled_bytes"] == 0

            wait_for_condition(released, timeout=RELEASE_S)
        finally:
            ray.shutdown()


def test_actor_pool_map(drv):
    from asyncray.util import ActorPool

    pool = ActorPool([Counter.remote(), Counter.remote()])
    assert list(pool.map(lambda a, v: a.double.remote(v), range(8))) == [2 * v for v in range(8)]
    assert sorted(pool.map_unordered(lambda a, v: a.double.remote(v), [1, 2, 3])) == [2, 4, 6]


def test_queue_between_driver_and_actor(drv):
    from asyncray.util.queue import Empty, Queue

    q = Queue(maxsize=4)
    user = QueueUser.remote()
    for i in range(3):
        q.put(i)
    assert ray.get(user.take.remote(q, 3), timeout=20) == [0, 1, 2]
    assert ray.get(user.give.remote(q, ["a", "b"]), timeout=20) == 2
    assert [q.get(timeout=10), q.get(timeout=10)] == ["a", "b"]
    begin = time.monotonic()
    with pytest.raises(Empty):
        q.get(block=True, timeout=0.3)
    assert 0.25 < time.monotonic() - begin < 5
    # A blocking get in the driver is woken by the actor's put.
    pending = user.give.remote(q, ["late"])
    assert q.get(block=True, timeout=20) == "late"
    assert ray.get(pending) == 1
    q.shutdown()


def test_placement_groups(drv):
    from asyncray.util.placement_group import placement_group, remove_placement_group
    from asyncray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pg = placement_group([{"CPU": 1}], strategy="PACK")
    assert ray.get(pg.ready(), timeout=20) == pg
    wait_for_condition(lambda: ray.available_resources().get("CPU") == NUM_CPUS - 1, 5)
    strategy = PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=0)
    assert ray.get(square.options(scheduling_strategy=strategy).remote(6), timeout=20) == 36
    remove_placement_group(pg)
    wait_for_condition(lambda: ray.available_resources().get("CPU") == NUM_CPUS, 5)


def test_runtime_context_follows_the_driver(shared_head):
    ray.init(address=shared_head.socket, namespace="ctx-ns")
    try:
        job = ray.get_runtime_context().get_job_id()
        assert ray.get_runtime_context().namespace == "ctx-ns"
        assert ray.get(context.remote()) == (job, "ctx-ns")
        c = Counter.remote()
        assert ray.get(c.context.remote()) == (job, "ctx-ns")
    finally:
        ray.shutdown()
    # A second job on the same workers gets its own id and namespace.
    ray.init(address=shared_head.socket, namespace="other-ns")
    try:
        second = ray.get_runtime_context().get_job_id()
        assert second != job
        assert ray.get([context.remote() for _ in range(4)]) == [(second, "other-ns")] * 4
        # An actor a task names lands in the task's job's namespace.
        assert ray.get(name_an_actor.remote("made-by-a-task")) == (second, "other-ns")
        made = ray.get_actor("made-by-a-task")
        assert ray.get(made.context.remote()) == (second, "other-ns")
        ray.kill(made)
    finally:
        ray.shutdown()


def test_sigterm_exits_through_shutdown_as_embedded(shared_head):
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ray.init(address=shared_head.socket)
    try:
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        with pytest.raises(SystemExit) as info:
            handler(signal.SIGTERM, None)  # what a SIGTERM does
        assert info.value.code == signal.SIGTERM
    finally:
        ray.shutdown()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


# ==================================================================== 2. output per job


def test_each_driver_sees_its_own_tasks_output_only(head, tmp_path):
    code = _driver(
        """
        ray.init(address="auto")
        me = sys.argv[1] if len(sys.argv) > 1 else os.environ["WHO"]
        d = Path(os.environ["BARRIER"])

        @ray.remote
        def speak(who):
            # Both jobs' tasks print while both drivers are connected.
            (d / f"printing-{who}").touch()
            print(f"hello from the task of {who}", flush=True)
            return wait_for_file(d / f"printing-{'b' if who == 'a' else 'a'}", 20)

        @ray.remote
        class Speaker:
            def speak(self, who):
                print(f"actor of {who} speaks", flush=True)
                return who

        assert ray.get(speak.remote(me), timeout=30)
        assert ray.get(Speaker.remote().speak.remote(me), timeout=30) == me
        # Forwarded output may trail the result: wait until ours arrived.
        ray.shutdown()
        print("driver done", me)
        """
    )
    a = head.spawn_driver(code, WHO="a", BARRIER=str(tmp_path))
    b = head.spawn_driver(code, WHO="b", BARRIER=str(tmp_path))
    out_a, err_a = a.communicate(timeout=60)
    out_b, err_b = b.communicate(timeout=60)
    assert a.returncode == 0, err_a + head.read_log()
    assert b.returncode == 0, err_b + head.read_log()
    assert "hello from the task of a" in out_a
    assert "actor of a speaks" in out_a
    assert "hello from the task of b" in out_b
    assert "actor of b speaks" in out_b
    assert " of b" not in out_a + err_a
    assert " of a" not in out_b + err_b
    # A later job's tasks print to its own driver, in workers of its own (as
    # Ray's, a task worker serves one job for life).
    used = set(re.findall(r"\(speak pid=(\d+)\) hello", out_a + out_b))
    assert len(used) == 2, out_a + out_b
    c = head.run_driver(
        _driver(
            """
            ray.init(address="auto")

            @ray.remote
            def speak_again(i):
                print(f"line {i} of c", flush=True)
                return os.getpid()

            print("pids", *sorted(set(ray.get([speak_again.remote(i) for i in range(8)]))))
            """
        )
    )
    pids = c.stdout.split("pids ")[1].split()
    assert not set(pids) & used, "a worker of an earlier job ran a later job's task"
    for i in range(8):
        assert f") line {i} of c" in c.stdout
    assert " of a" not in c.stdout and " of b" not in c.stdout
    assert "internal error" not in head.read_log()


# ==================================================================== 3. shared resources


def test_drivers_share_the_heads_cpus_and_workers(head, tmp_path):
    holder = head.spawn_driver(
        _driver(
            """
            ray.init(address="auto")
            d = Path(os.environ["BARRIER"])

            @ray.remote(num_cpus=2)
            def hold():
                (d / "holding").write_text(str(os.getpid()))
                assert wait_for_file(d / "release", 30)
                (d / "released").touch()
                return "held"

            print(ray.get(hold.remote(), timeout=60))
            """
        ),
        BARRIER=str(tmp_path),
    )
    try:
        assert wait_for_file(tmp_path / "holding", 30), head.read_log()
        other = head.spawn_driver(
            _driver(
                """
                ray.init(address="auto")
                d = Path(os.environ["BARRIER"])

                @ray.remote(num_cpus=1)
                def after():
                    # Only once the other job's task gave its CPUs back.
                    return (d / "released").exists(), os.getpid()

                assert ray.available_resources().get("CPU", 0) == 0
                ref = after.remote()
                ready, _ = ray.wait([ref], timeout=0.5)
                print("waited", ready == [])
                (d / "release").touch()
                ran_after, pid = ray.get(ref, timeout=30)
                print("ran after release", ran_after)
                """
            ),
            BARRIER=str(tmp_path),
        )
        out, err = other.communicate(timeout=60)
        assert other.returncode == 0, err + head.read_log()
        assert out.splitlines() == ["waited True", "ran after release True"]
        out, err = holder.communicate(timeout=30)
        assert holder.returncode == 0, err
        assert out.splitlines() == ["held"]
    finally:
        for proc in (holder,):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


_BUSY_DRIVER = """
ray.init(address="auto")
d = Path(os.environ["BARRIER"])
who = os.environ["WHO"]

@ray.remote
def double(i):
    time.sleep(0.003)
    return i * 2

@ray.remote
def nested(i):
    return sum(ray.get([double.remote(i), double.remote(i + 1)]))

rounds = 0
while True:
    refs = [double.remote(i) for i in range(100)] + [nested.remote(i) for i in range(20)]
    out = ray.get(refs, timeout=60)
    assert out == [i * 2 for i in range(100)] + [4 * i + 2 for i in range(20)], out
    rounds += 1
    if rounds == 2:
        (d / f"running-{who}").touch()
    if who == "survivor" and (d / "stop").exists():
        break
print("rounds", rounds)
"""


def test_a_driver_killed_mid_flight_disturbs_no_other_job(head, tmp_path):
    code = _driver(_BUSY_DRIVER)
    survivor = head.spawn_driver(code, BARRIER=str(tmp_path), WHO="survivor")
    try:
        assert wait_for_file(tmp_path / "running-survivor", 40), head.read_log()
        for k in range(2):
            victim = head.spawn_driver(code, BARRIER=str(tmp_path), WHO=f"victim{k}")
            assert wait_for_file(tmp_path / f"running-victim{k}", 40), head.read_log()
            # Its tasks, nested tasks and pipelined tasks share the survivor's workers.
            victim.send_signal(signal.SIGKILL)
            assert victim.wait(timeout=20) == -signal.SIGKILL
            victim.communicate()
        (tmp_path / "stop").touch()
        out, err = survivor.communicate(timeout=60)
        assert survivor.returncode == 0, err + head.read_log()
        assert out.startswith("rounds "), out
    finally:
        if survivor.poll() is None:
            survivor.kill()
            survivor.communicate()
    assert "internal error" not in head.read_log()


# ==================================================================== 4. a job ends with its driver

_JOB_DRIVER = """
ray.init(address="auto", namespace="rel")
d = Path(os.environ["BARRIER"])

@ray.remote
class Keeper:
    def ping(self):
        return "alive"

@ray.remote
def long():
    (d / "task-pid").write_text(str(os.getpid()))
    time.sleep(120)

mine = Keeper.options(name="mine").remote()
keeper = Keeper.options(name="keeper", lifetime="detached").remote()
assert ray.get([mine.ping.remote(), keeper.ping.remote()]) == ["alive", "alive"]
pg = ray.util.placement_group([{"CPU": 1}])
ray.get(pg.ready(), timeout=30)
task = long.remote()
assert wait_for_file(d / "task-pid", 30)

@ray.remote(num_cpus=0)
def ticks():
    i = 0
    while True:
        yield i
        i += 1
        time.sleep(0.01)

gen = ticks.options(num_returns="streaming").remote()
assert ray.get(next(gen)) == 0  # a generator runs when the job ends
import numpy as np
held = [ray.put(np.zeros(300_000)), ray.put("small"), ray.put(list(range(100)))]
(d / "ready").touch()
if os.environ["HOW"] == "exit":
    assert wait_for_file(d / "go", 60)
    sys.exit(0)  # atexit disconnects; nothing was given back by hand
try:
    ray.get(task)  # SIGKILLed or SIGTERMed while it waits here
finally:
    print("finally ran", flush=True)
"""


@pytest.mark.parametrize("how", ["exit", "sigkill", "sigterm"])
def test_a_drivers_job_is_released_when_it_goes(head, tmp_path, how):
    ray.init(address=head.socket, namespace="observer")
    try:
        baseline = _status(head.socket)["objects"]["count"]
        driver = head.spawn_driver(_driver(_JOB_DRIVER), BARRIER=str(tmp_path), HOW=how)
        try:
            assert wait_for_file(tmp_path / "ready", 40), head.read_log()
            task_pid = int((tmp_path / "task-pid").read_text())
            mine = ray.get_actor("mine", namespace="rel")
            assert ray.get(mine.ping.remote(), timeout=10) == "alive"
            assert ray.available_resources().get("CPU", 0) == 0  # the task and the group
            during = _status(head.socket)
            assert during["objects"]["count"] >= baseline + 3
            assert driver.pid in {d["driver_pid"] for d in during["drivers"]}
            if how == "exit":
                (tmp_path / "go").touch()
                assert driver.wait(timeout=20) == 0, driver.communicate()[1]
            elif how == "sigkill":
                driver.send_signal(signal.SIGKILL)
                assert driver.wait(timeout=20) == -signal.SIGKILL
            else:
                # As embedded: SIGTERM exits through SystemExit(15), finally blocks run.
                driver.send_signal(signal.SIGTERM)
                out, err = driver.communicate(timeout=20)
                assert driver.returncode == signal.SIGTERM, err
                assert out.splitlines() == ["finally ran"], out + err
        finally:
            if driver.poll() is None:
                driver.kill()
            driver.communicate()
        wait_for_condition(lambda: _lookup_fails("mine", "rel"), timeout=RELEASE_S)
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(mine.ping.remote(), timeout=10)
        wait_for_condition(lambda: process_gone(task_pid), timeout=RELEASE_S)
        wait_for_condition(
            lambda: ray.available_resources().get("CPU", 0) == NUM_CPUS, timeout=RELEASE_S
        )
        wait_for_condition(
            lambda: _status(head.socket)["objects"]["count"] == baseline, timeout=RELEASE_S
        )
        shown = cli("status", "--address", head.directory, env=head.env())
        assert shown.returncode == 0, shown.stderr
        assert f" {baseline} objects; shared memory 0 B used" in shown.stdout, shown.stdout
        assert f"pid {driver.pid} " not in shown.stdout
        assert f"pid {os.getpid()} " in shown.stdout  # this observer is still a driver
        # The detached actor outlives its job until someone kills it.
        keeper = ray.get_actor("keeper", namespace="rel")
        assert ray.get(keeper.ping.remote(), timeout=10) == "alive"
        ray.kill(keeper)
        wait_for_condition(lambda: _lookup_fails("keeper", "rel"), timeout=RELEASE_S)
    finally:
        ray.shutdown()
    assert "internal error" not in head.read_log()


# ============================================================ 5. the head stops under a driver


def test_a_driver_whose_head_stops_gets_a_clear_error(head, tmp_path):
    driver = head.spawn_driver(
        _driver(
            """
            ray.init(address="auto")
            d = Path(os.environ["BARRIER"])

            @ray.remote
            def long():
                (d / "started").touch()
                time.sleep(120)

            ref = long.remote()
            assert wait_for_file(d / "started", 30)
            (d / "waiting").touch()
            try:
                ray.get(ref)
                print("get returned")
            except ray.exceptions.RaySystemError as e:
                print("get:", time.time(), e)
            for name, call in [
                ("get", lambda: ray.get(ref)),
                ("remote", lambda: long.remote()),
                ("put", lambda: ray.put(1)),
                ("get_actor", lambda: ray.get_actor("nobody")),
            ]:
                try:
                    call()
                    print(name, "did not raise")
                except ray.exceptions.RaySystemError as e:
                    print(name + ":", e)
            ray.shutdown()
            print("shut down")
            """
        ),
        BARRIER=str(tmp_path),
    )
    try:
        assert wait_for_file(tmp_path / "waiting", 40), head.read_log()
        stopping = time.time()
        head.stop()
        out, err = driver.communicate(timeout=20)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
    assert driver.returncode == 0, err
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "get",
        "get",
        "remote",
        "put",
        "get_actor",
        "shut down",
    ], out
    failed_at = float(lines[0].split()[1])
    assert failed_at - stopping < 5, "the waiting get noticed the lost head late"
    for line in lines[:-1]:
        assert f"The connection to the asyncray head at {head.socket} was lost" in line, line


# ================================================================== 1b. more of the API, connected


@ray.remote
def fail(x):
    return 1 / x


@ray.remote
def call_actor(actor, x):
    return ray.get(actor.add.remote(x))


@ray.remote
def big_items(n):
    for i in range(n):
        yield np.full(50_000, i, dtype=np.float64)


@ray.remote
class Broken:
    def __init__(self):
        raise RuntimeError("no constructor today")

    def ping(self):
        return "pong"


@ray.remote
class Holder:
    def __init__(self, refs):
        self.refs = refs

    def total(self):
        return float(sum(float(ray.get(r).sum()) for r in self.refs))


def test_errors_keep_their_types_and_messages(drv):
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        ray.get(fail.remote(0))
    with pytest.raises(ray.exceptions.RayTaskError) as info:
        ray.get(fail.remote(0))
    assert "fail" in str(info.value)
    b = Broken.remote()
    with pytest.raises(ray.exceptions.ActorDiedError, match="no constructor today"):
        ray.get(b.ping.remote(), timeout=20)


def test_handles_and_refs_travel_into_tasks(drv):
    c = Counter.remote()
    # Three callers at once: each sees one of the counts, in any order.
    assert sorted(ray.get([call_actor.remote(c, 1) for _ in range(3)], timeout=30)) == [1, 2, 3]
    big = ray.put(np.ones(100_000))
    # A ref inside a list is passed as a ref; the task gets it.
    holder = Holder.remote([big])
    assert ray.get(holder.total.remote(), timeout=20) == 100_000.0


def test_large_streamed_items_and_views_that_outlive_their_ref(drv):
    gen = big_items.options(num_returns="streaming").remote(4)
    arrays = [ray.get(ref) for ref in gen]
    assert [float(a[0]) for a in arrays] == [0.0, 1.0, 2.0, 3.0]
    assert all(not a.flags.writeable for a in arrays)
    # Views outlive their refs; new objects must not overwrite them.
    del gen
    for i in range(10):
        ray.get(ray.put(np.full(50_000, 100 + i, dtype=np.float64)))
    assert [float(a.sum()) for a in arrays] == [50_000.0 * i for i in range(4)]


def test_threads_of_one_driver_share_its_connection(drv):
    results: dict[int, list[int]] = {}

    def work(k: int) -> None:
        results[k] = ray.get([square.remote(k * 10 + i) for i in range(10)], timeout=30)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=40)
    assert results == {k: [(k * 10 + i) ** 2 for i in range(10)] for k in range(4)}


def test_cluster_state_is_the_heads(drv, shared_head):
    assert ray.is_initialized()
    assert ray.cluster_resources()["CPU"] == NUM_CPUS
    nodes = ray.nodes()
    assert len(nodes) == 1 and nodes[0]["Alive"]
    assert ray.get_runtime_context().get_node_id() == shared_head.info["node_id"]
    assert nodes[0]["NodeID"] == shared_head.info["node_id"]


def test_cancelling_a_running_generator(drv, tmp_path):
    @ray.remote
    def ticker(directory):
        for i in range(1000):
            yield i
            time.sleep(0.05)

    gen = ticker.options(num_returns="streaming").remote(str(tmp_path))
    assert ray.get(next(gen)) == 0
    ray.cancel(gen)
    with pytest.raises(TaskCancelledError):
        for ref in gen:
            ray.get(ref)


# ==================================================================== 4b. what outlives a job

_OUTLIVED_DRIVER = """
import numpy as np
ray.init(address="auto", namespace="shared")
d = Path(os.environ["BARRIER"])

@ray.remote
class Holder:
    def __init__(self, refs):
        self.refs = refs
    def total(self):
        return float(sum(float(ray.get(r).sum()) for r in self.refs))

@ray.remote
class Busy:
    def ping(self):
        return "pong"

    def hold(self):
        (d / "busy-started").touch()
        time.sleep(120)

@ray.remote
def pid():
    return os.getpid()

holder = Holder.options(name="holder", lifetime="detached").remote([ray.put(np.ones(200_000))])
assert ray.get(holder.total.remote()) == 200_000.0
pg = ray.util.placement_group([{"CPU": 1}], name="kept", lifetime="detached")
ray.get(pg.ready(), timeout=30)
busy = Busy.options(name="busy").remote()
assert ray.get(busy.ping.remote()) == "pong"
(d / "pids").write_text(" ".join(str(p) for p in ray.get([pid.remote() for _ in range(4)])))
(d / "ready").touch()
from asyncray.util.queue import Queue
Queue().get(timeout=120)  # SIGKILLed while it waits here
"""


def test_what_a_job_leaves_behind_serves_other_jobs(head, tmp_path):
    from asyncray.util.placement_group import get_placement_group, remove_placement_group

    driver = head.spawn_driver(_driver(_OUTLIVED_DRIVER), BARRIER=str(tmp_path))
    ray.init(address=head.socket, namespace="shared")
    try:
        assert wait_for_file(tmp_path / "ready", 40), head.read_log()
        busy = ray.get_actor("busy")
        call = busy.hold.remote()
        assert wait_for_file(tmp_path / "busy-started", 20)
        driver.send_signal(signal.SIGKILL)
        driver.communicate(timeout=20)
        # A call of another job on the dead job's actor fails, saying why.
        with pytest.raises(ray.exceptions.ActorDiedError, match="owner has died"):
            ray.get(call, timeout=RELEASE_S)
        # The detached actor keeps the objects it was given, the detached group its CPU.
        holder = ray.get_actor("holder")
        assert ray.get(holder.total.remote(), timeout=10) == 200_000.0
        pg = get_placement_group("kept")
        wait_for_condition(
            lambda: ray.available_resources().get("CPU", 0) == NUM_CPUS - 1, timeout=RELEASE_S
        )
        # This job's tasks run in this job's namespace, never in the dead job's
        # workers (those exit with their job; a task worker serves one job).
        his = {int(p) for p in (tmp_path / "pids").read_text().split()}

        @ray.remote
        def where():
            return (
                os.getpid(),
                ray.get_runtime_context().namespace,
                ray.get(ray.get_actor("holder").total.remote()),
            )

        mine = ray.get([where.remote() for _ in range(4)], timeout=30)
        assert {ns for _, ns, _ in mine} == {"shared"}
        assert {t for _, _, t in mine} == {200_000.0}
        assert not his & {p for p, _, _ in mine}, "a worker of the dead job ran this job's task"
        remove_placement_group(pg)
        ray.kill(holder)
        wait_for_condition(
            lambda: ray.available_resources().get("CPU", 0) == NUM_CPUS, timeout=RELEASE_S
        )
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
        ray.shutdown()
    assert "internal error" not in head.read_log()


def test_output_of_nested_tasks_actors_and_stderr_reaches_the_driver(head):
    code = _driver(
        """
        ray.init(address="auto", log_to_driver=os.environ["LOG"] == "1")

        @ray.remote
        def inner():
            print("inner task out", flush=True)
            print("inner task err", file=sys.stderr, flush=True)
            return 1

        @ray.remote
        def outer():
            print("outer task out", flush=True)
            return ray.get(inner.remote())

        @ray.remote
        class Loud:
            def __init__(self):
                print("actor init out", flush=True)

            def speak(self):
                print("actor call err", file=sys.stderr, flush=True)
                return 2

        assert ray.get(outer.remote(), timeout=30) == 1
        assert ray.get(Loud.remote().speak.remote(), timeout=30) == 2
        ray.shutdown()
        print("driver done", flush=True)
        """
    )
    done = head.run_driver(code, LOG="1")
    for line in ("outer task out", "inner task out", "actor init out", "driver done"):
        assert line in done.stdout, (line, done.stdout, done.stderr)
    for line in ("inner task err", "actor call err"):
        assert line in done.stderr, (line, done.stdout, done.stderr)
    assert "task err" not in done.stdout and "task out" not in done.stderr
    quiet = head.run_driver(code, LOG="0")
    assert quiet.stdout.splitlines() == ["driver done"], quiet.stdout
    assert "task" not in quiet.stderr and "actor" not in quiet.stderr, quiet.stderr
    assert "internal error" not in head.read_log()


def test_embedded_and_connected_sessions_follow_each_other(shared_head):
    big = np.arange(150_000, dtype=np.float64)
    for address in (shared_head.socket, None, shared_head.socket, None):
        ray.init(address=address, num_cpus=None if address else NUM_CPUS)
        try:
            ref = ray.put(big)
            assert float(ray.get(total.remote(ref))[0]) == float(big.sum())
            got = ray.get(make_array.remote(150_000))
            np.testing.assert_array_equal(got, big)
            assert ray.get([square.remote(i) for i in range(4)]) == [0, 1, 4, 9]
            del got, ref
        finally:
            ray.shutdown()


def test_every_kind_of_wait_ends_when_the_head_stops(head, tmp_path):
    from asyncray.util.queue import Queue

    @ray.remote
    def long():
        time.sleep(120)

    @ray.remote
    def ticks():
        yield 1
        time.sleep(120)

    @ray.remote
    class Slow:
        async def wait(self):
            await asyncio.sleep(120)

    ray.init(address=head.socket)
    try:
        queue = Queue()
        slow = Slow.remote()
        gen = ticks.options(num_returns="streaming").remote()
        assert ray.get(next(gen), timeout=20) == 1

        async def awaiting():
            await slow.wait.remote()

        waits = {
            "get": lambda: ray.get(long.remote()),
            "wait": lambda: ray.wait([long.remote()], timeout=100),
            "queue get": lambda: queue.get(timeout=100),
            "generator next": lambda: next(gen),
            "await": lambda: asyncio.run(awaiting()),
        }
        outcomes: dict[str, BaseException | None] = {}

        def run(name):
            try:
                waits[name]()
                outcomes[name] = None
            except BaseException as e:
                outcomes[name] = e

        threads = [threading.Thread(target=run, args=(name,)) for name in waits]
        for t in threads:
            t.start()
        wait_for_condition(lambda: _status(head.socket)["tasks"]["live"] >= 3, timeout=20)
        head.stop()
        stopped = time.monotonic()
        for t in threads:
            t.join(timeout=10)
        assert time.monotonic() - stopped < RELEASE_S
        lost = f"The connection to the asyncray head at {head.socket} was lost"
        for name in waits:
            assert isinstance(outcomes.get(name), RaySystemError), (name, outcomes.get(name))
            assert lost in str(outcomes[name]), (name, outcomes[name])
        with pytest.raises(RaySystemError, match=lost):
            queue.put(1)
        with pytest.raises(RaySystemError, match=lost):
            Slow.remote()
    finally:
        ray.shutdown()


def test_two_drivers_share_one_named_actor_each_in_its_own_order(head, tmp_path):
    code = _driver(
        """
        from _helpers import arrive_and_wait
        ray.init(address="auto", namespace="tally")
        me = os.environ["WHO"]

        @ray.remote
        class Tally:
            def __init__(self):
                self.seen = []

            def record(self, who, i):
                self.seen.append((who, i))
                return len(self.seen)

            def seen_by(self, who):
                return [i for w, i in self.seen if w == who]

        assert arrive_and_wait(os.environ["BARRIER"], me, 2, 30)
        tally = Tally.options(name="tally", get_if_exists=True, lifetime="detached").remote()
        refs = [tally.record.remote(me, i) for i in range(200)]
        counts = ray.get(refs, timeout=30)
        assert counts == sorted(counts), "a caller's calls ran out of order"
        assert ray.get(tally.seen_by.remote(me)) == list(range(200))
        print(tally._actor_id.hex())
        """
    )
    drivers = [head.spawn_driver(code, WHO=who, BARRIER=str(tmp_path)) for who in ("a", "b")]
    outs = []
    for proc in drivers:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err + head.read_log()
        outs.append(out.strip())
    assert outs[0] == outs[1], "get_if_exists made two actors"
    ray.init(address=head.socket, namespace="tally")
    try:
        tally = ray.get_actor("tally")
        assert ray.get(tally.record.remote("c", 0)) == 401  # both drivers' 200 calls
        ray.kill(tally)
    finally:
        ray.shutdown()
    assert "internal error" not in head.read_log()


def test_connecting_where_no_head_runs_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("ASYNCRAY_HEAD_DIR", str(tmp_path / "nobody"))
    with pytest.raises(ConnectionError, match="Could not find any running asyncray head"):
        ray.init(address="auto")
    assert not ray.is_initialized()
    with Head(tmp_path / "head", NUM_CPUS) as head:
        ray.init(address=head.socket)
        ray.shutdown()
    # The head stopped: its address names no head any more.
    with pytest.raises(ConnectionError, match="Could not find any running asyncray head"):
        ray.init(address=head.socket)
    assert not ray.is_initialized()


def test_a_drivers_own_modules_import_in_the_heads_workers(head, tmp_path):
    # As in Ray: the script's directory and the working directory are on the
    # workers' path while they serve the job (embedded, workers are forks of
    # the driver and have them already).
    project, scripts = tmp_path / "project", tmp_path / "scripts"
    project.mkdir()
    scripts.mkdir()
    lib = """
        import asyncray as ray

        class Point:
            def __init__(self, x):
                self.x = x

        @ray.remote
        class Keeper:
            def keep(self, point):
                return Point(point.x + 1)
        """
    driver = """
        import asyncray as ray
        import {lib}

        ray.init(address="auto")

        @ray.remote
        def use(point):
            return {lib}.Point(3 * point.x)

        keeper = {lib}.Keeper.remote()
        print(ray.get(keeper.keep.remote({lib}.Point(1))).x)
        print(ray.get(use.remote({lib}.Point(2))).x)
        print(ray.get(ray.put({lib}.Point(5))).x)
        """
    (scripts / "scriptlib.py").write_text(textwrap.dedent(lib))
    (scripts / "main.py").write_text(textwrap.dedent(driver.format(lib="scriptlib")))
    (project / "cwdlib.py").write_text(textwrap.dedent(lib))
    runs = [
        [sys.executable, str(scripts / "main.py")],  # its module is beside the script
        [sys.executable, "-c", textwrap.dedent(driver.format(lib="cwdlib"))],  # in the cwd
    ]
    for argv in runs:
        done = subprocess.run(
            argv, cwd=project, env=head.env(), capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == ["2", "6", "5"]
    assert "internal error" not in head.read_log()


def test_two_jobs_with_same_named_modules_each_get_their_own(head, tmp_path):
    code = textwrap.dedent(
        """
        import asyncray as ray, mylib
        ray.init(address="auto")

        @ray.remote
        def value():
            return mylib.VALUE

        print(*sorted(set(ray.get([value.remote() for _ in range(4)]))))
        """
    )
    for name in ("a", "b"):
        project = tmp_path / name
        project.mkdir()
        (project / "mylib.py").write_text(f"VALUE = {name!r}\n")
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=project,
            env=head.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [name]
