"""What every client gives the public API, and which client this process uses.

The public API never touches runtime state: it calls the current client
(``current()``), which sends the runtime ``protocol`` messages. Clients:
``driver.DriverClient`` (the runtime runs in this process, on its own
thread), ``connected.ConnectedClient`` (a driver joined to a head),
``worker.WorkerClient`` (a child: messages go over its socket) and
``debug.DebugClient`` (debug mode: it answers the messages itself, running
each task in the calling thread).
``set_current`` also passes the client's hooks down to the wire (shared
memory reservations, units of refs never rebuilt), which never imports up.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import msgspec

from .. import exceptions as exc
from .._wire import protocol as P
from .._wire import serialization as ser
from .._wire import shm
from . import session_ids
from .queues import QueueTransport

# Releases are sent in batches of at least this many ids (or with the next
# message): one ReleaseObjects per batch instead of one per dropped ref.
RELEASE_BATCH = 512

# Values up to this size are kept in the owner's in-process store, so getting
# them needs no round trip (Ray's max_direct_call_object_size).
LOCAL_VALUE_LIMIT = 100 * 1024

# The kernel answers a request with a timeout when its timeout passes; a
# caller waits this much longer, then answers the request itself as timed
# out, so a blocking call keeps its timeout even if the kernel never
# answers (a bug, a kernel wedged). Long enough that a busy runtime thread
# (2 cores shared with busy workers) still answers first; short enough that
# a lost reply costs a caller about a second, not for ever.
REPLY_GRACE_S = 1.0


class ClientBase:
    """What every client provides to the public API."""

    is_driver = False

    def __init__(self) -> None:
        # Ids are a per-process prefix and a counter: unique without a round
        # trip, 28 bytes like Ray's (56 hex characters). The prefix starts with
        # the session's tag, so a ref used after its session ended can be told.
        # The counter is big-endian: a process's ids grow as they are made,
        # which lets ``wait`` check a list in creation order for duplicates
        # without a set (``_api._unique``).
        self._prefix = session_ids.new_id(12)
        self._counter = itertools.count(1)
        self._req_ids = itertools.count(1)
        self._registered: set[bytes] = set()
        self._released: list[bytes] = []
        # The owner's in-process store (as Ray's): serialized small values this
        # process put or already fetched. Objects are immutable once sealed, so
        # a hit needs no round trip to the runtime.
        self.local_values: dict[bytes, bytes] = {}
        self._queues: QueueTransport | None = None

    # ------------------------------------------------------------ ids

    def new_task_id(self) -> bytes:
        return self._prefix + next(self._counter).to_bytes(12, "big")

    def new_object_id(self) -> bytes:
        return self.new_task_id() + b"\x00\x00\x00\x00"

    # ------------------------------------------------------------ sending

    def post(self, msg: Any) -> None:
        """Send ``msg`` to the runtime without waiting (subclasses say how)."""
        raise NotImplementedError(f"{type(self).__name__} does not define post()")

    def ensure_function(self, func_id: bytes, blob: Callable[[], bytes]) -> None:
        """Send a function's definition before its first task (once per client)."""
        if func_id not in self._registered:
            self.post(P.RegisterFunction(func_id, blob()))
            self._registered.add(func_id)

    def release(self, object_id: bytes) -> None:
        """Give back a unit (``ObjectRef.__del__`` does the same inline)."""
        released = self._released
        released.append(object_id)
        if len(released) >= RELEASE_BATCH:
            self.flush_releases()

    def with_reports(self, msg: Any) -> list[Any] | None:
        """``msg`` among the view reports and releases queued since the last message, or
        None when there are none (send ``msg`` alone).

        For a process that reports its views (a child, a driver connected to a
        head): views opened go before ``msg`` (which may let their object go),
        releases and views closed after it (see ``DriverClient.drain``).
        """
        if not (self._released or shm.mapped_log or shm.unmapped_log):
            return None
        mapped, unmapped = shm.take_view_reports()
        msgs: list[Any] = [P.SegmentMaps(mapped, [])] if mapped else []
        msgs.append(msg)
        if self._released:
            msgs.append(P.ReleaseObjects(self._take_releases()))
        if unmapped:
            msgs.append(P.SegmentMaps([], unmapped))
        return msgs

    def flush_releases(self) -> None:
        released = self._take_releases()
        if released:
            self.post(P.ReleaseObjects(released))

    def _take_releases(self) -> list[bytes]:
        """The ids released since the last call; their cached values are dropped too."""
        released, self._released = self._released, []
        local = self.local_values
        if local:
            pop = local.pop
            for oid in released:
                pop(oid, None)
        return released

    # ------------------------------------------------------------ requests

    def request(self, msg: Any) -> Any:
        """Send a request and block until its reply.

        Raises:
            RaySystemError: the runtime failed handling it (``ErrorReply``).
        """
        raise NotImplementedError(f"{type(self).__name__} does not define request()")

    async def request_async(self, msg: Any) -> Any:
        """Send a request and await its reply on the running loop (raises as ``request``)."""
        raise NotImplementedError(f"{type(self).__name__} does not define request_async()")

    def request_callback(self, msg: Any, callback: Callable[[Any], None]) -> None:
        """Send a request; ``callback(reply)`` runs on some internal thread.

        The reply may be an ``ErrorReply``: ``decode_objects`` raises it.
        """
        raise NotImplementedError(f"{type(self).__name__} does not define request_callback()")

    def next_req_id(self) -> int:
        return next(self._req_ids)

    def query(self, what: str) -> Any:
        self.flush_releases()  # the state asked for counts the refs dropped before the call
        reply = self.request(P.QueryState(self.next_req_id(), what))
        return msgspec.msgpack.decode(reply.value)

    def query_arg(self, what: str, arg: str) -> Any:
        reply = self.request(P.QueryState(self.next_req_id(), what, arg))
        return msgspec.msgpack.decode(reply.value)

    @property
    def queues(self) -> QueueTransport:
        """How ``util.queue`` reaches the runtime's queues from this process."""
        transport = self._queues
        if transport is None:
            transport = self._queues = QueueTransport(self)
        return transport

    def segment_hooks(self) -> shm.SegmentHooks:
        """How large objects written here ask this process's runtime for room."""
        return shm.SegmentHooks(reserve=self._reserve_segment, abandon=self._abandon_segment)

    def _reserve_segment(self, size: int) -> tuple[str, bool]:
        # Objects dropped just before (a loop of large puts) free their room first.
        self.flush_releases()
        reply = self.request(P.ReserveSegment(self.next_req_id(), size))
        if reply.error:
            raise exc.ObjectStoreFullError(reply.error)
        return reply.name, reply.recycled

    def _abandon_segment(self, name: str) -> None:
        self.post(P.DropReservation(name))


