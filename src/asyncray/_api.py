"""The public calls: thin sync and async wrappers over the current client.

``init`` forks the zygote first (while this process has no thread of ours),
then starts the runtime thread running a uvloop loop that owns the
``Runtime``. Every other call finds the current client — the driver's, or a
worker's inside a child — and sends it one message.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import numbers
import os
import signal
import socket
import sys
import threading
import time
import uuid
import warnings
from typing import Any, NamedTuple

from . import _client
from . import exceptions as exc
from ._wire import protocol as P
from ._wire import refs, shm
from ._wire import serialization as ser
from .object_ref import ObjectRef

logger = logging.getLogger("asyncray")

_DEFAULT_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")
# Keyword arguments Ray's init accepts that change nothing on one host.
_ACCEPTED_INIT_KWARGS = frozenset(
    {
        "labels",
        "include_dashboard",
        "dashboard_host",
        "dashboard_port",
        "job_config",
        "configure_logging",
        "logging_level",
        "logging_format",
        "logging_config",
        "runtime_env",
        "enable_resource_isolation",
        "cgroup_path",
        "system_reserved_cpu",
        "system_reserved_memory",
        "proxy_server_url",
    }
)
# How long shutdown waits for the zygote (which reaps every worker) to exit
# before it SIGKILLs it.
ZYGOTE_EXIT_TIMEOUT_S = 3.0
# Loop iterations given to closing handles before the runtime loop is closed.
LOOP_CLOSE_ATTEMPTS = 50
# The runtime thread shares the driver's GIL. With CPython's default 5 ms
# switch interval, a driver thread busy in pure Python makes every runtime
# wake-up wait up to 5 ms (bench: 20k tasks/s fell to ~900/s). Forced switches
# happen only while another thread waits for the GIL, so a shorter interval
# costs nothing uncontended and little otherwise. Applied only if the user
# left the default; restored by shutdown().
GIL_SWITCH_INTERVAL_S = 0.0005
_CPYTHON_DEFAULT_SWITCH_INTERVAL_S = 0.005
_saved_switch_interval: float | None = None


class Session:
    """One init()..shutdown() of this process; in children, what they inherited."""

    def __init__(self, totals: dict[str, float], namespace: str, job_id: str, node_id: str):
        self.totals = totals
        self.namespace = namespace
        self.job_id = job_id
        self.node_id = node_id
        self.client: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.zygote_pid = 0
        self.shm_tag = ""
        self.store_capacity = 0


_session: Session | None = None
_lock = threading.RLock()
_atexit_registered = False


class RayContext(dict):  # type: ignore[type-arg]
    """What ``init`` returns: a mapping of addresses that also works as a context manager."""

    @property
    def address_info(self) -> dict[str, Any]:
        return dict(self)

    def __enter__(self) -> RayContext:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        shutdown()

    def disconnect(self) -> None:
        shutdown()


# ==================================================================== init / shutdown


def init(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    resources: dict[str, float] | None = None,
    namespace: str | None = None,
    ignore_reinit_error: bool = False,
    local_mode: bool = False,
    log_to_driver: bool = True,
    object_store_memory: int | None = None,
    object_spilling_directory: str | None = None,
    _system_config: dict[str, Any] | None = None,
    **kwargs: Any,
) -> RayContext:
    """Start asyncray in this process: a runtime thread, a zygote and a worker pool.

    Args:
        address: ``None`` or ``"local"`` embeds the runtime in this process.
        num_cpus: CPU slots (default: the CPUs this process may run on).
        num_gpus: GPU slots (default: the GPUs the NVIDIA driver lists, or 0).
        resources: custom resources, ``{"name": whole quantity}``.
        namespace: the namespace for named actors (default: a fresh anonymous one).
        ignore_reinit_error: return the running session instead of raising on a second call.
        local_mode: removed in Ray 2.60; raises as Ray does.
        log_to_driver: forward workers' output to this process's stdout/stderr.
        object_store_memory: bytes of shared memory for large objects (default: 30% of
            RAM, at most what the shared-memory directory can hold). Beyond it, objects
            are spilled to disk; ``ObjectStoreFullError`` if nothing can be spilled.
        object_spilling_directory: where spilled objects go (default: the temp directory).
        _system_config: Ray's tuning dict; ``max_direct_call_object_size`` (bytes) sets
            the size from which buffers go to shared memory (default 100 KiB), and
            ``object_spilling_config`` (Ray's JSON) may name the spill directory.

    Returns:
        A ``RayContext`` mapping (usable as ``with asyncray.init(): ...``).

    Raises:
        RuntimeError: a second call without ``ignore_reinit_error``, an unknown keyword.
        ValueError, TypeError: a bad resource or namespace.
    """
    global _session, _atexit_registered
    unknown = [k for k in kwargs if k not in _ACCEPTED_INIT_KWARGS and not k.startswith("_")]
    if unknown:
        raise RuntimeError(f"Unknown keyword argument(s): {', '.join(unknown)}")
    if local_mode:
        raise RuntimeError(
            "`local_mode` is no longer supported. For interactive debugging consider using "
            "the Ray distributed debugger."
        )
    with _lock:
        if _session is not None:
            if ignore_reinit_error:
                logger.info("Calling asyncray.init() again after it has already been called.")
                return _context(_session)
            raise RuntimeError(
                "Maybe you called ray.init twice by accident? This error can be suppressed by "
                "passing in 'ignore_reinit_error=True' or by calling 'ray.shutdown()' prior to "
                "'ray.init()'."
            )
        if address not in (None, "local"):
            raise ConnectionError(
                "Could not find any running Ray instance. Please specify the one to connect to "
                "by setting `--address` flag or `RAY_ADDRESS` environment variable."
            )
        totals = _resource_totals(num_cpus, num_gpus, resources)
        namespace = _check_namespace(namespace)
        store = _store_config(object_store_memory, object_spilling_directory, _system_config)
        session = Session(totals, namespace, "01000000", uuid.uuid4().hex + os.urandom(12).hex())
        _start(session, log_to_driver, store)
        _session = session
        _client.set_current(session.client)
        if not _atexit_registered:
            atexit.register(shutdown)
            _atexit_registered = True
        return _context(session)


class _StoreConfig(NamedTuple):
    """The object-store arguments of ``init``, checked."""

    capacity: int | None
    spill_root: str | None
    threshold: int | None


def _store_config(
    object_store_memory: Any, spill_directory: Any, system_config: Any
) -> _StoreConfig:
    """Validate the object-store arguments of ``init`` (Ray's names)."""
    if object_store_memory is not None and (
        isinstance(object_store_memory, bool)
        or not isinstance(object_store_memory, numbers.Integral)
        or object_store_memory <= 0
    ):
        raise ValueError(
            f"object_store_memory must be a positive number of bytes, got {object_store_memory!r}"
        )
    if system_config is not None and not isinstance(system_config, dict):
        raise TypeError(f"_system_config must be a dict, got {type(system_config).__name__}")
    config = system_config or {}
    threshold = config.get("max_direct_call_object_size")
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, numbers.Integral) or threshold < 0
    ):
        raise ValueError(
            f"_system_config['max_direct_call_object_size'] must be a non-negative number of "
            f"bytes, got {threshold!r}"
        )
    spilling = config.get("object_spilling_config")
    if spill_directory is None and spilling:
        import json

        params = (json.loads(spilling) if isinstance(spilling, str) else spilling).get("params", {})
        spill_directory = params.get("directory_path")
        if isinstance(spill_directory, list):
            spill_directory = spill_directory[0] if spill_directory else None
    if spill_directory is not None and not isinstance(spill_directory, (str, os.PathLike)):
        raise TypeError(
            f"object_spilling_directory must be a path, got {type(spill_directory).__name__}"
        )
    return _StoreConfig(
        None if object_store_memory is None else int(object_store_memory),
        None if spill_directory is None else os.fspath(spill_directory),
        None if threshold is None else int(threshold),
    )


