"""``breakpoint()`` in a task: pdb the user joins with ``asyncray debug``, never a hang (#19)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from _head import cli, driver_env

pytestmark = pytest.mark.timeout(90)

DRIVER = """
import asyncray as ray
ray.init(num_cpus=1)

@ray.remote
def f(x):
    y = x * 2
    breakpoint()
    return y + 1

print("result:", ray.get(f.remote(20)), flush=True)
ray.shutdown()
"""


def _wait_for_breakpoint(debug_dir, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(n.endswith(".json") for n in os.listdir(debug_dir)):
            return
        time.sleep(0.05)
    raise AssertionError("no breakpoint() became ready to join")


def test_asyncray_debug_joins_a_task_stopped_at_breakpoint(tmp_path):
    debug_dir = tmp_path / "debug"
    env = driver_env(ASYNCRAY_DEBUG_DIR=str(debug_dir))
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not debug_dir.exists():
            assert time.monotonic() < deadline and driver.poll() is None, driver.stderr
            time.sleep(0.05)
        _wait_for_breakpoint(debug_dir)
        assert oct(debug_dir.stat().st_mode & 0o777) == "0o700"
        done = subprocess.run(
            [sys.executable, "-m", "asyncray", "debug"],
            input="p y\np x + 1\nc\n",
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        assert "stopped at" in done.stdout and "40" in done.stdout and "21" in done.stdout
        out, err = driver.communicate(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
    assert driver.returncode == 0, err
    assert "result: 41" in out
    # The driver's terminal said where the task stopped and how to join it.
    assert "breakpoint() in f (pid" in err and "asyncray debug" in err
    assert os.listdir(debug_dir) == []  # the socket and its note are gone


def test_with_nothing_waiting_asyncray_debug_says_so(tmp_path):
    env = driver_env(ASYNCRAY_DEBUG_DIR=str(tmp_path / "none"))
    done = cli("debug", env=env)
    assert done.returncode == 1
    assert "no breakpoint() is waiting for a debugger" in done.stderr


def test_pythonbreakpoint_0_turns_breakpoints_off(tmp_path):
    env = driver_env(ASYNCRAY_DEBUG_DIR=str(tmp_path / "debug"), PYTHONBREAKPOINT="0")
    done = subprocess.run(
        [sys.executable, "-c", DRIVER], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "result: 41" in done.stdout


def test_a_task_waiting_for_a_debugger_can_be_cancelled(tmp_path):
    debug_dir = tmp_path / "debug"
    code = """
import os, time
import asyncray as ray
from asyncray.exceptions import TaskCancelledError
ray.init(num_cpus=1)

@ray.remote
def f():
    breakpoint()
    return "went on"

ref = f.remote()
deadline = time.monotonic() + 30
while not (os.path.isdir(DIR) and any(n.endswith(".sock") for n in os.listdir(DIR))):
    assert time.monotonic() < deadline
    time.sleep(0.05)
ray.cancel(ref)
try:
    ray.get(ref, timeout=30)
except TaskCancelledError:
    print("cancelled")
print("left:", os.listdir(DIR))
""".replace("DIR", repr(str(debug_dir)))
    env = driver_env(ASYNCRAY_DEBUG_DIR=str(debug_dir))
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["cancelled", "left: []"]
