"""The client of a driver connected to a shared head (``init(address=...)``).

The head (``asyncray start``) runs the kernel in its own process; this
driver reaches it over a unix socket with the same messages a child sends,
framed the same way. Any thread sends (``FrameWriter``: one write carries
what several threads queued); one reader thread receives, completing the
waiter of each reply (a lock, a future on the caller's loop, a callback, as
for the embedded driver) and writing the output the head forwards from this
job's tasks and actors. Views of shared-memory segments opened and closed
are reported around messages, as a child reports them, so the head
recycles no segment this driver still reads; large objects are mapped from
the head's segments zero-copy.

When the connection ends (``asyncray stop``, the head killed), every call
that waits fails at once with ``RaySystemError`` naming the head, and so
does every later call until ``shutdown()`` and a new ``init()``.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from .. import exceptions as exc
from .._wire import protocol as P
from .._wire import shm
from .._wire.channel import resolve_futures
from .._wire.framing import read_buffer, take_first_frame, take_frames
from .._wire.output import write_log
from .._wire.polling import poll_until
from .._wire.writer import FrameWriter
from .base import raise_if_error, reply_deadline
from .driver import WaitingClient, _AsyncWaiter, _SyncWaiter

if TYPE_CHECKING:
    import asyncio

# How long connecting to a head may take before init() gives up.
CONNECT_TIMEOUT_S = 10.0
# After a synchronous call read its own reply, the reader thread leaves the
# socket to the next one for this long (unless an await or a callback waits).
SYNC_GRACE_S = 0.002
_POLL_MS_MAX = 86_400_000
# A caller blocked in a synchronous call polls the socket this long before it
# sleeps in recv: the head polls after each message too (_core/busy_poll.py),
# so a short call's reply usually comes sooner than a sleeping vCPU wakes.
CALLER_SPIN_S = 150e-6


class HeadRefused(ConnectionError):
    """The head turned this driver away (its reason is the message)."""


def connect(
    path: str, token: str, namespace: str, log_to_driver: bool
) -> tuple[socket.socket, P.Welcome]:
    """Connect to the head at ``path`` and be admitted; returns the socket and the welcome.

    Raises:
        ConnectionError: nothing listens there, or the head refused (``HeadRefused``).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT_S)
        sock.connect(path)
        # The token goes only to a head of this user: whoever else listens
        # there (a socket planted or linked in) would learn it.
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", raw)
        if uid != os.getuid():
            raise HeadRefused(
                f"the process listening at {path} runs as uid {uid}, not as you (uid "
                f"{os.getuid()}): asyncray does not send it this user's head token"
            )
        entrypoint = " ".join(sys.argv)[:1000]
        hello = P.ClientHello(
            version=P.HANDSHAKE_VERSION,
            token=token,
            pid=os.getpid(),
            namespace=namespace,
            log_to_driver=log_to_driver,
            entrypoint=entrypoint,
            code_paths=code_paths(),
        )
        sock.sendall(P.frame(hello))
        buf = bytearray()
        while True:
            answer = take_first_frame(buf, P.handshake_decoder.decode, P.MAX_FRAME)
            if answer is not None:
                break
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError(
                    f"the asyncray head at {path} closed the connection during the handshake"
                )
            buf += chunk
        if type(answer) is P.Refused:
            raise HeadRefused(f"the asyncray head at {path} refused this driver: {answer.reason}")
        if buf:
            raise ConnectionError(f"the asyncray head at {path} sent more than its welcome")
        sock.settimeout(None)
        return sock, answer
    except (OSError, msgspec.DecodeError) as e:
        sock.close()
        if isinstance(e, ConnectionError):
            raise
        raise ConnectionError(f"could not join the asyncray head at {path}: {e}") from e
    except BaseException:
        sock.close()
        raise


def code_paths() -> list[str]:
    """Where this driver's code is, for the head's workers to import it from.

    As Ray's ``init``: the directory of the script (if it is on ``sys.path``,
    so not under ``python -m``) and the working directory. Embedded, workers
    are forks of the driver and have its ``sys.path`` already; a shared head's
    are not, and without these a class or function of the driver's own
    modules (pickled by reference) fails there with ``ModuleNotFoundError``.
    """
    paths = []
    if sys.argv and sys.argv[0] not in ("", "-c"):
        script_directory = os.path.dirname(os.path.realpath(sys.argv[0]))
        if script_directory in sys.path:
            paths.append(script_directory)
    with contextlib.suppress(OSError):
        cwd = os.path.abspath(os.path.curdir)
        if cwd not in paths:
            paths.append(cwd)
    return paths


