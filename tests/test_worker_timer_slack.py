"""Task workers and actors sleep precisely: their timer slack is 1 µs, not 50 µs.

Linux lets a normal thread's timed sleep end up to its timer slack late;
asyncray's children set theirs at fork (``zygote.WORKER_TIMER_SLACK_NS``),
and the threads they start inherit it. The driver keeps its own.
"""

from __future__ import annotations

import ctypes
import sys
import threading

import pytest

import asyncray
from asyncray._core.zygote import WORKER_TIMER_SLACK_NS

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")

_PR_GET_TIMERSLACK = 30


def _slack() -> int:
    return ctypes.CDLL(None).prctl(_PR_GET_TIMERSLACK, 0, 0, 0, 0)


@asyncray.remote
def task_slack():
    box = []
    t = threading.Thread(target=lambda: box.append(_slack()))
    t.start()
    t.join()
    return _slack(), box[0]


@asyncray.remote
class Sleeper:
    def slack(self):
        return _slack()


def test_workers_and_actors_run_with_small_timer_slack(ray_start):
    assert WORKER_TIMER_SLACK_NS == 1000
    assert asyncray.get(task_slack.remote()) == (1000, 1000)  # the task's thread too
    assert asyncray.get(Sleeper.remote().slack.remote()) == 1000
