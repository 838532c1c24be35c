"""tqdm_ray: a bar updated in tasks is one bar on the driver, not a line per update (#19)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from _head import driver_env

from asyncray._session import progress
from asyncray._wire import output

pytestmark = pytest.mark.timeout(60)

DRIVER = """
import time
import asyncray as ray
from asyncray.experimental.tqdm_ray import tqdm

ray.init(num_cpus=2)

@ray.remote
def work(i):
    for _ in tqdm(range(40), desc=f"task {i}", flush_interval_s=0.01):
        time.sleep(0.005)
    print("done", i)
    return i

print(ray.get([work.remote(i) for i in range(2)]))
bar = tqdm(total=3, desc="driver")
bar.update(3)
bar.close()
ray.shutdown()
"""


def test_bars_in_tasks_are_drawn_on_the_driver_and_never_printed_as_lines():
    pytest.importorskip("tqdm")
    done = subprocess.run(
        [sys.executable, "-c", DRIVER],
        env=driver_env(),
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert done.returncode == 0, done.stderr
    assert output.PROGRESS_MAGIC not in done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "[0, 1]" in lines
    assert any(line.endswith("done 0") for line in lines)
    frames = done.stderr.replace("\r", "\n")
    for desc in ("task 0", "task 1"):
        assert f"{desc}: 100%" in frames and "40/40" in frames
    assert "driver: 100%" in frames


def test_progress_lines_go_to_the_hook_and_other_output_is_kept():
    seen = []
    line = '(work pid=7) {"__magic_token__": "__ray_tqdm_magic_token__", "x": 3, "uuid": "u"}\n'
    kept = output._take_progress_lines("before\n" + line + "after\n", seen.append)
    assert kept == "before\nafter\n"
    assert [(s["x"], s["uuid"]) for s in seen] == [(3, "u")]
    # Not a bar's state after all: printed as it is.
    odd = "text with __ray_tqdm_magic_token__ but no json\n"
    assert output._take_progress_lines(odd, seen.append) == odd


def test_without_tqdm_a_bar_prints_one_line_when_it_closes(capsys):
    manager = progress.BarManager()
    manager._tqdm = None
    state = {"pid": 1, "uuid": "u", "desc": "load", "total": 10, "unit": "files"}
    manager.update({**state, "x": 4, "closed": False})
    manager.update({**state, "x": 10, "closed": True})
    manager.update({**state, "x": 10, "closed": True})
    assert capsys.readouterr().err == "load: 10/10 files\n"
