"""The public calls: thin sync and async wrappers over the current client.

``init`` and ``shutdown`` live with the session (``_session.bootstrap``);
every other call finds the current client — the driver's, or a worker's
inside a child — and sends it one message.
"""

from __future__ import annotations

import socket
import sys
import warnings
from collections.abc import Callable, Sequence
from itertools import compress, count, islice
from operator import attrgetter, lt
from typing import TYPE_CHECKING, Any, TypeVar, overload

from . import _options, _task_context
from . import exceptions as exc
from ._clients import base as _client
from ._session.bootstrap import (
    RayContext,
    _auto_init,
    _require_session,
    client,
    client_and_totals,
    init,
    is_initialized,
    job_id,
    namespace_of_session,
    shutdown,
)
from ._wire import protocol as P
from ._wire import refs, shm
from ._wire import serialization as ser
from .object_ref import ObjectRef

if TYPE_CHECKING:
    import concurrent.futures

    from .object_ref_generator import ObjectRefGenerator

T = TypeVar("T")

__all__ = [
    "RayContext",
    "available_resources",
    "client",
    "client_and_totals",
    "cluster_resources",
    "current_client",
    "get",
    "get_async",
    "get_gpu_ids",
    "init",
    "is_embedded",
    "is_initialized",
    "job_id",
    "namespace_of_session",
    "nodes",
    "put",
    "put_async",
    "shutdown",
    "wait",
    "wait_async",
    "warn_detached_if_embedded",
]


def current_client() -> _client.ClientBase | None:
    """This process's client, or None before ``init`` (never starts a session)."""
    return _client.current()


# ==================================================================== put / get / wait


def put(value: T, *, _owner: Any = None) -> ObjectRef[T]:
    """Store ``value`` in the object store and return a ref to it.

    Raises:
        TypeError: ``value`` is an ``ObjectRef`` or cannot be pickled.
    """
    if _owner is not None:
        raise ValueError("The '_owner' argument of put() was removed in Ray 2.56.")
    c = client()
    if isinstance(value, ObjectRef):
        raise TypeError(
            "Calling 'put' on an ray.ObjectRef is not allowed. If you really want to do this, "
            "you can wrap the ray.ObjectRef in a list and call 'put' on it."
        )
    try:
        data = ser.dumps(value)
    except exc.ObjectStoreFullError:
        raise
    except Exception as e:
        raise TypeError(
            f"Could not serialize the put value {value!r}: {type(e).__name__}: {e}"
        ) from e
    oid = c.new_object_id()
    c.post(P.PutObject(oid, data))
    if (
        len(data) <= _client.LOCAL_VALUE_LIMIT
        and not refs.has_refs(data)
        # A child (or a driver connected to a head) reads its shared-memory
        # objects through the runtime, which then knows the process may hold
        # views of the segment (it must not recycle it).
        and (not shm.report_views or not shm.is_shm(data))
    ):
        c.local_values[oid] = data
    return ObjectRef(oid, True)


async def put_async(value: T) -> ObjectRef[T]:
    """``put`` for async code (``put`` never blocks on the runtime; this is for symmetry)."""
    return put(value)


def _check_get_input(object_refs: Any) -> tuple[list[ObjectRef[Any]], bool]:
    if type(object_refs) is ObjectRef:
        return [object_refs], True
    if not isinstance(object_refs, list):
        raise ValueError(
            f"Invalid type of object refs, {type(object_refs)}, is given. 'object_refs' must "
            "either be an ObjectRef or a list of ObjectRefs. "
        )
    if list(map(type, object_refs)).count(ObjectRef) == len(object_refs):
        return object_refs, False  # the common case, checked in C
    for ref in object_refs:
        if not isinstance(ref, ObjectRef):
            raise TypeError(
                f"Attempting to call `get` on the value {ref!r}, which is not an ray.ObjectRef."
            )
    return object_refs, False


