"""Actors: creation and options, resources, method calls, handles, names, output, context.

Concurrency (plain, async, threaded actors and concurrency groups) is in
``test_actor_concurrency.py``; ending, restarts and crashes in
``test_actor_lifecycle.py``. Expected behaviour is Ray 2.60's
(ray-semantics.md §6); the checks marked "Ray:" were run against real Ray.
"""

from __future__ import annotations

import gc
import os
import pickle
import re
import time

import pytest
from _helpers import process_gone, wait_for_condition, wait_for_process_exit

import asyncray
from asyncray.exceptions import (
    ActorAlreadyExistsError,
    ActorDiedError,
    ActorUnschedulableError,
    RayError,
    RayTaskError,
)

pytestmark = pytest.mark.timeout(30)

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
# Output forwarding is asynchronous: give a line this long to show up.
FORWARD_TIMEOUT_S = 5.0


@asyncray.remote
class Counter:
    def __init__(self, start=0):
        self.value = start

    def increment(self, by=1):
        self.value += by
        return self.value

    def get(self):
        return self.value

    def pid(self):
        return os.getpid()


@asyncray.remote
class Probe:
    """Reports what the actor sees of itself."""

    def describe(self):
        ctx = asyncray.get_runtime_context()
        return {
            "actor_id": ctx.get_actor_id(),
            "name": ctx.get_actor_name(),
            "resources": ctx.get_assigned_resources(),
        }

    def me(self):
        return asyncray.get_runtime_context().current_actor

    def pid(self):
        return os.getpid()


class Base:
    """A plain base class: actor classes may inherit from normal classes."""

    def greet(self):
        return f"hello from {type(self).__name__}"


@asyncray.remote
class Derived(Base):
    pass


@asyncray.remote
def call_increment_ten_times(counter):
    return asyncray.get([counter.increment.remote() for _ in range(10)])[-1]


@asyncray.remote
def increment_through(counter):
    return asyncray.get(counter.increment.remote())


@asyncray.remote
class Caller:
    """An actor that calls methods on a handle it was given."""

    def __init__(self, counter=None):
        self.counter = counter

    def increment_own(self):
        return asyncray.get(self.counter.increment.remote(100))

    def increment_given(self, counter):
        return asyncray.get(counter.increment.remote(1000))


def available_cpus():
    return asyncray.available_resources().get("CPU", 0.0)


def read_until(capfd, pattern, timeout=FORWARD_TIMEOUT_S):
    """Accumulate captured stdout until ``pattern`` matches a line."""
    seen = ""
    deadline = time.monotonic() + timeout
    while True:
        out, _ = capfd.readouterr()
        seen += ANSI_ESCAPE.sub("", out)
        if re.search(pattern, seen, re.MULTILINE):
            return seen
        if time.monotonic() >= deadline:
            raise AssertionError(f"{pattern!r} never appeared on stdout; saw {seen!r}")
        time.sleep(0.02)


# ====================================================================== creation


def test_remote_on_a_class_makes_an_actor_class_whose_remote_returns_a_handle(ray_start):
    assert isinstance(Counter, asyncray.ActorClass)
    handle = Counter.remote(5)
    assert isinstance(handle, asyncray.ActorHandle)
    assert asyncray.get(handle.increment.remote()) == 6
    assert asyncray.get(handle.increment.remote(4)) == 10


def test_a_class_without_init_and_one_with_a_plain_base_class_work(ray_start):
    @asyncray.remote
    class NoInit:
        def ping(self):
            return "pong"

    assert asyncray.get(NoInit.remote().ping.remote()) == "pong"
    assert asyncray.get(Derived.remote().greet.remote()) == "hello from Derived"


def test_instantiating_an_actor_class_directly_raises_type_error_naming_remote(ray_start):
    with pytest.raises(TypeError, match=re.escape("Counter.remote()")):
        Counter()
    with pytest.raises(TypeError, match=re.escape("Counter.remote()")):
        Counter(5)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((1, 2), {}), ((), {"nope": 1}), ((1,), {"start": 2})],
    ids=["too-many-positional", "unknown-keyword", "multiple-values"],
)
def test_constructor_arguments_that_do_not_bind_raise_type_error_at_remote(ray_start, args, kwargs):
    with pytest.raises(TypeError):
        Counter.remote(*args, **kwargs)
    with pytest.raises(TypeError):
        Counter.options(num_cpus=0).remote(*args, **kwargs)


