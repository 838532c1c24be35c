"""The child side's SIGINT rules, without processes (``_worker/interrupts.py``)."""

from __future__ import annotations

import pytest

from asyncray._worker import interrupts


@pytest.fixture
def state(monkeypatch):
    """A fresh interrupt state; ``asked`` holds the task ids the runtime asked to interrupt."""
    asked: set[bytes] = set()
    fresh = interrupts._InterruptState()
    fresh.meant_for = lambda task_id: task_id in asked
    monkeypatch.setattr(interrupts, "state", fresh)
    yield asked
    interrupts.leave_user_code()


def test_a_signal_between_tasks_meant_for_the_next_interrupts_it_as_it_starts(state):
    state.add(b"next")
    interrupts._on_sigint(2, None)  # no user code runs: only noted
    with pytest.raises(KeyboardInterrupt):
        interrupts.enter_user_code(b"next")


def test_a_signal_between_tasks_meant_for_an_ended_task_is_dropped(state):
    state.add(b"ended")
    interrupts._on_sigint(2, None)
    interrupts.enter_user_code(b"next")  # no KeyboardInterrupt: not this task's


def test_a_signal_during_user_code_interrupts_only_the_task_it_names(state):
    interrupts.enter_user_code(b"running")
    interrupts._on_sigint(2, None)  # for nobody running: ignored
    state.add(b"running")
    with pytest.raises(KeyboardInterrupt):
        interrupts._on_sigint(2, None)
