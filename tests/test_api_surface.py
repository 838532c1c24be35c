"""API surface Ray programs and libraries use (issue #15), checked against Ray 2.60.

Runtime-context ids, ``was_current_actor_reconstructed``, the underscore
``_remote`` APIs, ``ray.ObjectID``, accelerator ids, the deprecation warning
for ``object_store_memory`` on actors and bundles, and the attributes of a
decorated actor class.
"""

from __future__ import annotations

import os
import re
import warnings

import pytest
from _helpers import wait_for_condition, wait_for_process_exit

import asyncray
from asyncray.exceptions import ActorDiedError, ActorUnavailableError
from asyncray.util.placement_group import placement_group, remove_placement_group

pytestmark = pytest.mark.timeout(60)

HEX_56 = re.compile(r"^[0-9a-f]{56}$")
RAY_ACCELERATOR_KEYS = {
    "GPU", "FURIOSA", "HPU", "MBLT", "NPU", "RBLN", "TPU", "TTNPU", "neuron_cores",
}  # fmt: skip


# ====================================================================== runtime context


@asyncray.remote
def worker_identity():
    ctx = asyncray.get_runtime_context()
    return ctx.get_worker_id(), os.getpid(), ctx.get_node_id()


def test_worker_id_is_56_hex_digits_per_process_and_node_id_is_shared(ray_start):
    ctx = asyncray.get_runtime_context()
    driver_id = ctx.get_worker_id()
    assert HEX_56.match(driver_id)
    assert ctx.get_worker_id() == driver_id  # stable for the process
    results = asyncray.get([worker_identity.remote() for _ in range(6)])
    by_pid: dict[int, set[str]] = {}
    for worker_id, pid, node_id in results:
        assert HEX_56.match(worker_id)
        assert node_id == ctx.get_node_id()
        by_pid.setdefault(pid, set()).add(worker_id)
    # One id per process (a pooled worker keeps its id), none shared with the driver.
    assert all(len(ids) == 1 for ids in by_pid.values())
    assert len({i for ids in by_pid.values() for i in ids}) == len(by_pid)
    assert driver_id not in {i for ids in by_pid.values() for i in ids}


def test_node_id_property_is_a_node_id_and_warns_as_deprecated(ray_start):
    ctx = asyncray.get_runtime_context()
    with pytest.warns(DeprecationWarning, match=r"Use get_node_id\(\) instead"):
        node = ctx.node_id
    assert node.hex() == ctx.get_node_id()
    assert HEX_56.match(node.hex())
    assert repr(node) == f"NodeID({ctx.get_node_id()})"


@asyncray.remote(max_restarts=1)
class Phoenix:
    def __init__(self):
        # Read in __init__ too: a restart restores its state from here.
        self.reconstructed_at_init = asyncray.get_runtime_context().was_current_actor_reconstructed

    def state(self):
        ctx = asyncray.get_runtime_context()
        return self.reconstructed_at_init, ctx.was_current_actor_reconstructed, os.getpid()

    def crash(self):
        os._exit(1)


def test_was_current_actor_reconstructed_is_false_at_first_and_true_after_a_restart(ray_start):
    actor = Phoenix.remote()
    at_init, now, pid = asyncray.get(actor.state.remote())
    assert (at_init, now) == (False, False)
    actor.crash.remote()
    wait_for_process_exit(pid)
    answers = []

    def answered():
        # A call that reached the dead process before the runtime saw it die fails
        # with ActorUnavailableError: ask again until the restarted actor answers.
        try:
            answers.append(asyncray.get(actor.state.remote(), timeout=10))
        except ActorUnavailableError:
            return False
        return True

    wait_for_condition(answered, timeout=20)
    at_init, now, new_pid = answers[0]
    assert new_pid != pid
    assert (at_init, now) == (True, True)


def test_was_current_actor_reconstructed_is_true_after_kill_with_no_restart_false(ray_start):
    actor = Phoenix.remote()
    pid = asyncray.get(actor.state.remote())[2]
    asyncray.kill(actor, no_restart=False)
    wait_for_process_exit(pid)
    assert asyncray.get(actor.state.remote(), timeout=20)[:2] == (True, True)


def test_was_current_actor_reconstructed_outside_an_actor_raises_assertion_error(ray_start):
    with pytest.raises(AssertionError, match="only available when the process is a worker"):
        asyncray.get_runtime_context().was_current_actor_reconstructed

    @asyncray.remote
    def in_a_task():
        try:
            asyncray.get_runtime_context().was_current_actor_reconstructed
        except AssertionError as e:
            return str(e)
        return "no error"

    assert "only available in an actor" in asyncray.get(in_a_task.remote())