# The default store: this share of RAM (as Ray), and at most this share of
# what the shared-memory directory can hold.
DEFAULT_STORE_RAM_FRACTION = 0.3
DEFAULT_STORE_SHM_FRACTION = 0.8


def _context(session: Session) -> RayContext:
    return RayContext(
        address="local",
        node_id=session.node_id,
        node_ip_address="127.0.0.1",
        session_dir=None,
        webui_url=None,
        gcs_address=None,
        namespace=session.namespace,
    )


def _detect_gpus() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    try:
        return len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0


def _resource_totals(
    num_cpus: Any, num_gpus: Any, resources: dict[str, float] | None
) -> dict[str, float]:
    for key, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0
        ):
            raise ValueError(f"{key} must be a non-negative number, got {value!r}")
    if num_cpus is None:
        try:
            num_cpus = len(os.sched_getaffinity(0))
        except AttributeError:
            num_cpus = os.cpu_count() or 1
    if num_gpus is None:
        num_gpus = _detect_gpus()
    totals: dict[str, float] = {"CPU": float(num_cpus)}
    if num_gpus:
        totals["GPU"] = float(num_gpus)
    page = os.sysconf("SC_PAGE_SIZE")
    totals["memory"] = float(int(os.sysconf("SC_PHYS_PAGES") * page * 0.7))
    totals["object_store_memory"] = float(int(totals["memory"] * 0.3 / 0.7))
    for name, qty in (resources or {}).items():
        if name in _DEFAULT_RESOURCES:
            raise AssertionError(
                f"{resources} -> `{name}` cannot be a custom resource because it is one of the "
                f"default resources ({set(_DEFAULT_RESOURCES)}). Use `num_cpus` instead. "
                "For example, use `ray start --num-cpus=10` instead of "
                "`ray start --resources={'CPU': 10}`."
            )
        if not isinstance(qty, numbers.Real) or isinstance(qty, bool) or qty < 0:
            raise ValueError(f"Resource quantities must be non-negative numbers: {name!r}={qty!r}")
        if qty != int(qty):
            raise ValueError(
                f"Resource quantities must all be whole numbers. Violated by resource '{name}' "
                f"in {resources}."
            )
        totals[name] = float(qty)
    totals["node:127.0.0.1"] = 1.0
    totals["node:__internal_head__"] = 1.0
    return totals


