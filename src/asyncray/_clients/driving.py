"""A driver thread blocked in a call runs the kernel itself while it waits.

A synchronous call handed to the runtime thread crosses four wake-ups: the
driver wakes the runtime thread, which wakes the worker, which wakes the
runtime thread, which wakes the driver. Each wake of a sleeping thread
costs 10-40 us on the 2-core VM (a thread ping-pong with the GIL is ~40 us a
round trip), more than all the Python the call runs. So a driver thread
that must wait for a reply *drives*: the runtime thread is parked inside
one of its own loop's callbacks, touching nothing, and the waiting thread
handles the kernel's messages itself, its own and every child's, reading
the children's sockets directly and writing through the same transports.
The call then crosses two wake-ups: driver -> worker -> driver.

One owner at a time. The ``Baton`` says who runs the kernel:

- ``LOOP``: the runtime thread, in its event loop (the default).
- ``REQUESTED``: a driver thread asked it to park (a callback is queued).
- ``DRIVING``: the runtime thread is parked; ``Baton.owner`` drives.
- ``PARKED``: parked, and nobody drives (between two calls of a driver).
  More than ``PARKED_BACKLOG`` messages posted meanwhile resume it: the
  driver is submitting work, which the loop dispatches while it goes on.
- ``RESUMING``: told to resume; it will, at once.

Parking costs one round trip to the runtime thread, so it stays parked
between calls that follow each other closely and resumes on its own once no
driver thread has driven for ``GRACE_S``, or after ``MAX_PARK_S`` in any case
(its timers and the zygote's messages wait while it is parked). A driver
hands back at once when its reply does not come within ``DRIVE_S`` (a long
task), when another caller waits too, or when a child's socket ends.

What a driving thread does not serve waits until the runtime thread resumes:
timers, the zygote's reports, callbacks scheduled with ``call_soon`` and
``call_soon_threadsafe``. Messages posted by other threads while it is
parked are in the inbox, which the driving thread drains, as does the
runtime thread when it resumes.

A ``KeyboardInterrupt`` must not land inside the kernel's code: while the
main thread drives, SIGINT is deferred and re-raised once it has handed
the kernel back (at most ``DRIVE_S`` later). Swapping handlers costs ~10 us
a call here (two ``sigaction``s), so where Python's default handler is set,
asyncray's own (``_sigint``: the default, deferred while the main thread
drives) takes its place for the session: ``signal.getsignal(SIGINT)``
returns it until ``shutdown``. A program's own handler is swapped out for
each drive instead.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the C module signal wraps
import logging
import os
import select
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .driver import DriverClient

logger = logging.getLogger("asyncray")

LOOP, REQUESTED, DRIVING, PARKED, RESUMING = range(5)

# The runtime thread resumes once no driver thread has driven for this long.
GRACE_S = 0.001
# ... and resumes after this long parked in any case, its timers waiting
# (one call in this many pays a park again: under 1 % of back-to-back calls).
MAX_PARK_S = 0.010
# While parked and nobody drives, a driver thread that posts more messages
# than this is submitting work, not waiting: the runtime thread resumes, so
# workers are fed while the driver goes on (a batch of .remote() calls).
PARKED_BACKLOG = 4
# A driver waiting longer than this for its reply hands the kernel back and
# waits as before (the reply of a long task needs no fast path).
DRIVE_S = 0.002
# A driving thread polls its sockets this long before it sleeps in epoll: a
# sleeping vCPU takes 30-40 us to wake, a worker's reply comes sooner.
SPIN_S = 200e-6
# The most one read takes from a child's socket (as uvloop reads).
READ_SIZE = 1 << 18

_MAIN_THREAD = threading.main_thread().ident
_SIGINT = int(signal.SIGINT)
_getsignal = _signal.getsignal

# Whether the main thread is running the kernel now, and whether a SIGINT
# came meanwhile (read by ``_sigint``, in the main thread only).
_main_driving = False
_interrupted = False


def _sigint(signum: int, frame: Any) -> None:
    """asyncray's SIGINT handler: Python's default, deferred while the main thread drives."""
    global _interrupted
    if _main_driving:
        _interrupted = True
        return
    signal.default_int_handler(signum, frame)


def restore_sigint() -> None:
    """At shutdown, on the main thread: Python's own SIGINT handler again, if ours is set."""
    if threading.get_ident() == _MAIN_THREAD and signal.getsignal(signal.SIGINT) is _sigint:
        signal.signal(signal.SIGINT, signal.default_int_handler)


