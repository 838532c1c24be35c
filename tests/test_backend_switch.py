"""``ASYNCRAY_BACKEND``: unset/"asyncray" runs asyncray; "ray" hands the program to Ray.

Ray is never a dependency: the default tests run the switch against a fake,
minimal ``ray`` package written to a temporary directory (the forwarding and
module aliasing logic), and without any ``ray`` (the error says how to
install it). The tests at the end run real Ray, only where it is importable
(``pytest.importorskip``); each check runs in a fresh interpreter, since the
variable is read when asyncray is first imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import asyncray

pytestmark = pytest.mark.timeout(120)

SRC = os.path.dirname(os.path.dirname(asyncray.__file__))


def _run(
    code: str,
    backend: str | None,
    extra_path: str | None = None,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    timeout: float = 90,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (or ``args``) in a fresh interpreter on this checkout's asyncray."""
    env = {
        **{
            k: v for k, v in os.environ.items() if k not in ("ASYNCRAY_BACKEND", "ASYNCRAY_ADDRESS")
        },
        **(env or {}),
    }
    if backend is not None:
        env["ASYNCRAY_BACKEND"] = backend
    env["PYTHONPATH"] = os.pathsep.join(p for p in (extra_path, SRC) if p)
    cmd = [sys.executable, *(args or ["-c", textwrap.dedent(code)])]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def _ok(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


# Makes ``import ray`` fail whatever is installed (a real Ray in this environment too).
_HIDE_RAY = "import sys; sys.modules['ray'] = None\n"


# ==================================================================== without Ray


def test_default_and_asyncray_values_run_asyncray_and_load_nothing_of_the_switch():
    code = """
        import sys
        import asyncray
        print(asyncray.__backend__, "asyncray._ray_backend" in sys.modules, asyncray.get.__module__)
    """
    for value in (None, "", "asyncray"):
        assert _ok(_run(code, value)).split() == ["asyncray", "False", "asyncray._api"]


@pytest.mark.parametrize("value", ["Ray", "bogus", " ray"])
def test_an_unknown_backend_raises_naming_the_variable_and_the_values(value):
    out = _run("import asyncray", value)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: ASYNCRAY_BACKEND=")
    assert repr(value) in last
    assert "ASYNCRAY_BACKEND=ray" in last and '"asyncray"' in last


def test_ray_backend_without_ray_says_how_to_install_it():
    out = _run(_HIDE_RAY + "import asyncray", "ray")
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: ASYNCRAY_BACKEND=ray")
    assert 'pip install "ray==2.60.0"' in last
    assert "unset ASYNCRAY_BACKEND" in last


# ==================================================================== a fake Ray

_FAKE_RAY = {
    "__init__.py": '''
        """A fake ray: just what the switch forwards."""
        __version__ = "2.60.0"
        __all__ = ["init", "shutdown", "get", "put", "wait", "remote", "method", "cancel",
                   "get_actor", "is_initialized", "ObjectRef", "ObjectRefGenerator"]
        from . import actor, exceptions, remote_function, runtime_context, util
        from .remote_function import RemoteFunction

        INIT_CALLS = []
        CANCELLED = []

        class ObjectRef:
            def __init__(self, value=None):
                self.value = value

        class ObjectRefGenerator:
            pass

        def init(address=None, **kwargs):
            INIT_CALLS.append((address, kwargs))
            return "context"

        def shutdown():
            pass

        def is_initialized():
            return True

        class _Context:
            def get_node_id(self):
                return "ab" * 28

        def get_runtime_context():
            return _Context()

        def shutdown():
            pass

        def get(refs, *, timeout=None):
            return [r.value for r in refs] if isinstance(refs, list) else refs.value

        def put(value):
            return ObjectRef(value)

        def wait(refs, *, num_returns=1, timeout=None, fetch_local=True):
            return [], list(refs)

        def cancel(ref, *, force=False, recursive=True):
            CANCELLED.append((ref, force))

        def get_actor(name, namespace=None):
            return ("actor", name, namespace)

        def remote(*args, **kwargs):
            if args:
                return RemoteFunction(args[0], {})
            if "bad" in kwargs:
                raise ValueError("Invalid option keyword bad")
            return lambda f: RemoteFunction(f, kwargs)

        def method(*args, **kwargs):
            return lambda f: f

        def __getattr__(name):
            if name == "lazy":
                return "ray's lazy attribute"
            raise AttributeError(name)
    ''',
    "exceptions.py": """
        class RayError(Exception):
            pass
        class RayTaskError(RayError):
            pass
        class TaskCancelledError(RayError):
            pass
        class GetTimeoutError(RayError, TimeoutError):
            pass
    """,
    "actor.py": """
        class ActorClass:
            pass
        class ActorHandle:
            pass
    """,
    "remote_function.py": """
        class RemoteFunction:
            def __init__(self, f, opts):
                self.f, self.opts = f, opts
            def remote(self, *args):
                import ray
                return ray.ObjectRef(self.f(*args))
            def options(self, **opts):
                if "timeout_s" in opts:
                    raise ValueError("Invalid option keyword timeout_s")
                return RemoteFunction(self.f, {**self.opts, **opts})
    """,
    "runtime_context.py": "class RuntimeContext:\n    pass\n",
    "_private/__init__.py": "",
    "_private/services.py": """
        import os
        def canonicalize_bootstrap_address(addr, temp_dir=None):  # None: a new local Ray
            addr = os.environ.get("RAY_ADDRESS") or addr
            return None if addr in (None, "local") else addr
    """,
    "util/__init__.py": """
        from .placement_group import placement_group
        from . import queue
    """,
    "util/placement_group.py": """
        class PlacementGroup:
            pass
        def placement_group(bundles):
            return PlacementGroup()
    """,
    "util/queue.py": "class Queue:\n    pass\nclass Empty(Exception):\n    pass\n",
    "util/multiprocessing/__init__.py": "from .pool import Pool\n",
    "util/multiprocessing/pool.py": "class Pool:\n    pass\nclass AsyncResult:\n    pass\n",
}


@pytest.fixture
def fake_ray(tmp_path: Path) -> str:
    for name, text in _FAKE_RAY.items():
        path = tmp_path / "ray" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return str(tmp_path)


def test_the_package_is_rays_plus_the_extras(fake_ray):
    out = _ok(
        _run(
            """
            import ray
            import asyncray
            assert asyncray.__backend__ == "ray"
            assert asyncray.__version__ != ray.__version__  # asyncray's own
            for name in ("get", "put", "wait", "cancel", "get_actor", "is_initialized",
                         "ObjectRef", "ObjectRefGenerator"):
                assert getattr(asyncray, name) is getattr(ray, name), name
            assert asyncray.ObjectID is ray.ObjectRef
            assert asyncray.ActorHandle is ray.actor.ActorHandle
            assert asyncray.RemoteFunction is ray.remote_function.RemoteFunction
            for name in ("get_async", "wait_async", "put_async", "cancel_async",
                         "get_actor_async"):
                assert name in asyncray.__all__ and callable(getattr(asyncray, name)), name
            assert asyncray.lazy == "ray's lazy attribute"  # Ray's own __getattr__
            try:
                asyncray.nothing
            except AttributeError as e:
                assert "ASYNCRAY_BACKEND=ray" in str(e)
            print("ok")
            """,
            "ray",
            fake_ray,
        )
    )
    assert out.split() == ["ok"]


def test_submodules_are_rays_and_exception_classes_the_same_objects(fake_ray):
    out = _ok(
        _run(
            """
            import sys
            import ray
            import asyncray
            import asyncray.util.queue
            import ray.util.multiprocessing
            # A submodule with asyncray's names, reached as an attribute first.
            assert asyncray.util.multiprocessing.AsyncResult.__name__ == "AsyncResult"
            from asyncray.exceptions import RayTaskError, TaskTimeoutError
            from asyncray.util import PlacementGroup, placement_group
            from asyncray.util.multiprocessing import AsyncResult, Pool
            import asyncray.util.placement_group
            from asyncray.object_ref import ObjectRef
            from asyncray.object_ref_generator import ObjectRefGenerator, cancel_async

            assert RayTaskError is ray.exceptions.RayTaskError
            assert asyncray.exceptions.GetTimeoutError is ray.exceptions.GetTimeoutError
            # timeout_s cancels on Ray, which reports a cancelled task as TaskCancelledError
            assert TaskTimeoutError is ray.exceptions.TaskCancelledError
            assert issubclass(asyncray.exceptions.UnsupportedLibraryError, ImportError)
            try:
                raise ray.exceptions.RayTaskError("x")
            except asyncray.exceptions.RayTaskError:
                pass
            # Modules asyncray adds nothing to are Ray's very own (Ray's spec kept).
            assert asyncray.util.queue is ray.util.queue
            assert sys.modules["asyncray.util.queue"] is ray.util.queue
            assert ray.util.queue.__spec__.name == "ray.util.queue"
            assert asyncray.actor is ray.actor
            assert asyncray.runtime_context is ray.runtime_context
            # Where asyncray adds names: a module reading every other name from Ray's.
            assert asyncray.exceptions is sys.modules["asyncray.exceptions"]
            assert PlacementGroup is sys.modules["ray.util.placement_group"].PlacementGroup
            assert AsyncResult is ray.util.multiprocessing.pool.AsyncResult
            assert Pool is ray.util.multiprocessing.Pool
            # As in Ray: importing the submodule leaves util.placement_group the function.
            assert placement_group is asyncray.util.placement_group is ray.util.placement_group
            assert callable(placement_group)
            assert ObjectRef is ray.ObjectRef and ObjectRefGenerator is ray.ObjectRefGenerator
            print("ok")
            """,
            "ray",
            fake_ray,
        )
    )
    assert out.split() == ["ok"]


def test_asyncray_modules_ray_lacks_raise_naming_ray(fake_ray):
    out = _run("import asyncray; import asyncray._api", "ray", fake_ray)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert "ModuleNotFoundError: No module named 'asyncray._api'" in last
    assert "Ray has no 'ray._api'" in last


def test_the_async_twins_run_on_rays_calls(fake_ray):
    out = _ok(
        _run(
            """
            import asyncio
            import ray
            import asyncray

            async def main():
                ref = await asyncray.put_async(5)
                assert isinstance(ref, ray.ObjectRef) and ref.value == 5
                await asyncray.cancel_async(ref, force=True)
                assert ray.CANCELLED == [(ref, True)]
                actor = await asyncray.get_actor_async("a", namespace="n")
                assert actor == ("actor", "a", "n")
                assert await asyncray.get_async([]) == []
                gen = ray.ObjectRefGenerator()
                assert await asyncray.get_async(gen) is gen
                for bad, exc in ((5, ValueError), ([5], TypeError)):
                    try:
                        await asyncray.get_async(bad)
                    except exc:
                        pass
                    else:
                        raise AssertionError(bad)
                try:
                    await asyncray.get_async([], timeout=-1)
                except ValueError as e:
                    assert "nonnegative" in str(e)
                print("ok")

            asyncio.run(main())
            """,
            "ray",
            fake_ray,
        )
    )
    assert out.split() == ["ok"]


def test_init_gives_a_clusters_workers_the_variable_and_refuses_an_asyncray_address(fake_ray):
    out = _ok(
        _run(
            """
            import ray
            import asyncray
            # A new local Ray: its workers inherit the driver's environment.
            assert asyncray.init(num_cpus=2) == "context"
            # Joining a cluster: the job's runtime_env carries the variable.
            asyncray.init("ray://h:10001", runtime_env={"env_vars": {"A": "1"}, "pip": ["x"]})
            asyncray.init("10.0.0.1:6379", runtime_env={"env_vars": {"ASYNCRAY_BACKEND": "x"}})
            asyncray.init("auto")
            (a1, k1), (a2, k2), (a3, k3), (a4, k4) = ray.INIT_CALLS
            assert a1 is None and k1 == {"num_cpus": 2}, k1
            assert a2 == "ray://h:10001" and k2["runtime_env"] == {
                "env_vars": {"A": "1", "ASYNCRAY_BACKEND": "ray"}, "pip": ["x"]}
            assert k3["runtime_env"]["env_vars"] == {"ASYNCRAY_BACKEND": "x"}  # the program's
            assert a4 == "auto" and k4 == {"runtime_env": {"env_vars": {"ASYNCRAY_BACKEND": "ray"}}}
            print("ok")
            """,
            "ray",
            fake_ray,
        )
    )
    assert out.split() == ["ok"]
    out = _run(
        "import asyncray; asyncray.init()", "ray", fake_ray, env={"ASYNCRAY_ADDRESS": "/tmp/x"}
    )
    assert out.returncode != 0
    assert "ASYNCRAY_ADDRESS names an asyncray head" in out.stderr
    assert "RAY_ADDRESS" in out.stderr


def test_timeout_s_is_checked_and_refused_where_ray_cannot_honour_it(fake_ray):
    out = _ok(
        _run(
            """
            import ray
            import asyncray

            def expect(exc, text, f, *args, **kwargs):
                try:
                    f(*args, **kwargs)
                except exc as e:
                    assert text in str(e), str(e)
                else:
                    raise AssertionError(f"{f} did not raise")

            def double(x):
                return 2 * x

            f = asyncray.remote(double)
            assert isinstance(f, ray.remote_function.RemoteFunction)  # still Ray's
            assert asyncray.get(f.remote(2)) == 4
            assert asyncray.get(f.options(num_cpus=1).remote(3)) == 6
            # An options() without timeout_s is Ray's own wrapper.
            assert isinstance(f.options(num_cpus=1), ray.remote_function.RemoteFunction)
            expect(ValueError, "timeout_s must be a positive", asyncray.remote, timeout_s=0)
            expect(ValueError, "timeout_s must be a positive", f.options, timeout_s=-1)
            expect(ValueError, "Invalid option keyword bad", asyncray.remote, bad=1)
            def sync_method(self):
                pass

            async def async_method(self, x, y=1):
                return x

            expect(ValueError, "timeout_s on the sync actor method 'sync_method'",
                   asyncray.method(timeout_s=1), sync_method)
            expect(ValueError, "timeout_s must be a positive", asyncray.method, timeout_s=-1)
            timed_method = asyncray.method(timeout_s=1)(async_method)
            import inspect
            assert inspect.iscoroutinefunction(timed_method)
            assert str(inspect.signature(timed_method)) == "(self, x, y=1)"
            timed = f.options(timeout_s=30)
            expect(ValueError, "Ray DAG", timed.bind, 1)
            print("ok")
            """,
            "ray",
            fake_ray,
        )
    )
    assert out.split() == ["ok"]


def test_the_command_line_says_to_use_rays(fake_ray):
    out = _run("", "ray", fake_ray, args=["-m", "asyncray", "start", "--head"])
    assert out.returncode == 2
    assert "use `ray start`" in out.stderr and "ASYNCRAY_BACKEND=ray" in out.stderr


# ==================================================================== real Ray


_REAL_RAY_PROGRAM = """
import asyncio, time
import ray
import asyncray
from asyncray.exceptions import RayTaskError, TaskTimeoutError
from asyncray.util.queue import Queue

assert asyncray.__backend__ == "ray"
assert RayTaskError is ray.exceptions.RayTaskError and Queue is ray.util.queue.Queue
asyncray.init(num_cpus=2, include_dashboard=False)

@asyncray.remote
def square(x):
    return x * x

@asyncray.remote
def fails():
    raise KeyError("k")

@asyncray.remote
def backend():
    import os
    import asyncray
    return os.environ.get("ASYNCRAY_BACKEND"), asyncray.__backend__

@asyncray.remote(timeout_s=0.5)
def too_slow():
    time.sleep(30)

@asyncray.remote
class Slow:
    @asyncray.method(timeout_s=0.5)
    async def wait(self, s):
        await asyncio.sleep(s)
        return s

@asyncray.remote
def nested(n):  # calls itself: pickled with asyncray's attributes
    return 0 if n == 0 else 1 + asyncray.get(nested.remote(n - 1))

assert asyncray.get(square.remote(3)) == 9
assert asyncray.get(backend.remote()) == ("ray", "ray")
assert asyncray.get(nested.remote(2)) == 2

async def main():
    assert await asyncray.get_async([square.remote(1), square.remote(2)]) == [1, 4]
    assert await asyncray.get_async(await asyncray.put_async(7)) == 7
    try:
        await asyncray.get_async(fails.remote())
    except KeyError as e:
        assert isinstance(e, RayTaskError)
    else:
        raise AssertionError("no error")
    slow = too_slow.remote()
    try:
        await asyncray.get_async(slow, timeout=0.05)
    except asyncray.exceptions.GetTimeoutError:
        pass
    else:
        raise AssertionError("no timeout")
    refs = [square.remote(4), slow]
    ready, not_ready = await asyncray.wait_async(refs, num_returns=1, timeout=10)
    assert ready == [refs[0]] and not_ready == [slow]
    ready, not_ready = await asyncray.wait_async([slow], timeout=0.05)
    assert ready == [] and not_ready == [slow]

asyncio.run(main())
actor = Slow.remote()
assert asyncray.get(actor.wait.remote(0)) == 0
try:
    asyncray.get(actor.wait.remote(30))
except TaskTimeoutError as e:
    assert "timeout_s=0.5" in str(e), str(e)
else:
    raise AssertionError("timeout_s did not cancel the actor call")
t0 = time.monotonic()
try:
    asyncray.get(too_slow.remote())
except TaskTimeoutError:
    elapsed = time.monotonic() - t0
    assert elapsed < 10, elapsed
else:
    raise AssertionError("timeout_s did not cancel")
try:
    asyncray.get(square.options(timeout_s=0.3).remote(4), timeout=20)
except TaskTimeoutError:
    pass  # a worker may take longer than 0.3 s to start: the deadline counts from submission

@asyncray.remote(num_returns="streaming", timeout_s=3)
def endless():
    for i in range(1000):
        time.sleep(0.05)
        yield i

items = []
t0 = time.monotonic()
try:
    for ref in endless.remote():  # the deadline outlives the first item
        items.append(asyncray.get(ref))
except TaskTimeoutError:
    pass
else:
    raise AssertionError("timeout_s did not cancel the stream")
# The whole stream takes 50 s; a worker may take seconds to start, so the
# deadline (counted from submission) may pass before the first item.
assert len(items) < 1000 and time.monotonic() - t0 < 30, (len(items), time.monotonic() - t0)
asyncray.shutdown()
time.sleep(1.5)  # the deadlines thread must not start a new Ray after shutdown
assert not ray.is_initialized()
print("ok")
"""


def test_a_program_runs_on_real_ray():
    pytest.importorskip("ray")
    out = _ok(_run(_REAL_RAY_PROGRAM, "ray", timeout=110))
    assert out.split()[-1] == "ok"


def test_the_pytest_plugin_loads_and_runs_tests_on_ray(fake_ray, tmp_path):
    # pytest loads installed plugins by entry point: under the switch asyncray's
    # must import (it runs its fixtures on Ray's API) or every test run breaks.
    (tmp_path / "test_x.py").write_text("def test_nothing():\n    assert True\n")
    out = _run(
        "",
        "ray",
        fake_ray,
        args=[
            "-m",
            "pytest",
            "-q",
            "-p",
            "asyncray.pytest_plugin",
            "-p",
            "no:cacheprovider",
            str(tmp_path / "test_x.py"),
        ],
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout
