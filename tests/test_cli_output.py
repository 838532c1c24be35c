"""What ``asyncray start`` prints: how to reach the head it started, from where the user is."""

from __future__ import annotations

import json
import os

import pytest
from _head import Head, cli, driver_env

pytestmark = pytest.mark.timeout(60)


def test_start_with_an_address_says_how_auto_status_and_stop_find_that_head(tmp_path):
    head = Head(tmp_path / "elsewhere")
    env = driver_env()
    env.pop("ASYNCRAY_HEAD_DIR", None)  # the head is not in the default directory
    done = cli("start", "--head", "--num-cpus", "1", "--address", head.directory, env=env)
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        out = done.stdout
        assert f"ASYNCRAY_HEAD_DIR={head.directory}" in out
        assert f"asyncray status --address {head.directory}" in out
        assert f"asyncray stop --address {head.directory}" in out
    finally:
        if done.returncode == 0:
            with open(os.path.join(head.directory, "head.json")) as f:
                head.info = json.load(f)
            head.pid = head.info["pid"]
            head.stop()  # asserts it left nothing


def test_start_in_the_directory_auto_finds_prints_the_plain_commands(tmp_path):
    head = Head(tmp_path / "head", 1)
    with head:  # Head's environment sets ASYNCRAY_HEAD_DIR to its directory
        out = head.start_output
        assert "ray.init(address='auto')" in out
        assert "ASYNCRAY_HEAD_DIR" not in out
        assert "asyncray stop\n" in out and "--address" not in out
