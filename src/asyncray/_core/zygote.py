"""The zygote: a clean, single-threaded process that forks every child.

Forking a process that runs threads is unsafe (a lock held by another thread
stays held forever in the child) and spawning a fresh interpreter costs about
100 ms. So ``init()`` forks the zygote *before* the runtime thread starts. It
has everything the driver imported so far, stays single-threaded, and forks a
worker in about a millisecond when the runtime asks.

Data flow::

    runtime ──Spawn + fd (SCM_RIGHTS)──► zygote ──fork──► child (talks over fd)
    runtime ◄──Spawned(child_id, pid)─── zygote   (pid = -errno if fork failed)
    runtime ◄──Reaped(pid, status)────── zygote   (SIGCHLD → waitpid)

The zygote leaves the driver's process group, so a Ctrl-C in the terminal
reaches only the driver. It outlives the driver only to clean up after it:
when its control socket reaches EOF (shutdown, or the driver died and the
kernel closed its fds) or the parent-death signal arrives (``DRIVER_DEATH_SIGNAL``,
one it handles, so SIGKILL or ``os._exit`` of the driver still gets cleaned
up), it SIGKILLs and reaps every child, then runs the session's ``on_exit``
(which removes the session's segments, spill files and locks), then exits.
It is a child subreaper, so processes the workers started end with them.
A SIGTERM or SIGHUP sent to the zygote while the driver lives is ignored:
the session belongs to the driver, and its end brings the zygote's.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable

from .._wire import polling
from .._wire import protocol as P
from .._wire.framing import take_frames

# Control messages are tiny; one recvmsg of this size always holds one whole.
_CTL_BUFSIZE = 1 << 16
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_TIMERSLACK = 29
# Timer slack of workers and actors (ns). Linux lets a normal thread's timed
# sleep (time.sleep, a select/poll/epoll timeout) end up to 50 us late, so
# that wake-ups can be batched: time.sleep(0.001) took ~1.08 ms in a worker
# on the project's VM, ~1.03 ms with 1 us of slack. Tasks' sleeps and
# timeouts are that much more precise, for slightly more timer interrupts
# while they sleep. Ray's workers keep the default.
WORKER_TIMER_SLACK_NS = 1000
# While cleaning up, how long to wait before looking again for children to
# kill and reap. Polling rather than a blocking wait: a child that appears
# between listing and waiting (an orphan reparented to us) is never waited
# for without having been killed. Shorter costs only CPU during cleanup.
_REAP_POLL_S = 0.001
# What the zygote gets when the driver dies. Not SIGKILL: the zygote must live
# long enough to clean up after the driver. The same signal from anyone else
# while the driver lives is ignored (see ``_driver_gone``).
DRIVER_DEATH_SIGNAL = signal.SIGTERM
# Signals that make the zygote check whether the driver is still there.
_CHECK_DRIVER_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
# In the zygote: those signals' handlers as inherited from the driver, which
# its children get back at fork.
_inherited: dict[int, signal.Handlers | Callable[..., object] | int | None] = {}


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies."""
    _prctl(_PR_SET_PDEATHSIG, sig)


def _prctl(option: int, value: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(option, value, 0, 0, 0)


def start_zygote(
    child_main: Callable[[socket.socket, str, dict[str, str]], None],
    on_exit: Callable[[], None],
) -> tuple[int, socket.socket]:
    """Fork the zygote; returns its pid and the runtime's end of the control socket.

    ``on_exit`` runs in the zygote after its last child has been reaped,
    however the session ended.
    """
    parent_sock, zygote_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    driver_pid = os.getpid()
    # Held back across the fork: a SIGTERM/SIGHUP sent the moment init()
    # returns stays pending until the zygote has its handlers, instead of
    # ending it with the default action (see _zygote_main).
    before = signal.pthread_sigmask(signal.SIG_BLOCK, _CHECK_DRIVER_SIGNALS)
    pid = -1
    try:
        pid = os.fork()
    finally:
        if pid != 0:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)
    if pid == 0:  # the zygote
        code = 0
        try:
            parent_sock.close()
            _zygote_main(zygote_sock, driver_pid, child_main)
        except BaseException:
            code = 1
        finally:
            try:
                on_exit()
            except BaseException:
                code = 1
            os._exit(code)
    zygote_sock.close()
    return pid, parent_sock


