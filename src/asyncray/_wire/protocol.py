"""Every message that crosses a process boundary, and how it is framed.

A frame is a 4-byte little-endian length followed by one msgpack-encoded
message. Messages are a tagged union of ``msgspec.Struct`` s with
``array_like=True`` (positional arrays on the wire: smaller and faster than
maps). User payloads — functions, arguments, results, exceptions — are opaque
cloudpickle bytes inside them; the runtime forwards them without unpickling.

Records are named for where they live: the runtime keeps a ``TaskRecord``;
``SubmitTask`` is what a client sends, ``ExecuteTask`` what a worker receives
and ``TaskDone`` what it sends back.

The embedded driver hands these same Structs to the runtime as Python objects
(no encoding); children encode them onto their socket.
"""

# No ``from __future__ import annotations`` here: the decoders built below
# read every message's field types, and msgspec resolves string annotations
# with ``typing`` eval (4 ms of ``import asyncray``; real ones cost ~0.5 ms).
import struct
from typing import Union

import msgspec

# Option values for ``SubmitTask.retry_exc``: no retry of application errors,
# retry all of them, or (anything else) a cloudpickled tuple of exception types.
RETRY_NONE = b""
RETRY_ALL = b"*"

# The payload sealed one past a stream's last item: not a pickle, never a value.
STREAM_END = b"\x00asyncray-stream-end"

# A ``timeout`` field below zero means "wait forever".
NO_TIMEOUT = -1.0

# ``QueueOp.op``: what the call does.
QUEUE_PUT = 1
QUEUE_GET = 2
QUEUE_PUT_BATCH = 3
QUEUE_GET_BATCH = 4
QUEUE_SIZE = 5
QUEUE_CLOSE = 6
# ``QueueReply.status``: done; full or empty (at once, at the timeout, or
# interrupted by a cancel); the queue was shut down (or never existed).
QUEUE_OK = 0
QUEUE_WOULD_BLOCK = 1
QUEUE_CLOSED = 2


class _Msg(msgspec.Struct, array_like=True, tag=True, omit_defaults=False):
    pass


class WorkerEnv(msgspec.Struct, array_like=True, frozen=True):
    """A task's or actor's ``runtime_env``, as a worker applies it.

    ``key`` is the env's canonical JSON (what ``get_runtime_env_string()``
    says): the kernel compares keys only, to give a task a worker set up with
    the same env; it never reads the rest.
    """

    key: str
    env_vars: dict[str, str] = {}
    # The worker's working directory, first on its sys.path.
    working_dir: str = ""
    # Directories put on sys.path after ``working_dir`` (``py_modules``).
    py_paths: list[str] = []


# ---------------------------------------------------------------- client → runtime


class RegisterFunction(_Msg, tag=1):
    """A function definition, sent once per definition before its first task."""

    func_id: bytes
    blob: bytes


class SubmitTask(_Msg, tag=2):
    """Run ``func_id`` with ``args`` once ``dep_ids`` are ready and resources fit."""

    task_id: bytes
    func_id: bytes
    name: str
    args: bytes
    dep_ids: list[bytes]
    return_ids: list[bytes]
    resources: dict[str, float]
    max_retries: int
    retry_exc: bytes
    streaming: bool = False
    timeout_s: float = NO_TIMEOUT
    backpressure: int = -1
    # Placement group (b"" for none), bundle index (-1: any), capture_child_tasks.
    pg_id: bytes = b""
    pg_bundle: int = -1
    pg_capture: bool = False
    # The task or actor call that submitted this one (for recursive cancel).
    parent: bytes = b""
    # Its runtime_env (None: the default environment).
    env: WorkerEnv | None = None


class PutObject(_Msg, tag=3):
    """Store a serialized value under an id the client chose."""

    object_id: bytes
    data: bytes
    is_error: bool = False


class GetObjects(_Msg, tag=4):
    """Reply with ``ObjectsReply`` when all are ready, one has failed, or on timeout."""

    req_id: int
    object_ids: list[bytes]
    timeout: float


class WaitObjects(_Msg, tag=5):
    """Reply with ``WaitReply`` once ``num_returns`` are ready or on timeout."""

    req_id: int
    object_ids: list[bytes]
    num_returns: int
    timeout: float