def _check_namespace(namespace: Any) -> str:
    if namespace is None:
        return str(uuid.uuid4())
    if not isinstance(namespace, str):
        raise TypeError("namespace must be None or a string.")
    if namespace == "":
        raise ValueError('"" is not a valid namespace. Pass None to not specify a namespace.')
    return namespace


def _start(session: Session, log_to_driver: bool, store: _StoreConfig) -> None:
    import uvloop

    from ._core.zygote import start_zygote
    from ._worker import actor_host  # noqa: F401 - loaded once here, not in every actor
    from ._worker.main import child_main

    # Children read this when they start: they are forked from the zygote,
    # which is forked from here, so they inherit it.
    global _boot
    _boot = session
    # Segment names carry the driver's pid, so a later session can sweep them.
    session.shm_tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    shm.configure(session.shm_tag, store.threshold, store.spill_root)
    capacity = store.capacity
    if capacity is None:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        capacity = int(
            min(ram * DEFAULT_STORE_RAM_FRACTION, shm.free_bytes() * DEFAULT_STORE_SHM_FRACTION)
        )
    session.store_capacity = capacity
    session.totals["object_store_memory"] = float(capacity)
    zygote_pid, zygote_sock = start_zygote(child_main)
    loop = uvloop.new_event_loop()
    ready = threading.Event()
    failure: list[BaseException] = []
    thread = threading.Thread(
        target=_runtime_thread,
        args=(loop, session, zygote_pid, zygote_sock, log_to_driver, ready, failure),
        name="asyncray-runtime",
        daemon=True,
    )
    global _saved_switch_interval
    if abs(sys.getswitchinterval() - _CPYTHON_DEFAULT_SWITCH_INTERVAL_S) < 1e-9:
        _saved_switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    client = _client.DriverClient(loop, thread)
    session.client = client
    session.loop = loop
    session.thread = thread
    session.zygote_pid = zygote_pid
    thread.start()
    ready.wait()
    if failure:
        _reap_zygote(zygote_pid)
        raise exc.RaySystemError(f"asyncray failed to start: {failure[0]!r}")


_boot: Session | None = None


def _runtime_thread(loop: asyncio.AbstractEventLoop, session: Session, *rest: Any) -> None:
    """The runtime thread's body: ``_run_loop`` under the thread's scheduling policy."""
    wakeups = session.client.wakeups
    wakeups.adopt_current_thread()
    try:
        _run_loop(loop, session, *rest)
    finally:
        wakeups.forget_thread()


def _run_loop(
    loop: asyncio.AbstractEventLoop,
    session: Session,
    zygote_pid: int,
    zygote_sock: socket.socket,
    log_to_driver: bool,
    ready: threading.Event,
    failure: list[BaseException],
) -> None:
    """On the runtime thread: build the Runtime, run its loop until shutdown, close it."""
    from ._core.runtime import Runtime

    asyncio.set_event_loop(loop)
    try:
        runtime = Runtime(
            loop,
            session.totals,
            zygote_pid,
            zygote_sock,
            namespace=session.namespace,
            job_id=session.job_id,
            log_to_driver=log_to_driver,
            store_capacity=session.store_capacity,
        )
        session.client.runtime = runtime
        runtime.start()
    except BaseException as e:
        failure.append(e)
        ready.set()
        loop.close()
        return
    ready.set()
    try:
        loop.run_forever()
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        # Let closing transports and cancelled tasks finish: uvloop refuses to
        # close (EBUSY) while handles are still active.
        for _ in range(LOOP_CLOSE_ATTEMPTS):
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.sleep(0.001))
            try:
                loop.close()
                break
            except OSError:
                continue


