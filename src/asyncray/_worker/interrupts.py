"""Cancellation by SIGINT, delivered only where it is safe.

``cancel()`` of a running task sends the worker SIGINT, so a task blocked in
``time.sleep`` or in I/O gets ``KeyboardInterrupt`` at once (Ray's
non-forced cancel does not interrupt a sleep). But an exception raised in
the middle of reading or writing a protocol frame would corrupt the stream.
So the handler raises only while user code runs; during protocol I/O it
records the interrupt, and the I/O helper raises it as soon as the frame is
complete.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any


class _InterruptState:
    __slots__ = ("interruptible", "meant_for", "pending", "task_id")

    def __init__(self) -> None:
        self.interruptible = False
        self.pending = False
        # The task or actor call running user code now.
        self.task_id = b""
        # Whether the runtime asked to interrupt this task id (see ``install``).
        self.meant_for: Callable[[bytes], bool] = lambda task_id: True


state = _InterruptState()


def _on_sigint(signum: int, frame: Any) -> None:
    if state.interruptible:
        state.pending = False
        # Landing as leave_user_code is entered, the interrupt would escape the
        # task's handlers and end the worker: the task is over anyway.
        if frame is not None and frame.f_code is _LEAVE_CODE:
            return
        if state.meant_for(state.task_id):
            raise KeyboardInterrupt
        return
    state.pending = True


def install(meant_for: Callable[[bytes], bool] | None = None) -> None:
    """Interrupt user code on SIGINT, if ``meant_for(running task id)`` says it is its.

    The runtime sends the id of the task it interrupts before the signal: a
    signal meant for a task that finished just before it landed (its worker
    already runs the next one) is ignored instead of interrupting the next.
    """
    if meant_for is not None:
        state.meant_for = meant_for
    signal.signal(signal.SIGINT, _on_sigint)


def enter_user_code(task_id: bytes = b"") -> None:
    """User code of ``task_id`` starts; call it first thing inside the task's ``try``.

    Raises:
        KeyboardInterrupt: a SIGINT that came while no user code ran (between
            two tasks, before this one's code) was meant for this task.
    """
    pending, state.pending = state.pending, False
    state.task_id = task_id
    state.interruptible = True
    if pending and state.meant_for(task_id):
        raise KeyboardInterrupt


def leave_user_code() -> None:
    state.interruptible = False
    state.pending = False


_LEAVE_CODE = leave_user_code.__code__


class protocol_io:
    """Defer SIGINT while a frame is being sent or received inside user code."""

    __slots__ = ("_prev",)

    def __enter__(self) -> None:
        self._prev = state.interruptible
        state.interruptible = False

    def __exit__(self, *exc: Any) -> None:
        state.interruptible = self._prev
        if self._prev and state.pending and exc[0] is None:
            state.pending = False
            if state.meant_for(state.task_id):
                raise KeyboardInterrupt
