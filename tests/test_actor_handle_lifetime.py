"""An actor ends as soon as its last handle goes, as in Ray (issue #15).

These tests run with the cyclic garbage collector disabled: a dropped
handle must be freed by reference counting alone, so the actor's resources
come back at once and a later actor that needs them starts.
"""

from __future__ import annotations

import gc
import os

import pytest
from _helpers import wait_for_condition, wait_for_process_exit

import asyncray

pytestmark = pytest.mark.timeout(30)

GET_S = 10.0


@asyncray.remote(num_cpus=1)
class Whole:
    """Needs the session's only CPU while it lives."""

    def pid(self):
        return os.getpid()


@pytest.fixture
def one_cpu_no_gc(shutdown_only):
    """A one-CPU session with the cyclic garbage collector off for the test."""
    asyncray.init(num_cpus=1)
    gc.disable()
    try:
        yield asyncray
    finally:
        gc.enable()


def _cpus() -> float:
    return asyncray.available_resources().get("CPU", 0.0)


def _second_actor_starts(first_pid: int) -> None:
    """The CPU comes back and an actor that needs it runs in a new process."""
    wait_for_condition(lambda: _cpus() == 1.0)
    second = Whole.remote()
    assert asyncray.get(second.pid.remote(), timeout=GET_S) != first_pid
    wait_for_process_exit(first_pid)


def test_dropping_the_last_handle_frees_the_actor_without_the_cycle_collector(one_cpu_no_gc):
    first = Whole.remote()
    pid = asyncray.get(first.pid.remote(), timeout=GET_S)
    assert _cpus() == 0.0
    del first
    _second_actor_starts(pid)


def test_a_method_taken_from_a_dropped_handle_still_calls_and_then_frees(one_cpu_no_gc):
    # Ray's idiom: the method object keeps the actor alive while it is used.
    pid = asyncray.get(Whole.remote().pid.remote(), timeout=GET_S)
    wait_for_process_exit(pid)
    handle = Whole.remote()
    method = handle.pid.options(name="kept")
    del handle
    pid = asyncray.get(method.remote(), timeout=GET_S)
    assert asyncray.get(method.remote(), timeout=GET_S) == pid
    del method
    _second_actor_starts(pid)