def _timeout_value(timeout: Any, name: str = "timeout") -> float:
    """The wire's timeout for a user's ``timeout`` (checked: NaN, negative, not a number)."""
    if timeout is None:
        return P.NO_TIMEOUT  # the common case: no call
    seconds = _options.check_timeout(name, timeout)
    return P.NO_TIMEOUT if seconds is None else seconds


def _is_generator(value: Any) -> bool:
    # By exact type: ObjectRefGenerator derives from the Iterator ABCs, and an
    # ABC isinstance check on every get() is measurable.
    return type(value) is _generator_type()


_GENERATOR_TYPE: Any = None


def _generator_type() -> Any:
    global _GENERATOR_TYPE
    if _GENERATOR_TYPE is None:
        from .object_ref_generator import ObjectRefGenerator

        _GENERATOR_TYPE = ObjectRefGenerator
    return _GENERATOR_TYPE


# The types of ``get`` and ``get_async`` (README, "Types"): a ref gives its
# value's type, a list of refs a list of it; anything else (a list of refs of
# different types, a value the checker cannot see) gives ``Any``.
@overload
def get(object_refs: ObjectRef[T], *, timeout: float | None = None) -> T: ...
@overload
def get(object_refs: list[ObjectRef[T]], *, timeout: float | None = None) -> list[T]: ...
@overload
def get(
    object_refs: ObjectRefGenerator[T], *, timeout: float | None = None
) -> ObjectRefGenerator[T]: ...
@overload
def get(object_refs: Any, *, timeout: float | None = None) -> Any: ...


def get(object_refs: Any, *, timeout: float | None = None) -> Any:
    """Block until the object(s) are ready and return their values.

    Args:
        object_refs: one ``ObjectRef`` or a list of them.
        timeout: seconds to wait; ``None`` waits forever.

    Returns:
        The value, or a list of values in the same order.

    Raises:
        GetTimeoutError: not ready within ``timeout``.
        RayTaskError: the task raised (an instance of the user's exception class too).
        WorkerCrashedError, ObjectLostError, ...: the value cannot be produced.
    """
    if _is_generator(object_refs):
        return object_refs
    refs, single = _check_get_input(object_refs)
    c = client()
    if not refs:
        return []
    if _running_loop() is not None:
        warnings.warn(
            "Blocking asyncray.get() called on a thread that runs an asyncio event loop: the "
            "loop is stalled until it returns. Use `await ref` or "
            "`await asyncray.get_async(refs)` instead.",
            RuntimeWarning,
            stacklevel=2,
        )
    t = _timeout_value(timeout)
    value, ids = _get_locally(c.local_values, refs, single)
    if value is not _MISS:
        return value
    reply = c.request(P.GetObjects(c.next_req_id(), ids, t))
    return _values_of(c, refs, reply, single)


def _no_loop_yet() -> Any:
    """``_running_loop`` until asyncio is imported: no thread can run its loop before.

    ``import asyncray`` does not import asyncio (a driver that never awaits
    never pays for it); once something has, this hands over to asyncio's own.
    """
    global _running_loop
    if "asyncio" not in sys.modules:
        return None
    from asyncio.events import _get_running_loop

    _running_loop = _get_running_loop
    return _get_running_loop()


# This thread's running asyncio loop, or None (``get`` warns if it would block one).
_running_loop: Callable[[], Any] = _no_loop_yet

_MISS: Any = object()


def _get_locally(
    local: dict[bytes, bytes], refs: list[ObjectRef[Any]], single: bool
) -> tuple[Any, list[bytes]]:
    """``(value, ids)``: the value(s) from the owner's in-process store, or ``_MISS``.

    A list is answered here only if every value is in the store (the usual
    case for refs from ``put`` and for finished tasks' small results): no
    message, no reply, no per-ref Python code. ``ids`` are the refs' ids,
    for the request a miss sends.
    """
    if single:
        oid = refs[0]._id
        data = local.get(oid)  # one lookup: another thread may release it
        if data is not None:
            return ser.loads(data), []
        return _MISS, [oid]
    ids = [r._id for r in refs]
    try:
        # One lookup per ref (another thread may release one meanwhile); a
        # miss ends the scan, so a list of pending refs costs one lookup.
        payloads = list(map(local.__getitem__, ids))
    except KeyError:
        return _MISS, ids
    try:
        return ser.loads_many(payloads), ids
    except Exception as e:  # as decode_objects reports it
        raise exc.RaySystemError(f"Failed to deserialize an object: {type(e).__name__}: {e}") from e