def shutdown(*, wait_for_processes: bool = False, _exiting_interpreter: bool = False) -> None:
    """Stop asyncray: every worker and the zygote exit and are reaped. Idempotent."""
    global _session
    with _lock:
        session = _session
        if session is None or session.loop is None:
            return  # not started, or inside a worker (the driver owns the session)
        _session = None
        _client.set_current(None)
    client = session.client
    loop = session.loop
    if loop is None or session.thread is None:
        return  # inside a worker: the session belongs to the driver

    def stop() -> None:
        client.runtime.stop()
        loop.call_soon(loop.stop)

    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(stop)
    session.thread.join(timeout=10)
    client.fail_all_waiters()
    _reap_zygote(session.zygote_pid)
    shm.remove_session(session.shm_tag)
    global _saved_switch_interval
    if _saved_switch_interval is not None:
        sys.setswitchinterval(_saved_switch_interval)
        _saved_switch_interval = None


def _reap_zygote(pid: int) -> None:
    deadline = time.monotonic() + ZYGOTE_EXIT_TIMEOUT_S
    delay = 0.0005
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        if time.monotonic() > deadline:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def is_initialized() -> bool:
    """Whether ``init`` has run in this process (always true inside a worker)."""
    return _session is not None


# ==================================================================== finding the client


def _auto_init() -> Session:
    """The current session, starting one as Ray's auto-init does."""
    session = _session
    if session is not None:
        return session
    if os.environ.get("RAY_ENABLE_AUTO_CONNECT", "1") == "0":
        raise exc.RaySystemError(
            "Ray has not been started yet. You can start Ray with 'ray.init()'."
        )
    with _lock:
        if _session is None:
            init()
        assert _session is not None
        return _session


def client() -> _client.ClientBase:
    return _auto_init().client  # type: ignore[no-any-return]


def client_and_totals() -> tuple[_client.ClientBase, dict[str, float]]:
    session = _auto_init()
    return session.client, session.totals


def _require_session() -> Session:
    session = _session
    if session is None:
        raise exc.RaySystemError(
            "Ray has not been started yet. Trying to use state API before ray.init() has been "
            "called"
        )
    return session


def job_id() -> str:
    return _auto_init().job_id


def attach_worker(worker_client: _client.ClientBase) -> Session:
    """In a freshly forked child: adopt the session it inherited, with its own client."""
    global _session
    boot = _boot
    assert boot is not None, "child started without an inherited session"
    session = Session(boot.totals, boot.namespace, boot.job_id, boot.node_id)
    session.client = worker_client
    _session = session
    _client.set_current(worker_client)
    shm.become_child()
    return session


# ==================================================================== put / get / wait


def put(value: Any, *, _owner: Any = None) -> ObjectRef[Any]:
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
        # A child reads its shared-memory objects through the runtime, which then
        # knows the child may hold views of the segment (it must not recycle it).
        and (c.is_driver or not shm.is_shm(data))
    ):
        c.local_values[oid] = data
    return ObjectRef(oid, True)


async def put_async(value: Any) -> ObjectRef[Any]:
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
    for ref in object_refs:
        if not isinstance(ref, ObjectRef):
            raise TypeError(
                f"Attempting to call `get` on the value {ref!r}, which is not an ray.ObjectRef."
            )
    return object_refs, False


def _timeout_value(timeout: Any) -> float:
    if timeout is None:
        return P.NO_TIMEOUT
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"timeout must be a number of seconds or None, got {timeout!r}")
    if timeout < 0:
        raise ValueError(f"The 'timeout' argument must be nonnegative. Received {timeout}")
    return float(timeout)


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
    if asyncio.events._get_running_loop() is not None:
        warnings.warn(
            "Blocking asyncray.get() called on a thread that runs an asyncio event loop: the "
            "loop is stalled until it returns. Use `await ref` or "
            "`await asyncray.get_async(refs)` instead.",
            RuntimeWarning,
            stacklevel=2,
        )
    t = _timeout_value(timeout)
    value = _get_locally(c, refs, single)
    if value is not _MISS:
        return value
    ids = [r._id for r in refs]
    reply = c.request(P.GetObjects(c.next_req_id(), ids, t))
    return _values_of(c, ids, reply, single)


_MISS: Any = object()