class ReleaseObjects(_Msg, tag=6):
    """The client dropped its last reference to these objects."""

    object_ids: list[bytes]


class Log(_Msg, tag=7):
    """Output a child printed; ``stream`` is 1 (stdout) or 2 (stderr).

    ``job_id`` names the job whose code printed it (a shared head's workers
    serve several drivers; the head forwards the output to that job's driver).
    """

    stream: int
    text: str
    job_id: str = ""


class TaskDone(_Msg, tag=8):
    """A task finished: one payload per return id, or the error for every one of them.

    A streaming task reports ``stream_count`` (items produced, an error item
    included) and no results, or, with ``is_error``, the error it may be
    retried for (not sent as an item); ``cancelled`` marks a run interrupted by cancel.
    """

    task_id: bytes
    results: list[bytes]
    is_error: bool
    retryable: bool = False
    stream_count: int = -1
    cancelled: bool = False


class StreamItem(_Msg, tag=19):
    """Item ``index`` (from 1) of a streaming task, sent as soon as it is yielded."""

    task_id: bytes
    index: int
    data: bytes
    is_error: bool


class StreamNext(_Msg, tag=35):
    """The consumer took items up to ``index - 1`` and wants item ``index``.

    Replied with ``ObjectsReply`` once that item or the end of the stream is
    sealed (timed out otherwise). ``req_id`` 0 is a one-way notice: the
    consumer already holds the item; only the consumption is counted.
    """

    req_id: int
    task_id: bytes
    index: int
    timeout: float


class ReleaseStream(_Msg, tag=36):
    """The consumer dropped the generator: free its items, release backpressure."""

    task_id: bytes


class CancelTask(_Msg, tag=37):
    """``cancel()`` of a task, an actor call or a generator."""

    task_id: bytes
    force: bool
    recursive: bool


class CancelWaiter(_Msg, tag=9):
    """The client gave up on a pending get/wait (its own timeout, or asyncio cancellation)."""

    req_id: int


class QueryState(_Msg, tag=10):
    """Ask for a piece of runtime state: resources, nodes, ..."""

    req_id: int
    what: str
    arg: str = ""


class CreateActor(_Msg, tag=11):
    """Create an actor; ``req_id`` > 0 asks for an ``ActorReply`` (named actors)."""

    actor_id: bytes
    class_id: bytes
    req_id: int
    name: str
    namespace: str
    get_if_exists: bool
    detached: bool
    args: bytes
    dep_ids: list[bytes]
    place: dict[str, float]
    hold: dict[str, float]
    max_restarts: int
    class_name: str
    config: bytes
    meta: bytes
    pg_id: bytes = b""
    pg_bundle: int = -1
    pg_capture: bool = False
    # An object the creator put whose units stand for the actor's handles
    # (every process's copies, and payloads carrying one): when it is freed
    # the actor ends as on ``ReleaseActor``. Empty: not ended by its handles.
    holders_id: bytes = b""
    # How the actor runs calls ("plain", "threaded", "async") and whether a
    # plain one may run a caller's ready call past its waiting one: the
    # kernel's ordering rules read these (it never unpickles ``config``).
    kind: str = "plain"
    out_of_order: bool = False
    # Its runtime_env (None: the default environment).
    env: WorkerEnv | None = None


class CallActor(_Msg, tag=12):
    """Call ``method`` on an actor; runs after the caller's earlier calls."""

    task_id: bytes
    actor_id: bytes
    method: str
    args: bytes
    dep_ids: list[bytes]
    return_ids: list[bytes]
    group: str
    max_task_retries: int
    streaming: bool = False
    backpressure: int = -1
    timeout_s: float = NO_TIMEOUT
    parent: bytes = b""
    # Which application errors are retried (``RETRY_NONE``/``RETRY_ALL``/pickled types).
    retry_exc: bytes = RETRY_NONE


class KillActor(_Msg, tag=13):
    actor_id: bytes
    no_restart: bool


class ReleaseActor(_Msg, tag=14):
    """The owner's last handle is gone: end the actor after its queued calls."""

    actor_id: bytes


class GetActor(_Msg, tag=15):
    req_id: int
    name: str
    namespace: str


