"""``FramedConn``: the kernel's end of one socket — frames out, batched per loop tick.

Two kinds of peer talk to the kernel over a socket: a child (a task worker
or an actor, ``worker_pool.ChildConn``) and a driver connected to a shared
head (``client_conn.ClientConn``). Both send the same way: a message is
encoded at once and written at once, except inside a batch of messages the
runtime is handling, when all of one peer's messages go in one write at the
end of the batch (one syscall and one wake-up of the peer, not one per task).
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Any

import msgspec

from .._wire import protocol as P
from .._wire.framing import FrameTooLarge, take_frames

if TYPE_CHECKING:
    from .runtime import Runtime


class FramedConn(asyncio.Protocol):
    """The sending half shared by every socket peer of the kernel."""

    def __init__(self, runtime: Runtime, sock: socket.socket | None) -> None:
        self.runtime = runtime
        # The raw socket until the transport owns it (closed directly if we stop first).
        self.sock = sock
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._out: list[bytes] = []
        # Frames held while the runtime handles a batch (see ``send_frame``).
        self._batched: list[bytes] = []
        # Outstanding get/wait/queue requests of this peer, by req_id.
        self.requests: dict[int, Any] = {}
        # Reference-count units held by this peer's refs, by object id:
        # given back all at once if the peer goes.
        self.units: dict[bytes, int] = {}
        # Views of shared-memory segments this peer reported, by name.
        self.views: dict[str, int] = {}
        # Definitions (functions, actor classes) this peer registered.
        self.registered_functions: set[bytes] = set()

    def drop(self, reason: str) -> None:
        """Cut off a peer that sent what no asyncray peer sends (subclasses say how)."""
        raise NotImplementedError(f"{type(self).__name__} does not define drop()")

    def take_messages(self) -> list[Any] | None:
        """Every whole message buffered, decoded by the typed decoder.

        None if the stream is corrupt — a length over the limit, garbage, a
        wrong type, an unknown tag: the peer is dropped.
        """
        try:
            return take_frames(self._buf, P.decoder.decode)
        except FrameTooLarge as e:
            self.drop(str(e))
        except msgspec.DecodeError as e:
            self.drop(f"sent a frame that is no asyncray message ({e})")
        return None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.runtime._stopped:  # connected after shutdown began
            transport.close()
            return
        if self._out:
            transport.write(b"".join(self._out))  # type: ignore[attr-defined]
            self._out = []

    # A peer's values reach it only when it asks (its results are not pushed).
    keeps_values = False

    def deliver(self, object_id: bytes, data: bytes) -> None:
        """Never called (``keeps_values`` is False): a peer fetches what it needs."""

    def forget(self, object_ids: list[bytes]) -> None:
        """A peer keeps no values the kernel pushed: nothing to drop."""

    def send(self, msg: Any) -> None:
        self.send_frame(P.frame(msg))

    def send_frame(self, frame: bytes) -> None:
        """Send an encoded message (``P.frame``); see ``send``."""
        # Written at once — the transport tries the syscall immediately, and a
        # message held for a later tick would add a loop iteration to every
        # task's latency — except inside a batch of messages the runtime is
        # handling: then all of this peer's messages go in one write at the
        # end of the batch.
        transport = self.transport
        if transport is None:
            self._out.append(frame)
        elif self.runtime._batching:
            if not self._batched:
                self.runtime.batched_conns.append(self)
            self._batched.append(frame)
        elif not transport.is_closing():
            transport.write(frame)

    def send_now(self, msg: Any) -> None:
        """Write ``msg`` at once, behind what a batch holds (a signal is to follow it)."""
        self.flush()
        transport = self.transport
        if transport is None:
            self._out.append(P.frame(msg))
        elif not transport.is_closing():
            transport.write(P.frame(msg))

    def written(self) -> bool:
        """Whether everything sent so far is in the socket (none buffered here)."""
        transport = self.transport
        return (
            transport is not None
            and not self._batched
            and (transport.is_closing() or transport.get_write_buffer_size() == 0)
        )

    def flush(self) -> None:
        """Write the messages held during a batch."""
        frames, self._batched = self._batched, []
        transport = self.transport
        if frames and transport is not None and not transport.is_closing():
            transport.write(b"".join(frames))

    def close(self) -> None:
        if self.transport is not None:
            self.flush()
            self.transport.close()
        elif self.sock is not None:
            self.sock.close()
