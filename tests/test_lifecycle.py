"""Nothing outlives the driver: shutdown, normal exit, crashes and SIGKILL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest
from _helpers import wait_for_condition, wait_for_file

import asyncray

# How long the children of a dead driver may linger. Workers notice through
# pipe EOF and a parent-death signal, so this only absorbs scheduling jitter.
ORPHAN_DEADLINE_S = 1.5
# A driver subprocess that does one task and exits must finish within this.
DRIVER_TIMEOUT_S = 30

# Prints the pids of every process the runtime started, then runs ``ending``.
DRIVER = """
import json, os, sys, time
import psutil
import asyncray

asyncray.init(num_cpus=2)

@asyncray.remote
def pid():
    return os.getpid()

@asyncray.remote
def sleep_forever():
    time.sleep(3600)

assert asyncray.get(pid.remote()) != os.getpid()
running = sleep_forever.remote()
print(json.dumps([c.pid for c in psutil.Process().children(recursive=True)]), flush=True)
{ending}
"""

ENDINGS = {
    "falls-off-the-end": "",
    "sys-exit": "sys.exit(3)",
    "uncaught-exception": "raise RuntimeError('driver crashed')",
    "os-exit-skipping-atexit": "os._exit(0)",
}


def driver_env():
    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.abspath(asyncray.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    return env


def driver_script(ending):
    return DRIVER.format(ending=textwrap.dedent(ending))


def gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def assert_all_gone(pids, deadline_s):
    deadline = time.monotonic() + deadline_s
    while not all(gone(p) for p in pids):
        if time.monotonic() >= deadline:
            alive = [p for p in pids if not gone(p)]
            for p in alive:  # do not leave them for the rest of the suite
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            raise AssertionError(f"processes {alive} outlived their driver by {deadline_s} s")
        time.sleep(0.02)


def test_shutdown_leaves_no_child_processes(shutdown_only):
    asyncray.init(num_cpus=2)

    @asyncray.remote
    def pid():
        return os.getpid()

    worker_pids = set(asyncray.get([pid.remote() for _ in range(4)]))
    children = psutil.Process().children(recursive=True)
    assert worker_pids <= {c.pid for c in children}
    asyncray.shutdown()
    assert_all_gone([c.pid for c in children], ORPHAN_DEADLINE_S)
    assert psutil.Process().children(recursive=True) == []


def test_shutdown_with_a_running_task_is_prompt(shutdown_only, tmp_path):
    asyncray.init(num_cpus=2)

    @asyncray.remote
    def stuck(started):
        open(started, "w").close()
        time.sleep(3600)

    ref = stuck.remote(str(tmp_path / "started"))
    assert wait_for_file(tmp_path / "started")
    children = psutil.Process().children(recursive=True)
    start = time.monotonic()
    asyncray.shutdown()
    assert time.monotonic() - start < 5
    assert_all_gone([c.pid for c in children], ORPHAN_DEADLINE_S)
    del ref


@pytest.mark.parametrize("ending", ENDINGS.values(), ids=ENDINGS.keys())
def test_driver_exit_leaves_no_processes(ending):
    result = subprocess.run(
        [sys.executable, "-c", driver_script(ending)],
        env=driver_env(),
        capture_output=True,
        text=True,
        timeout=DRIVER_TIMEOUT_S,
    )
    lines = result.stdout.splitlines()
    assert lines, f"driver printed nothing; stderr:\n{result.stderr}"
    pids = json.loads(lines[0])
    assert pids, "the runtime should have started at least one process"
    assert_all_gone(pids, ORPHAN_DEADLINE_S)


def test_sigkilled_driver_leaves_no_processes():
    script = driver_script("sys.stdin.read()")
    with subprocess.Popen(
        [sys.executable, "-c", script],
        env=driver_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as driver:
        try:
            line = driver.stdout.readline()
            assert line, "driver died before reporting its children"
            pids = json.loads(line)
            assert pids
            assert all(not gone(p) for p in pids)
        finally:
            driver.kill()
            driver.wait(timeout=DRIVER_TIMEOUT_S)
    assert_all_gone(pids, ORPHAN_DEADLINE_S)


def test_children_use_no_cpu_once_calls_stop(ray_start):
    """Workers and actors poll between back-to-back calls, then sleep."""

    @asyncray.remote
    def one():
        return 1

    @asyncray.remote
    class Counter:
        def __init__(self):
            self.n = 0

        def add(self):
            self.n += 1
            return self.n

    @asyncray.remote
    class AsyncEcho:
        async def echo(self, x):
            return x

    counter = Counter.remote()
    echo = AsyncEcho.remote()
    for i in range(300):  # back to back: the children poll between calls
        asyncray.get(one.remote())
        asyncray.get(counter.add.remote())
        asyncray.get(echo.echo.remote(i))
    time.sleep(0.1)  # longer than any poll
    children = psutil.Process().children(recursive=True)
    before = {c.pid: sum(c.cpu_times()[:2]) for c in children}
    time.sleep(1.0)
    used = {c.pid: sum(c.cpu_times()[:2]) - before[c.pid] for c in children}
    # An idle child costs nothing; a poller that never stopped would use ~1 s.
    assert max(used.values()) < 0.05, used


def test_a_child_killed_while_polling_gives_its_poll_slot_back():
    from asyncray._wire.polling import PollSlots as _PollSlots

    slots = _PollSlots(1)
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child takes the only slot and is killed holding it
        slots.take()
        os.write(ready_w, b"x")
        time.sleep(60)
        os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"x"
        assert slots.take() == -1  # held by the child
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        assert slots.take() == 0  # the kernel gave it back
        slots.give_back(0)
    finally:
        slots.close()
        os.close(ready_r)
        os.close(ready_w)
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def _scheduling_policy(tid: int) -> int:
    """A thread's scheduling policy, from /proc (field 41 of its stat line)."""
    with open(f"/proc/self/task/{tid}/stat") as f:
        after_comm = f.read().rsplit(")", 1)[1].split()
    return int(after_comm[41 - 3])