def test_missing_required_constructor_argument_raises_type_error_at_remote(ray_start):
    @asyncray.remote
    class NeedsX:
        def __init__(self, x):
            self.x = x

    with pytest.raises(TypeError, match="missing a required argument: 'x'"):
        NeedsX.remote()


# Each case: the options, the name the actor reports, its assigned resources.
OPTION_CASES = {
    "no-options": ({}, "", {}),
    "num_cpus": ({"num_cpus": 1}, "", {"CPU": 1.0}),
    "num_gpus": ({"num_gpus": 1}, "", {"CPU": 1.0, "GPU": 1.0}),
    "resources": ({"resources": {"r": 1}}, "", {"CPU": 1.0, "r": 1.0}),
    "max_concurrency": ({"max_concurrency": 2}, "", {}),
    "max_restarts": ({"max_restarts": 1}, "", {}),
    "max_task_retries": ({"max_restarts": 1, "max_task_retries": -1}, "", {}),
    "concurrency_groups": ({"concurrency_groups": {"io": 2, "compute": 4}}, "", {}),
    "name": ({"name": "opt-actor"}, "opt-actor", {}),
    "namespace": ({"name": "opt-actor", "namespace": "elsewhere"}, "opt-actor", {}),
    "lifetime": ({"lifetime": "detached"}, "", {}),
    "get_if_exists": ({"name": "opt-actor", "get_if_exists": True}, "opt-actor", {}),
}


# concurrency_groups is decorator-only: .options() rejects it (tested below).
OPTION_FORMS = [
    (case, form)
    for case in OPTION_CASES
    for form in ("decorator", "options")
    if not (case == "concurrency_groups" and form == "options")
]


# An embedded session warns once about lifetime="detached" (test_detached_warning.py).
@pytest.mark.filterwarnings("ignore:An actor created with lifetime=:RuntimeWarning")
@pytest.mark.parametrize(("case", "form"), OPTION_FORMS)
def test_actor_options_are_accepted_in_the_decorator_and_in_options(shutdown_only, case, form):
    asyncray.init(num_cpus=2, num_gpus=1, resources={"r": 2})
    options, name, resources = OPTION_CASES[case]

    class Described:
        def describe(self):
            ctx = asyncray.get_runtime_context()
            return ctx.get_actor_name(), ctx.get_assigned_resources()

    if form == "decorator":
        actor_class = (
            asyncray.remote(**options)(Described) if options else asyncray.remote(Described)
        )
        handle = actor_class.remote()
    else:
        handle = asyncray.remote(Described).options(**options).remote()
    assert asyncray.get(handle.describe.remote()) == (name, resources)
    if name:
        assert asyncray.get_actor(name, namespace=options.get("namespace")) == handle


def test_options_returns_a_variant_and_leaves_the_class_unchanged(ray_start):
    named = Probe.options(name="variant", num_cpus=1)
    first = named.remote()
    assert asyncray.get(first.describe.remote())["name"] == "variant"
    assert asyncray.get(first.describe.remote())["resources"] == {"CPU": 1.0}
    plain = Probe.remote()
    assert asyncray.get(plain.describe.remote())["name"] == ""
    assert asyncray.get(plain.describe.remote())["resources"] == {}


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"bogus": 1}, ValueError),
        ({"max_concurrency": -1}, ValueError),
        ({"lifetime": "forever"}, ValueError),
        ({"get_if_exists": True}, ValueError),
        ({"name": ""}, ValueError),
        ({"name": 3}, TypeError),
        ({"concurrency_groups": {"io": 1}}, ValueError),
    ],
    ids=[
        "unknown-key",
        "negative-max-concurrency",
        "bad-lifetime",
        "get-if-exists-without-name",
        "empty-name",
        "non-str-name",
        "concurrency-groups-in-options",
    ],
)
def test_bad_actor_options_raise_before_an_actor_is_created(ray_start, options, error):
    # Ray validates at .options() time, except the empty name (at .remote()).
    with pytest.raises(error):
        Counter.options(**options).remote()


