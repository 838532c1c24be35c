"""What ran: the last ended tasks and actor calls, for the state API and the timeline.

The kernel appends one small tuple per ended task or call to a ring of the
last ``capacity`` (``retention.current().task_events``; Ray keeps a bounded
table of task events too). Live tasks
and calls are not copied here: a query reads them where they are (the
runtime's ``tasks``, the mailboxes' ``calls``). Times are ``perf_counter``
readings, turned into wall-clock milliseconds only when a query asks.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

# The row of an ended task or call (``Ended``), by position.
TYPE, TASK_ID, NAME, JOB, ACTOR_ID, PID, CREATED, STARTED, ENDED, ERROR, ATTEMPTS = range(11)
RESOURCES, PARENT, PG_ID = 11, 12, 13

Ended = tuple[Any, ...]


class TaskEvents:
    """The ring of ended rows, and the clock to read their times by."""

    __slots__ = ("_perf0", "_wall0_ms", "ended")

    def __init__(self, capacity: int) -> None:
        self.ended: deque[Ended] = deque(maxlen=capacity)
        self._perf0 = time.perf_counter()
        self._wall0_ms = time.time() * 1000.0

    def wall_us(self, perf: float) -> float:
        """Wall-clock microseconds of a ``perf_counter`` reading (the timeline's unit)."""
        return self._wall0_ms * 1000.0 + (perf - self._perf0) * 1e6