def _get_locally(c: _client.ClientBase, refs: list[ObjectRef[Any]], single: bool) -> Any:
    """A single ref's value from the owner's in-process store, or ``_MISS``."""
    if single:
        data = c.local_values.get(refs[0]._id)  # one lookup: another thread may release it
        if data is not None:
            return ser.loads(data)
    return _MISS


def _values_of(c: _client.ClientBase, ids: list[bytes], reply: P.ObjectsReply, single: bool) -> Any:
    """The values a get reply carries (raising the first error); small ones are kept locally."""
    values = _client.decode_objects(reply)
    _remember(c.local_values, ids, reply)
    return values[0] if single else values


def _remember(local: dict[bytes, bytes], ids: list[bytes], reply: P.ObjectsReply) -> None:
    """Keep small fetched values in the local store for the next get."""
    for oid, data, is_error in zip(ids, reply.values, reply.errors):
        if (
            data is not None
            and not is_error
            and len(data) <= _client.LOCAL_VALUE_LIMIT
            and not refs.has_refs(data)
        ):
            local[oid] = data


async def get_async(object_refs: Any, *, timeout: float | None = None) -> Any:
    """Await the object(s) on the running event loop; the awaitable twin of ``get``."""
    if _is_generator(object_refs):
        return object_refs
    refs, single = _check_get_input(object_refs)
    c = client()
    if not refs:
        return []
    t = _timeout_value(timeout)
    value = _get_locally(c, refs, single)
    if value is not _MISS:
        return value
    ids = [r._id for r in refs]
    reply = await c.request_async(P.GetObjects(c.next_req_id(), ids, t))
    return _values_of(c, ids, reply, single)


def future_of(ref: ObjectRef[Any]) -> concurrent.futures.Future[Any]:
    """A ``concurrent.futures.Future`` for ``ref``."""
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
    if type(refs) is list and refs and set(map(type, refs)) == {ObjectRef}:
        # Fast path (the common case): C-speed checks, no per-item Python calls.
        ids = [r._id for r in refs]
        t = _timeout_value(timeout)
        if len(set(ids)) != len(ids):
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


def _check_num_returns(num_returns: Any, n: int) -> None:
    if isinstance(num_returns, bool) or not isinstance(num_returns, int) or num_returns <= 0:
        raise ValueError(f"Invalid number of objects to return {num_returns}.")
    if num_returns > n:
        raise ValueError(
            "num_returns cannot be greater than the number of ray_waitables provided to ray.wait."
        )


def _split(refs: list[Any], ready_idx: list[int], plain: bool) -> tuple[list[Any], list[Any]]:
    """``(ready, not_ready)``; remembers ``not_ready`` for the next wait if ``plain``."""
    global _last_wait
    if len(ready_idx) == 1:
        i = ready_idx[0]
        ready, not_ready = [refs[i]], refs[:i] + refs[i + 1 :]
    else:
        chosen = set(ready_idx)
        ready = [refs[i] for i in ready_idx]
        not_ready = [r for i, r in enumerate(refs) if i not in chosen]
    if plain:
        _last_wait = (not_ready, not_ready[:])
    return ready, not_ready


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
        ready = c.request(P.WaitObjects(c.next_req_id(), ids, num_returns, t)).ready
    return _split(refs, ready, plain)


def _locally_ready(
    local: dict[bytes, bytes], refs: list[Any], ids: list[bytes] | None, num_returns: int
) -> list[int] | None:
    """The first ``num_returns`` indices whose values are in the local store, if that many are.

    ``ids`` None: ``refs`` are plain refs (their ids are read as the scan goes).
    """
    found: list[int] = []
    keys = ids if ids is not None else (r._id for r in refs)
    for i, oid in enumerate(keys):
        if oid in local:
            found.append(i)
            if len(found) == num_returns:
                return found
        elif i >= 64 and not found:
            return None  # a cold list: let the runtime scan it
    return None


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
        ready = (await c.request_async(P.WaitObjects(c.next_req_id(), ids, num_returns, t))).ready
    return _split(refs, ready, plain)


# ==================================================================== resources and nodes


def available_resources() -> dict[str, float]:
    """Resources free right now; keys whose amount is zero are left out (as in Ray)."""
    session = _require_session()
    return session.client.query("available")  # type: ignore[no-any-return]


def cluster_resources() -> dict[str, float]:
    """The host's total resources."""
    session = _require_session()
    return session.client.query("cluster")  # type: ignore[no-any-return]


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


def get_gpu_ids() -> list[int]:
    """GPU ids assigned to the current task or actor; ``[]`` in the driver."""
    _auto_init()
    from . import runtime_context

    return list(runtime_context.current_task().gpu_ids)


def namespace_of_session() -> str:
    return _auto_init().namespace