def test_bad_actor_options_in_the_decorator_raise_at_decoration():
    with pytest.raises(ValueError, match="Invalid option keyword bogus for actors"):

        @asyncray.remote(bogus=1)
        class Bad:
            pass


# ====================================================================== resources


def test_default_actor_holds_no_cpu_while_alive(ray_start):
    counter = Counter.remote()
    assert asyncray.get(counter.increment.remote()) == 1
    wait_for_condition(lambda: available_cpus() == 2.0)

    @asyncray.remote(num_cpus=2)
    def needs_both_cpus():
        return "ran"

    # Holding even one CPU would leave this task waiting forever.
    assert asyncray.get(needs_both_cpus.remote(), timeout=20) == "ran"
    assert asyncray.get(counter.increment.remote()) == 2


def test_five_default_actors_on_two_cpus_all_answer(ray_start):
    counters = [Counter.remote(i) for i in range(5)]
    assert asyncray.get([c.increment.remote() for c in counters], timeout=20) == [1, 2, 3, 4, 5]
    pids = asyncray.get([c.pid.remote() for c in counters])
    assert len(set(pids)) == 5, "each actor is its own process"
    wait_for_condition(lambda: available_cpus() == 2.0)


def test_actor_with_num_cpus_one_holds_one_cpu_until_it_ends(ray_start):
    holder = Counter.options(num_cpus=1).remote()
    assert asyncray.get(holder.increment.remote()) == 1
    wait_for_condition(lambda: available_cpus() == 1.0)
    pid = asyncray.get(holder.pid.remote())
    asyncray.kill(holder)
    wait_for_process_exit(pid)
    wait_for_condition(lambda: available_cpus() == 2.0)


def test_actor_with_custom_resource_holds_one_cpu_and_the_resource(shutdown_only):
    asyncray.init(num_cpus=2, resources={"r": 1})
    holder = Probe.options(resources={"r": 1}).remote()
    assert asyncray.get(holder.describe.remote())["resources"] == {"CPU": 1.0, "r": 1.0}

    def held():
        available = asyncray.available_resources()
        return available.get("CPU", 0.0) == 1.0 and available.get("r", 0.0) == 0.0

    wait_for_condition(held)


def test_infeasible_actor_raises_actor_unschedulable_error_at_remote(ray_start):
    with pytest.raises(ActorUnschedulableError) as info:
        Counter.options(num_cpus=3).remote()
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, RayError)
    with pytest.raises(ActorUnschedulableError):
        Counter.options(resources={"missing": 1}).remote()
    # The runtime is unharmed.
    assert asyncray.get(Counter.remote().increment.remote()) == 1


# ====================================================================== methods


def test_method_remote_returns_an_object_ref(ray_start):
    counter = Counter.remote()
    ref = counter.increment.remote()
    assert isinstance(ref, asyncray.ObjectRef)
    assert asyncray.get(ref) == 1


def test_method_decorated_with_num_returns_two_returns_two_refs(ray_start):
    @asyncray.remote
    class Splitter:
        @asyncray.method(num_returns=2)
        def split(self, pair):
            return pair[0], pair[1]

        @asyncray.method
        def bare(self):
            return "bare"

    splitter = Splitter.remote()
    refs = splitter.split.remote(("left", "right"))
    assert isinstance(refs, list) and len(refs) == 2
    assert all(isinstance(ref, asyncray.ObjectRef) for ref in refs)
    assert asyncray.get(refs) == ["left", "right"]
    assert asyncray.get(splitter.bare.remote()) == "bare"


def test_method_options_num_returns_applies_to_that_call_only(ray_start):
    @asyncray.remote
    class Triple:
        def three(self):
            return 1, 2, 3

    triple = Triple.remote()
    refs = triple.three.options(num_returns=3).remote()
    assert len(refs) == 3
    assert asyncray.get(refs) == [1, 2, 3]
    single = triple.three.remote()
    assert isinstance(single, asyncray.ObjectRef)
    assert asyncray.get(single) == (1, 2, 3)


