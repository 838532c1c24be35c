"""Tasks: arguments, several returns, nesting, options, retries and task errors."""

from __future__ import annotations

import os

import pytest
from _compat import NUM_CPUS, ON_RAY

import asyncray as ray
from asyncray.exceptions import RayError, RayTaskError, WorkerCrashedError


@ray.remote
def add(a, b=10, *, c=100):
    return a + b + c


@ray.remote(num_returns=3)
def three(x):
    return x, x * 2, x * 3


@ray.remote
def square(x):
    return x * x


@ray.remote
def sum_of_squares(n):
    return sum(ray.get([square.remote(i) for i in range(n)]))


@ray.remote
def fail(message):
    raise ValueError(message)


def test_positional_keyword_and_default_arguments():
    assert ray.get(add.remote(1)) == 111
    assert ray.get(add.remote(1, 2)) == 103
    assert ray.get(add.remote(1, b=2, c=3)) == 6


def test_many_tasks_keep_the_order_of_their_refs():
    refs = [square.remote(i) for i in range(50)]
    assert ray.get(refs) == [i * i for i in range(50)]


def test_num_returns_in_decorator_and_in_options():
    refs = three.remote(2)
    assert isinstance(refs, list) and len(refs) == 3
    assert ray.get(refs) == [2, 4, 6]

    @ray.remote
    def pair(x):
        return x, -x

    first, second = pair.options(num_returns=2).remote(5)
    assert ray.get(first) == 5 and ray.get(second) == -5


def test_num_returns_one_gives_one_ref_of_the_whole_value():
    ref = three.options(num_returns=1).remote(1)
    assert isinstance(ref, ray.ObjectRef)
    assert ray.get(ref) == (1, 2, 3)


def test_nested_tasks():
    assert ray.get(sum_of_squares.remote(5)) == 0 + 1 + 4 + 9 + 16


def test_options_name_and_resources_do_not_change_the_result():
    ref = add.options(name="named-task", num_cpus=0.5).remote(1, 1, c=1)
    assert ray.get(ref) == 3


def test_a_task_runs_in_another_process():
    @ray.remote
    def pid():
        return os.getpid()

    assert ray.get(pid.remote()) != os.getpid()


def test_task_error_is_a_ray_task_error_and_an_instance_of_its_cause():
    with pytest.raises(ValueError, match="boom") as info:
        ray.get(fail.remote("boom"))
    err = info.value
    assert isinstance(err, RayTaskError)
    assert isinstance(err, RayError)
    assert isinstance(err.cause, ValueError)
    assert "boom" in str(err)


def test_a_task_error_reaches_a_dependent_task():
    @ray.remote
    def use(x):
        return x

    with pytest.raises(ValueError, match="upstream"):
        ray.get(use.remote(fail.remote("upstream")))


def test_a_nested_task_error_is_raised_by_the_caller_and_keeps_its_class():
    @ray.remote
    def outer():
        return ray.get(fail.remote("inner"))

    with pytest.raises(ValueError, match="inner") as info:
        ray.get(outer.remote())
    assert isinstance(info.value, RayTaskError)


def test_retry_exceptions_retries_an_application_error(tmp_path):
    counter = tmp_path / "attempts"

    @ray.remote(max_retries=3, retry_exceptions=True)
    def flaky(path):
        n = 0  # the earlier attempts, counted in a file (they ran in other processes)
        if os.path.exists(path):
            with open(path) as f:
                n = int(f.read())
        with open(path, "w") as f:
            f.write(str(n + 1))
        if n < 2:
            raise ValueError(f"attempt {n}")
        return n

    assert ray.get(flaky.remote(str(counter))) == 2
    assert counter.read_text() == "3"


def test_retry_exceptions_with_a_list_retries_only_those(tmp_path):
    counter = tmp_path / "attempts"

    @ray.remote(max_retries=3, retry_exceptions=[KeyError])
    def flaky(path):
        n = 0  # the earlier attempts, counted in a file (they ran in other processes)
        if os.path.exists(path):
            with open(path) as f:
                n = int(f.read())
        with open(path, "w") as f:
            f.write(str(n + 1))
        raise ValueError(f"attempt {n}")

    with pytest.raises(ValueError, match="attempt 0"):
        ray.get(flaky.remote(str(counter)))
    assert counter.read_text() == "1"


