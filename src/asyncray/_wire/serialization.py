"""User payloads: values, functions and exceptions as pickle bytes.

Plain data of builtin types goes through the C pickler directly (about ten
times cheaper than constructing a cloudpickle Pickler for ``b"ok"``); anything
else goes through cloudpickle, which pickles functions and classes defined in
``__main__`` or interactively by value. Both produce pickle protocol 5, which
``pickle.loads`` reads.

Errors are carried as pickled ``RayTaskError`` s whose ``traceback_str`` is
the remote traceback with asyncray's own frames removed, together with their
text (for ``UnserializableException`` when the caller cannot unpickle them).
"""

from __future__ import annotations

import gc
import io
import os
import pickle
import struct
import traceback
import types
from collections import ChainMap
from collections.abc import Callable
from operator import itemgetter
from typing import Any

import cloudpickle

from ..exceptions import RayError, RayTaskError
from . import refs, shm

PROTOCOL = 5

# Types whose pickle never refers to user code, so the C pickler is safe
# and exact for them.
_PLAIN_SCALARS = frozenset({bytes, str, int, float, bool, type(None), complex, bytearray})

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Where ``co_filename`` sits in the arguments cloudpickle rebuilds a code object from.
_CO_FILENAME_ARG = 10


def _reduce_code_keeping_filename(code: types.CodeType) -> Any:
    """cloudpickle's code reducer, with the real file name kept.

    cloudpickle 3.1.3 replaced ``co_filename`` with ``"<dynamic-code>"``, so a
    function pickled by value lost its source lines in remote tracebacks. The
    worker is forked from the driver and reads the same files, so the real
    name gives the user ``File "app.py", line 7`` and the source line, as Ray does.
    """
    constructor, args = cloudpickle.cloudpickle._code_reduce(code)
    if args[_CO_FILENAME_ARG] != code.co_filename:
        args = (*args[:_CO_FILENAME_ARG], code.co_filename, *args[_CO_FILENAME_ARG + 1 :])
    return constructor, args


class _Pickler(cloudpickle.Pickler):
    dispatch_table = ChainMap(
        {types.CodeType: _reduce_code_keeping_filename}, cloudpickle.Pickler.dispatch_table
    )


def _cloudpickle(
    value: Any, buffer_callback: Callable[[pickle.PickleBuffer], bool] | None = None
) -> bytes:
    """``cloudpickle.dumps`` at protocol 5 through ``_Pickler``."""
    with io.BytesIO() as file:
        _Pickler(file, protocol=PROTOCOL, buffer_callback=buffer_callback).dump(value)
        return file.getvalue()


def _is_plain(value: Any, depth: int = 0) -> bool:
    t = type(value)
    if t in _PLAIN_SCALARS:
        # Large byte strings are not: their bytes go to shared memory.
        return (t is not bytes and t is not bytearray) or len(value) < shm.SHM_THRESHOLD
    if depth >= 2:
        return False
    if t is tuple or t is list:
        return len(value) <= 64 and all(_is_plain(v, depth + 1) for v in value)
    if t is dict:
        return len(value) <= 64 and all(
            _is_plain(k, depth + 1) and _is_plain(v, depth + 1) for k, v in value.items()
        )
    return False


class _LargeBytes:
    """Pickles a large ``bytes`` value out of band (a plain bytes never is):
    written once to shared memory, read back as ``bytes`` (a copy, as in Ray)."""

    __slots__ = ("value",)

    def __init__(self, value: bytes) -> None:
        self.value = value

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (bytes, (pickle.PickleBuffer(self.value),))


# How far ``_large_bytes_out_of_band`` looks for large bytes: into containers
# this deep (the value itself is depth 0) with at most this many items.
BYTES_SCAN_DEPTH = 3
BYTES_SCAN_LEN = 64


def _scans_into(value: Any, t: type, depth: int) -> bool:
    """Whether the large-bytes scan looks inside ``value`` (of type ``t``) at ``depth``."""
    return (
        (t is tuple or t is list or t is dict)
        and depth < BYTES_SCAN_DEPTH
        and len(value) <= BYTES_SCAN_LEN
    )


def _has_large_bytes(value: Any, depth: int = 0) -> bool:
    """Whether ``_large_bytes_out_of_band`` would change ``value`` (no allocation)."""
    t = type(value)
    if t is bytes:
        return len(value) >= shm.SHM_THRESHOLD
    if not _scans_into(value, t, depth):
        return False
    items = value.values() if t is dict else value
    return any(_has_large_bytes(v, depth + 1) for v in items)


