"""The shared head end to end: start, two drivers, a detached actor across them, stop."""

from __future__ import annotations

import time

import numpy as np
import pytest

import asyncray as ray

pytestmark = pytest.mark.timeout(60)


def test_a_connected_driver_runs_tasks_actors_and_large_objects(connected):
    @ray.remote
    def double(x):
        return 2 * x

    @ray.remote
    class Counter:
        def __init__(self):
            self.n = 0

        def inc(self):
            self.n += 1
            return self.n

    assert ray.get([double.remote(i) for i in range(10)]) == [2 * i for i in range(10)]
    c = Counter.remote()
    assert ray.get([c.inc.remote() for _ in range(3)]) == [1, 2, 3]
    big = np.arange(1_000_000, dtype=np.int64)
    ref = ray.put(big)
    got = ray.get(ref)
    assert not got.flags.writeable  # a view of the head's shared memory, as in Ray
    assert int(got.sum()) == int(big.sum())


def test_the_tours_two_drivers_share_a_detached_actor(head):
    head.run_driver(
        """
import asyncray as ray
ray.init(address="auto", namespace="colors")
@ray.remote
class Actor:
    def ping(self):
        return "pong"
Actor.options(name="orange", lifetime="detached").remote()
"""
    )
    out = head.run_driver(
        """
import asyncray as ray
ray.init(address="auto", namespace="fruit")
try:
    ray.get_actor("orange")
except ValueError as e:
    print("not in fruit:", "Failed to look up actor with name 'orange'" in str(e))
print(ray.get(ray.get_actor("orange", namespace="colors").ping.remote()))
"""
    ).stdout
    assert out.splitlines() == ["not in fruit: True", "pong"]


def test_a_connected_drivers_context_names_the_head(head):
    ctx = ray.init(address=head.socket, namespace="ctx")
    try:
        assert ctx.address_info["address"] == head.socket
        assert ctx.address_info["namespace"] == "ctx"
        assert ctx.address_info["session_dir"] == head.directory
        assert ctx.dashboard_url == head.info.get("dashboard_url")  # the head's, if it has one
        assert ray.get_runtime_context().get_job_id() == "01000000"
        assert ray.get_runtime_context().namespace == "ctx"
    finally:
        ray.shutdown()


def test_output_reaches_an_idle_driver_after_synchronous_calls(head):
    """Right after sync calls the caller reads its own replies; output still comes when idle."""
    out = head.run_driver(
        """
import time, asyncray as ray
ray.init(address="auto")
@ray.remote
def noop():
    return 1
@ray.remote
def later():
    time.sleep(0.3)
    print("printed while the driver sleeps", flush=True)
for _ in range(50):
    ray.get(noop.remote())
later.remote()
deadline = time.monotonic() + 10
time.sleep(1.0)
print("driver done", flush=True)
"""
    ).stdout
    assert "printed while the driver sleeps" in out.split("driver done")[0]


