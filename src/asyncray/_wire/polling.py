"""Polling before sleeping: which children may keep a core awake, and for how long.

A child that expects its next message soon polls its socket for ``SPIN_S``
instead of sleeping at once (``channel.SocketChannel``). Pollers hold a slot
each; there are cores - 1 slots, so pollers never take the core the runtime
thread needs.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

# A child whose last wait for a message ended within this long polls its
# socket for up to this long before it blocks again. Waking a process that
# sleeps costs 30-40 us on a VM (its idle vCPU halts), a fifth of a
# synchronous task's round trip; while calls arrive back to back the poll
# catches the next one awake. A child whose messages stop sleeps at once, so
# an idle pool costs no CPU.
SPIN_S = 300e-6
# After a poll in vain, none for this long: messages come in bursts with
# longer gaps (a driver busy on the GIL), and polling through those gaps only
# takes CPU from the processes doing the work.
SPIN_BACKOFF_S = 20e-3

# Which children may poll now: every core but one (pollers that took the
# driver's core too would starve the runtime thread of CPU). None: nobody.
_slots: PollSlots | None = None


def poll_until(ready: Callable[[int], Any], deadline: float) -> bool:
    """Poll ``ready(0)`` until it reports data (True) or ``time.perf_counter()``
    passes ``deadline`` (False), yielding the CPU between turns so a process
    woken on this core runs at once."""
    clock = time.perf_counter
    yield_cpu = os.sched_yield
    while not ready(0):
        if clock() >= deadline:
            return False
        yield_cpu()
    return True


class PollSlots:
    """Slots a child holds while it polls, as record locks on a file the zygote made.

    The kernel drops a process's record locks when it dies, so a child
    killed while polling (``kill`` of an idle actor) gives its slot back.
    """

    def __init__(self, count: int) -> None:
        # Unlinked at once; open for the zygote's life, inherited by its children.
        self._file = tempfile.TemporaryFile()  # noqa: SIM115
        self._count = count

    def take(self) -> int:
        """A free slot's number, held by this process, or -1."""
        fd = self._file.fileno()
        for slot in range(self._count):
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, slot)
            except OSError:
                continue
            return slot
        return -1

    def give_back(self, slot: int) -> None:
        fcntl.lockf(self._file.fileno(), fcntl.LOCK_UN, 1, slot)

    def close(self) -> None:
        self._file.close()


def allow_pollers(count: int) -> None:
    """In the zygote: let up to ``count`` of its children poll at once."""
    global _slots
    try:
        _slots = PollSlots(count) if count > 0 else None
    except OSError:  # no temporary file: children just never poll
        _slots = None


def slots() -> PollSlots | None:
    """This process's poll slots (inherited from the zygote), or None: nobody polls."""
    return _slots