class ActorExiting(_Msg, tag=16):
    """Sent by an actor calling ``exit_actor()`` (``task_id`` of that call) before it exits."""

    task_id: bytes


class ActorStarted(_Msg, tag=17):
    """``__init__`` returned (``ok``) or raised (``error``: the pickled ActorDiedError)."""

    ok: bool
    error: bytes


class CreatePlacementGroup(_Msg, tag=38):
    """Reserve ``bundles`` at once; ``handle`` is the pickled PlacementGroup ``ready()`` gives."""

    pg_id: bytes
    bundles: list[dict[str, float]]
    strategy: str
    name: str
    namespace: str
    detached: bool
    handle: bytes


def pg_ready_object_id(pg_id: bytes) -> bytes:
    """The object ``pg.ready()`` refers to: sealed with the group's handle once created."""
    return b"pgready-" + pg_id + b"\x00\x00\x00\x00"


class RemovePlacementGroup(_Msg, tag=39):
    pg_id: bytes


class ListNamedActors(_Msg, tag=18):
    req_id: int
    namespace: str
    all_namespaces: bool


class CreateQueue(_Msg, tag=43):
    """A ``util.queue.Queue`` made in a child: its items live in the runtime."""

    queue_id: bytes
    maxsize: int


class QueueOp(_Msg, tag=44):
    """One call on a queue, answered with ``QueueReply`` (no answer if ``req_id`` is 0).

    ``QUEUE_PUT`` adds ``items[0]`` and ``QUEUE_GET`` takes one item, each
    waiting up to ``timeout`` seconds for room or an item (0: not at all,
    ``NO_TIMEOUT``: for ever). ``QUEUE_PUT_BATCH`` adds all of ``items`` and
    ``QUEUE_GET_BATCH`` takes ``count`` items, all or none, without waiting.
    ``QUEUE_SIZE`` asks for the size; ``QUEUE_CLOSE`` shuts the queue down.
    """

    req_id: int
    queue_id: bytes
    op: int
    items: list[bytes] = []
    count: int = 0
    timeout: float = 0.0


# ---------------------------------------------------------------- runtime → client


class ExecuteTask(_Msg, tag=20):
    """Run a task in a worker. ``func_blob`` is set the first time this worker sees the function."""

    task_id: bytes
    func_id: bytes
    func_blob: bytes
    name: str
    args: bytes
    dep_ids: list[bytes]
    dep_values: list[bytes]
    num_returns: int
    retry_exc: bytes
    resources: dict[str, float]
    gpu_ids: list[int]
    streaming: bool = False
    backpressure: int = -1
    # The pickled PlacementGroup the task runs in and whether it captures children.
    pg: bytes = b""
    pg_capture: bool = False


class StreamCredit(_Msg, tag=33):
    """Backpressure: the consumer has taken ``consumed`` items of this stream."""

    task_id: bytes
    consumed: int


class CancelActorCall(_Msg, tag=34):
    """Cancel an actor call the actor process holds (queued there, or running if async)."""

    task_id: bytes


class StartActor(_Msg, tag=30):
    """Construct the actor instance in a fresh actor process."""

    actor_id: bytes
    class_blob: bytes
    args: bytes
    dep_values: list[bytes]
    config: bytes
    resources: dict[str, float]
    gpu_ids: list[int]
    name: str
    namespace: str
    pg: bytes = b""
    pg_capture: bool = False
    # How many times this actor was restarted before this start (0: its first
    # start); ``was_current_actor_reconstructed`` reads it.
    num_restarts: int = 0


class ExecuteActorCall(_Msg, tag=31):
    task_id: bytes
    method: str
    args: bytes
    dep_values: list[bytes]
    num_returns: int
    group: str
    streaming: bool = False
    backpressure: int = -1
    retry_exc: bytes = RETRY_NONE
    # A retried stream: items its earlier attempts produced, not sent again.
    skip: int = 0


class ActorReply(_Msg, tag=32):
    """Answer to a named ``CreateActor`` or ``GetActor``: ``error`` is empty on success."""

    req_id: int
    actor_id: bytes
    meta: bytes
    error: str