def _zygote_main(
    ctl: socket.socket,
    driver_pid: int,
    child_main: Callable[[socket.socket, str, dict[str, str]], None],
) -> None:
    os.setpgid(0, 0)
    # Orphans of workers come to us, so the cleanup can end them too.
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Handled (only to wake the loop) before the parent-death signal is armed,
    # so it can never end the zygote before the cleanup.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    for sig in _CHECK_DRIVER_SIGNALS:
        _inherited[sig] = signal.getsignal(sig)
    for sig in (signal.SIGCHLD, *_CHECK_DRIVER_SIGNALS):
        signal.signal(sig, lambda *_: None)
    # Handled now: let through what start_zygote held back (its children get
    # an open mask; a pending SIGTERM wakes the loop, which checks the driver).
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _CHECK_DRIVER_SIGNALS)
    set_parent_death_signal(DRIVER_DEATH_SIGNAL)
    polling.allow_pollers(len(os.sched_getaffinity(0)) - 1)
    if _driver_gone(driver_pid):  # it died before prctl took effect
        return
    children: set[int] = set()
    sel = selectors.DefaultSelector()
    sel.register(ctl, selectors.EVENT_READ, "ctl")
    sel.register(wake_r, selectors.EVENT_READ, "chld")
    buf = bytearray()
    try:
        while True:
            for key, _ in sel.select():
                if key.data == "chld":
                    signals = b""
                    with contextlib.suppress(OSError):
                        signals = os.read(wake_r, 4096)
                    if any(s in _CHECK_DRIVER_SIGNALS for s in signals) and _driver_gone(
                        driver_pid
                    ):
                        return
                    _reap(ctl, children)
                    continue
                msg, fds = _recv_ctl(ctl, buf)
                if msg is None:
                    return  # the runtime is gone
                for spawn, fd in zip(msg, fds):
                    pid = _fork_child(ctl, sel, wake_r, wake_w, fd, spawn, child_main)
                    if pid > 0:
                        children.add(pid)
                    ctl.sendall(P.frame(P.Spawned(spawn.child_id, pid)))
                _reap(ctl, children)
    finally:
        _kill_descendants(children)


def _driver_gone(driver_pid: int) -> bool:
    """Whether the driver process has exited (we were reparented).

    The parent-death signal also fires when merely the driver *thread* that
    forked us exits (``init()`` called from a thread that ended); the driver
    process, and its session, live on then, and the parent is still its pid.
    """
    return os.getppid() != driver_pid


def _recv_ctl(ctl: socket.socket, buf: bytearray) -> tuple[list[P.Spawn] | None, list[int]]:
    """Read control frames; each Spawn arrives with exactly one file descriptor."""
    try:
        data, fds, _flags, _addr = socket.recv_fds(ctl, _CTL_BUFSIZE, 64)
    except (ConnectionError, OSError):
        return None, []
    if not data:
        return None, []
    buf += data
    msgs = [m for m in take_frames(buf, P.zygote_decoder.decode) if isinstance(m, P.Spawn)]
    return msgs, list(fds)


def _reap(ctl: socket.socket, children: set[int]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in children:  # not an orphan of a worker (see ``_kill_descendants``)
            children.discard(pid)
            with contextlib.suppress(OSError):
                ctl.sendall(P.frame(P.Reaped(pid, status)))


def _kill_descendants(children: set[int]) -> None:
    """SIGKILL and reap every child, and every process a child left behind.

    The zygote is a child subreaper: a process a worker started (a
    ``subprocess``, a daemon that double-forked) is reparented to the zygote
    when its parent dies, instead of to init. So killing our children until
    none is left ends the whole tree of the session.
    """
    while True:
        for pid in {*children, *_own_children()}:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        children.discard(pid)
        if pid == 0:  # none has died yet (or an orphan is on its way to us)
            time.sleep(_REAP_POLL_S)


def _own_children() -> list[int]:
    me = os.getpid()
    try:  # the zygote is single-threaded: its task's children are all of them
        with open(f"/proc/{me}/task/{me}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        pass
    found = []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with (
                    contextlib.suppress(OSError, ValueError, IndexError),
                    open(f"/proc/{entry}/stat") as f,
                ):
                    # "pid (comm) state ppid ...": comm may hold spaces and parens
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        found.append(int(entry))
    return found


def _fork_child(
    ctl: socket.socket,
    sel: selectors.BaseSelector,
    wake_r: int,
    wake_w: int,
    fd: int,
    spawn: P.Spawn,
    child_main: Callable[[socket.socket, str, dict[str, str]], None],
) -> int:
    zygote_pid = os.getpid()
    try:
        pid = os.fork()
    except OSError as e:  # no memory, no pids: this child fails, not the session
        os.close(fd)
        return -(e.errno or 1)
    if pid != 0:
        os.close(fd)
        return pid
    # ---- in the child
    code = 0
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for sig, handler in _inherited.items():  # children get the driver's, as before
            signal.signal(sig, handler)
        sel.close()
        ctl.close()
        os.close(wake_r)
        os.close(wake_w)
        set_parent_death_signal()
        _prctl(_PR_SET_TIMERSLACK, WORKER_TIMER_SLACK_NS)  # inherited by its threads
        if os.getppid() != zygote_pid:  # the zygote died before prctl took effect
            os._exit(1)
        os.environ.update(spawn.env)
        sock = socket.socket(fileno=fd)
        child_main(sock, spawn.kind, spawn.env)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
