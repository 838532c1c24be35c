"""Tasks sent ahead to busy workers: several for short functions, and never lost.

Once a function's tasks are known to be short, the runtime queues several of
them on each busy worker. Whatever happens to the task in front — it runs
long, is cancelled, or its worker dies — every task queued behind it must
still run exactly once and give its own result.
"""

from __future__ import annotations

import os
import time

import pytest

import asyncray
from asyncray.exceptions import TaskCancelledError, WorkerCrashedError


@asyncray.remote(max_retries=0)
def work(i, mode="fast", log=None):
    if mode == "sleep":
        time.sleep(0.5)
    elif mode == "exit":
        os._exit(3)
    if log is not None:
        with open(log, "a") as f:  # one short append per run: whole lines
            f.write(f"{i}\n")
    return i, os.getpid()


def _warm():
    """Teach the runtime that ``work`` is short, so it pipelines several calls."""
    asyncray.get([work.remote(i) for i in range(300)])


def test_short_tasks_queued_behind_long_ones_all_run_once(ray_start, tmp_path):
    _warm()
    log = str(tmp_path / "runs")
    slow = [work.remote(-1, "sleep", log), work.remote(-2, "sleep", log)]  # both CPUs busy
    fast = [work.remote(i, "fast", log) for i in range(40)]
    results = asyncray.get(fast, timeout=30)
    assert [i for i, _ in results] == list(range(40))
    assert [i for i, _ in asyncray.get(slow, timeout=30)] == [-1, -2]
    with open(log) as f:
        runs = sorted(int(line) for line in f)
    assert runs == [-2, -1, *range(40)]  # each task ran exactly once


def test_cancelling_a_task_queued_on_a_worker_leaves_the_others(ray_start):
    _warm()
    slow = [work.remote(-1, "sleep"), work.remote(-2, "sleep")]
    fast = [work.remote(i) for i in range(12)]
    asyncray.cancel(fast[3])
    asyncray.cancel(fast[9])
    with pytest.raises(TaskCancelledError):
        asyncray.get(fast[3], timeout=30)
    with pytest.raises(TaskCancelledError):
        asyncray.get(fast[9], timeout=30)
    kept = [r for k, r in enumerate(fast) if k not in (3, 9)]
    assert [i for i, _ in asyncray.get(kept, timeout=30)] == [
        i for i in range(12) if i not in (3, 9)
    ]
    assert [i for i, _ in asyncray.get(slow, timeout=30)] == [-1, -2]


def test_tasks_queued_behind_a_crashing_task_run_on_another_worker(ray_start):
    _warm()
    crash = work.remote(-1, "exit")
    fast = [work.remote(i) for i in range(30)]
    with pytest.raises(WorkerCrashedError):
        asyncray.get(crash, timeout=30)
    results = asyncray.get(fast, timeout=30)
    assert [i for i, _ in results] == list(range(30))