def _large_bytes_out_of_band(value: Any, seen: dict[int, Any], depth: int = 0) -> Any:
    """``value`` with each large ``bytes`` near its top wrapped in ``_LargeBytes``.

    Pickle writes ``bytes`` in band whatever its size (the C pickler never
    asks a reducer about builtins), so a 10 MB argument would travel through
    the runtime's sockets. Wrapped, it goes to shared memory once. Looks into
    small containers down to ``BYTES_SCAN_DEPTH``: a task's ``(args,
    kwargs)``, the lists and dicts in them, and theirs. Containers rebuilt on
    the way keep their sharing (``seen``).
    """
    t = type(value)
    if t is bytes:
        if len(value) < shm.SHM_THRESHOLD:
            return value
        wrapped = seen.get(id(value))
        if wrapped is None:
            wrapped = seen[id(value)] = _LargeBytes(value)
        return wrapped
    if not _scans_into(value, t, depth):
        return value
    if id(value) in seen:
        return seen[id(value)]
    if t is dict:
        items = [(k, _large_bytes_out_of_band(v, seen, depth + 1)) for k, v in value.items()]
        same = all(v is value[k] for k, v in items)
        rebuilt: Any = value if same else dict(items)
    else:
        parts = [_large_bytes_out_of_band(v, seen, depth + 1) for v in value]
        same = all(a is b for a, b in zip(parts, value))
        rebuilt = value if same else t(parts)
    seen[id(value)] = rebuilt
    return rebuilt


def dumps(value: Any) -> bytes:
    """Serialize a value; large pickle-5 buffers go to one shared-memory segment.

    Raises whatever the pickler raises for unpicklable input.
    """
    if _is_plain(value):
        return pickle.dumps(value, PROTOCOL)
    if _has_large_bytes(value):
        value = _large_bytes_out_of_band(value, {})
    # Every pickle-5 buffer (a numpy array's data, ...) goes out of band, as in
    # Ray: the value is rebuilt on views of the payload, read-only, not on
    # writeable copies. A large one sends them all to shared memory; small
    # ones travel after the pickle (``_INLINE``).
    buffers: list[pickle.PickleBuffer] = []
    large = False

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        nonlocal large
        buffers.append(buffer)
        if buffer.raw().nbytes >= shm.SHM_THRESHOLD:
            large = True
        return False  # out of band: we keep it

    state = refs.state
    outer, state.collecting = state.collecting, []
    try:
        data = _cloudpickle(value, out_of_band)
        contained = state.collecting
    finally:
        state.collecting = outer
    if large:
        data = shm.dumps_large(data, buffers)
    elif buffers:
        data = _with_inline_buffers(data, buffers)
    if contained:
        data = refs.wrap(contained, data)
    return data


# A pickle followed by its small out-of-band buffers:
# _INLINE, u32 pickle size, pickle, u32 count, then per buffer u64 size and bytes.
_INLINE = b"\x00ARINL1"
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def _with_inline_buffers(pickled: bytes, buffers: list[pickle.PickleBuffer]) -> bytes:
    parts: list[bytes | memoryview] = [
        _INLINE,
        _U32.pack(len(pickled)),
        pickled,
        _U32.pack(len(buffers)),
    ]
    for buffer in buffers:
        view = buffer.raw()
        parts.append(_U64.pack(view.nbytes))
        parts.append(view)
    return b"".join(parts)


def _loads_inline(data: bytes) -> Any:
    """Unpickle an ``_INLINE`` payload: its buffers are read-only views of it."""
    view = memoryview(data)
    (n,) = _U32.unpack_from(data, 7)
    pickled = view[11 : 11 + n]
    pos = 11 + n
    (count,) = _U32.unpack_from(data, pos)
    pos += 4
    buffers = []
    for _ in range(count):
        (size,) = _U64.unpack_from(data, pos)
        pos += 8
        buffers.append(view[pos : pos + size])
        pos += size
    return pickle.loads(pickled, buffers=buffers)


def loads(data: bytes) -> Any:
    """Unpickle a payload from ``dumps``; shared-memory buffers are mapped, not copied.

    A payload with refs must be loaded (or ``discard`` ed) exactly once per
    delivery: the runtime granted this process one unit per ref in it, which
    the rebuilt ``ObjectRef`` s own.
    """
    if data[:1] != b"\x00":  # a plain pickle: every marker starts with NUL, no pickle does
        return pickle.loads(data)
    if data[:7] == refs.MARKER:
        return _loads_with_refs(data)
    if data[:7] == shm.MARKER:
        return shm.loads_large(data)
    if data[:7] == _INLINE:
        return _loads_inline(data)
    return pickle.loads(data)


_FIRST_BYTE = itemgetter(0)