LINUX_POLICIES = pytest.mark.skipif(
    not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policies"
)


@LINUX_POLICIES
def test_runtime_thread_does_not_preempt_the_driver(ray_start):
    """The runtime thread is SCHED_BATCH (runs when the driver blocks); the user's keep theirs."""
    runtime_thread = asyncray._api._require_session().thread
    assert _scheduling_policy(runtime_thread.native_id) == os.SCHED_BATCH
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
    assert _scheduling_policy(threading.get_native_id()) == os.SCHED_OTHER


@LINUX_POLICIES
def test_runtime_thread_is_normal_while_driver_threads_wait(ray_start, tmp_path):
    """Blocked in get, no driver thread needs the GIL: the runtime may preempt busy workers."""

    @asyncray.remote(num_cpus=0)
    def gated(name):
        wait_for_file(tmp_path / name)
        return name

    session = asyncray._api._require_session()
    runtime_tid = session.thread.native_id
    results: dict[str, str] = {}

    def waiter(name):
        results[name] = asyncray.get(gated.remote(name))

    threads = {name: threading.Thread(target=waiter, args=(name,)) for name in ("a", "b")}
    for thread in threads.values():
        thread.start()
    try:
        wait_for_condition(lambda: session.client.wakeups.waiting_threads == 2)
        assert _scheduling_policy(runtime_tid) == os.SCHED_OTHER
        (tmp_path / "a").touch()
        threads["a"].join(timeout=10)
        assert results == {"a": "a"}
        # "b" still waits: the runtime stays a normal thread.
        assert _scheduling_policy(runtime_tid) == os.SCHED_OTHER
    finally:
        (tmp_path / "a").touch()
        (tmp_path / "b").touch()
        for thread in threads.values():
            thread.join(timeout=10)
    assert results == {"a": "a", "b": "b"}
    assert _scheduling_policy(runtime_tid) == os.SCHED_BATCH


@LINUX_POLICIES
def test_a_wait_that_outlives_the_runtime_thread_changes_no_policy():
    """A get blocked across shutdown resumes cleanly; a forgotten thread id is never steered."""
    from asyncray._clients.wakeups import RuntimeWakeups

    wakeups = RuntimeWakeups()
    adopted, forget, forgotten, finish = (threading.Event() for _ in range(4))
    tids: list[int] = []

    def runtime_thread():
        tids.append(threading.get_native_id())
        wakeups.adopt_current_thread()
        adopted.set()
        forget.wait(10)
        wakeups.forget_thread()
        forgotten.set()
        finish.wait(10)  # stay alive: its policy is read below

    thread = threading.Thread(target=runtime_thread)
    thread.start()
    try:
        assert adopted.wait(10)
        assert _scheduling_policy(tids[0]) == os.SCHED_BATCH
        wakeups.driver_blocks()
        assert _scheduling_policy(tids[0]) == os.SCHED_OTHER
        forget.set()
        assert forgotten.wait(10)
        wakeups.driver_resumes()  # must neither raise nor touch the forgotten id
        assert _scheduling_policy(tids[0]) == os.SCHED_OTHER
    finally:
        forget.set()
        finish.set()
        thread.join(10)