def test_missing_method_raises_attribute_error(ray_start):
    counter = Counter.remote()
    with pytest.raises(AttributeError, match="nosuch"):
        counter.nosuch
    with pytest.raises(AttributeError):
        counter.nosuch.remote()


def test_calling_a_method_directly_raises_type_error_naming_remote(ray_start):
    counter = Counter.remote()
    with pytest.raises(TypeError, match=re.escape("object.increment.remote()")):
        counter.increment()


def test_method_decorator_rejects_unknown_keywords_with_assertion_error():
    with pytest.raises(AssertionError, match="bogus"):
        asyncray.method(bogus=1)


def test_builtin_ready_and_call_methods(ray_start):
    counter = Counter.remote(7)
    assert asyncray.get(counter.__ray_ready__.remote()) is True
    assert asyncray.get(counter.__ray_call__.remote(lambda self, n: self.value * n, 3)) == 21


def test_static_and_class_methods_are_callable_remotely(ray_start):
    @asyncray.remote
    class WithStatics:
        @staticmethod
        def double(x):
            return 2 * x

        @classmethod
        def name(cls):
            return cls.__name__

    actor = WithStatics.remote()
    assert asyncray.get(actor.double.remote(21)) == 42
    assert asyncray.get(actor.name.remote()) == "WithStatics"


def test_object_ref_arguments_are_resolved_for_ctor_and_methods(ray_start):
    counter = Counter.remote(asyncray.put(10))
    assert asyncray.get(counter.increment.remote(asyncray.put(5))) == 15


def test_error_in_a_method_reaches_caller_as_ray_task_error_and_user_class(ray_start):
    class Oops(Exception):
        pass

    @asyncray.remote
    class Fragile:
        def __init__(self):
            self.calls = 0

        def explode(self):
            self.calls += 1
            raise Oops("exploded on purpose")

        def calls_so_far(self):
            return self.calls

    fragile = Fragile.remote()
    with pytest.raises(Oops) as info:
        asyncray.get(fragile.explode.remote())
    assert isinstance(info.value, RayTaskError)
    text = str(info.value)
    assert "explode" in text
    assert "exploded on purpose" in text
    # The actor survives with its state.
    assert asyncray.get(fragile.calls_so_far.remote()) == 1
    with pytest.raises(RayTaskError):
        asyncray.get(fragile.explode.remote())
    assert asyncray.get(fragile.calls_so_far.remote()) == 2


# ====================================================================== handles


def test_handles_are_picklable_and_the_copy_works(ray_start):
    counter = Counter.remote()
    copy = pickle.loads(pickle.dumps(counter))
    assert copy == counter
    assert asyncray.get(copy.increment.remote()) == 1
    assert asyncray.get(counter.increment.remote()) == 2


def test_handle_passed_to_a_task_can_call_methods(ray_start):
    counter = Counter.remote()
    assert asyncray.get(increment_through.remote(counter)) == 1
    assert asyncray.get(counter.get.remote()) == 1


# The worker creating the detached actor inherits the suite's filters.
@pytest.mark.filterwarnings("ignore:An actor created with lifetime=:RuntimeWarning")
def test_handle_can_be_put_and_returned_from_a_task(ray_start):
    counter = Counter.remote()
    fetched = asyncray.get(asyncray.put(counter))
    assert fetched == counter
    assert asyncray.get(fetched.increment.remote()) == 1

    @asyncray.remote
    def make_counter():
        handle = Counter.options(lifetime="detached").remote(40)
        asyncray.get(handle.__ray_ready__.remote())
        return handle

    made = asyncray.get(make_counter.remote())
    assert asyncray.get(made.increment.remote(2)) == 42


def test_handles_passed_to_other_actors_can_call_methods(ray_start):
    counter = Counter.remote()
    via_ctor = Caller.remote(counter)
    assert asyncray.get(via_ctor.increment_own.remote()) == 100
    via_arg = Caller.remote()
    assert asyncray.get(via_arg.increment_given.remote(counter)) == 1100
    assert asyncray.get(counter.get.remote()) == 1100


def test_three_tasks_each_incrementing_a_shared_counter_ten_times_end_at_thirty(ray_start):
    counter = Counter.remote()
    finals = asyncray.get([call_increment_ten_times.remote(counter) for _ in range(3)])
    assert max(finals) == 30
    assert asyncray.get(counter.get.remote()) == 30


