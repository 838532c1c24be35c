"""Named actors and namespaces: get_actor, get_if_exists, name clashes, lookups that fail."""

from __future__ import annotations

import uuid

import pytest
from _compat import NUM_CPUS, ON_RAY, eventually

import asyncray as ray
from asyncray.exceptions import RayActorError


@ray.remote
class Box:
    def __init__(self, value=None):
        self.value = value

    def get(self):
        return self.value

    def set(self, value):
        self.value = value


def _dead(handle):
    try:
        ray.get(handle.get.remote(), timeout=30)
    except RayActorError:
        return True
    return False


def _name(prefix="actor"):
    # Unique per test: on Ray one runtime serves the whole session.
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_get_actor_by_name_reaches_the_same_actor():
    name = _name()
    box = Box.options(name=name).remote("first")
    found = ray.get_actor(name)
    ray.get(found.set.remote("changed"))
    assert ray.get(box.get.remote()) == "changed"
    ray.kill(box)


def test_get_actor_of_a_missing_name_raises_value_error():
    with pytest.raises(ValueError, match="missing-name"):
        ray.get_actor("missing-name-" + uuid.uuid4().hex[:8])


def test_a_taken_name_raises_value_error():
    name = _name()
    box = Box.options(name=name).remote()
    ray.get(box.get.remote())
    with pytest.raises(ValueError, match=name):
        Box.options(name=name).remote()
    ray.kill(box)


def test_get_if_exists_returns_the_existing_actor():
    name = _name()
    first = Box.options(name=name, get_if_exists=True).remote("original")
    second = Box.options(name=name, get_if_exists=True).remote("ignored")
    assert ray.get(second.get.remote()) == "original"
    ray.get(second.set.remote("via second"))
    assert ray.get(first.get.remote()) == "via second"
    ray.kill(first)


def test_a_named_actor_is_found_from_a_task():
    name = _name()
    box = Box.options(name=name).remote(42)
    ray.get(box.get.remote())

    @ray.remote
    def lookup(n):
        return ray.get(ray.get_actor(n).get.remote())

    assert ray.get(lookup.remote(name)) == 42
    ray.kill(box)


def test_namespaces_separate_names():
    name = _name()
    ns = _name("ns")
    box = Box.options(name=name, namespace=ns).remote("in ns")
    ray.get(box.get.remote())
    assert ray.get(ray.get_actor(name, namespace=ns).get.remote()) == "in ns"
    with pytest.raises(ValueError):
        ray.get_actor(name)  # not in the job's own namespace
    # The same name is free in another namespace.
    other = Box.options(name=name, namespace=_name("ns")).remote("elsewhere")
    assert ray.get(other.get.remote()) == "elsewhere"
    ray.kill(box)
    ray.kill(other)


def test_list_named_actors():
    name = _name()
    box = Box.options(name=name).remote()
    ray.get(box.get.remote())
    assert name in ray.util.list_named_actors()
    ns = _name("ns")
    other = Box.options(name=name, namespace=ns).remote()
    ray.get(other.get.remote())
    everywhere = ray.util.list_named_actors(all_namespaces=True)
    assert {"name": name, "namespace": ns} in everywhere
    ray.kill(box)
    ray.kill(other)


def test_a_killed_actor_frees_its_name():
    name = _name()
    box = Box.options(name=name).remote()
    ray.get(box.get.remote())
    ray.kill(box)
    eventually(lambda: _dead(box), what="the killed actor's death")

    def name_free():
        try:
            ray.get_actor(name)
        except ValueError:
            return True
        return False

    # The name is released asynchronously in Ray.
    eventually(name_free, what="the release of the killed actor's name")
    again = Box.options(name=name).remote("again")
    assert ray.get(again.get.remote()) == "again"
    ray.kill(again)


@pytest.mark.parametrize("init_kwargs", [{"num_cpus": NUM_CPUS, "namespace": "compat-ns"}])
def test_init_namespace_is_the_default_for_names():
    assert ray.get_runtime_context().namespace == "compat-ns"
    name = _name()
    box = Box.options(name=name).remote("job namespace")
    ray.get(box.get.remote())
    assert ray.get(ray.get_actor(name, namespace="compat-ns").get.remote()) == "job namespace"
    assert ray.get(ray.get_actor(name).get.remote()) == "job namespace"
    ray.kill(box)


def test_empty_names_are_refused():
    with pytest.raises(ValueError):
        ray.get_actor("")
    with pytest.raises(ValueError):
        Box.options(name="").remote()


def test_a_detached_actor():
    name = _name()
    if ON_RAY:
        # Ray says nothing in the driver (the raylet logs a note about
        # anonymous namespaces); docs/ray-compatibility.md: 'lifetime="detached"
        # with no shared runtime'.
        box = Box.options(name=name, lifetime="detached").remote("detached")
    else:
        # asyncray's embedded session warns that the actor cannot outlive the
        # driver (same row).
        with pytest.warns(RuntimeWarning, match="detached"):
            box = Box.options(name=name, lifetime="detached").remote("detached")
    assert ray.get(ray.get_actor(name).get.remote()) == "detached"
    ray.kill(box)  # a detached actor must be killed explicitly
