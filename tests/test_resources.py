"""Resource slots: queueing until a request fits, custom and fractional resources,
infeasible requests, fake GPUs, and the state / runtime-context APIs."""

from __future__ import annotations

import itertools
import os
import re
import time

import pytest
from _helpers import arrive_and_wait, wait_for_condition, wait_for_file

import asyncray
from asyncray.exceptions import TaskUnschedulableError

# How long a task holds its slot when the test checks for overlap: long
# enough that two overlapping runs cannot miss each other.
HOLD_S = 0.3


@asyncray.remote
def interval(hold_s):
    start = time.monotonic()
    time.sleep(hold_s)
    return start, time.monotonic()


def assert_no_overlap(intervals):
    intervals = sorted(intervals)
    for (_, end), (start, _) in itertools.pairwise(intervals):
        assert end <= start, f"runs overlapped: {intervals}"


def test_tasks_wait_until_their_cpu_request_fits(ray_start):
    refs = [interval.options(num_cpus=2).remote(HOLD_S) for _ in range(2)]
    assert_no_overlap(asyncray.get(refs, timeout=20))


def test_one_cpu_tasks_run_two_at_a_time_on_two_cpus(ray_start, tmp_path):
    @asyncray.remote(num_cpus=1)
    def meet(directory, name):
        return arrive_and_wait(directory, name, parties=2)

    refs = [meet.remote(str(tmp_path), str(i)) for i in range(2)]
    assert asyncray.get(refs, timeout=20) == [True, True]


def test_custom_resource_serializes_the_tasks_needing_it(shutdown_only):
    asyncray.init(num_cpus=2, resources={"r": 1})
    refs = [interval.options(resources={"r": 1}).remote(HOLD_S) for _ in range(2)]
    assert_no_overlap(asyncray.get(refs, timeout=20))


@pytest.mark.timeout(30)
def test_half_cpu_tasks_run_four_at_a_time(ray_start, tmp_path):
    @asyncray.remote(num_cpus=0.5)
    def meet(directory, name):
        return arrive_and_wait(directory, name, parties=4)

    refs = [meet.remote(str(tmp_path), str(i)) for i in range(4)]
    assert asyncray.get(refs, timeout=25) == [True] * 4


@pytest.mark.parametrize(
    ("options", "resource"),
    [
        ({"num_cpus": 3}, "CPU"),
        ({"num_gpus": 1}, "GPU"),
        ({"resources": {"unicorn": 1}}, "unicorn"),
    ],
    ids=["too-many-cpus", "gpu-on-gpu-less-node", "unknown-custom-resource"],
)
def test_infeasible_request_raises_at_remote_naming_the_resource(ray_start, options, resource):
    @asyncray.remote
    def never():
        return "ran"

    with pytest.raises(TaskUnschedulableError, match=resource) as info:
        never.options(**options).remote()
    assert isinstance(info.value, ValueError)


def test_fake_gpu_sets_cuda_visible_devices_and_gpu_ids(shutdown_only):
    asyncray.init(num_cpus=2, num_gpus=2)

    @asyncray.remote(num_gpus=1)
    def which_gpu():
        return os.environ.get("CUDA_VISIBLE_DEVICES"), asyncray.get_gpu_ids()

    visible, ids = asyncray.get(which_gpu.remote())
    assert len(ids) == 1
    assert str(ids[0]) in {"0", "1"}
    assert visible == str(ids[0])
    assert asyncray.get_gpu_ids() == []  # the driver holds no GPU


def test_concurrent_gpu_tasks_get_different_gpus(shutdown_only, tmp_path):
    asyncray.init(num_cpus=2, num_gpus=2)

    @asyncray.remote(num_gpus=1)
    def meet_on_gpu(directory, name):
        met = arrive_and_wait(directory, name, parties=2)
        return met, os.environ.get("CUDA_VISIBLE_DEVICES")

    results = asyncray.get([meet_on_gpu.remote(str(tmp_path), str(i)) for i in range(2)])
    assert [met for met, _ in results] == [True, True]
    assert {gpu for _, gpu in results} == {"0", "1"}


def test_cluster_resources_report_totals(shutdown_only):
    asyncray.init(num_cpus=2, num_gpus=1, resources={"r": 3})
    totals = asyncray.cluster_resources()
    assert totals["CPU"] == 2
    assert totals["GPU"] == 1
    assert totals["r"] == 3


def test_available_resources_omit_exhausted_keys(ray_start, tmp_path):
    @asyncray.remote
    def occupy(started, go):
        open(started, "w").close()
        return wait_for_file(go)

    assert asyncray.available_resources()["CPU"] == 2
    refs = [occupy.remote(str(tmp_path / f"started-{i}"), str(tmp_path / "go")) for i in range(2)]
    wait_for_condition(lambda: all((tmp_path / f"started-{i}").exists() for i in range(2)))
    wait_for_condition(lambda: "CPU" not in asyncray.available_resources())
    assert asyncray.cluster_resources()["CPU"] == 2
    (tmp_path / "go").touch()
    assert asyncray.get(refs, timeout=20) == [True, True]
    wait_for_condition(lambda: asyncray.available_resources().get("CPU") == 2)


def test_runtime_context_in_the_driver(shutdown_only):
    asyncray.init(num_cpus=2, namespace="tests-ns")
    ctx = asyncray.get_runtime_context()
    assert re.fullmatch(r"[0-9a-f]+", ctx.get_job_id())
    assert ctx.get_task_id() is None
    assert ctx.namespace == "tests-ns"


def test_anonymous_namespace_is_a_fresh_string(shutdown_only):
    asyncray.init(num_cpus=2)
    first = asyncray.get_runtime_context().namespace
    asyncray.shutdown()
    asyncray.init(num_cpus=2)
    second = asyncray.get_runtime_context().namespace
    assert isinstance(first, str)
    assert first
    assert first != second


def test_runtime_context_in_a_task(shutdown_only):
    asyncray.init(num_cpus=2, namespace="tests-ns")

    @asyncray.remote
    def context():
        ctx = asyncray.get_runtime_context()
        return ctx.get_job_id(), ctx.get_task_id(), ctx.namespace, ctx.get_assigned_resources()

    job_id, task_id, namespace, assigned = asyncray.get(context.remote())
    assert job_id == asyncray.get_runtime_context().get_job_id()
    assert isinstance(task_id, str)
    assert task_id
    assert namespace == "tests-ns"
    assert assigned == {"CPU": 1.0}
    _, other_task_id, _, assigned = asyncray.get(context.options(num_cpus=0.5).remote())
    assert other_task_id != task_id
    assert assigned == {"CPU": 0.5}


def test_nodes_lists_one_live_node(ray_start):
    nodes = asyncray.nodes()
    assert len(nodes) == 1
    assert nodes[0]["Alive"] is True
    assert nodes[0]["Resources"]["CPU"] == 2