def _values_of(
    c: _client.ClientBase, asked: list[ObjectRef[Any]], reply: P.ObjectsReply, single: bool
) -> Any:
    """The values a get reply carries (raising the first error); small ones are kept locally."""
    values = _client.decode_objects(reply)
    _remember(c.local_values, asked, reply)
    return values[0] if single else values


def _remember(
    local: dict[bytes, bytes], asked: list[ObjectRef[Any]], reply: P.ObjectsReply
) -> None:
    """Keep small fetched values in the local store for the next get.

    Only for refs this process owns: their release drops the value again. A
    ref it does not own (``pg.ready()``, ``completed()``) is never released, so
    its value would stay for good (and a removed group's ``pg.ready()`` would
    keep answering).
    """
    for ref, data, is_error in zip(asked, reply.values, reply.errors):
        if (
            ref._owned
            and data is not None
            and not is_error
            and len(data) <= _client.LOCAL_VALUE_LIMIT
            and not refs.has_refs(data)
        ):
            local[ref._id] = data


@overload
async def get_async(object_refs: ObjectRef[T], *, timeout: float | None = None) -> T: ...
@overload
async def get_async(
    object_refs: list[ObjectRef[T]], *, timeout: float | None = None
) -> list[T]: ...
@overload
async def get_async(
    object_refs: ObjectRefGenerator[T], *, timeout: float | None = None
) -> ObjectRefGenerator[T]: ...
@overload
async def get_async(object_refs: Any, *, timeout: float | None = None) -> Any: ...


async def get_async(object_refs: Any, *, timeout: float | None = None) -> Any:
    """Await the object(s) on the running event loop; the awaitable twin of ``get``."""
    if _is_generator(object_refs):
        return object_refs
    refs, single = _check_get_input(object_refs)
    c = client()
    if not refs:
        return []
    t = _timeout_value(timeout)
    value, ids = _get_locally(c.local_values, refs, single)
    if value is not _MISS:
        return value
    reply = await c.request_async(P.GetObjects(c.next_req_id(), ids, t))
    return _values_of(c, refs, reply, single)


def future_of(ref: ObjectRef[Any]) -> concurrent.futures.Future[Any]:
    """A ``concurrent.futures.Future`` for ``ref``."""
    import concurrent.futures

    c = client()
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    future.object_ref = ref  # type: ignore[attr-defined]

    def on_reply(reply: Any) -> None:
        try:
            value = _client.decode_objects(reply)[0]
        except BaseException as e:
            future.set_exception(e)
        else:
            future.set_result(value)

    c.request_callback(P.GetObjects(c.next_req_id(), [ref._id], P.NO_TIMEOUT), on_reply)
    return future


# The ``not_ready`` list the last ``wait`` returned and a snapshot of it, as
# one tuple (read and replaced whole: waits may run on several threads). The
# usual loop (``ready, not_ready = wait(not_ready)``) passes that list straight
# back: if it is unchanged (same objects, checked at C speed) it was checked
# already, so a wait over n refs whose first refs are ready costs no
# Python-level pass over them. Only lists of plain refs are kept: a
# generator's wait id moves as it is consumed.
_last_wait: tuple[list[Any] | None, list[Any]] = (None, [])


