"""The pytest plugin (``asyncray.pytest_plugin``), run on small test files.

Each test writes a test file and runs pytest on it in a subprocess
(``pytester``), loading the plugin with ``-p`` so it works whether or not the
entry point is installed, and reads the outcomes and the report.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import asyncray
from asyncray import pytest_plugin

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(180)

SRC = str(Path(asyncray.__file__).resolve().parents[1])
INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
"""


@pytest.fixture
def run(pytester, monkeypatch):
    """Run pytest with the plugin on the given test files: (outcomes, report)."""
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))
    )

    def run(files: dict[str, str], ini: str = "", *args: str) -> pytest.RunResult:
        pytester.makeini(INI + ini)
        pytester.makepyfile(**{name: textwrap.dedent(code) for name, code in files.items()})
        return pytester.runpytest_subprocess(
            "-p", "asyncray.pytest_plugin", "-p", "no:cacheprovider", "-rA", *args, timeout=150
        )

    return run


def test_each_test_gets_a_fresh_runtime_with_the_options_of_its_marker_or_parameter(run):
    result = run(
        {
            "test_fresh": """
            import pytest
            import asyncray as ray

            @ray.remote
            class Named:
                pass

            def test_defaults_are_rays(ray_start_regular):
                assert ray.cluster_resources()["CPU"] == 1
                assert ray.get_runtime_context().namespace == "default_test_namespace"
                Named.options(name="mine").remote()

            def test_nothing_of_the_last_test_remains(ray_start_regular):
                with pytest.raises(ValueError):
                    ray.get_actor("mine")

            @pytest.mark.asyncray_init(num_cpus=3)
            def test_marker(ray_start_regular):
                assert ray.cluster_resources()["CPU"] == 3

            @pytest.mark.asyncray_init(num_cpus=3)
            class TestClass:
                @pytest.mark.asyncray_init(resources={"disk": 2})
                def test_the_class_and_the_test_markers_merge(self, asyncray_runtime):
                    assert asyncray_runtime is ray
                    assert ray.cluster_resources()["CPU"] == 3
                    assert ray.cluster_resources()["disk"] == 2

            @pytest.mark.asyncray_init(num_cpus=3)
            @pytest.mark.parametrize("ray_start_regular", [{"num_cpus": 2}], indirect=True)
            def test_the_parameter_wins(ray_start_regular):
                assert ray.cluster_resources()["CPU"] == 2

            def test_shutdown_only_starts_with_none(shutdown_only):
                assert not ray.is_initialized()
                ray.init(num_cpus=2)

            def test_and_shuts_it_down():
                assert not ray.is_initialized()
            """
        }
    )
    result.assert_outcomes(passed=7)


def test_the_shared_runtime_lasts_the_module_and_comes_back_after_a_fresh_one(run):
    shared = """
    import pytest
    import asyncray as ray

    pytestmark = pytest.mark.asyncray_init(num_cpus=3)

    @ray.remote
    class Named:
        def ping(self):
            return "pong"

    handles = []

    def test_first(ray_start_regular_shared):
        handles.append(Named.options(name="kept").remote())

    def test_second_sees_it(ray_start_regular_shared):
        assert ray.get(ray.get_actor("kept").ping.remote()) == "pong"

    @pytest.mark.asyncray_init(num_cpus=1)
    def test_a_fresh_one_in_between(ray_start_regular):
        assert ray.cluster_resources()["CPU"] == 1
        with pytest.raises(ValueError):
            ray.get_actor("kept")

    def test_shared_again_with_its_options(ray_start_regular_shared):
        assert ray.cluster_resources()["CPU"] == 3
        ray.shutdown()

    def test_even_after_a_test_shut_it_down(ray_start_regular_shared):
        assert ray.cluster_resources()["CPU"] == 3
    """
    other = """
    import pytest
    import asyncray as ray

    def test_another_module_gets_its_own(ray_start_regular_shared):
        assert ray.cluster_resources()["CPU"] == 1
        with pytest.raises(ValueError):
            ray.get_actor("kept")
    """
    result = run({"test_shared": shared, "test_shared_other": other})
    result.assert_outcomes(passed=6)


def test_a_runtime_left_running_is_shut_down_and_its_test_named(run):
    result = run(
        {
            "test_leftover": """
            import asyncray as ray

            @ray.remote
            def one():
                return 1

            def test_relies_on_auto_init():
                assert ray.get(one.remote()) == 1

            def test_inits_itself(ray_start_regular):
                assert ray.get(one.remote()) == 1

            def test_forgets_shutdown():
                ray.init(num_cpus=1)

            def test_a_later_init_still_works():
                ray.init(num_cpus=1)
                ray.shutdown()
            """
        }
    )
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_relies_on_auto_init*",
            "test_leftover.py::test_relies_on_auto_init: it left an asyncray runtime running*",
            "*ERROR at teardown of test_forgets_shutdown*",
            "test_leftover.py::test_forgets_shutdown: it left an asyncray runtime running*",
        ]
    )
    assert "called ray.init twice" not in result.stdout.str()