# An ``ErrorReply`` whose text starts with this was made by the client itself:
# the runtime is gone (shut down, or the head's connection lost), and the
# rest of the text says so. It is raised as it is, not as an internal bug.
_CLOSED = "\x00closed\x00"


def closed_reply(req_id: int, reason: str) -> P.ErrorReply:
    """The reply a waiting call gets when nothing can answer it any more: raises ``reason``."""
    return P.ErrorReply(req_id=req_id, error=_CLOSED + reason)


def raise_if_error(reply: Any) -> Any:
    """``reply``, unless the runtime failed handling its request: then raise it.

    Raises:
        RaySystemError: ``reply`` is an ``ErrorReply`` (an internal bug of the runtime,
            or the runtime is gone: ``closed_reply``).
    """
    if type(reply) is P.ErrorReply:
        if reply.error.startswith(_CLOSED):
            raise exc.RaySystemError(reply.error[len(_CLOSED) :])
        raise exc.RaySystemError(
            "asyncray's runtime failed handling this request (an internal bug, please "
            f"report it):\n{reply.error}"
        )
    return reply


def reply_deadline(msg: Any) -> float | None:
    """How long a caller waits for ``msg``'s reply before answering it itself, or None.

    Requests that carry a timeout (get, wait, queue calls) are answered by the
    kernel when it passes; the caller's own deadline is a backstop.
    """
    kind = type(msg)
    if kind in TIMED_REQUESTS and msg.timeout >= 0:
        return float(msg.timeout) + REPLY_GRACE_S
    return None


# The requests that carry a timeout: a get, a wait, a generator's next item, a queue call.
TIMED_REQUESTS = frozenset((P.GetObjects, P.WaitObjects, P.StreamNext, P.QueueOp))


def timed_out_reply(msg: Any) -> Any:
    """The reply the kernel gives ``msg`` when its timeout passes (see ``reply_deadline``)."""
    kind = type(msg)
    if kind is P.GetObjects or kind is P.StreamNext:
        n = len(msg.object_ids) if kind is P.GetObjects else 1
        return P.ObjectsReply(
            req_id=msg.req_id, values=[None] * n, errors=[False] * n, timed_out=True
        )
    if kind is P.WaitObjects:
        return P.WaitReply(req_id=msg.req_id, ready=[])
    assert kind is P.QueueOp, f"{kind.__name__} has no timeout"
    return P.QueueReply(req_id=msg.req_id, status=P.QUEUE_WOULD_BLOCK, items=[], size=0)


def decode_objects(reply: P.ObjectsReply | P.ErrorReply) -> list[Any]:
    """Values of a get reply, raising the first error in request order."""
    raise_if_error(reply)
    assert type(reply) is P.ObjectsReply
    errors = reply.errors
    values = reply.values
    if True in errors or reply.timed_out:
        for data in values:
            ser.discard(data)  # never loaded: give back the units of refs inside
        for data, is_error in zip(values, errors):
            if is_error and data is not None:
                raise _explained(ser.loads_error(data))
        raise exc.GetTimeoutError("Get timed out: some object(s) not ready.")
    out = []
    try:
        for v in values:
            out.append(ser.loads(v))  # type: ignore[arg-type]
    except Exception as e:
        for v in values[len(out) + 1 :]:
            ser.discard(v)
        raise exc.RaySystemError(f"Failed to deserialize an object: {type(e).__name__}: {e}") from e
    return out


def _explained(error: BaseException) -> BaseException:
    """``error``, or a clearer one when the object is from an ended session."""
    if type(error) is not exc.ObjectLostError:
        return error
    try:
        oid = bytes.fromhex(error.object_ref_hex)
    except ValueError:
        return error
    if not session_ids.from_ended_session(oid):
        return error
    return exc.ObjectLostError(
        error.object_ref_hex,
        error.owner_address,
        "The ObjectRef was created in an earlier asyncray session of this process (before the "
        "last shutdown()): objects do not survive shutdown(). Create the object again (put(), "
        ".remote()) after init().",
    )


# ==================================================================== the current client

_current: ClientBase | None = None


def current() -> ClientBase | None:
    """This process's client, or None before ``init`` (or after ``shutdown``)."""
    return _current


def set_current(client: ClientBase | None) -> None:
    """Make ``client`` this process's client, and hand its hooks to the wire.

    None: the session ended (``shutdown()``); ids made from now on carry a new
    session tag.
    """
    global _current
    if client is None and _current is not None:
        session_ids.end_session()
    _current = client
    shm.install_hooks(None if client is None else client.segment_hooks())
    ser.install_release(None if client is None else client.release)