def loads_many(payloads: list[bytes]) -> list[Any]:
    """``[loads(p) for p in payloads]`` for non-empty payloads, faster when all are plain pickles.

    The check (is any payload's first byte NUL, as every marker's is) runs in C; a
    list of plain pickles is then unpickled by ``map``, with no Python call per value.
    """
    if 0 in map(_FIRST_BYTE, payloads):
        return [loads(p) for p in payloads]
    return list(map(pickle.loads, payloads))


def _loads_with_refs(data: bytes) -> Any:
    inner = refs.inner(data)
    before = refs.rebuilt.n
    # Thousands of new refs would trigger garbage collections that scan them
    # again and again (most of the cost of a get of 10k refs); none of them
    # can be in a cycle yet, so collect after the load instead of during it.
    pause_gc = len(data) - len(inner) >= GC_PAUSE_REF_BYTES and gc.isenabled()
    if pause_gc:
        gc.disable()
    try:
        if inner[:7] == shm.MARKER:
            return shm.loads_large(inner)
        if inner[:7] == _INLINE:
            return _loads_inline(inner)
        return pickle.loads(inner)
    except BaseException:
        # Refs are rebuilt in pickling order: those rebuilt before the failure
        # give their units back when collected; give back the rest now.
        _release(refs.contained(data)[refs.rebuilt.n - before :])
        raise
    finally:
        if pause_gc:
            gc.enable()


def abandon(data: bytes) -> None:
    """A payload made by ``dumps`` that will never be sent: free its segment, if any."""
    segment = shm.segment_of(data)
    if segment is not None:
        shm.abandon(segment)


def discard(data: bytes | None) -> None:
    """A delivered payload that will never be loaded: give back the units of its refs."""
    if data is not None and data[:7] == refs.MARKER:
        _release(refs.contained(data))


def discard_arguments(msg: Any) -> None:
    """A call (``ExecuteTask``/``ExecuteActorCall``) dropped before its arguments were
    loaded: give back the units of the refs in them."""
    discard(msg.args)
    for value in msg.dep_values:
        discard(value)


# Gives back one unit of an object (the current client's ``release``); installed
# by the client when it becomes current (the wire never calls up to find it).
_release_unit: Callable[[bytes], None] | None = None


def install_release(release: Callable[[bytes], None] | None) -> None:
    """Where units of refs never rebuilt go (``discard``, a failed load)."""
    global _release_unit
    _release_unit = release


def _release(ids: list[bytes]) -> None:
    release = _release_unit
    if release is not None:
        for oid in ids:
            release(oid)


# A load rebuilding refs whose ids take at least this many bytes (about a
# thousand refs) runs with the garbage collector paused.
GC_PAUSE_REF_BYTES = 28 * 1000


class DepSlot:
    """Stands in for a top-level ``ObjectRef`` argument; the worker puts the value here."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> Any:
        return (DepSlot, (self.index,))


# The argument payload of a call with no arguments.
EMPTY_ARGS = pickle.dumps(((), {}), PROTOCOL)


def dumps_function(fn: Any) -> bytes:
    """Serialize a function or class definition (always by cloudpickle)."""
    return _cloudpickle(fn)


def _drop_own_frames(te: traceback.TracebackException, seen: set[int]) -> None:
    """Remove asyncray's frames from ``te`` and every exception chained or grouped in it."""
    if id(te) in seen:
        return
    seen.add(id(te))
    te.stack = traceback.StackSummary.from_list(
        [f for f in te.stack if not os.path.abspath(f.filename).startswith(_PACKAGE_DIR)]
    )
    for other in (te.__cause__, te.__context__, *(getattr(te, "exceptions", None) or ())):
        if other is not None:
            _drop_own_frames(other, seen)


def remote_traceback(exc: BaseException) -> str:
    """The traceback text of ``exc`` without asyncray's own frames, as Ray's ``traceback_str``.

    Like Python's own: it starts with ``Traceback (most recent call last):``
    (unless no frame is left), and shows the exceptions chained by ``raise ...
    from`` or raised while handling another, and the members of an exception
    group. ``RayTaskError.__str__`` puts the task's header in place of each
    ``Traceback`` line.
    """
    try:
        te = traceback.TracebackException(type(exc), exc, exc.__traceback__, compact=True)
        _drop_own_frames(te, set())
        return "".join(te.format())
    except Exception:  # a __str__ that raises, ...: the frames alone
        frames = [
            f
            for f in traceback.extract_tb(exc.__traceback__)
            if not os.path.abspath(f.filename).startswith(_PACKAGE_DIR)
        ]
        lines = traceback.format_list(frames)
        lines += traceback.format_exception_only(type(exc), exc)
        return "".join(lines)