class ConnectedClient(WaitingClient):
    """A driver's client whose kernel is a shared head, over ``sock``."""

    def __init__(self, sock: socket.socket, address: str, welcome: P.Welcome) -> None:
        reader = threading.Thread(target=self._read, name="asyncray-head-reader", daemon=True)
        super().__init__(reader)
        self.sock = sock
        self.address = address
        self.welcome = welcome
        self._writer = FrameWriter(sock)
        self._async_batch: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        self._lost = ""  # why the head's connection ended, once it has
        # Who reads the socket (see "from the head"): the lead, taken under _cv.
        # Callers waiting for the lead wait on _followers, the reader thread on
        # _reader_cv: releasing the lead after a sync call wakes no idle reader.
        lead_lock = threading.Lock()
        self._cv = threading.Condition(lead_lock)
        self._followers = threading.Condition(lead_lock)
        self._reader_cv = threading.Condition(lead_lock)
        self._leading = False
        self._sync_until = 0.0
        self._routed_sync = False
        self._buf = bytearray()
        self._chunk = read_buffer()  # every read goes here first (see read_buffer)
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)

    def start(self) -> None:
        self.thread.start()

    # ------------------------------------------------------------ to the head

    def post(self, msg: Any) -> None:
        if self._lost:
            if type(msg) is P.ReleaseObjects:
                return  # the head is gone and its objects with it
            raise exc.RaySystemError(self._lost)
        try:
            msgs = self.with_reports(msg)
            if msgs is None:
                self._writer.send(msg)
            else:
                self._writer.send_many(msgs)
        except OSError as e:
            self._connection_lost(f"{type(e).__name__}: {e}")
            raise exc.RaySystemError(self._lost) from e

    # ------------------------------------------------------------ from the head
    #
    # Whoever needs a message reads the socket (leader/follower). A thread
    # blocked in a synchronous call reads its own reply when nobody else is
    # reading, so the head's write wakes it directly: a reader thread that
    # received the reply and woke the caller would cost one more wake-up of
    # a sleeping thread per call (~40 us of ~250 on the 2-core VM). The
    # reader thread reads whenever no caller does, except just after a
    # synchronous call (``SYNC_GRACE_S``), when the next call is likely to
    # come at once: it stays out of the way then, unless an ``await``, a
    # callback or the head's output needs it.

    def _lead(self, deadline: float | None = None, spin: bool = False) -> bool:
        """Holding the lead: read one chunk and route it. False if ``deadline`` passed first.

        With ``spin``, poll the socket for ``CALLER_SPIN_S`` before blocking (see there).

        Raises:
            ConnectionError: the head's connection ended (reported to every waiter).
        """
        try:
            if spin:
                poll_until(self._poller.poll, time.perf_counter() + CALLER_SPIN_S)
            if deadline is not None:
                wait_ms = max(0, int((deadline - time.monotonic()) * 1000) + 1)
                if not self._poller.poll(min(wait_ms, _POLL_MS_MAX)):
                    return False
            got = self.sock.recv_into(self._chunk)
            if not got:
                raise ConnectionError("it closed the connection")
            buf = self._buf
            buf += self._chunk[:got]
            msgs = take_frames(buf, P.decoder.decode)
        except (OSError, msgspec.DecodeError) as e:
            self._connection_lost(f"{type(e).__name__}: {e}")
            raise ConnectionError(self._lost) from e
        complete = self.complete
        for msg in msgs:
            kind = type(msg)
            if kind in P.REPLY_TYPES:
                complete(msg)
            elif kind is P.Log:
                write_log(msg)
            elif kind is P.DropMappings:
                shm.forget_writable(msg.names)
        if self._async_batch:
            self._flush_async()
        return True

    def _release_lead(self, after_sync: bool) -> None:
        with self._cv:
            self._leading = False
            self._routed_sync = False
            if after_sync:
                self._sync_until = time.monotonic() + SYNC_GRACE_S
            self._followers.notify_all()  # a waiting caller may lead now
            if not after_sync or self._others_wait():
                self._reader_cv.notify()

    def _others_wait(self) -> bool:
        """Whether a reply is awaited by an ``await`` or a callback (the reader serves those)."""
        return any(type(w) is not _SyncWaiter for w in list(self.waiters.values()))

    def _read(self) -> None:
        """The reader thread: read whenever no caller does, until the connection ends."""
        cv = self._cv
        while True:
            with cv:
                while not self._lost and (
                    self._leading
                    or (time.monotonic() < self._sync_until and not self._others_wait())
                ):
                    # Never for ever: a caller that leads does not wake this
                    # thread when it stops (that would cost every call a
                    # wake-up), so look again within the grace.
                    wait = SYNC_GRACE_S if self._leading else self._sync_until - time.monotonic()
                    self._reader_cv.wait(wait)
                if self._lost:
                    return
                self._leading = True
            try:
                self._lead()
            except ConnectionError:
                return
            finally:
                # A sync reply routed here: its caller's next call comes soon; let it read.
                self._release_lead(after_sync=self._routed_sync)

    def complete(self, msg: Any) -> None:
        waiter = self.waiters.get(msg.req_id)
        if type(waiter) is _SyncWaiter:
            self._routed_sync = True
        super().complete(msg)

    def request(self, msg: Any) -> Any:
        """Send ``msg`` and wait for its reply, reading it ourselves if nobody reads."""
        waiter = _SyncWaiter()
        self.waiters[msg.req_id] = waiter
        self.post(msg)
        patience = reply_deadline(msg)
        deadline = None if patience is None else time.monotonic() + patience
        cv = self._cv
        while waiter.reply is None:
            with cv:
                while waiter.reply is None and self._leading and not self._lost:
                    if deadline is None:
                        self._followers.wait()
                    elif not self._followers.wait(deadline - time.monotonic()):
                        break
                if waiter.reply is not None:
                    break
                if self._lost:
                    raise exc.RaySystemError(self._lost)
                if deadline is not None and time.monotonic() >= deadline:
                    return self._give_up(msg, waiter)
                if self._leading:
                    continue
                self._leading = True
            try:
                if not self._lead(deadline, spin=True) and waiter.reply is None:
                    self._release_lead(after_sync=True)
                    return self._give_up(msg, waiter)
            except ConnectionError:
                self._release_lead(after_sync=True)
                break
            except BaseException:
                self._release_lead(after_sync=True)
                raise
            self._release_lead(after_sync=True)
        reply = waiter.reply
        if reply is None:
            raise exc.RaySystemError(self._lost)
        return raise_if_error(reply)

    async def request_async(self, msg: Any) -> Any:
        self._wake_reader()
        return await super().request_async(msg)

    def request_callback(self, msg: Any, callback: Callable[[Any], None]) -> None:
        super().request_callback(msg, callback)
        self._wake_reader()

    def _wake_reader(self) -> None:
        """An ``await`` or a callback waits: the reader thread must read if nobody does."""
        with self._cv:
            self._sync_until = 0.0
            if not self._leading:
                self._reader_cv.notify()

    def batch_async(self, waiter: _AsyncWaiter, reply: Any) -> None:
        """On the reader thread: queue a reply for a loop; one wake-up per loop per read."""
        batch = self._async_batch.get(waiter.loop)
        if batch is None:
            batch = self._async_batch[waiter.loop] = []
        batch.append((waiter.future, reply))

    def _flush_async(self) -> None:
        batches, self._async_batch = self._async_batch, {}
        for loop, items in batches.items():
            try:
                loop.call_soon_threadsafe(resolve_futures, items)
            except RuntimeError:
                pass  # that loop has been closed; nobody is waiting any more

    def _connection_lost(self, why: str) -> None:
        if self._lost:
            return
        self._lost = (
            f"The connection to the asyncray head at {self.address} was lost ({why}): the "
            "head was stopped or died. Start it again (`asyncray start --head`), then call "
            "asyncray.shutdown() and asyncray.init(address=...) to reconnect."
        )
        if self._async_batch:
            self._flush_async()
        self.fail_all_waiters(self._lost)
        with self._cv:
            self._followers.notify_all()
            self._reader_cv.notify_all()

    def stopped_reason(self) -> str:
        return self._lost or f"the connection to the asyncray head at {self.address} has ended"

    # ------------------------------------------------------------ leaving

    def close(self) -> None:
        """Leave the head (``shutdown()``): it releases this driver's job."""
        with contextlib.suppress(Exception):
            self.flush_releases()
        with contextlib.suppress(OSError):
            self._writer.drain()
        with self._cv:
            if not self._lost:
                self._lost = "asyncray has been shut down; call asyncray.init() again."
            self._reader_cv.notify_all()
            self._followers.notify_all()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # a reader in recv() sees the end
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self.sock.close()
        self.fail_all_waiters("asyncray was shut down while this call was waiting")
        shm.leave_session()