class ObjectsReply(_Msg, tag=21):
    """Serialized values in request order; ``None`` where not ready (after a failure or timeout)."""

    req_id: int
    values: list[Union[bytes, None]]
    errors: list[bool]
    timed_out: bool


class WaitReply(_Msg, tag=22):
    """Indices (into the request's list) of the objects that are ready."""

    req_id: int
    ready: list[int]


class StateReply(_Msg, tag=23):
    """The answer to ``QueryState``, msgpack-friendly."""

    req_id: int
    value: bytes


class Shutdown(_Msg, tag=24):
    """The runtime is going away: exit now."""


class InterruptTask(_Msg, tag=28):
    """``cancel()`` of the task this worker runs: sent just before its SIGINT.

    The worker lets the signal interrupt only the task named here, so a
    signal that lands after that task ended spares the next one.
    """

    task_id: bytes


class RevokeTasks(_Msg, tag=26):
    """Take back pipelined tasks the worker has not started (it blocked in get/wait)."""

    task_ids: list[bytes]


class WorkerHello(_Msg, tag=25):
    """A child's first message: it is up and ready for work."""

    pid: int


class ReserveSegment(_Msg, tag=60):
    """Ask for room for a large object's segment of ``size`` bytes before writing it."""

    req_id: int
    size: int


class SegmentReply(_Msg, tag=61):
    """The segment to write (``recycled``: it exists, resize it), or ``error`` (store full)."""

    req_id: int
    name: str
    recycled: bool
    error: str


class DropReservation(_Msg, tag=62):
    """The producer failed before its object was stored: give the room back."""

    name: str


class SegmentMaps(_Msg, tag=64):
    """A child's views of segments: opened (sent before what follows) or closed."""

    mapped: list[str]
    unmapped: list[str]


class HoldObjects(_Msg, tag=65):
    """Keep these objects alive: refs to them wait in a queue item (one unit each)."""

    object_ids: list[bytes]


class DropMappings(_Msg, tag=63):
    """These segments are gone: close the writable mappings kept for reuse."""

    names: list[str]


class QueueReply(_Msg, tag=45):
    """The answer to a ``QueueOp``: a ``QUEUE_*`` status, the items taken, and the size.

    ``size`` is the queue's size for ``QUEUE_SIZE`` and, for a batch that did
    not fit, the size that refused it (Ray's error message names it).
    """

    req_id: int
    status: int
    items: list[bytes]
    size: int


class SetJob(_Msg, tag=66):
    """The tasks sent to this worker from now on belong to job ``job_id`` (shared head).

    Sent only when a worker's next task is of another job than its last one:
    the job names the namespace its code looks actors up in and the driver
    its output goes to.
    """

    job_id: str
    namespace: str
    # Directories the job's driver had its code in (its script's, its working
    # directory): first on the worker's sys.path while it serves the job, so
    # the driver's own modules import there, as in Ray.
    code_paths: list[str] = []


class SetEnv(_Msg, tag=73):
    """This fresh worker runs only tasks of ``env`` from now on: apply it before the next one.

    Sent once, before its first task, to a worker taken for a task (or an
    actor) with a ``runtime_env``: the worker sets the variables, changes
    directory and extends sys.path, and the kernel never gives it a task of
    another env.
    """

    env: WorkerEnv


class ErrorReply(_Msg, tag=27):
    """The kernel failed handling request ``req_id`` (an internal bug); ``error`` is its traceback.

    Sent in place of the request's usual reply: the requester raises
    ``RaySystemError`` with this text instead of waiting forever.
    """

    req_id: int
    error: str


Message = Union[
    RegisterFunction,
    SubmitTask,
    PutObject,
    GetObjects,
    WaitObjects,
    ReleaseObjects,
    Log,
    TaskDone,
    CancelWaiter,
    QueryState,
    ExecuteTask,
    ObjectsReply,
    WaitReply,
    StateReply,
    Shutdown,
    WorkerHello,
    RevokeTasks,
    CreateActor,
    CallActor,
    KillActor,
    ReleaseActor,
    GetActor,
    ActorExiting,
    ActorStarted,
    ListNamedActors,
    StartActor,
    ExecuteActorCall,
    ActorReply,
    StreamItem,
    StreamNext,
    ReleaseStream,
    CancelTask,
    StreamCredit,
    CancelActorCall,
    InterruptTask,
    CreatePlacementGroup,
    RemovePlacementGroup,
    ReserveSegment,
    SegmentReply,
    DropReservation,
    DropMappings,
    SegmentMaps,
    HoldObjects,
    CreateQueue,
    QueueOp,
    QueueReply,
    SetJob,
    SetEnv,
    ErrorReply,
]