def test_application_errors_are_not_retried_by_default(tmp_path):
    counter = tmp_path / "attempts"

    @ray.remote(max_retries=3)
    def flaky(path):
        n = 0  # the earlier attempts, counted in a file (they ran in other processes)
        if os.path.exists(path):
            with open(path) as f:
                n = int(f.read())
        with open(path, "w") as f:
            f.write(str(n + 1))
        raise ValueError(f"no retry after {n}")

    with pytest.raises(ValueError, match="no retry after 0"):
        ray.get(flaky.remote(str(counter)))
    assert counter.read_text() == "1"


def test_retries_exhausted_raise_the_last_error(tmp_path):
    counter = tmp_path / "attempts"

    @ray.remote(max_retries=2, retry_exceptions=True)
    def always(path):
        n = 0  # the earlier attempts, counted in a file (they ran in other processes)
        if os.path.exists(path):
            with open(path) as f:
                n = int(f.read())
        with open(path, "w") as f:
            f.write(str(n + 1))
        raise ValueError(f"attempt {n}")

    with pytest.raises(ValueError, match="attempt 2"):
        ray.get(always.remote(str(counter)))
    assert counter.read_text() == "3"


def test_calling_a_remote_function_directly_raises_type_error():
    with pytest.raises(TypeError):
        add(1)


def test_wrong_arguments_raise_type_error_at_the_call():
    with pytest.raises(TypeError):
        add.remote()
    with pytest.raises(TypeError):
        add.remote(1, 2, 3)


def test_a_crashed_worker_raises_worker_crashed_error():
    @ray.remote(max_retries=0)
    def die():
        os._exit(1)

    with pytest.raises(WorkerCrashedError):
        ray.get(die.remote(), timeout=60)
    assert ray.get(add.remote(0, 0, c=0)) == 0  # the runtime carries on


def test_a_crash_is_retried_with_max_retries(tmp_path):
    marker = tmp_path / "crashed-once"

    @ray.remote(max_retries=1)
    def die_once(path):
        if not os.path.exists(path):
            open(path, "w").close()
            os._exit(1)
        return "second attempt"

    assert ray.get(die_once.remote(str(marker)), timeout=60) == "second attempt"


def test_runtime_resources_and_context():
    assert ray.is_initialized()
    assert ray.cluster_resources()["CPU"] == NUM_CPUS

    @ray.remote
    def context():
        ctx = ray.get_runtime_context()
        return ctx.get_job_id(), ctx.get_task_id()

    job_id, task_id = ray.get(context.remote())
    assert job_id == ray.get_runtime_context().get_job_id()
    assert isinstance(task_id, str) and task_id


def test_a_request_no_host_can_satisfy():
    @ray.remote(num_cpus=1000)
    def huge():
        return 1

    if ON_RAY:
        # Ray keeps the task pending (an autoscaler might add a node);
        # docs/ray-compatibility.md: "infeasible resource request".
        ref = huge.remote()
        ready, _ = ray.wait([ref], timeout=0.5)
        assert ready == []
        ray.cancel(ref)
    else:
        # asyncray refuses it at once, naming the resource: nothing can ever
        # add it on one host (same row).
        with pytest.raises(ValueError, match="CPU"):
            huge.remote()


def test_num_returns_zero_returns_none():
    @ray.remote(num_returns=0)
    def nothing():
        return None

    assert nothing.remote() is None


def test_init_twice_raises_unless_ignore_reinit_error():
    with pytest.raises(RuntimeError, match="ignore_reinit_error"):
        ray.init(num_cpus=NUM_CPUS)
    ray.init(num_cpus=NUM_CPUS, ignore_reinit_error=True)
    assert ray.is_initialized()


def test_cancel_and_kill_refuse_the_wrong_kind_of_object():
    with pytest.raises(TypeError, match=r"ray\.kill"):
        ray.cancel("not a ref")
    with pytest.raises(ValueError, match=r"ray\.cancel"):
        ray.kill("not a handle")
