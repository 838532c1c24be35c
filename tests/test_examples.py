"""The examples that need several processes run as the README says and leave nothing behind."""

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