# What the runtime sends back to a request (matched to it by ``req_id``).
REPLY_TYPES = (
    ObjectsReply,
    WaitReply,
    StateReply,
    ActorReply,
    SegmentReply,
    QueueReply,
    ErrorReply,
)

# ---------------------------------------------------------------- zygote control


class Spawn(msgspec.Struct, array_like=True, tag=40):
    """Fork a child that talks over the file descriptor sent with this message."""

    child_id: int
    kind: str
    env: dict[str, str]


class Spawned(msgspec.Struct, array_like=True, tag=41):
    """The zygote forked ``child_id`` as ``pid``; ``pid`` is ``-errno`` if the fork failed."""

    child_id: int
    pid: int


class Reaped(msgspec.Struct, array_like=True, tag=42):
    """A child exited; ``status`` is as from ``os.waitpid``."""

    pid: int
    status: int


ZygoteMessage = Union[Spawn, Spawned, Reaped]

# ---------------------------------------------------------------- a driver joining a head

# The first frame on a connection to a shared head (``asyncray start``), and
# the head's answer. Decoded by their own decoder: until a client has shown
# the head's token, no other message is heard from it.
HANDSHAKE_VERSION = 1


class ClientHello(msgspec.Struct, array_like=True, tag=70):
    """A driver asks to join: the head's secret token, its namespace and what it wants."""

    version: int
    token: str
    pid: int
    namespace: str
    log_to_driver: bool
    entrypoint: str = ""
    # Where the driver's code is (``SetJob.code_paths``).
    code_paths: list[str] = []


class Welcome(msgspec.Struct, array_like=True, tag=71):
    """The head accepted the driver: the job it runs as and how to reach the object store."""

    job_id: str
    namespace: str
    node_id: str
    totals: dict[str, float]
    shm_tag: str
    shm_directory: str
    spill_directory: str
    shm_threshold: int
    session_dir: str


class Refused(msgspec.Struct, array_like=True, tag=72):
    """The head refused the driver (wrong token, another user, another version)."""

    reason: str


HandshakeMessage = Union[ClientHello, Welcome, Refused]
handshake_decoder = msgspec.msgpack.Decoder(HandshakeMessage)

# ---------------------------------------------------------------- framing

HEADER = struct.Struct("<I")
HEADER_SIZE = HEADER.size
# The largest message body a frame may carry. Large values never travel in
# a frame (they go to shared memory above ``max_direct_call_object_size``),
# so a bigger length prefix means a corrupted stream: readers refuse it
# (``framing.FrameTooLarge``) rather than buffer gigabytes waiting for it.
MAX_FRAME = 1 << 30

encoder = msgspec.msgpack.Encoder()
decoder = msgspec.msgpack.Decoder(Message)
zygote_decoder = msgspec.msgpack.Decoder(ZygoteMessage)


def _checked_length(body: bytes, msg: msgspec.Struct) -> bytes:
    if len(body) > MAX_FRAME:
        raise ValueError(
            f"a {type(msg).__name__} message of {len(body)} bytes is over the frame limit "
            f"of {MAX_FRAME} bytes; pass large data through ray.put() instead"
        )
    return HEADER.pack(len(body))


def frame(msg: msgspec.Struct) -> bytes:
    """Encode one message with its length prefix.

    Raises:
        ValueError: the message is over ``MAX_FRAME`` bytes.
    """
    body = encoder.encode(msg)
    return _checked_length(body, msg) + body


def frame_many(msgs: list[msgspec.Struct]) -> bytes:
    """Encode several messages into one buffer, for one write."""
    buf = bytearray()
    for msg in msgs:
        body = encoder.encode(msg)
        buf += _checked_length(body, msg)
        buf += body
    return bytes(buf)
