"""The public surface: every public name exported once, and Ray's attribute paths.

Programs written for ``import ray`` reach submodules as attributes after a
bare import (``ray.util.queue.Queue``, ``ray.exceptions.RayTaskError``);
they must work the same after ``import asyncray as ray``.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import pytest

import asyncray

pytestmark = pytest.mark.timeout(60)

# Modules with Ray's paths and the names Ray's own modules export there.
PUBLIC_MODULES = {
    "asyncray": [
        "init", "shutdown", "is_initialized", "remote", "method", "get", "put", "wait",
        "kill", "cancel", "get_actor", "get_gpu_ids", "available_resources",
        "cluster_resources", "nodes", "get_runtime_context", "ObjectRef", "ObjectID",
        "ObjectRefGenerator", "exceptions", "util", "actor",
    ],
    "asyncray.util": [
        "ActorPool", "placement_group", "remove_placement_group", "get_placement_group",
        "placement_group_table", "get_current_placement_group", "PlacementGroup",
        "list_named_actors", "inspect_serializability",
    ],
    "asyncray.util.multiprocessing": ["Pool", "TimeoutError", "JoinableQueue"],
    "asyncray.util.joblib": ["register_ray"],
    "asyncray.util.check_serialize": ["inspect_serializability", "FailureTuple"],
    "asyncray.util.queue": ["Queue", "Empty", "Full"],
    "asyncray.util.placement_group": [
        "PlacementGroup", "placement_group", "remove_placement_group",
        "get_placement_group", "placement_group_table", "get_current_placement_group",
    ],
    "asyncray.util.scheduling_strategies": [
        "PlacementGroupSchedulingStrategy", "NodeAffinitySchedulingStrategy",
        "NodeLabelSchedulingStrategy",
    ],
    "asyncray.exceptions": [
        "RayError", "RayTaskError", "RayActorError", "ActorDiedError", "GetTimeoutError",
        "TaskCancelledError", "ObjectStoreFullError", "RaySystemError", "WorkerCrashedError",
        "ObjectLostError", "OutOfMemoryError",
    ],
    "asyncray.runtime_context": ["RuntimeContext", "get_runtime_context"],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(PUBLIC_MODULES))
def test_all_lists_each_name_once_and_every_name_resolves(name):
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported)), f"{name}.__all__ repeats a name"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it lacks: {missing}"
    absent = [n for n in PUBLIC_MODULES[name] if n not in exported]
    assert not absent, f"{name} does not export Ray's {absent}"


def test_the_package_exports_exactly_its_all():
    public = {
        n
        for n in dir(asyncray)
        if not n.startswith("_") and not isinstance(getattr(asyncray, n), types.ModuleType)
    }
    modules = {"actor", "exceptions", "util"}  # Ray's submodules, exported by name
    assert public | modules == set(asyncray.__all__)


@pytest.mark.parametrize("name", ["asyncray.util.queue", "asyncray.util.placement_group"])
def test_util_classes_carry_rays_module_paths(name):
    module = importlib.import_module(name)
    for cls_name in module.__all__:
        obj = getattr(module, cls_name)
        if isinstance(obj, type):
            assert obj.__module__ == name


def test_rays_attribute_paths_work_after_a_bare_import():
    code = (
        "import asyncray as ray\n"
        "assert ray.util.queue.Queue.__name__ == 'Queue'\n"
        "assert callable(ray.util.placement_group)\n"
        "assert ray.util.placement_group.__name__ == 'placement_group'\n"
        "assert issubclass(ray.exceptions.RayTaskError, ray.exceptions.RayError)\n"
        "assert ray.util.scheduling_strategies.PlacementGroupSchedulingStrategy\n"
        "assert ray.util.ActorPool.__name__ == 'ActorPool'\n"
        "assert ray.runtime_context.RuntimeContext\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