def test_handles_compare_and_hash_by_actor_id(ray_start):
    first = Counter.remote()
    second = Counter.remote()
    copy = pickle.loads(pickle.dumps(first))
    assert first == copy and hash(first) == hash(copy)
    assert first != second
    assert len({first, copy, second}) == 2
    assert first != "not a handle"


def test_handle_repr_names_the_class_and_the_actor_id(ray_start):
    probe = Probe.remote()
    match = re.fullmatch(r"Actor\(Probe, ([0-9a-f]{32})\)", repr(probe))
    assert match, repr(probe)
    assert asyncray.get(probe.describe.remote())["actor_id"] == match.group(1)


# ====================================================================== named actors


def test_named_actor_is_found_with_get_actor_and_equals_the_original(shutdown_only):
    asyncray.init(num_cpus=2, namespace="x")
    original = Counter.options(name="counter").remote(10)
    found = asyncray.get_actor("counter")
    assert found == original
    assert asyncray.get(found.increment.remote()) == 11
    assert asyncray.get(original.get.remote()) == 11
    assert asyncray.get_actor("counter", namespace="x") == original


def test_get_actor_on_a_missing_name_raises_value_error(ray_start):
    with pytest.raises(ValueError, match="Failed to look up actor with name 'nope'"):
        asyncray.get_actor("nope")
    with pytest.raises(ValueError):
        asyncray.get_actor("")


def test_duplicate_name_raises_actor_already_exists_error(shutdown_only):
    asyncray.init(num_cpus=2, namespace="x")
    first = Counter.options(name="dup").remote(1)
    with pytest.raises(ActorAlreadyExistsError) as info:
        Counter.options(name="dup").remote(2)
    assert isinstance(info.value, ValueError)
    assert "dup" in str(info.value)
    assert asyncray.get(asyncray.get_actor("dup").get.remote()) == 1
    assert asyncray.get(first.get.remote()) == 1


def test_same_name_in_another_namespace_is_a_different_actor(shutdown_only):
    asyncray.init(num_cpus=2, namespace="x")
    here = Counter.options(name="a").remote(1)
    there = Counter.options(name="a", namespace="other").remote(2)
    assert here != there
    assert asyncray.get_actor("a") == here
    assert asyncray.get_actor("a", namespace="other") == there
    assert asyncray.get(asyncray.get_actor("a", namespace="other").get.remote()) == 2
    with pytest.raises(ValueError, match="Failed to look up actor"):
        asyncray.get_actor("a", namespace="third")


def test_get_if_exists_returns_the_existing_actor_and_ignores_new_args(shutdown_only):
    asyncray.init(num_cpus=2, namespace="x")
    first = Counter.options(name="gie", get_if_exists=True).remote(100)
    assert asyncray.get(first.increment.remote()) == 101
    second = Counter.options(name="gie", get_if_exists=True).remote(200)
    assert second == first
    assert asyncray.get(second.increment.remote()) == 102


def test_get_if_exists_in_the_decorator_creates_then_reuses(shutdown_only):
    asyncray.init(num_cpus=2, namespace="x")

    @asyncray.remote(name="shared", get_if_exists=True)
    class Shared:
        def __init__(self, start):
            self.value = start

        def increment(self):
            self.value += 1
            return self.value

    first = Shared.remote(0)
    assert asyncray.get(first.increment.remote()) == 1
    assert asyncray.get(Shared.remote(50).increment.remote()) == 2


def test_name_is_freed_after_kill(shutdown_only):
    asyncray.init(num_cpus=2, namespace="x")
    first = Counter.options(name="reuse").remote(1)
    pid = asyncray.get(first.pid.remote())
    asyncray.kill(first)

    def name_free():
        try:
            asyncray.get_actor("reuse")
        except ValueError:
            return True
        return False

    wait_for_condition(name_free)
    wait_for_process_exit(pid)
    second = Counter.options(name="reuse").remote(2)
    assert asyncray.get(asyncray.get_actor("reuse").get.remote()) == 2
    assert second != first


