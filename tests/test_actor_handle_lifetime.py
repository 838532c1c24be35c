"""An actor ends as soon as its last handle goes, as in Ray (issue #15).

These tests run with the cyclic garbage collector disabled: a dropped
handle must be freed by reference counting alone, so the actor's resources
come back at once and a later actor that needs them starts.
"""

from __future__ import annotations

import gc
import os

import pytest
from _helpers import process_gone, wait_for_condition, wait_for_file, wait_for_process_exit

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


# ====================================================================== copies in other processes


def _pid_through(handles):
    [handle] = handles
    return asyncray.get(handle.pid.remote(), timeout=GET_S)


@asyncray.remote(num_cpus=0)
def call_through(handles):
    return _pid_through(handles)


@asyncray.remote(num_cpus=0)
def call_after(handles, _gate):
    """Runs only once ``_gate`` (an argument ref) is ready."""
    return _pid_through(handles)


@asyncray.remote(num_cpus=0)
def wait_for(path):
    return wait_for_file(path, timeout=GET_S)


@asyncray.remote(num_cpus=0)
def make_actor():
    return Whole.remote()


@asyncray.remote(num_cpus=0)
class Keeper:
    """Holds a copy of a handle until told to drop it."""

    def __init__(self):
        self.kept = None

    def keep(self, handles):
        self.kept = handles[0]

    def call(self):
        return asyncray.get(self.kept.pid.remote(), timeout=GET_S)

    def drop(self):
        self.kept = None


def _stays_alive(pid: int) -> None:
    """The actor still runs once everything posted before has been handled."""
    probe = Keeper.remote()  # a round trip through the runtime after the drop
    asyncray.get(probe.drop.remote(), timeout=GET_S)
    assert _cpus() == 0.0
    assert not process_gone(pid)


def test_a_handle_passed_to_a_task_ends_the_actor_once_every_copy_is_gone(one_cpu_no_gc):
    first = Whole.remote()
    pid = asyncray.get(first.pid.remote(), timeout=GET_S)
    assert asyncray.get(call_through.remote([first]), timeout=GET_S) == pid
    del first
    _second_actor_starts(pid)


def test_a_task_not_yet_started_keeps_the_handle_it_was_passed(one_cpu_no_gc, tmp_path):
    # The owner drops its handle before the task has unpickled its copy.
    first = Whole.remote()
    pid = asyncray.get(first.pid.remote(), timeout=GET_S)
    gate = tmp_path / "gate"
    result = call_after.remote([first], wait_for.remote(str(gate)))
    del first
    _stays_alive(pid)
    gate.touch()
    assert asyncray.get(result, timeout=GET_S) == pid
    del result
    _second_actor_starts(pid)


def test_a_handle_kept_by_another_actor_keeps_the_actor_until_it_drops_it(one_cpu_no_gc):
    first = Whole.remote()
    pid = asyncray.get(first.pid.remote(), timeout=GET_S)
    keeper = Keeper.remote()
    asyncray.get(keeper.keep.remote([first]), timeout=GET_S)
    del first
    _stays_alive(pid)
    assert asyncray.get(keeper.call.remote(), timeout=GET_S) == pid
    asyncray.get(keeper.drop.remote(), timeout=GET_S)
    _second_actor_starts(pid)


def test_a_handle_returned_from_a_task_lives_while_the_caller_holds_it(one_cpu_no_gc):
    first = asyncray.get(make_actor.remote(), timeout=GET_S)
    pid = asyncray.get(first.pid.remote(), timeout=GET_S)
    _stays_alive(pid)
    del first
    _second_actor_starts(pid)


def test_a_handle_stored_in_an_object_lives_while_the_object_does(one_cpu_no_gc):
    first = Whole.remote()
    pid = asyncray.get(first.pid.remote(), timeout=GET_S)
    stored = asyncray.put([first])
    del first
    for _ in range(2):  # each get makes a copy; dropping it leaves the object's hold
        [copy] = asyncray.get(stored, timeout=GET_S)
        assert asyncray.get(copy.pid.remote(), timeout=GET_S) == pid
        del copy
    _stays_alive(pid)
    del stored
    _second_actor_starts(pid)