def _check_wait_input(
    refs: Any, num_returns: int, timeout: Any
) -> tuple[list[Any], list[bytes] | None, float, bool]:
    """``(refs, ids, timeout, plain)``; ``plain``: only ObjectRefs (no generators).

    ``ids`` is None for the list the last wait returned, unchanged (see ``_last_wait``).
    """
    last, snapshot = _last_wait
    # List equality tests identity first, item by item, in C: no ObjectRef.__eq__ runs.
    if refs is last and refs and refs == snapshot:
        _check_num_returns(num_returns, len(refs))
        return refs, None, _timeout_value(timeout), True
    if type(refs) is list and refs and list(map(type, refs)).count(ObjectRef) == len(refs):
        # Fast path (the common case): C-speed checks, no per-item Python calls.
        ids = [r._id for r in refs]
        t = _timeout_value(timeout)
        if len(set(ids)) != len(ids) if len(ids) < _ORDERED_CHECK_FROM else not _unique(ids):
            raise ValueError("Wait requires a list of unique ray_waitables.")
        _check_num_returns(num_returns, len(refs))
        return refs, ids, t, True
    if isinstance(refs, ObjectRef) or _is_generator(refs):
        raise TypeError(
            "wait() expected a list of ray.ObjectRef or ray.ObjectRefGenerator, got a single "
            f"ray.ObjectRef or ray.ObjectRefGenerator {refs!r}"
        )
    if not isinstance(refs, list):
        raise TypeError(
            f"wait() expected a list of ray.ObjectRef or ray.ObjectRefGenerator, got {type(refs)}"
        )
    t = _timeout_value(timeout)
    for r in refs:
        if not isinstance(r, ObjectRef) and not _is_generator(r):
            raise TypeError(
                "wait() expected a list of ray.ObjectRef or ray.ObjectRefGenerator, got list "
                f"containing {type(r)}"
            )
    if not refs:
        return [], [], t, False
    if len(set(refs)) != len(refs):
        raise ValueError("Wait requires a list of unique ray_waitables.")
    _check_num_returns(num_returns, len(refs))
    ids = [r._id if isinstance(r, ObjectRef) else r._wait_id() for r in refs]
    return refs, ids, t, False


# From this many ids, ``wait`` checks them with ``_unique`` (a set below).
_ORDERED_CHECK_FROM = 64


def _unique(ids: list[bytes]) -> bool:
    """Whether ``ids`` holds no id twice.

    A list in creation order (a client's ids grow: ``ClientBase.new_task_id``)
    is strictly increasing, which one C pass of comparisons shows: its cost per
    id is flat, where a set of 100k ids costs ~3x more per id than one of 1k
    (its table outgrows the caches). Any other order (the pass stops at the
    first id out of order) takes the set.
    """
    return all(map(lt, ids, islice(ids, 1, None))) or len(set(ids)) == len(ids)


def _check_num_returns(num_returns: Any, n: int) -> None:
    if type(num_returns) is int and 0 < num_returns <= n:
        return  # the common case: one test
    if isinstance(num_returns, bool) or not isinstance(num_returns, int):
        raise TypeError(
            "The 'num_returns' argument of wait() must be an int, got "
            f"{_options.shown(num_returns)} "
            f"(type {type(num_returns).__name__})."
        )
    if num_returns <= 0:
        raise ValueError(f"Invalid number of objects to return {num_returns}.")
    if num_returns > n:
        raise ValueError(
            "num_returns cannot be greater than the number of ray_waitables provided to ray.wait."
        )


def _split(refs: list[Any], ready_idx: Sequence[int], plain: bool) -> tuple[list[Any], list[Any]]:
    """``(ready, not_ready)``; remembers ``not_ready`` for the next wait if ``plain``."""
    global _last_wait
    if type(ready_idx) is range:  # the first k (from ``_locally_ready``): two slices
        k = len(ready_idx)
        ready, not_ready = refs[:k], refs[k:]
    elif len(ready_idx) == 1:
        i = ready_idx[0]
        ready, not_ready = [refs[i]], refs[:i] + refs[i + 1 :]
    elif ready_idx and ready_idx[-1] == len(ready_idx) - 1:
        # Increasing indices ending at k-1: exactly the first k (the usual case
        # when the values are here): two slices, no per-ref Python work.
        k = len(ready_idx)
        ready, not_ready = refs[:k], refs[k:]
    else:
        chosen = set(ready_idx)
        ready = [refs[i] for i in ready_idx]
        not_ready = [r for i, r in enumerate(refs) if i not in chosen]
    if plain:
        _last_wait = (not_ready, not_ready[:])
    return ready, not_ready


