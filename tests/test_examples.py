"""Every example runs as the README says, prints what it shows and leaves nothing behind.

Each script in examples/ runs as ``python examples/<name>.py`` in a
subprocess; the test checks its exit code and the lines it must print. The
examples that need several processes (a shared head) must also stop it.

The same scripts run on real Ray with ``ASYNCRAY_BACKEND=ray``: the
``ray_backend`` test does that, and is skipped unless that variable is set
and ``ray`` is importable (so the normal test command skips it).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from _head import driver_env

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# Each script of the Ray Core tour's programs, and lines its output must hold.
EXPECTED = {
    "nested_tasks.py": [
        "f() with num_cpus=1, num_gpus=1: 1",
        "fib(7) from nested tasks: 13",
    ],
    "generator_failure.py": [
        "item: 0",
        "then ValueError: True | items before it: [0]",
        "endless generator, first two items: 0 1",
        "after ray.cancel: TaskCancelledError",
    ],
    "actor_generators.py": [
        "Actor.f: [0, 1, 2, 3, 4]",
        "AsyncActor.f: [0, 1, 2, 3, 4]",
        "ThreadedActor.f: [0, 1, 2, 3, 4]",
        "first item, then the rest dropped: 0",
    ],
    "async_generators.py": [
        "consumer a got: ['a0', 'a1', 'a2', 'a3', 'a4']",
        "consumer b got: ['b0', 'b1', 'b2', 'b3', 'b4']",
        "the two streams overlapped: True",
    ],
    "wait_loop.py": ["every item and value, once each: [0, 1, 2, 3, 4, 10, 20]"],
    "counter_from_tasks.py": [
        "never goes down: True",
        "after the three tasks: 30",
        "found by name: 30",
        "get_if_exists returns the same actor: 30",
    ],
    "async_actor.py": [
        "['finished 0', 'finished 1', 'finished 2', 'finished 3']",
        "four 0.5 s calls overlapped: True",
        "awaited from asyncio: finished 4",
        "ray.wait ready: 1",
        "asyncio.wait done: 1",
    ],
    "concurrency_groups.py": [
        "threaded actor, group io (2 threads), most at once: 2",
        "async actor, most at once per group: {'io': 2, 'compute': 4, 'default': 8}",
        'f3.options(concurrency_group="compute"): f3',
    ],
    "actor_pool.py": ["[2, 4, 6, 8]", "map_unordered, sorted: [10, 12, 14, 16]"],
    "progress.py": ["in the order they finished: ['small.txt', 'big.bin']"],
    "queue_consumers.py": [
        "items taken, all consumers together: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]",
        "queue empty now: True",
    ],
}
ON_RAY = os.environ.get("ASYNCRAY_BACKEND") == "ray"


def run_example(path: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(path)], env=env, capture_output=True, text=True, timeout=timeout
    )


def assert_prints(done: subprocess.CompletedProcess, expected: list[str]) -> None:
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    missing = [line for line in expected if line not in lines]
    assert not missing, f"missing lines {missing} in:\n{done.stdout}{done.stderr}"


def test_every_example_script_is_tested():
    scripts = {p.name for p in EXAMPLES.glob("*.py")} - {"tour.py"}
    assert scripts == set(EXPECTED)


@pytest.mark.skipif(ON_RAY, reason="the asyncray backend's run; see the ray_backend test")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_prints_what_it_shows(script, tmp_path):
    done = run_example(EXAMPLES / script, driver_env(TMPDIR=str(tmp_path)), timeout=50)
    assert_prints(done, EXPECTED[script])


@pytest.mark.skipif(ON_RAY, reason="the asyncray backend's run; see the ray_backend test")
@pytest.mark.timeout(60)
def test_the_tour_runs_every_program_then_asyncrays_own_sections(tmp_path):
    done = run_example(EXAMPLES / "tour.py", driver_env(TMPDIR=str(tmp_path)), timeout=50)
    assert_prints(done, [line for lines in EXPECTED.values() for line in lines])
    out = done.stdout
    for script in EXPECTED:
        assert f"== {script}: " in out
    assert "Stopped the asyncray head" in out
    for title in ("tasks and objects", "asyncio", "placement groups", "bounded object store"):
        assert f"\n== {title}" in out
    assert "tour done in" in out


@pytest.mark.skipif(ON_RAY, reason="the asyncray backend's run; see the ray_backend test")
@pytest.mark.timeout(180)
def test_the_shared_head_example_runs_two_drivers_and_stops_its_head(tmp_path):
    # A head the user runs (the default directory) must not be touched.
    env = driver_env(TMPDIR=str(tmp_path), ASYNCRAY_HEAD_DIR=str(tmp_path / "not-this-one"))
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "shared_head" / "run.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "driver 1: created the detached actor: orange" in out
    assert 'get_actor("orange") in its own namespace: not found' in out
    assert 'get_actor("orange", namespace="colors"): orange' in out and "call 2" in out
    assert 'get_actor("lemon", namespace="colors"): not found' in out
    assert "cleanup: " in out and "killed" in out
    assert "Stopped the asyncray head" in out
    # The runner's temp directory is gone (the spill root is shared: it stays).
    assert [n for n in os.listdir(tmp_path) if n.startswith("asyncray-example-")] == []


@pytest.mark.skipif(ON_RAY, reason="the asyncray backend's run; see the ray_backend test")
@pytest.mark.timeout(60)
def test_the_shared_head_example_stops_its_head_when_a_driver_fails(tmp_path, monkeypatch, capfd):
    spec = importlib.util.spec_from_file_location(
        "shared_head_run", EXAMPLES / "shared_head" / "run.py"
    )
    assert spec is not None and spec.loader is not None
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    drivers = tmp_path / "drivers"
    drivers.mkdir()
    (drivers / "driver_colors.py").write_text("raise SystemExit(3)\n")
    monkeypatch.setattr(runner, "HERE", str(drivers))
    heads = tmp_path / "tmp"
    heads.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(heads))
    for name, value in driver_env().items():
        monkeypatch.setenv(name, value)
    with pytest.raises(subprocess.CalledProcessError):
        runner.main()
    out = capfd.readouterr().out
    assert "$ asyncray stop" in out and "Stopped the asyncray head" in out
    assert [n for n in os.listdir(heads) if n.startswith("asyncray-example-")] == []


# On real Ray: each script as above, the shared head (a Ray head) and the
# tour (the programs and the shared head; its asyncray sections are skipped).
RAY_EXPECTED = {
    **EXPECTED,
    "shared_head/run.py": [
        'driver 2: get_actor("orange") in its own namespace: not found',
        'cleanup: get_actor("orange") in namespace "colors" found it; killed',
        "Stopped the Ray head.",
    ],
    "tour.py": [
        *(line for lines in EXPECTED.values() for line in lines),
        "Stopped the Ray head.",
        "(asyncray's own sections are skipped on real Ray)",
    ],
}


@pytest.mark.skipif(
    not ON_RAY or importlib.util.find_spec("ray") is None,
    reason="runs the examples on real Ray: set ASYNCRAY_BACKEND=ray with ray installed",
)
@pytest.mark.timeout(300)
@pytest.mark.parametrize("script", sorted(RAY_EXPECTED))
def test_ray_backend_runs_example(script):
    done = run_example(EXAMPLES / script, driver_env(ASYNCRAY_BACKEND="ray"), timeout=280)
    assert_prints(done, RAY_EXPECTED[script])
