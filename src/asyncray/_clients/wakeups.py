"""The runtime thread's scheduling policy: who runs first when it is woken.

The runtime thread shares the driver's GIL. A driver thread that submits
work wakes the runtime and carries on, still holding the GIL. As a normal
thread, the woken runtime preempts the driver on its core at once, finds the
GIL held and sleeps again: three context switches per submission instead of
one. So while no driver thread is blocked, the runtime thread is
``SCHED_BATCH`` (Linux): it never preempts on wake-up and runs when the
driver blocks or at the next scheduler tick (sync actor calls ~6.0k ->
~8.2k/s on the 2-core VM).

While a driver thread *is* blocked in a synchronous call for longer than a
short reply takes (``driver.QUICK_REPLY_S``), nothing in the driver
competes for the GIL and what wakes the runtime is a worker's message: then
the runtime is a normal thread again, so it preempts CPU-bound workers at
once instead of a scheduler slice later (batch alone cost multi-client puts
of large arrays and 4 workers on 2 cores ~7%; this gives back ~3-8%).

Its nice value, and so its CPU share, never changes. Where the policy cannot
be set (not Linux, or not permitted) nothing is toggled.
"""

from __future__ import annotations

import os
import threading

_BATCH = getattr(os, "SCHED_BATCH", None)
_NORMAL = getattr(os, "SCHED_OTHER", None)


class RuntimeWakeups:
    """Owns the runtime thread's policy: batch, or normal while a driver thread waits."""

    __slots__ = ("_lock", "_param", "_tid", "_waiting")

    def __init__(self) -> None:
        self._tid: int | None = None
        self._waiting = 0
        self._lock = threading.Lock()
        self._param = os.sched_param(0) if _BATCH is not None else None

    def adopt_current_thread(self) -> None:
        """On the runtime thread, before its loop runs: make it batch."""
        param = self._param
        if _BATCH is None or param is None:  # no SCHED_BATCH here (both None then)
            return
        tid = threading.get_native_id()
        try:
            os.sched_setscheduler(tid, _BATCH, param)
        except OSError:  # a sandbox or seccomp profile: only speed is lost
            return
        self._tid = tid

    def forget_thread(self) -> None:
        """On the runtime thread, as it ends: its id may soon name another thread."""
        with self._lock:
            self._tid = None

    @property
    def waiting_threads(self) -> int:
        """How many driver threads are blocked in a long wait right now."""
        return self._waiting

    def driver_blocks(self) -> None:
        """A driver thread is about to block for a reply (pair with ``driver_resumes``)."""
        with self._lock:
            self._waiting += 1
            if self._waiting == 1:
                self._set(_NORMAL)

    def driver_resumes(self) -> None:
        """The driver thread that blocked has its reply (or gave up)."""
        with self._lock:
            self._waiting -= 1
            if self._waiting == 0:
                self._set(_BATCH)

    def _set(self, policy: int | None) -> None:
        # Under the lock: the runtime thread may have ended (forget_thread)
        # while a driver thread was blocked.
        if self._tid is None:
            return
        try:
            os.sched_setscheduler(self._tid, policy, self._param)  # type: ignore[arg-type]
        except OSError:  # the runtime thread has ended (shutdown): nothing to steer
            self._tid = None
