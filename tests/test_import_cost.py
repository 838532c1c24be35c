"""``import asyncray`` stays cheap: asyncio and friends load only when used.

A driver that never awaits never pays for asyncio (and the ssl and
concurrent.futures it pulls in, ~35 ms of a ~85 ms import): the connect-time
target of issue #16. Each check runs in a fresh interpreter, since the test
process has imported everything already. The async paths must work the same
when asyncio is first imported after asyncray, its ``init`` and its first
``get``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import asyncray

pytestmark = pytest.mark.timeout(120)

# Never imported by ``import asyncray``.
LAZY = ("asyncio", "ssl", "concurrent.futures", "uvloop", "difflib", "json")


def _run(code: str, env: dict[str, str] | None = None, timeout: float = 90) -> str:
    """Run ``code`` in a fresh interpreter on this checkout's asyncray; return its stdout."""
    env = dict(env or os.environ)
    src = os.path.dirname(os.path.dirname(asyncray.__file__))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_import_asyncray_does_not_import_asyncio():
    out = _run(
        f"""
        import sys
        import asyncray
        print(sorted(m for m in {LAZY!r} if m in sys.modules))
        from asyncray.util import ActorPool, placement_group, queue
        print("asyncio" in sys.modules)
        """
    )
    assert out.split() == ["[]", "False"]


# The driver's program, after ``init``: sync calls first (asyncio may still be
# unloaded), then every async path on a loop started only now.
_PROGRAM = """
import sys, warnings

@ray.remote
def f(x):
    return x + 1

@ray.remote
def slow():
    import time
    time.sleep(30)

@ray.remote
class A:
    async def add(self, x):
        return x + 10

with warnings.catch_warnings():
    warnings.simplefilter("error")  # no loop runs: a blocking get does not warn
    assert ray.get(f.remote(1)) == 2
assert f.remote(2).future().result(timeout=30) == 3
print("asyncio loaded:", "asyncio" in sys.modules)

import asyncio

async def main():
    a = A.remote()
    assert await f.remote(1) == 2
    assert await a.add.remote(1) == 11
    assert await asyncio.gather(f.remote(1), f.remote(2)) == [2, 3]
    assert await ray.get_async([f.remote(3)]) == [4]
    ready, rest = await ray.wait_async([f.remote(4)], timeout=30)
    assert len(ready) == 1 and rest == []
    assert await asyncio.wrap_future(f.remote(5).future()) == 6
    done, _ = await asyncio.wait([f.remote(6)], timeout=30)
    assert len(done) == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ray.get(f.remote(7)) == 8  # blocks the loop: warned
    assert any(issubclass(w.category, RuntimeWarning) for w in caught), caught
    # Timeouts last: the sleeping tasks hold a CPU until shutdown.
    try:
        await asyncio.wait_for(slow.remote(), 0.2)
    except asyncio.TimeoutError:
        pass
    else:
        raise AssertionError("wait_for did not time out")
    try:
        await ray.get_async(slow.remote(), timeout=0.2)
    except ray.exceptions.GetTimeoutError:
        pass
    else:
        raise AssertionError("get_async did not time out")

asyncio.run(main())
ray.shutdown()
print("ok")
"""


def test_async_paths_work_when_asyncio_is_imported_after_init():
    out = _run("import asyncray as ray\nray.init(num_cpus=2)\n" + _PROGRAM)
    assert out.split()[-1] == "ok"


def test_a_connected_driver_imports_asyncio_only_when_it_awaits(head):
    out = _run('import asyncray as ray\nray.init(address="auto")\n' + _PROGRAM, env=head.env())
    # The embedded runtime's thread runs a uvloop loop; a connected driver has none.
    assert out.splitlines() == ["asyncio loaded: False", "ok"]