class Baton:
    """Who runs the kernel: the runtime thread or a driver thread that waits (see module doc)."""

    def __init__(self, client: DriverClient) -> None:
        self._client = client
        self._mu = threading.Lock()
        self.state = LOOP
        self.owner = 0
        # Released by the runtime thread once it has parked for ``owner``.
        self._handoff = threading.Lock()
        self._handoff.acquire()
        # Released by a driver thread to resume a parked runtime thread.
        self._resume = threading.Lock()
        self._resume.acquire()
        self._parked_at = 0.0
        self._released_at = 0.0
        self.hand_back_wanted = False
        self.closed = False
        # The driving thread's view of the children's sockets.
        self._epoll = select.epoll()
        self._conns: dict[int, Any] = {}
        self._version = -1
        # One buffer for every read (``data_received`` copies what it keeps).
        self._view = memoryview(bytearray(READ_SIZE))
        # The SIGINT handler to run once the kernel is handed back (see drive).
        self._pending_handler: Any = None

    # ------------------------------------------------------------ ownership

    def take(self) -> bool:
        """On a driver thread about to wait: own the kernel (True), or wait as usual (False)."""
        me = threading.get_ident()
        with self._mu:
            state = self.state
            if state == PARKED:
                self.state = DRIVING
                self.owner = me
                return True
            if state != LOOP or self.closed:
                return False
            self.state = REQUESTED
            self.owner = me
        client = self._client
        try:
            client.loop.call_soon_threadsafe(self._park)
            while not self._handoff.acquire(timeout=1.0):
                if not client.thread.is_alive():
                    self._abandon()
                    return False
        except RuntimeError:  # the loop is closed: the usual path says so
            self._abandon()
            return False
        except BaseException:  # KeyboardInterrupt while waiting for the park
            self._abandon()
            raise
        return True

    def _abandon(self) -> None:
        """A driver thread stopped waiting for the park it asked for: let the runtime run."""
        with self._mu:
            if self.state == REQUESTED:
                self.state = LOOP  # the queued _park finds nothing to do
            elif self.state == DRIVING and self.owner == threading.get_ident():
                self._handoff.acquire(blocking=False)
                self._resume_locked()

    def give_back(self, resume: bool) -> None:
        """The driving thread is done: leave the runtime parked for the next call, or resume it."""
        with self._mu:
            if resume or self.hand_back_wanted or self.closed:
                self._resume_locked()
            else:
                self.state = PARKED
                self._released_at = time.monotonic()

    def resume_parked(self) -> None:
        """Resume a parked runtime thread that nobody drives (work was posted meanwhile)."""
        with self._mu:
            if self.state == PARKED:
                self._resume_locked()

    def close(self) -> None:
        """At shutdown: resume a parked runtime thread; nobody drives any more."""
        with self._mu:
            self.closed = True
            if self.state == PARKED:
                self._resume_locked()

    def _resume_locked(self) -> None:
        """Holding ``_mu``: tell the parked runtime thread to resume (it wakes at once)."""
        self.state = RESUMING
        self._resume.release()

    def dispose(self) -> None:
        """Once the runtime thread has ended: free the epoll descriptor."""
        self._conns.clear()
        self._epoll.close()

    def _park(self) -> None:
        """On the runtime thread (a loop callback): stay here while driver threads drive."""
        with self._mu:
            if self.state != REQUESTED:
                return
            self.state = DRIVING
            self._parked_at = time.monotonic()
            self.hand_back_wanted = False
        self._handoff.release()
        resume = self._resume
        while True:
            woke = resume.acquire(timeout=GRACE_S)
            now = time.monotonic()
            with self._mu:
                state = self.state
                if state == RESUMING:
                    if not woke:
                        resume.acquire(blocking=False)  # the release that came with it
                    self.state = LOOP
                    break
                if state == PARKED and (
                    now - self._released_at >= GRACE_S
                    or now - self._parked_at >= MAX_PARK_S
                    or self.closed
                ):
                    self.state = LOOP
                    break
                if state == DRIVING and now - self._parked_at >= MAX_PARK_S:
                    self.hand_back_wanted = True
        self._client.resumed()

    # ------------------------------------------------------------ driving

    def drive(self, lock: threading.Lock) -> bool:
        """Holding the baton: run the kernel until ``lock`` is released (True) or hand back.

        The caller gives the baton back (``give_back``) and then calls
        ``raise_deferred``.
        """
        global _main_driving, _interrupted
        if threading.get_ident() != _MAIN_THREAD:
            return self._drive_guarded(lock)  # Python runs signal handlers in the main thread only
        # A Python SIGINT handler could raise inside the kernel's code: defer it.
        # (_signal's getsignal: signal's wraps it in an enum lookup, ~5 us here.)
        handler = _getsignal(_SIGINT)
        if handler is signal.default_int_handler:
            # Once: asyncray's handler is Python's, deferred while the main
            # thread drives (a flag, where swapping handlers costs ~10 us a call).
            signal.signal(signal.SIGINT, _sigint)
            handler = _sigint
        if handler is _sigint:
            _main_driving = True
            try:
                return self._drive_guarded(lock)
            finally:
                _main_driving = False
                if _interrupted:
                    _interrupted = False
                    self._pending_handler = signal.default_int_handler
        if handler is None:  # not set from Python: it runs no Python code
            return self._drive_guarded(lock)
        # The program's own handler: swapped out for the drive (slower, as rare).
        signal.signal(signal.SIGINT, _sigint)
        _main_driving = True
        try:
            return self._drive_guarded(lock)
        finally:
            _main_driving = False
            signal.signal(signal.SIGINT, handler)
            if _interrupted:
                _interrupted = False
                self._pending_handler = handler

    def _drive_guarded(self, lock: threading.Lock) -> bool:
        try:
            return self._drive(lock)
        except Exception:
            logger.exception("asyncray internal error while a driver thread ran the kernel")
            return False

    def raise_deferred(self) -> None:
        """After ``give_back``: run a SIGINT handler that was deferred while this thread drove."""
        handler, self._pending_handler = self._pending_handler, None
        if handler is None:
            return
        if callable(handler):
            handler(signal.SIGINT, None)
        elif handler == signal.SIG_DFL:
            os.kill(os.getpid(), signal.SIGINT)

    def _drive(self, lock: threading.Lock) -> bool:
        client = self._client
        runtime = client.runtime
        assert runtime is not None
        drain = client.drain
        poll = self._epoll.poll
        conns = self._conns
        readv = os.readv
        view = self._view
        buffers = [view]
        clock = time.perf_counter
        start = clock()
        spin_until = start + SPIN_S
        deadline = start + DRIVE_S
        acquire = lock.acquire
        yield_cpu = os.sched_yield
        while True:
            if client.has_posted():
                drain()
            if acquire(False):
                return True
            if self.hand_back_wanted or self.closed:
                return False
            if runtime.child_readers_version != self._version:
                self._watch(runtime.child_readers, runtime.child_readers_version)
            now = clock()
            if now < spin_until:
                # Yield between polls: a worker woken on this core runs at once.
                timeout = 0.0
                yield_cpu()
            elif now >= deadline:
                return False
            else:
                timeout = deadline - now
            for fd, _events in poll(timeout):
                conn = conns.get(fd)
                if conn is None:
                    continue
                try:
                    size = readv(fd, buffers)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    return False  # the loop sees the error and handles it
                if not size:
                    return False  # EOF: the loop sees it and reports the child's end
                conn.data_received(view[:size])

    def _watch(self, readers: dict[int, Any], version: int) -> None:
        """Bring the epoll set up to date with the runtime's children."""
        epoll = self._epoll
        conns = self._conns
        for fd in [fd for fd, conn in conns.items() if readers.get(fd) is not conn]:
            del conns[fd]
            try:
                epoll.unregister(fd)
            except (OSError, ValueError):  # closed already: epoll forgot it
                pass
        for fd, conn in readers.items():
            if fd in conns:
                continue
            try:
                epoll.register(fd, select.EPOLLIN)
            except FileExistsError:
                epoll.modify(fd, select.EPOLLIN)
            except OSError:
                continue
            conns[fd] = conn
        self._version = version
