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
from typing import Any


class _InterruptState:
    __slots__ = ("interruptible", "pending")

    def __init__(self) -> None:
        self.interruptible = False
        self.pending = False


state = _InterruptState()


def _on_sigint(signum: int, frame: Any) -> None:
    if state.interruptible:
        state.pending = False
        raise KeyboardInterrupt
    state.pending = True


def install() -> None:
    signal.signal(signal.SIGINT, _on_sigint)


def enter_user_code() -> None:
    state.pending = False
    state.interruptible = True


def leave_user_code() -> None:
    state.interruptible = False
    state.pending = False


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
            raise KeyboardInterrupt