@overload
def wait(
    ray_waitables: list[ObjectRef[T]],
    *,
    num_returns: int = 1,
    timeout: float | None = None,
    fetch_local: bool = True,
) -> tuple[list[ObjectRef[T]], list[ObjectRef[T]]]: ...
@overload
def wait(
    ray_waitables: Any,
    *,
    num_returns: int = 1,
    timeout: float | None = None,
    fetch_local: bool = True,
) -> tuple[list[Any], list[Any]]: ...


def wait(
    ray_waitables: Any,
    *,
    num_returns: int = 1,
    timeout: float | None = None,
    fetch_local: bool = True,
) -> tuple[list[Any], list[Any]]:
    """Wait until ``num_returns`` of the refs are ready, or ``timeout``.

    Returns:
        ``(ready, not_ready)``: at most ``num_returns`` ready refs, both lists in input order.
    """
    refs, ids, t, plain = _check_wait_input(ray_waitables, num_returns, timeout)
    c = client()
    if not refs:
        return [], []
    ready = _locally_ready(c.local_values, refs, ids, num_returns)
    if ready is None:
        if ids is None:
            ids = [r._id for r in refs]
        ready = c.request(
            P.WaitObjects(
                req_id=c.next_req_id(), object_ids=ids, num_returns=num_returns, timeout=t
            )
        ).ready
    return _split(refs, ready, plain)


# ``_locally_ready``: past this many refs to find, the scan runs in C; a list
# none of whose first ``_COLD_PREFIX`` values is here goes to the runtime.
_SCAN_IN_C_FROM = 16
_COLD_PREFIX = 65
_ID_OF = attrgetter("_id")


def _locally_ready(
    local: dict[bytes, bytes], refs: list[Any], ids: list[bytes] | None, num_returns: int
) -> Sequence[int] | None:
    """The first ``num_returns`` indices whose values are in the local store, if that many are.

    ``ids`` None: ``refs`` are plain refs (their ids are read as the scan goes).
    """
    contains = local.__contains__
    first = islice(ids if ids is not None else map(_ID_OF, refs), num_returns)
    if all(map(contains, first)):
        # The first ones (the usual case when values are here): checked in C,
        # and their indices need no list.
        return range(num_returns)
    if num_returns > _SCAN_IN_C_FROM:
        # Many to find: scan in C (about twice as fast per ref as the loop below,
        # which is faster for a few).
        keys = ids if ids is not None else [r._id for r in refs]
        if len(keys) > _COLD_PREFIX and not any(map(contains, keys[:_COLD_PREFIX])):
            return None  # a cold list: let the runtime scan it
        hits = list(islice(compress(count(), map(contains, keys)), num_returns))
        return hits if len(hits) == num_returns else None
    found: list[int] = []
    keys_it = ids if ids is not None else (r._id for r in refs)
    for i, oid in enumerate(keys_it):
        if oid in local:
            found.append(i)
            if len(found) == num_returns:
                return found
        elif i >= _COLD_PREFIX - 1 and not found:
            return None  # a cold list: let the runtime scan it
    return None


@overload
async def wait_async(
    ray_waitables: list[ObjectRef[T]],
    *,
    num_returns: int = 1,
    timeout: float | None = None,
    fetch_local: bool = True,
) -> tuple[list[ObjectRef[T]], list[ObjectRef[T]]]: ...
@overload
async def wait_async(
    ray_waitables: Any,
    *,
    num_returns: int = 1,
    timeout: float | None = None,
    fetch_local: bool = True,
) -> tuple[list[Any], list[Any]]: ...


