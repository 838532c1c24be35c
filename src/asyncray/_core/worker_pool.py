"""Runtime-side handles for child processes: the zygote and each worker.

``ChildConn`` is the asyncio protocol on the runtime's end of a child's
socketpair: it cuts the byte stream into frames, decodes each with the one
typed decoder, and hands the message to the runtime. Outgoing messages are
encoded at once and written in one ``write`` per loop tick, so a burst of
dispatches to one worker costs one syscall.

A child whose stream is corrupt or hostile (a frame that does not decode,
a message only the runtime sends, values no asyncray child sends) is
*dropped*: ``ChildConn.drop`` logs it at ERROR with the pid and the
problem, stops reading, closes the socket and SIGKILLs the process; its
task or actor then fails as after a crash, the error naming the reason.

``ZygoteLink`` asks the zygote to fork children (passing each child's socket
over SCM_RIGHTS) and reports forks and exits back to the runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import exceptions as exc
from .._wire import protocol as P
from .._wire import serialization as ser
from .._wire.framing import take_frames
from .framed import FramedConn

if TYPE_CHECKING:
    from .runtime import Runtime, TaskRecord

logger = logging.getLogger("asyncray")

# Spawn requests sent to the zygote and not yet answered. The zygote forks
# one at a time (~1 ms each), so a deeper window would only queue in the
# socket; a small one keeps the control socket far from full.
SPAWN_WINDOW = 16


def unsendable_error(what: str, error: Exception) -> bytes:
    """The error payload of a call whose message the wire cannot encode."""
    return ser.dumps_function(
        exc.RaySystemError(
            f"asyncray could not send {what} to its process: {type(error).__name__}: {error}. "
            "An option or argument is out of the range the runtime can carry."
        )
    )


class WorkerRecord:
    """What the runtime knows about one child process."""

    __slots__ = (
        "actor",
        "blocked",
        "child_id",
        "conn",
        "dropped",
        "env_key",
        "eof",
        "exit_status",
        "job",
        "kind",
        "known_functions",
        "pid",
        "pipeline",
        "retire_handle",
        "state",
        "task",
    )

    def __init__(self, child_id: int, kind: str) -> None:
        self.child_id = child_id
        self.kind = kind
        self.pid = 0
        self.conn: ChildConn | None = None
        # starting → idle ⇄ busy → dead
        self.state = "starting"
        self.task: TaskRecord | None = None
        # Tasks sent ahead to run after ``task``, holding its resources in turn.
        self.pipeline: deque[TaskRecord] = deque()
        # Set while the running task is blocked in get/wait and has lent its CPU.
        self.blocked = False
        self.known_functions: set[bytes] = set()
        self.eof = False
        # Why the runtime cut this child off (``ChildConn.drop``); "" if it did not.
        self.dropped = ""
        self.exit_status: int | None = None
        self.retire_handle: asyncio.TimerHandle | None = None
        # The ActorRecord this process hosts (actor processes only).
        self.actor: Any = None
        # The job of the last task sent here (a shared head tells a worker
        # with ``SetJob`` when its next task is another job's).
        self.job = ""
        # The runtime_env this worker is set up for ("": the default; None:
        # fresh, not yet given a task, so it can still take on any env).
        self.env_key: str | None = None

    def describe_exit(self) -> str:
        """``(pid=N, exit code C)`` or ``(pid=N, killed by signal SIGKILL)``.

        A child the runtime dropped says so and why:
        ``(pid=N, killed by signal SIGKILL; dropped by the runtime: <reason>)``.
        """
        status = self.exit_status
        if status is None:
            how = "exit status unknown"
        elif os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = str(sig)
            how = f"killed by signal {name}"
        else:
            how = f"exit code {os.WEXITSTATUS(status)}"
        if self.dropped:
            how += f"; dropped by the runtime: {self.dropped}"
        return f"(pid={self.pid}, {how})"


class ChildConn(FramedConn):
    """The runtime's end of one child's socket."""

    def __init__(self, runtime: Runtime, worker: WorkerRecord, sock: socket.socket) -> None:
        super().__init__(runtime, sock)
        self.worker = worker
        # The socket's descriptor while the runtime reads it (Runtime.child_readers).
        self._reader_fd = -1

    @property
    def job(self) -> str:
        """The job of what this child runs: its actor's, its running task's, or its last."""
        worker = self.worker
        actor = worker.actor
        if actor is not None:
            return actor.job
        task = worker.task
        return worker.job if task is None else task.job

    # ------------------------------------------------------------ asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        if self.worker.dropped:
            return  # bytes already on their way when the child was cut off
        buf = self._buf
        buf += data
        msgs = self.take_messages()
        if msgs is None:
            return
        runtime = self.runtime
        handle = runtime.handle
        worker = self.worker
        runtime.begin_batch()
        try:
            for msg in msgs:
                handle(self, msg)
                if worker.dropped:
                    break  # what it sent after the violation is not heard
        finally:
            runtime.end_batch()

    def drop(self, reason: str) -> None:
        """Cut off a child that sent what no asyncray child sends.

        Reported at ERROR (pid and ``reason``); the connection is closed and
        the process SIGKILLed, so its task or actor fails as after a crash
        (retries apply) with an error that names ``reason``. The runtime
        goes on serving everyone else. A child is dropped at most once.
        """
        worker = self.worker
        if worker.dropped:
            return
        worker.dropped = reason
        logger.error(
            "asyncray: dropped %s process pid=%s: %s; it was killed and its work fails as "
            "if it had crashed",
            "an actor" if worker.kind != "task" else "a task worker",
            worker.pid or "(not known yet)",
            reason,
        )
        self._buf.clear()
        if self.transport is not None:
            self.transport.abort()  # stop reading now; what we had queued for it is moot
        elif self.sock is not None:
            self.sock.close()
        self.kill()

    def kill(self) -> None:
        """SIGKILL the child if its pid is known (else the runtime does once it is)."""
        pid = self.worker.pid
        if pid and self.worker.exit_status is None:  # reaped already: the pid may be reused
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass  # exited already: the zygote reaps it

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        sock = self.sock
        if sock is not None and not transport.is_closing():
            runtime = self.runtime
            self._reader_fd = sock.fileno()
            runtime.child_readers[self._reader_fd] = self
            runtime.child_readers_version += 1

    def connection_lost(self, exc: Exception | None) -> None:
        runtime = self.runtime
        fd, self._reader_fd = self._reader_fd, -1
        if runtime.child_readers.get(fd) is self:
            del runtime.child_readers[fd]
            runtime.child_readers_version += 1
        runtime.on_child_eof(self.worker)


class ZygoteLink:
    """Asks the zygote to fork children and hears about their exits.

    Spawn requests are paced: at most ``SPAWN_WINDOW`` are sent and not yet
    answered by ``Spawned``; the rest wait here, in order, each holding its
    child's socket until it is sent. The control socket is non-blocking and
    a write that would block is retried when it is writable, so a burst of a
    thousand actor creations neither raises ``BlockingIOError`` nor fills the
    socket buffer (where a frame split across two writes would separate a
    Spawn from the descriptor sent with it).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        pid: int,
        sock: socket.socket,
        on_spawned: Callable[[int, int], None],
        on_reaped: Callable[[int, int], None],
        on_lost: Callable[[], None],
    ) -> None:
        self.loop = loop
        self.pid = pid
        self.sock = sock
        self._on_spawned = on_spawned
        self._on_reaped = on_reaped
        self._on_lost = on_lost
        # Set once the zygote is gone: no child can be forked any more.
        self.lost = False
        self._buf = bytearray()
        # Spawn requests not sent yet: (frame, the child's end of its socketpair).
        self._waiting: deque[tuple[bytes, socket.socket]] = deque()
        # Spawn requests sent and not yet answered by Spawned.
        self.in_flight = 0
        self._writer_added = False
        self._closed = False
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._readable)

    def spawn(
        self, child_id: int, kind: str, env: dict[str, str], child_sock: socket.socket
    ) -> None:
        """Ask for a child talking over ``child_sock``; the link owns (and closes) it.

        Raises:
            OSError: the zygote is gone.
        """
        if self.lost:
            child_sock.close()
            raise OSError(errno.ECHILD, f"asyncray's zygote process (pid {self.pid}) has exited")
        self._waiting.append((P.frame(P.Spawn(child_id, kind, env)), child_sock))
        self._send_waiting()

    @property
    def waiting(self) -> int:
        """Spawn requests held back by the window."""
        return len(self._waiting)

    def _send_waiting(self) -> None:
        waiting = self._waiting
        while waiting and self.in_flight < SPAWN_WINDOW and not self._closed:
            data, child_sock = waiting[0]
            try:
                sent = socket.send_fds(self.sock, [data], [child_sock.fileno()])
            except (BlockingIOError, InterruptedError):
                self._want_writable()
                return
            except OSError:  # the zygote is gone: nothing will be forked any more
                self._zygote_lost()
                return
            if sent != len(data):
                # A Spawn frame is ~50 bytes and at most SPAWN_WINDOW of them are
                # unanswered, far below the socket buffer: a short write means
                # the zygote stopped reading. Its descriptor went with the first
                # byte, so the rest must follow without one; if the zygote never
                # reads again, the driver's shutdown reaps it.
                self.sock.setblocking(True)
                try:
                    self.sock.sendall(data[sent:])
                finally:
                    self.sock.setblocking(False)
            waiting.popleft()
            child_sock.close()
            self.in_flight += 1
        if self._writer_added and (not waiting or self.in_flight >= SPAWN_WINDOW):
            self.loop.remove_writer(self.sock.fileno())
            self._writer_added = False

    def _want_writable(self) -> None:
        if not self._writer_added:
            self.loop.add_writer(self.sock.fileno(), self._send_waiting)
            self._writer_added = True

    def _zygote_lost(self) -> None:
        """The zygote exited (killed, out of memory): say so once, fork nothing more."""
        if self.lost or self._closed:
            return
        self.lost = True
        for remove in (self.loop.remove_reader, self.loop.remove_writer):
            with contextlib.suppress(ValueError, OSError):
                remove(self.sock.fileno())
        self._writer_added = False
        self._drop_waiting()
        self._on_lost()

    def _drop_waiting(self) -> None:
        for _data, child_sock in self._waiting:
            child_sock.close()  # its ChildConn sees EOF: the worker is gone
        self._waiting.clear()

    def _readable(self) -> None:
        try:
            data = self.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._zygote_lost()
            return
        buf = self._buf
        buf += data
        for msg in take_frames(buf, P.zygote_decoder.decode):
            if isinstance(msg, P.Spawned):
                self.in_flight -= 1
                self._on_spawned(msg.child_id, msg.pid)
            elif isinstance(msg, P.Reaped):
                self._on_reaped(msg.pid, msg.status)
        if self._waiting:
            self._send_waiting()

    def close(self) -> None:
        self._closed = True
        self._drop_waiting()
        for remove in (self.loop.remove_reader, self.loop.remove_writer):
            try:
                remove(self.sock.fileno())
            except (ValueError, OSError):
                pass
        self.sock.close()