def test_a_fixture_shuts_down_a_runtime_no_test_owns_and_warns(run):
    result = run(
        {
            "test_import_time": """
            import asyncray as ray

            ray.init(num_cpus=2)  # at import: before any test, owned by none

            def test_fresh(ray_start_regular):
                assert ray.cluster_resources()["CPU"] == 1
            """
        }
    )
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        ["*AsyncrayLeftoverRuntimeWarning: *test_fresh: an asyncray runtime was running that "
         "no asyncray fixture started (started before any test ran*"]
    )  # fmt: skip


def test_a_leaked_process_or_segment_fails_its_test_and_is_cleaned_up(run, tmp_path):
    pids = tmp_path / "pids"
    segment = "/dev/shm/asyncray_{os.getpid()}-0badc0de_leak"
    result = run(
        {
            "test_leaks": f"""
            import os, subprocess
            import pytest
            import asyncray as ray

            def test_leaks_a_process(shutdown_only):
                proc = subprocess.Popen(["sleep", "60"])
                with open({str(pids)!r}, "w") as f:
                    f.write(str(proc.pid))

            @pytest.mark.asyncray_leak_check
            def test_leaks_a_segment():
                with open(f"{segment}", "w") as f:
                    f.write(str(os.getpid()))

            @pytest.mark.asyncray_leak_check(False)
            def test_unchecked(shutdown_only):
                subprocess.Popen(["true"]).wait()

            def test_not_checked_without_a_fixture_or_marker():
                subprocess.Popen(["true"]).wait()

            def test_a_clean_test_passes(ray_start_regular):
                @ray.remote
                def big():
                    return b"x" * 1_000_000
                assert len(ray.get(big.remote())) == 1_000_000
            """
        }
    )
    result.assert_outcomes(passed=5, errors=2)
    result.stdout.fnmatch_lines(
        [
            "test_leaks.py::test_leaks_a_process: processes it started outlived it*",
            "*pid *: sleep 60",
            "test_leaks.py::test_leaks_a_segment: shared-memory segments*",
            "*/dev/shm/asyncray_*-0badc0de_leak",
        ]
    )
    pid = int(pids.read_text())
    assert not _running(pid), "the leaked process was not killed"
    leaked = [n for n in os.listdir("/dev/shm") if n.endswith("-0badc0de_leak")]
    assert not leaked, "the leaked segment was not removed"


def test_the_ini_option_checks_every_test(run):
    result = run(
        {
            "test_ini": """
            import subprocess

            def test_leaks_without_a_fixture():
                subprocess.Popen(["sleep", "60"])
            """
        },
        "asyncray_leak_check = true\n",
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*processes it started outlived it*", "*sleep 60"])


def test_what_a_wider_fixture_holds_is_not_the_tests(run):
    result = run(
        {
            "conftest": """
            import subprocess
            import pytest
            import asyncray as ray

            @pytest.fixture(scope="session")
            def server():
                proc = subprocess.Popen(["sleep", "60"])
                yield proc
                proc.kill()
                proc.wait()

            @pytest.fixture(scope="module")
            def runtime():
                ray.init(num_cpus=2)
                yield
                ray.shutdown()
            """,
            "test_wider": """
            import pytest
            import asyncray as ray

            @ray.remote
            def one():
                return 1

            @pytest.mark.asyncray_leak_check
            def test_uses_the_server_and_the_runtime(server, runtime):
                assert ray.get([one.remote() for _ in range(8)]) == [1] * 8

            @pytest.mark.asyncray_leak_check
            def test_again(server, runtime):
                assert server.poll() is None
                assert ray.cluster_resources()["CPU"] == 2
            """,
        }
    )
    result.assert_outcomes(passed=2)


def test_async_tests_await_refs_with_pytest_asyncio(run):
    result = run(
        {
            "test_async": """
            import asyncio
            import pytest
            import asyncray as ray

            @ray.remote
            def double(x):
                return 2 * x

            @ray.remote
            class Counter:
                def __init__(self):
                    self.n = 0
                async def add(self, k):
                    await asyncio.sleep(0)
                    self.n += k
                    return self.n

            @pytest.mark.asyncio
            async def test_await_a_task(ray_start_regular):
                assert await double.remote(21) == 42
                assert await asyncio.gather(*[double.remote(i) for i in range(4)]) == [0, 2, 4, 6]

            @pytest.mark.asyncio
            async def test_await_an_actor(asyncray_runtime):
                counter = Counter.remote()
                assert [await counter.add.remote(1) for _ in range(3)] == [1, 2, 3]

            @pytest.mark.asyncio
            async def test_shared(ray_start_regular_shared):
                assert await ray.get_async(double.remote(1)) == 2
            """
        }
    )
    result.assert_outcomes(passed=3)


def test_loading_the_plugin_stays_cheap():
    # pytest loads it in every run where asyncray is installed: it costs what
    # ``import asyncray`` costs (no asyncio, no uvloop) and starts nothing.
    code = (
        "import sys, asyncray, asyncray.pytest_plugin\n"
        "print('asyncio' in sys.modules, 'uvloop' in sys.modules, asyncray.is_initialized())"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "False"]


def test_the_plugin_knows_the_names_of_session_files():
    from asyncray._wire import shm

    assert pytest_plugin.SHM_PREFIX == shm.PREFIX
    assert pytest_plugin.LOCK_PREFIX == shm.LOCK_PREFIX


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