async def wait_async(
    ray_waitables: Any,
    *,
    num_returns: int = 1,
    timeout: float | None = None,
    fetch_local: bool = True,
) -> tuple[list[Any], list[Any]]:
    """The awaitable twin of ``wait``."""
    refs, ids, t, plain = _check_wait_input(ray_waitables, num_returns, timeout)
    c = client()
    if not refs:
        return [], []
    ready = _locally_ready(c.local_values, refs, ids, num_returns)
    if ready is None:
        if ids is None:
            ids = [r._id for r in refs]
        ready = (
            await c.request_async(
                P.WaitObjects(
                    req_id=c.next_req_id(), object_ids=ids, num_returns=num_returns, timeout=t
                )
            )
        ).ready
    return _split(refs, ready, plain)


# ==================================================================== resources and nodes


def available_resources() -> dict[str, float]:
    """Resources free right now; keys whose amount is zero are left out (as in Ray)."""
    session = _require_session()
    return session.client.query("available")


def cluster_resources() -> dict[str, float]:
    """The host's total resources."""
    session = _require_session()
    return session.client.query("cluster")


def state_rows(what: str) -> tuple[str, list[dict[str, Any]]]:
    """The node id and the kernel's rows of ``what`` ("tasks", "actors", "objects",
    "workers"), for ``util.state`` and ``timeline``.

    Raises:
        RuntimeError: asyncray is not initialized (the state API never starts it).
    """
    session = _require_session()
    rows: list[dict[str, Any]] = session.client.query(what)
    return session.node_id, rows


def session_status() -> dict[str, Any]:
    """What ``asyncray status`` shows of the session's kernel (resources, workers, objects)."""
    status: dict[str, Any] = _require_session().client.query("status")
    return status


def now_ms() -> float:
    """The wall clock the kernel's state rows are on, now (milliseconds)."""
    import time

    return time.time() * 1000.0


def nodes() -> list[dict[str, Any]]:
    """The one node, in the shape of Ray's ``ray.nodes()``."""
    session = _auto_init()
    return [
        {
            "NodeID": session.node_id,
            "Alive": True,
            "alive": True,
            "NodeManagerAddress": "127.0.0.1",
            "NodeManagerHostname": socket.gethostname(),
            "NodeName": "127.0.0.1",
            "Resources": dict(session.totals),
            "Labels": {},
            "IsHeadNode": True,
        }
    ]


def get_gpu_ids() -> list[int] | list[str]:
    """GPU ids assigned to the current task or actor; ``[]`` in the driver.

    As in Ray: ints, or the device ids (strings) of ``CUDA_VISIBLE_DEVICES``
    when it was set before ``init()``.
    """
    _auto_init()
    return _task_context.gpu_ids(_task_context.current_task().gpu_ids)


# ==================================================================== embedded or shared


def is_embedded() -> bool:
    """Whether this session is embedded (``init()`` without an address, and its workers).

    No other driver can ever connect to an embedded session. False for a
    driver connected to a shared head (``init(address=...)``) and for the
    head's workers.
    """
    return _auto_init().embedded


def warn_detached_if_embedded(what: str) -> None:
    """Warn once per session that a detached ``what`` cannot outlive an embedded session.

    ``what`` is "actor" or "placement group". The warning is a
    ``RuntimeWarning`` attributed to the user's line; a driver connected to a
    shared head (or a worker of one) never gets it.
    """
    session = _auto_init()
    key = f"detached {what}"
    if not session.embedded or key in session.warned:
        return
    session.warned.add(key)
    article = "An" if what[0] in "aeiou" else "A"
    warnings.warn(
        f'{article} {what} created with lifetime="detached" in an embedded session '
        "(asyncray.init() without an address): no other driver can ever connect to it, so the "
        f"{what} cannot outlive this process; it lives until shutdown(). To share detached "
        f"{what}s between drivers, start a shared head with `asyncray start --head` and "
        'connect each driver with asyncray.init(address="auto"). (Warned once per session.)',
        RuntimeWarning,
        stacklevel=_options._user_stacklevel(),
    )