def dumps_task_error(
    exc: BaseException,
    function_name: str,
    *,
    actor_repr: str | None = None,
    actor_id: str | None = None,
    wrap_ray_error: bool = False,
) -> bytes:
    """Pickle ``exc`` raised by user code as a ``RayTaskError`` (or as itself if a
    RayError, unless ``wrap_ray_error``).

    The payload carries the error's text too: an error the caller cannot
    unpickle (a class whose ``__init__`` takes other arguments than its
    ``args``, a ``__reduce__`` that fails, ...) reaches it as Ray's
    ``UnserializableException`` with that text. One that cannot be pickled at
    all becomes, as in Ray, a ``RayTaskError`` whose cause is a ``RayError``
    saying so.
    """
    if isinstance(exc, RayError) and not isinstance(exc, RayTaskError) and not wrap_ray_error:
        try:
            return _with_text(_cloudpickle(exc), exc)
        except Exception:
            pass
    err = task_error(exc, function_name, actor_repr=actor_repr, actor_id=actor_id)
    tb, cause = err.traceback_str, err.cause
    try:
        return _with_text(_cloudpickle(err), err)
    except Exception as pickle_exc:
        # Ray's text [obs 2.60]: "Exception __main__.Unpicklable isn't serializable:
        # cannot pickle '_thread.lock' object.\nOriginal exception details:\n<traceback>"
        cause_cls = type(cause)
        replacement = RayError(
            f"Exception {cause_cls.__module__}.{cause_cls.__qualname__} isn't serializable: "
            f"{pickle_exc}.\nOriginal exception details:\n{tb}"
        )
        err = RayTaskError(
            function_name,
            tb,
            replacement,
            pid=os.getpid(),
            actor_repr=actor_repr,
            actor_id=actor_id,
        )
        return _with_text(_cloudpickle(err), err)


def task_error(
    exc: BaseException,
    function_name: str,
    *,
    actor_repr: str | None = None,
    actor_id: str | None = None,
) -> RayTaskError:
    """The ``RayTaskError`` for ``exc`` raised by user code in this process."""
    # A nested task error (a get() in the task raised one) keeps the inner cause,
    # so ``except Cause`` still works; its text ends the traceback once, as in Ray.
    cause = exc.cause if isinstance(exc, RayTaskError) else exc
    tb = remote_traceback(exc)
    return RayTaskError(
        function_name, tb, cause, pid=os.getpid(), actor_repr=actor_repr, actor_id=actor_id
    )


def _with_text(data: bytes, err: BaseException) -> bytes:
    try:
        text = "".join(traceback.format_exception_only(type(err), err))
    except Exception:
        text = f"{type(err).__module__}.{type(err).__qualname__}\n"
    return pickle.dumps(_RemoteError(data, text), PROTOCOL)


class _RemoteError:
    """An error payload with the error's text, rebuilt as the error itself when
    unpickled, or as ``UnserializableException(text)`` when that fails."""

    def __init__(self, data: bytes, text: str) -> None:
        self.data = data
        self.text = text

    def __reduce__(self) -> Any:
        return (_rebuild_remote_error, (self.data, self.text))


def _rebuild_remote_error(data: bytes, text: str) -> BaseException:
    try:
        err: BaseException = pickle.loads(data)
    except Exception:
        from ..exceptions import UnserializableException

        return UnserializableException(text)
    return err


def loads_error(data: bytes) -> BaseException:
    """Unpickle an error payload into the exception ``get`` should raise."""
    try:
        err = pickle.loads(data)
    except Exception as exc:
        from ..exceptions import UnserializableException

        return UnserializableException(f"{type(exc).__name__}: {exc}")
    if isinstance(err, RayTaskError):
        return err.as_instanceof_cause()
    return err


class _DependencyFailure:
    """Pickled by the runtime (which never unpickles user payloads) for a task whose
    argument failed; becomes the dependent task's error when the caller unpickles it."""

    def __init__(self, task_name: str, upstream: bytes) -> None:
        self.task_name = task_name
        self.upstream = upstream

    def __reduce__(self) -> Any:
        return (_rebuild_dependency_error, (self.task_name, self.upstream))


def _rebuild_dependency_error(task_name: str, upstream: bytes) -> BaseException:
    try:
        err = pickle.loads(upstream)
    except Exception as exc:
        from ..exceptions import UnserializableException

        return UnserializableException(f"{type(exc).__name__}: {exc}")
    if not isinstance(err, RayTaskError):
        return err  # a system error (crash, lost object, ...) passes through unchanged
    text = (
        "  At least one of the input arguments for this task could not be computed:\n"
        f"{type(err.as_instanceof_cause()).__module__}.RayTaskError: {err}\n"
    )
    return RayTaskError(task_name, text, err.cause)


def dependency_failure(task_name: str, upstream: bytes) -> bytes:
    """The error payload of a task that never ran because ``upstream`` (an error payload) failed."""
    return pickle.dumps(_DependencyFailure(task_name, upstream), PROTOCOL)
