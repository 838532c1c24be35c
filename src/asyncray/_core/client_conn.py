"""``ClientConn``: the head's end of a driver's connection (``asyncray start``).

A shared head serves drivers in other processes over a unix socket. Before
a driver is heard at all it must pass two checks: its uid (the kernel's
peer credentials, ``SO_PEERCRED``) is the head's own, and its first frame
is a ``ClientHello`` carrying the head's secret token. Until then frames are
decoded by the handshake decoder alone and may be at most
``HANDSHAKE_MAX_BYTES``, so a stranger can make the head neither parse a
runtime message nor buffer much; a peer that sends no hello within
``HANDSHAKE_TIMEOUT_S`` is turned away too. A refusal is logged with its reason and
answered with ``Refused`` before the connection closes.

Once admitted, the driver is one more peer of the kernel: its frames are
decoded by the typed decoder and handed to ``Runtime.handle`` like a
child's, its payloads stay opaque bytes (the head never unpickles them;
only workers do), and a frame that does not decode, is over the limit, or
carries a message no driver sends closes this connection alone — the head
goes on serving everyone else. When the connection ends, however it ends
(``shutdown()``, exit, SIGKILL, or dropped), the runtime releases the
driver's job (``Runtime.driver_gone``).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from .._wire import protocol as P
from .._wire import shm
from .._wire.framing import FrameTooLarge, take_first_frame
from .framed import FramedConn

if TYPE_CHECKING:
    from .runtime import Runtime

logger = logging.getLogger("asyncray")

# The most a peer may send before it has shown the token: a hello is ~200 bytes.
HANDSHAKE_MAX_BYTES = 64 * 1024
# How long a peer has to send its hello: a driver sends it as it connects, so
# one that stays silent (or dribbles) is turned away, not kept for ever.
HANDSHAKE_TIMEOUT_S = 30.0
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
# A driver names its script's directory and its working directory (ClientHello.code_paths).
MAX_CODE_PATHS = 16

# Messages only a child (a task worker or an actor process) sends: a driver
# sending one is corrupt or hostile. (Messages only the runtime sends are
# refused for every peer by the runtime itself.)
_CHILD_ONLY = frozenset(
    (P.TaskDone, P.StreamItem, P.ActorStarted, P.ActorExiting, P.WorkerHello, P.Log)
)


@dataclass(frozen=True)
class HeadIdentity:
    """What the head checks a driver against and tells it when it is admitted."""

    token: str
    uid: int
    node_id: str
    session_dir: str


def peer_credentials(sock: Any) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    pid, uid, _gid = _PEERCRED.unpack(raw)
    return pid, uid


class ClientConn(FramedConn):
    """The head's end of one driver's socket; the driver's job while it is connected."""

    # A driver is no child process: nothing runs here on the kernel's behalf.
    worker = None

    def __init__(self, runtime: Runtime, identity: HeadIdentity) -> None:
        super().__init__(runtime, None)
        self.identity = identity
        self.admitted = False
        self.closed = False
        self.job = ""  # set when admitted
        self.pid = 0  # the peer's, from its credentials
        self.dropped = ""
        self._hello_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if self.transport is None or transport.is_closing():
            return
        try:
            self.pid, uid = peer_credentials(transport.get_extra_info("socket"))
        except (OSError, AttributeError) as e:
            self._refuse(f"its credentials could not be read ({e})")
            return
        if uid != self.identity.uid:
            self._refuse(f"it runs as uid {uid}, not the head's uid {self.identity.uid}")
            return
        self._hello_timer = asyncio.get_running_loop().call_later(
            HANDSHAKE_TIMEOUT_S, self._hello_overdue
        )

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        buf = self._buf
        buf += data
        if not self.admitted:
            self._handshake()
            if not self.admitted or not buf:
                return
        msgs = self.take_messages()
        if msgs is None:
            return
        runtime = self.runtime
        handle = runtime.handle
        runtime.begin_batch()
        try:
            for msg in msgs:
                if type(msg) in _CHILD_ONLY:
                    self.drop(f"sent {type(msg).__name__}, a message only a worker sends")
                if self.closed:
                    break  # what it sent after the violation is not heard
                handle(self, msg)
        finally:
            runtime.end_batch()
        runtime.busy_poll.extend()  # its reply, or its next call, is likely soon

    def send_frame(self, frame: bytes) -> None:
        super().send_frame(frame)
        # The driver is likely to answer soon: a synchronous caller's next call.
        self.runtime.busy_poll.extend()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_hello_timer()
        was_admitted = self.admitted and not self.closed
        self.closed = True
        if self.admitted:
            self.runtime.driver_gone(self)
        if was_admitted:
            logger.info("asyncray head: driver pid=%s (job %s) disconnected", self.pid, self.job)

    # ------------------------------------------------------------ admission

    def _handshake(self) -> None:
        buf = self._buf
        if len(buf) > HANDSHAKE_MAX_BYTES:
            self._refuse(f"it sent {len(buf)} bytes before a hello")
            return
        try:
            hello = take_first_frame(buf, P.handshake_decoder.decode, HANDSHAKE_MAX_BYTES)
        except (FrameTooLarge, msgspec.DecodeError) as e:
            self._refuse(f"its first frame is no hello ({e})")
            return
        if hello is None:
            return  # not all there yet
        if type(hello) is not P.ClientHello:
            self._refuse(f"its first message is {type(hello).__name__}, not a hello")
            return
        if not hmac.compare_digest(hello.token.encode(), self.identity.token.encode()):
            self._refuse("it did not present the head's token")
            return
        if hello.version != P.HANDSHAKE_VERSION:
            self._refuse(
                f"it speaks protocol {hello.version}, the head {P.HANDSHAKE_VERSION}: "
                "use the same asyncray version for the head and its drivers"
            )
            return
        if not hello.namespace or len(hello.namespace) > 1024:
            self._refuse("its namespace is empty or too long")
            return
        if len(hello.code_paths) > MAX_CODE_PATHS or any(
            not p or len(p) > 4096 for p in hello.code_paths
        ):
            self._refuse("its code paths are too many, empty or too long")
            return
        self.admitted = True
        self._cancel_hello_timer()
        job = self.runtime.open_job(self, hello)
        self.job = job.job_id
        logger.info(
            "asyncray head: driver pid=%s joined as job %s (namespace %r)",
            self.pid,
            job.job_id,
            hello.namespace,
        )
        self.send(
            P.Welcome(
                job_id=job.job_id,
                namespace=hello.namespace,
                node_id=self.identity.node_id,
                totals=dict(self.runtime.resources.totals),
                shm_tag=shm.session_tag(),
                shm_directory=shm.directory(),
                spill_directory=shm.spill_directory(),
                shm_threshold=shm.SHM_THRESHOLD,
                session_dir=self.identity.session_dir,
            )
        )

    def _hello_overdue(self) -> None:
        self._hello_timer = None
        if not self.admitted and not self.closed:
            self._refuse(f"it sent no hello within {HANDSHAKE_TIMEOUT_S:g} s")

    def _cancel_hello_timer(self) -> None:
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None

    def _refuse(self, reason: str) -> None:
        """Turn the peer away: log why, tell it, close."""
        self._cancel_hello_timer()
        logger.warning("asyncray head: refused a connection (pid=%s): %s", self.pid, reason)
        self.closed = True
        self._buf.clear()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(P.frame(P.Refused(reason)))
            transport.close()

    def drop(self, reason: str) -> None:
        """Cut off an admitted driver that sent what no asyncray driver sends.

        Logged at ERROR with its pid; the connection closes, so its job is
        released as on a disconnect. Everyone else is served on.
        """
        if self.closed:
            return
        self.dropped = reason
        logger.error(
            "asyncray head: dropped driver pid=%s (job %s): %s; its job was released",
            self.pid,
            self.job or "-",
            reason,
        )
        self.closed = True
        self._buf.clear()
        if self.transport is not None:
            self.transport.abort()
        # connection_lost follows and releases the job.
