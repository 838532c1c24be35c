"""``FrameWriter``: frames onto a blocking socket from any thread, in order.

A thread queues its frame and writes everything queued if no other thread
is writing; a thread that finds another writing leaves its frame to it.
So threads that send at once (a threaded actor's replies, a driver's
threads) share one ``sendall`` per batch, in the order they queued, and a
``__del__`` that sends from inside a send on the same thread only queues.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import deque
from typing import Any

from . import protocol as P


class FrameWriter:
    """Writes frames onto ``sock`` (blocking) for any number of threads."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._outbox: deque[bytes] = deque()
        self._lock = threading.Lock()

    def send(self, msg: Any) -> None:
        self._outbox.append(P.frame(msg))
        self.flush()

    def send_many(self, msgs: list[Any]) -> None:
        self._outbox.append(P.frame_many(msgs))
        self.flush()

    def flush(self) -> None:
        """Write queued frames, unless another thread is writing (it writes ours too).

        Whoever writes looks again after letting go of the lock, so no frame
        is left behind.
        """
        outbox = self._outbox
        lock = self._lock
        while outbox and lock.acquire(blocking=False):
            try:
                self._write_queued()
            finally:
                lock.release()

    def drain(self) -> None:
        """Block until every queued frame is written: call before the process exits."""
        with contextlib.suppress(OSError), self._lock:  # waits for a write in progress
            self._write_queued()

    def _write_queued(self) -> None:
        """Holding the lock: write the outbox, one ``sendall`` per batch queued."""
        outbox = self._outbox
        while outbox:
            frames = [outbox.popleft() for _ in range(len(outbox))]
            self.sock.sendall(frames[0] if len(frames) == 1 else b"".join(frames))
