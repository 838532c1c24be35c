"""The head polls its sockets for a moment after a driver's message or reply.

A connected driver's synchronous call crosses four process wake-ups
(driver -> head -> worker -> head -> driver), and waking a process whose
vCPU sleeps costs 20-40 us on the 2-core VM. Workers already poll before
they sleep (``_wire/polling.py``), so the head's two wake-ups and the
driver's are what is left. While drivers talk to it, the head keeps its
loop awake for ``SPIN_S`` after each driver's message and each message to a
driver: a chain of ``call_soon`` callbacks makes uvloop poll with a zero
timeout instead of sleeping, yielding the CPU between turns so a worker or
a driver woken on its core runs at once. A head nobody talks to sleeps
again after ``SPIN_S``: an idle head costs no CPU.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

# How long the head's loop stays awake after a driver's message or a reply.
SPIN_S = 300e-6


class BusyPoll:
    """Keeps one event loop polling until ``SPIN_S`` after the last ``extend``."""

    __slots__ = ("_deadline", "_loop", "_running")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._deadline = 0.0
        self._running = False

    def extend(self) -> None:
        """On the loop: keep polling until ``SPIN_S`` from now."""
        self._deadline = time.perf_counter() + SPIN_S
        if not self._running:
            self._running = True
            self._loop.call_soon(self._turn)

    def _turn(self) -> None:
        if time.perf_counter() < self._deadline:
            os.sched_yield()
            self._loop.call_soon(self._turn)
        else:
            self._running = False