def test_named_non_detached_actor_ends_and_frees_its_name_when_its_handle_is_dropped(
    shutdown_only,
):
    asyncray.init(num_cpus=2, namespace="x")
    named = Counter.options(name="dropped").remote()
    pid = asyncray.get(named.pid.remote())
    looked_up = asyncray.get_actor("dropped")  # a weak handle: does not keep it alive
    del named
    gc.collect()
    wait_for_process_exit(pid)

    def name_free():
        try:
            asyncray.get_actor("dropped")
        except ValueError:
            return True
        return False

    wait_for_condition(name_free)
    with pytest.raises(ActorDiedError):
        asyncray.get(looked_up.get.remote())


def test_detached_actor_survives_its_handle_being_dropped(shutdown_only):
    asyncray.init(num_cpus=2, namespace="x")
    with pytest.warns(RuntimeWarning, match='lifetime="detached" in an embedded session'):
        detached = Counter.options(name="keeper", lifetime="detached").remote(5)
    detached_pid = asyncray.get(detached.pid.remote())
    anonymous = Counter.options(lifetime="detached").remote()  # warned once already
    anonymous_pid = asyncray.get(anonymous.pid.remote())
    control = Counter.remote()
    control_pid = asyncray.get(control.pid.remote())
    del detached, anonymous
    gc.collect()
    # The control actor's handle is dropped after the others: once it has
    # ended, any release of the detached actors would have happened too.
    del control
    gc.collect()
    wait_for_process_exit(control_pid)
    assert asyncray.get(asyncray.get_actor("keeper").increment.remote()) == 6
    assert not process_gone(detached_pid)
    assert not process_gone(anonymous_pid)
    # shutdown() ends them: the leak check fails the test otherwise.


def test_list_named_actors_lists_names_in_this_namespace(shutdown_only):
    asyncray.init(num_cpus=2, namespace="x")
    handles = [  # noqa: F841 - keep the actors alive
        Counter.options(name="one").remote(),
        Counter.options(name="two").remote(),
        Counter.options(name="three", namespace="other").remote(),
        Counter.remote(),
    ]
    assert sorted(asyncray.actor.list_named_actors()) == ["one", "two"]
    everything = asyncray.actor.list_named_actors(all_namespaces=True)
    assert sorted((e["namespace"], e["name"]) for e in everything) == [
        ("other", "three"),
        ("x", "one"),
        ("x", "two"),
    ]


# ====================================================================== output


def test_print_in_a_method_reaches_driver_stdout_tagged_with_the_class(capfd, shutdown_only):
    asyncray.init(num_cpus=2)

    @asyncray.remote
    class Talker:
        def say(self, text):
            print(text)
            return os.getpid()

    talker = Talker.remote()
    pid = asyncray.get(talker.say.remote("actor-stdout-marker"))
    read_until(capfd, rf"^\(Talker pid={pid}\) actor-stdout-marker$")


# ====================================================================== runtime context


def test_runtime_context_in_a_default_actor(ray_start):
    probe = Probe.remote()
    seen = asyncray.get(probe.describe.remote())
    assert isinstance(seen["actor_id"], str)
    assert re.fullmatch(r"[0-9a-f]{32}", seen["actor_id"])
    assert seen["actor_id"] in repr(probe)
    assert seen["name"] == ""
    assert seen["resources"] == {}


def test_runtime_context_in_a_named_actor_with_one_cpu(shutdown_only):
    asyncray.init(num_cpus=2, namespace="x")
    probe = Probe.options(name="probe", num_cpus=1).remote()
    seen = asyncray.get(probe.describe.remote())
    assert seen["name"] == "probe"
    assert seen["resources"] == {"CPU": 1.0}


def test_current_actor_is_a_handle_equal_to_the_actors_own(ray_start):
    probe = Probe.remote()
    me = asyncray.get(probe.me.remote())
    assert isinstance(me, asyncray.ActorHandle)
    assert me == probe
    assert asyncray.get(me.pid.remote()) == asyncray.get(probe.pid.remote())


def test_runtime_context_in_the_driver_has_no_actor(ray_start):
    ctx = asyncray.get_runtime_context()
    assert ctx.get_actor_id() is None
