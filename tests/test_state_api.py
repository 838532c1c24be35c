"""Ray's state API and timeline: what runs, what waits, what ended, where the time went.

A user whose job is slow or stuck lists tasks by state, finds the actor and
the worker, and opens the timeline in Perfetto (#18).
"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

import asyncray
from asyncray.util import state
from asyncray.util.state import RayStateApiException

pytestmark = pytest.mark.timeout(60)

NUM_CPUS = 2


@asyncray.remote
def square(x):
    if x == 3:
        raise ValueError("three")
    return x * x


@asyncray.remote
def hold(_ready):
    return os.getpid()


@asyncray.remote
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n

    def pid(self):
        return os.getpid()


def _settle(refs):
    asyncray.wait(refs, num_returns=len(refs), timeout=30)


def test_the_state_api_needs_a_session():
    with pytest.raises(asyncray.exceptions.RaySystemError, match=r"before ray.init\(\)"):
        state.list_tasks()
    with pytest.raises(RuntimeError, match="Timeline requires Ray to be initialized"):
        asyncray.timeline()


def test_list_tasks_shows_finished_failed_running_and_waiting_tasks(shutdown_only):
    asyncray.init(num_cpus=NUM_CPUS)
    _settle([square.remote(i) for i in range(5)])
    slow_gate_ref = _SlowGate.remote()  # hold() waits for its argument, a call that blocks
    running = hold.remote(slow_gate_ref.wait.remote())
    deadline = time.monotonic() + 10
    while not state.list_tasks(filters=[("func_or_class_name", "=", "_SlowGate.wait")]):
        assert time.monotonic() < deadline
        time.sleep(0.01)

    tasks = state.list_tasks(filters=[("name", "=", "square")], detail=True)
    assert sorted(t.state for t in tasks) == ["FAILED"] + ["FINISHED"] * 4
    failed = next(t for t in tasks if t.state == "FAILED")
    assert failed.error_type == "TASK_EXECUTION_EXCEPTION"
    assert failed.type == "NORMAL_TASK" and failed.func_or_class_name == "square"
    assert failed.required_resources == {"CPU": 1.0}
    assert failed.start_time_ms <= failed.end_time_ms
    assert failed.creation_time_ms <= failed.start_time_ms
    assert abs(failed.end_time_ms / 1000 - time.time()) < 30
    assert failed.worker_pid and len(failed.worker_id) == 56 and failed.node_id

    waiting = state.list_tasks(filters=[("name", "=", "hold")])
    assert [t.state for t in waiting] == ["PENDING_ARGS_AVAIL"]
    # Non-detail rows leave the detail fields out, as Ray's do.
    assert waiting[0].required_resources is None and waiting[0].start_time_ms is None
    asyncray.get(slow_gate_ref.open.remote())
    assert asyncray.get(running, timeout=10) > 0


@asyncray.remote
class _SlowGate:
    def __init__(self):
        self.event = threading.Event()

    def wait(self):
        self.event.wait(30)

    def open(self):
        self.event.set()


_SlowGate = _SlowGate.options(max_concurrency=2)


def test_a_running_task_is_running_on_the_worker_that_reports_it(shutdown_only):
    asyncray.init(num_cpus=NUM_CPUS)
    gate = _SlowGate.remote()
    asyncray.get(gate.__ray_ready__.remote())

    @asyncray.remote
    def blocked(g):
        asyncray.get(g.wait.remote())
        return asyncray.get_runtime_context().get_worker_id(), os.getpid()

    ref = blocked.remote(gate)
    deadline = time.monotonic() + 10
    while not (running := state.list_tasks(filters=[("name", "=", "blocked")])) or (
        running[0].state != "RUNNING"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    (task,) = running
    asyncray.get(gate.open.remote())
    worker_id, pid = asyncray.get(ref)
    assert (task.worker_id, task.worker_pid) == (worker_id, pid)
    got = state.get_task(task.task_id)
    assert got is not None and got.state == "FINISHED" and got.end_time_ms is not None
    assert state.get_task("00" * 24) is None


def test_actors_and_their_calls(shutdown_only):
    asyncray.init(num_cpus=NUM_CPUS, namespace="shop")
    counter = Counter.options(name="c1").remote()
    assert asyncray.get([counter.incr.remote() for _ in range(3)]) == [1, 2, 3]
    pid = asyncray.get(counter.pid.remote())

    (actor,) = state.list_actors(detail=True)
    assert actor.class_name == "Counter" and actor.state == "ALIVE"
    assert actor.name == "c1" and actor.ray_namespace == "shop" and actor.pid == pid
    assert actor.num_restarts == 0 and actor.is_detached is False
    assert state.get_actor(actor.actor_id) == actor

    calls = state.list_tasks(filters=[("type", "=", "ACTOR_TASK")])
    assert sorted(c.func_or_class_name for c in calls) == ["Counter.incr"] * 3 + ["Counter.pid"]
    assert {c.actor_id for c in calls} == {actor.actor_id}
    assert {c.worker_pid for c in calls} == {pid}
    creation = state.list_tasks(filters=[("type", "=", "ACTOR_CREATION_TASK")])
    # A named actor's creation task is named as in Ray: "<name>:<Class>.__init__".
    assert [(c.name, c.func_or_class_name, c.state) for c in creation] == [
        ("c1:Counter.__init__", "Counter.__init__", "FINISHED")
    ]

    asyncray.kill(counter)
    deadline = time.monotonic() + 10
    while state.list_actors()[0].state != "DEAD":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert state.list_actors(filters=[("state", "=", "ALIVE")]) == []


def test_filters_limit_and_errors_as_in_ray(shutdown_only):
    asyncray.init(num_cpus=NUM_CPUS)
    _settle([square.remote(i) for i in range(6)])
    # String filters are case-insensitive; "!=" excludes.
    assert len(state.list_tasks(filters=[("state", "=", "finished")])) == 5
    assert len(state.list_tasks(filters=[("state", "!=", "FINISHED")])) == 1
    pid = state.list_tasks()[0].worker_pid
    by_pid = state.list_tasks(filters=[("worker_pid", "=", str(pid))])  # the CLI gives strings
    assert by_pid and all(t.worker_pid == pid for t in by_pid)
    assert len(state.list_tasks(limit=2)) == 2  # silent, as Ray's Python API
    with pytest.warns(UserWarning, match=r"Limit last 2 entries \(Total 6\)"):
        assert len(state.list_tasks(limit=2, _explain=True)) == 2
    with pytest.raises(RayStateApiException, match="filter column required_resources"):
        state.list_tasks(filters=[("required_resources", "=", "x")])
    with pytest.raises(ValueError, match="Unsupported filter predicate > is given"):
        state.list_tasks(filters=[("state", ">", "x")])
    with pytest.raises(RayStateApiException, match="Failed to convert a value abc"):
        state.list_tasks(filters=[("worker_pid", "=", "abc")])
    with pytest.raises(RayStateApiException, match="exceeds the supported limit 10000"):
        state.list_tasks(limit=10_001)


def test_summaries_count_by_function_class_and_state(shutdown_only):
    asyncray.init(num_cpus=NUM_CPUS)
    counter = Counter.remote()
    _settle([square.remote(i) for i in range(5)] + [counter.incr.remote()])
    tasks = state.summarize_tasks()["cluster"]
    assert tasks["summary"]["square"]["state_counts"] == {"FINISHED": 4, "FAILED": 1}
    assert tasks["summary"]["square"]["type"] == "NORMAL_TASK"
    assert tasks["summary"]["Counter.incr"]["state_counts"] == {"FINISHED": 1}
    assert (tasks["total_tasks"], tasks["total_actor_tasks"]) == (5, 1)
    actors = state.summarize_actors()["cluster"]
    assert actors["summary"]["Counter"]["state_counts"] == {"ALIVE": 1}
    assert actors["total_actors"] == 1
    objects = state.summarize_objects()["cluster"]
    assert objects["total_objects"] == len(state.list_objects(limit=10_000))


def test_objects_workers_groups_and_the_node(shutdown_only):
    np = pytest.importorskip("numpy")
    asyncray.init(num_cpus=NUM_CPUS)
    small = asyncray.put(b"x" * 10)
    big = asyncray.put(np.zeros(1 << 20, dtype=np.uint8))
    rows = {o.object_id: o for o in state.list_objects()}
    assert rows[small.hex()].object_size < 1000
    assert rows[big.hex()].object_size >= 1 << 20
    assert rows[big.hex()].task_status == "FINISHED"

    counter = Counter.remote()
    actor_pid = asyncray.get(counter.pid.remote())
    workers = state.list_workers()
    assert actor_pid in {w.pid for w in workers}
    assert all(w.is_alive and w.worker_type == "WORKER" for w in workers)
    assert state.get_worker(workers[0].worker_id) == workers[0]

    pg = asyncray.util.placement_group([{"CPU": 1}], name="pg1")
    asyncray.get(pg.ready())
    (group,) = state.list_placement_groups(detail=True)
    assert (group.name, group.state, group.placement_group_id) == ("pg1", "CREATED", pg.id.hex())
    assert group.bundles[0]["unit_resources"] == {"CPU": 1.0}

    (node,) = state.list_nodes()
    assert node.state == "ALIVE" and node.is_head_node
    assert node.node_id == asyncray.get_runtime_context().get_node_id()
    assert node.resources_total["CPU"] == NUM_CPUS


def test_the_ring_of_ended_tasks_is_bounded(shutdown_only):
    asyncray.init(num_cpus=NUM_CPUS, _system_config={"task_events_max_num_task_in_gcs": 5})
    _settle([square.remote(i) for i in range(20)])
    ended = state.list_tasks(filters=[("name", "=", "square")], limit=100)
    assert len(ended) == 5


def test_timeline_is_chrome_trace_json_of_tasks_and_calls(shutdown_only, tmp_path):
    asyncray.init(num_cpus=NUM_CPUS)
    counter = Counter.remote()
    _settle([square.remote(i) for i in range(4)] + [counter.incr.remote()])
    path = tmp_path / "timeline.json"
    assert asyncray.timeline(str(path)) is None
    events = json.loads(path.read_text())
    assert isinstance(events, list)
    spans = [e for e in events if e["ph"] == "X" and not e["cat"].endswith("pending")]
    assert sorted(e["name"] for e in spans) == ["Counter.incr"] + ["square"] * 4
    for e in spans:
        assert {"cat", "name", "pid", "tid", "ts", "dur", "ph", "cname", "args"} <= set(e)
        assert e["dur"] >= 0 and e["ts"] > 1.6e15  # microseconds since the epoch
    failed = [e for e in spans if e["args"].get("error_type")]
    assert [(e["name"], e["cname"]) for e in failed] == [("square", "terrible")]
    call = next(e for e in spans if e["name"] == "Counter.incr")
    assert call["cat"] == "task::Counter.incr"
    # One named track per process that ran something.
    names = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert {e["tid"] for e in spans} <= set(names)
    assert all(name.startswith("worker:") for name in names.values())
    assert asyncray.timeline() == events or len(asyncray.timeline()) >= len(events)


@pytest.mark.timeout(120)
def test_the_state_api_from_a_driver_connected_to_a_head(head):
    out = head.run_driver(
        """