def test_accelerator_ids_have_rays_keys_and_the_assigned_gpus(shutdown_only):
    asyncray.init(num_cpus=2, num_gpus=1)

    @asyncray.remote(num_gpus=1)
    def on_gpu():
        return asyncray.get_runtime_context().get_accelerator_ids()

    driver = asyncray.get_runtime_context().get_accelerator_ids()
    assert set(driver) == RAY_ACCELERATOR_KEYS
    assert all(ids == [] for ids in driver.values())
    ids = asyncray.get(on_gpu.remote())
    assert set(ids) == RAY_ACCELERATOR_KEYS
    assert ids["GPU"] == ["0"]
    assert all(v == [] for k, v in ids.items() if k != "GPU")


def test_object_id_is_object_ref():
    assert asyncray.ObjectID is asyncray.ObjectRef
    assert "ObjectID" in asyncray.__all__


# ====================================================================== _remote


@asyncray.remote(num_returns=2)
def pair(a, b=10):
    return a, b


def test_remote_function_underscore_remote_takes_args_kwargs_and_only_its_options(ray_start):
    # As in Ray: the options given to _remote are the task's only options.
    assert asyncray.get(pair._remote(args=[1], kwargs={"b": 2}, num_returns=2)) == [1, 2]
    assert asyncray.get(pair._remote(args=(3,), num_returns=1)) == (3, 10)
    assert asyncray.get(pair._remote(args=[4])) == (4, 10)  # @remote's num_returns=2 not applied
    assert asyncray.get(pair._remote([5], {}, None, num_returns=2, max_calls=1)) == [5, 10]


def test_remote_function_underscore_remote_checks_its_input(ray_start):
    with pytest.raises(TypeError, match=r"pair\._remote\(\): args must be a list or tuple"):
        pair._remote(args=5)
    with pytest.raises(TypeError, match=r"kwargs must be a dict"):
        pair._remote(args=[1], kwargs=[("b", 2)])
    with pytest.raises(ValueError, match="Invalid option keyword bogus"):
        pair._remote(args=[1], bogus=1)
    with pytest.raises(TypeError, match=r"missing a required argument: 'a'"):
        pair._remote()


@asyncray.remote(concurrency_groups={"io": 1}, max_restarts=1)
class Grouped:
    def __init__(self, base=0):
        self.base = base

    @asyncray.method(concurrency_group="io")
    def add(self, x):
        return self.base + x


def test_actor_class_underscore_remote_keeps_the_class_concurrency_groups(ray_start):
    actor = Grouped._remote(args=[1], kwargs={})
    assert asyncray.get(actor.add.remote(2)) == 3
    # A concurrency_groups given here is ignored, as in Ray: the class's apply.
    other = Grouped._remote(kwargs={"base": 10}, concurrency_groups={"x": 1}, name="grouped")
    assert asyncray.get(other.add.remote(1)) == 11
    assert asyncray.get_actor("grouped") == other


def test_actor_class_underscore_remote_options_replace_the_decorators(ray_start):
    # max_restarts=1 from @remote is not applied: the crash ends the actor.
    actor = Grouped._remote()
    pid = asyncray.get(actor.__ray_call__.remote(lambda self: os.getpid()))
    asyncray.kill(actor, no_restart=False)
    wait_for_process_exit(pid)
    with pytest.raises(ActorDiedError):
        asyncray.get(actor.add.remote(1), timeout=20)
    with pytest.raises(TypeError, match=r"Grouped\._remote\(\): args must be a list or tuple"):
        Grouped._remote(args=1)
    with pytest.raises(ValueError, match="Invalid option keyword bogus"):
        Grouped._remote(bogus=1)


# ====================================================================== object_store_memory

_DEPRECATED = (
    r"Setting 'object_store_memory' for {} is deprecated since it doesn't actually reserve "
    r"the required object store memory\. Use object spilling that's enabled by default"
)


def test_object_store_memory_on_actors_warns_deprecation_at_the_users_line():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        @asyncray.remote(object_store_memory=100)
        class Store:
            pass

        Store.options(object_store_memory=None)
    assert [w.category for w in caught] == [DeprecationWarning, DeprecationWarning]
    assert all(re.match(_DEPRECATED.format("actors"), str(w.message)) for w in caught)
    assert all(w.filename == __file__ for w in caught)


@pytest.mark.parametrize(("value", "error"), [(-1, ValueError), ("1", TypeError), (0.5, TypeError)])
def test_a_bad_object_store_memory_on_an_actor_raises_before_any_warning(value, error):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(error, match="object_store_memory"):
            asyncray.remote(object_store_memory=value)(type("Store", (), {}))


def test_object_store_memory_in_a_bundle_warns_deprecation(ray_start):
    with pytest.warns(DeprecationWarning, match=_DEPRECATED.format("bundles")) as caught:
        pg = placement_group([{"CPU": 1, "object_store_memory": 100}])
    assert [w.filename for w in caught] == [__file__]
    remove_placement_group(pg)