def test_threads_and_an_event_loop_share_one_connection(connected):
    """Sync callers on several threads and awaits on a loop at once: each reply finds its caller."""
    import asyncio
    import threading

    @ray.remote
    def echo(x):
        return x

    results: dict[int, list[int]] = {}

    def sync_caller(k: int) -> None:
        results[k] = [ray.get(echo.remote(k * 1000 + i)) for i in range(200)]

    async def async_caller() -> list[int]:
        return await asyncio.gather(*[echo.remote(-i) for i in range(300)])

    threads = [threading.Thread(target=sync_caller, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    awaited = asyncio.run(async_caller())
    for t in threads:
        t.join(timeout=30)
    assert awaited == [-i for i in range(300)]
    assert results == {k: [k * 1000 + i for i in range(200)] for k in range(4)}


@pytest.mark.parametrize("variable", ["RAY_ADDRESS", "ASYNCRAY_ADDRESS"])
@pytest.mark.parametrize("address", ["None", "'auto'"])
def test_the_address_variables_name_the_head(head, variable, address):
    """As in Ray: the variable is used when init() gets no address or "auto"."""
    out = head.run_driver(
        f"""
import asyncray as ray
ctx = ray.init(address={address})
print(ctx.address_info["address"])
""",
        ASYNCRAY_HEAD_DIR="/nonexistent-asyncray-dir",
        **{variable: head.socket},
    ).stdout
    assert out.strip() == head.socket


def test_auto_with_no_head_names_asyncray_start(tmp_path):
    import subprocess
    import sys

    from _head import driver_env

    done = subprocess.run(
        [sys.executable, "-c", "import asyncray as ray; ray.init(address='auto')"],
        env=driver_env(ASYNCRAY_HEAD_DIR=str(tmp_path / "none")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "ConnectionError: Could not find any running asyncray head" in done.stderr
    assert "asyncray start --head" in done.stderr


def test_a_call_waiting_at_shutdown_says_asyncray_was_shut_down(head):
    import threading

    ray.init(address=head.socket)

    @ray.remote
    def slow():
        import time

        time.sleep(30)

    ref = slow.remote()
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            ray.get(ref)
        except BaseException as e:
            errors.append(e)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.3)  # let it block in get (nothing to poll: it waits for the head)
    ray.shutdown()
    waiter.join(timeout=10)
    assert not waiter.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], ray.exceptions.RaySystemError)
    assert "shut down" in str(errors[0])


def test_a_jobs_task_workers_are_its_own_and_exit_with_it(head):
    """As Ray's: a task worker serves one job for life, so module state never leaks across."""
    import psutil

    first = head.run_driver(
        """
import os, asyncray as ray
ray.init(address="auto")
@ray.remote
def pid():
    import json
    json.LEAKED = "job one"  # module state a later job must never see
    return os.getpid()
print(*sorted(set(ray.get([pid.remote() for _ in range(6)]))))
"""
    ).stdout.split()
    assert first
    deadline = time.monotonic() + 10
    while any(psutil.pid_exists(int(p)) for p in first) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(psutil.pid_exists(int(p)) for p in first), "the ended job's workers live on"
    second = head.run_driver(
        """
import os, asyncray as ray
ray.init(address="auto")
@ray.remote
def leaked():
    import json
    return getattr(json, "LEAKED", None)
print(set(ray.get([leaked.remote() for _ in range(6)])))
"""
    ).stdout.strip()
    assert second == "{None}"


def test_a_head_whose_directory_is_removed_stops(head):
    """Nobody can reach a head whose socket is gone: it stops instead of running on unseen."""
    import shutil

    import psutil

    procs = head.processes()
    assert procs
    shutil.rmtree(head.directory)
    _gone, alive = psutil.wait_procs(procs, timeout=15)
    assert not alive, f"the unreachable head lives on: {alive}"
    deadline = time.monotonic() + 5
    while head.session_files() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert head.session_files() == []


def test_a_departed_drivers_definitions_go_and_a_detached_actors_class_stays(head):
    """The head's table of definitions stays bounded while drivers come and go, without
    dropping what a live detached actor needs to restart."""
    from asyncray._session import bootstrap

    ray.init(address=head.socket)
    try:
        before = bootstrap.client().query("stats")["functions"]
        head.run_driver(
            """
import asyncray as ray
ray.init(address="auto", namespace="keep")
fns = []
for i in range(20):
    def f(i=i):
        return i
    f.__name__ = f"f{i}"
    fns.append(ray.remote(f))
assert ray.get([g.remote() for g in fns]) == list(range(20))
@ray.remote(max_restarts=1)
class Survivor:
    def ping(self):
        return "pong"
ray.get(Survivor.options(name="survivor", lifetime="detached").remote().ping.remote())
"""
        )
        # The 20 functions go with their driver; the detached actor's class stays.
        deadline = time.monotonic() + 10
        while bootstrap.client().query("stats")["functions"] != before + 1:
            assert time.monotonic() < deadline, bootstrap.client().query("stats")
            time.sleep(0.05)
        survivor = ray.get_actor("survivor", namespace="keep")
        ray.kill(survivor, no_restart=False)  # it restarts: its class must still be there
        deadline = time.monotonic() + 20
        while True:
            try:
                assert ray.get(survivor.ping.remote(), timeout=10) == "pong"
                break
            except ray.exceptions.RayActorError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        ray.kill(survivor)
    finally:
        ray.shutdown()


def test_the_head_polls_only_while_a_driver_talks_to_it(connected, head):
    """After a burst of synchronous calls the head's loop goes back to sleep (no CPU)."""
    import psutil

    @ray.remote
    def one():
        return 1

    for _ in range(300):  # back to back: the head keeps its loop awake between them
        assert ray.get(one.remote()) == 1
    proc = psutil.Process(head.pid)
    time.sleep(0.2)
    before = sum(proc.cpu_times()[:2])
    time.sleep(1.0)
    idle_cpu = sum(proc.cpu_times()[:2]) - before
    assert idle_cpu < 0.1, f"an idle head used {idle_cpu:.2f} s of CPU in 1 s"


def test_busy_poll_keeps_a_loop_awake_for_its_window_only():
    import asyncio

    from asyncray._core import busy_poll

    async def main() -> float:
        loop = asyncio.get_running_loop()
        poll = busy_poll.BusyPoll(loop)
        start = time.perf_counter()
        poll.extend()
        assert poll._running
        # Sleep in the loop: only the poll's own turns keep it from sleeping longer.
        while poll._running:
            await asyncio.sleep(0.00005)
        return time.perf_counter() - start

    elapsed = asyncio.run(main())
    assert busy_poll.SPIN_S <= elapsed < busy_poll.SPIN_S + 0.05
