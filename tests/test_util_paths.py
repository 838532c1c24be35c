"""Ray's module paths a program touches: ``ray.util.<submodule>`` after a bare
import, ``inspect_serializability``, and Ray's libraries outside Core refused
with one clear ``ImportError``."""

from __future__ import annotations

import io
import subprocess
import sys
import threading

import pytest

import asyncray
from asyncray.exceptions import UnsupportedLibraryError

pytestmark = pytest.mark.timeout(60)

LIBRARIES = ["data", "serve", "train", "tune", "dag", "workflow", "rllib", "air"]


def test_util_submodules_are_reachable_after_a_bare_import():
    code = (
        "import asyncray as ray\n"
        "assert ray.util.queue.Queue.__name__ == 'Queue'\n"
        "assert ray.util.actor_pool.ActorPool is ray.util.ActorPool\n"
        "assert ray.util.placement_group.__name__ == 'placement_group'\n"
        "assert ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy\n"
        "assert ray.util.multiprocessing.Pool.__name__ == 'Pool'\n"
        "assert ray.util.multiprocessing.TimeoutError.__module__ == 'multiprocessing.context'\n"
        "assert callable(ray.util.joblib.register_ray)\n"
        "assert ray.util.check_serialize.inspect_serializability is "
        "ray.util.inspect_serializability\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_an_unknown_util_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        asyncray.util.nope


@pytest.mark.parametrize("library", LIBRARIES)
def test_a_library_outside_core_fails_on_import_with_one_clear_error(library):
    with pytest.raises(UnsupportedLibraryError) as info:
        __import__(f"asyncray.{library}")
    message = str(info.value)
    assert "asyncray covers Ray Core only" in message
    assert "real Ray" in message and "import ray" in message
    assert info.value.name == f"asyncray.{library}"
    assert f"asyncray.{library}" not in sys.modules


@pytest.mark.parametrize("library", ["data", "serve"])
def test_from_import_raises_and_attribute_access_says_the_same(library):
    with pytest.raises(UnsupportedLibraryError, match="asyncray covers Ray Core only"):
        exec(f"from asyncray import {library}", {})
    # Attribute access says the same as an AttributeError, so hasattr() stays False.
    with pytest.raises(AttributeError, match=f"asyncray.{library}: asyncray covers Ray Core"):
        getattr(asyncray, library)
    assert not hasattr(asyncray, library)


def test_try_import_except_import_error_works():
    try:
        import asyncray.data  # noqa: F401

        reached = "imported"
    except ImportError as e:
        reached = type(e).__name__
    assert reached == "UnsupportedLibraryError"
    assert issubclass(UnsupportedLibraryError, ImportError)
    assert not issubclass(UnsupportedLibraryError, ModuleNotFoundError)


def test_other_missing_attributes_stay_attribute_errors():
    assert not hasattr(asyncray, "no_such_thing")


def test_the_error_pickles():
    import pickle

    err = pickle.loads(pickle.dumps(UnsupportedLibraryError("tune")))
    assert err.library == "tune" and "Ray Tune" in str(err)


_LOCK = threading.Lock()


class _Holder:
    def __init__(self):
        self.lock = _LOCK


def test_inspect_serializability_of_a_serializable_object():
    out = io.StringIO()
    ok, failures = asyncray.util.inspect_serializability(lambda: 3, print_file=out)
    assert (ok, failures) == (True, set())
    assert "Checking Serializability of <function" in out.getvalue()


def test_inspect_serializability_finds_a_captured_variable_of_a_function():
    lock = threading.Lock()

    def uses_lock():
        return lock

    out = io.StringIO()
    ok, failures = asyncray.util.inspect_serializability(uses_lock, name="f", print_file=out)
    assert ok is False
    (failure,) = failures
    assert failure.obj is lock
    assert failure.path == ("f", "lock")
    assert failure.parent is uses_lock
    assert repr(failure).startswith("FailTuple(lock [path=f -> lock, obj=<unlocked")
    report = out.getvalue()
    assert "Inspecting closure of " in report
    assert "Detected 1 nonlocal variables. Checking serializability..." in report
    assert "!!! FAIL serialization: cannot pickle '_thread.lock' object" in report
    assert "was found to be non-serializable" in report


def test_inspect_serializability_finds_an_attribute_of_an_object():
    holder = _Holder()
    ok, failures = asyncray.util.inspect_serializability(holder, name="h", print_file=io.StringIO())
    assert ok is False
    (failure,) = failures
    assert (failure.obj, failure.path, failure.parent) == (_LOCK, ("h", "lock"), holder)


def test_inspect_serializability_depth_zero_reports_the_object_itself():
    ok, failures = asyncray.util.inspect_serializability(
        _LOCK, name="x", depth=0, print_file=io.StringIO()
    )
    assert ok is False
    assert [(f.obj, f.path) for f in failures] == [(_LOCK, ("x",))]