def test_no_deprecation_warning_without_object_store_memory(ray_start):
    with warnings.catch_warnings():
        warnings.simplefilter("error")

        @asyncray.remote(num_cpus=1)
        class Plain:
            pass

        remove_placement_group(placement_group([{"CPU": 1}]))


# ====================================================================== actor classes


class Base:
    BASE_ATTR = "base"

    @staticmethod
    def double(x):
        return 2 * x

    @classmethod
    def class_name(cls):
        return cls.__name__

    def inherited(self):
        return "inherited"


@asyncray.remote
class Derived(Base):
    ATTR = 5

    def __init__(self):
        # Instance attributes named like methods (a common flag pattern).
        self.ready = True
        self.inherited = "shadow"

    def ready(self):
        return "ready() ran"

    def attr(self):
        return self.ATTR


def test_class_attributes_static_and_class_methods_are_reachable_through_the_actor_class():
    assert Derived.ATTR == 5
    assert Derived.BASE_ATTR == "base"  # inherited, found along the MRO
    assert Derived.double(4) == 8
    assert Derived.class_name() == "Derived"
    with pytest.raises(AttributeError, match=r"'ActorClass\(Derived\)' object has no attribute"):
        Derived.missing
    assert not hasattr(Derived, "__wrapped_nothing__")


def test_an_instance_attribute_named_like_a_method_does_not_shadow_the_call(ray_start):
    actor = Derived.remote()
    assert asyncray.get(actor.ready.remote()) == "ready() ran"
    assert asyncray.get(actor.inherited.remote()) == "inherited"
    assert asyncray.get(actor.double.remote(3)) == 6
    assert asyncray.get(actor.class_name.remote()) == "Derived"
    assert asyncray.get(actor.attr.remote()) == 5
    assert asyncray.get(actor.__ray_call__.remote(lambda self: self.ready)) is True


@asyncray.remote
class AsyncFlag:
    def __init__(self):
        self.ready = True

    async def ready(self):
        return "ready() ran"


def test_an_instance_attribute_does_not_shadow_an_async_actors_method(ray_start):
    assert asyncray.get(AsyncFlag.remote().ready.remote()) == "ready() ran"


def test_actor_method_arguments_are_checked_at_submission_naming_the_method(ray_start):
    actor = Derived.remote()
    with pytest.raises(TypeError, match=r"Derived\.ready\.remote\(\): too many positional"):
        actor.ready.remote(1)
    with pytest.raises(TypeError, match=r"Derived\.double\.remote\(\): missing a required"):
        actor.double.remote()


# ====================================================================== CUDA_VISIBLE_DEVICES


@asyncray.remote(num_gpus=1)
class GpuHolder:
    def ids(self):
        ctx = asyncray.get_runtime_context()
        return (
            asyncray.get_gpu_ids(),
            ctx.get_accelerator_ids()["GPU"],
            os.environ.get("CUDA_VISIBLE_DEVICES"),
        )


@asyncray.remote
def gpu_view():
    return asyncray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")


def test_cuda_visible_devices_set_before_init_names_the_gpu_ids(shutdown_only, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3,5")
    asyncray.init(num_cpus=2, num_gpus=2)
    holders = [GpuHolder.remote(), GpuHolder.remote()]  # both hold a GPU at once
    seen = sorted(asyncray.get([h.ids.remote() for h in holders]))
    # As in Ray: slot i is the i-th visible device, and ids are then strings.
    assert seen == [(["2"], ["2"], "2"), (["3"], ["3"], "3")]
    for holder in holders:
        asyncray.kill(holder)
    ids, visible = asyncray.get(gpu_view.options(num_gpus=2).remote())
    assert (sorted(ids), visible) == (["2", "3"], "2,3")
    # A task without GPUs sees the variable as init() found it.
    assert asyncray.get(gpu_view.remote()) == ([], "2,3,5")


def test_gpu_ids_are_ints_when_cuda_visible_devices_was_unset(shutdown_only, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    asyncray.init(num_cpus=2, num_gpus=1)
    assert asyncray.get(gpu_view.options(num_gpus=1).remote()) == ([0], "0")
    assert asyncray.get(gpu_view.remote()) == ([], None)


def test_more_gpus_than_cuda_visible_devices_lists_raises_value_error(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    with pytest.raises(ValueError, match=r"num_gpus=2.*CUDA_VISIBLE_DEVICES='1'.*num_gpus=1"):
        asyncray.init(num_cpus=2, num_gpus=2)
    assert not asyncray.is_initialized()


@pytest.mark.skipif(
    os.path.isdir("/proc/driver/nvidia/gpus"), reason="the host has NVIDIA GPUs to detect"
)
def test_cuda_visible_devices_alone_creates_no_gpu(shutdown_only, monkeypatch):
    # As in Ray: detection counts the devices the driver lists, capped by the variable.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    asyncray.init(num_cpus=2)
    assert "GPU" not in asyncray.cluster_resources()