import asyncray as ray
from asyncray.util import state
ray.init(address="auto")

@ray.remote
def f(x):
    return x

ray.get([f.remote(i) for i in range(3)])
job = ray.get_runtime_context().get_job_id()
mine = state.list_tasks(filters=[("name", "=", "f"), ("job_id", "=", job)])
print(len(mine), sorted({t.state for t in mine}))
spans = [e for e in ray.timeline() if e["ph"] == "X" and e["cat"] == "task::f"]
print(len([e for e in spans if e["args"]["job_id"] == job]))
"""
    ).stdout
    assert out.splitlines() == ["3 ['FINISHED']", "3"]


@pytest.mark.timeout(120)
def test_the_cli_lists_summarizes_and_writes_a_timeline_of_the_head(head, tmp_path):
    from _head import cli

    head.run_driver(
        """
import asyncray as ray
ray.init(address="auto")

@ray.remote
def f(x):
    if x == 2:
        raise ValueError(x)
    return x

@ray.remote
class A:
    def m(self):
        return 1

a = A.options(name="a", lifetime="detached").remote()
ray.wait([f.remote(i) for i in range(3)] + [a.m.remote()], num_returns=4)
"""
    )
    address = ("--address", head.directory)
    env = head.env()
    done = cli("list", "tasks", "--filter", "name=f", "--format", "json", *address, env=env)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert sorted(r["state"] for r in rows) == ["FAILED", "FINISHED", "FINISHED"]
    assert {r["error_type"] for r in rows} == {None, "TASK_EXECUTION_EXCEPTION"}

    done = cli("list", "actors", *address, env=env)
    assert done.returncode == 0, done.stderr
    table = done.stdout.splitlines()
    header = next(line for line in table if line.startswith("ACTOR_ID"))
    assert header.split()[:4] == ["ACTOR_ID", "CLASS_NAME", "STATE", "JOB_ID"]
    assert any(" A " in f" {line} " and "ALIVE" in line for line in table)

    done = cli("summary", "tasks", "--format", "json", *address, env=env)
    summary = json.loads(done.stdout)["summary"]
    assert summary["f"]["state_counts"] == {"FINISHED": 2, "FAILED": 1}

    done = cli("memory", *address, env=env)
    assert done.returncode == 0 and "Object store" in done.stdout, done.stderr

    out = tmp_path / "trace.json"
    done = cli("timeline", "--output", str(out), *address, env=env)
    assert done.returncode == 0 and f"Trace file written to {out}" in done.stdout
    names = [e["name"] for e in json.loads(out.read_text()) if e["ph"] == "X"]
    assert names.count("f") >= 3 and "A.m" in names

    done = cli("list", "tasks", "--filter", "bogus", *address, env=env)
    assert done.returncode == 1 and "write KEY=VALUE or KEY!=VALUE" in done.stderr
    done = cli("list", "tasks", "--filter", "nope=1", *address, env=env)
    assert done.returncode == 1 and "filter column nope is not supported" in done.stderr


def test_each_attempt_of_a_retried_task_is_its_own_row(shutdown_only, tmp_path):
    asyncray.init(num_cpus=NUM_CPUS)
    marker = tmp_path / "failed-once"

    @asyncray.remote(max_retries=2, retry_exceptions=True)
    def flaky(path):
        if not os.path.exists(path):
            open(path, "w").close()
            raise RuntimeError("first attempt fails")
        return "ok"

    ref = flaky.remote(str(marker))
    assert asyncray.get(ref) == "ok"
    attempts = state.get_task(ref)
    assert isinstance(attempts, list)
    assert [(a.attempt_number, a.state, a.error_type) for a in attempts] == [
        (0, "FAILED", "TASK_EXECUTION_EXCEPTION"),
        (1, "FINISHED", None),
    ]
    summary = state.summarize_tasks()["cluster"]["summary"]
    assert summary["flaky"]["state_counts"] == {"FAILED": 1, "FINISHED": 1}
