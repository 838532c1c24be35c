"""The driver's session: ``init`` and ``shutdown``, the zygote, the runtime thread.

``init`` forks the zygote first (while this process has no thread of ours),
then starts the runtime thread running a uvloop loop that owns the
``Runtime``, and makes a ``DriverClient`` the process's client. A child
forked from the zygote inherits the session and adopts it with a client of
its own (``attach_child``, the hook the child side is given at fork).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .. import _task_context
from .. import exceptions as exc
from .._clients import base, driving
from .._clients.driver import DriverClient
from .._version import __version__
from .._wire import runtime_env as runtime_env_of
from .._wire import shm
from . import head_files, init_options, platform_checks, progress
from . import resources as _resources

if TYPE_CHECKING:
    import asyncio

    from .._clients.worker import WorkerClient
    from .._dashboard.server import Dashboard
    from .._wire.channel import SocketChannel

logger = logging.getLogger("asyncray")

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
        self._namespace = namespace
        self._job_id = job_id
        self.node_id = node_id
        self.client: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.zygote_pid = 0
        self.shm_tag = ""
        self.store_capacity = 0
        # Where the session runs: "local" (embedded) or the head's socket path.
        self.address = "local"
        self.session_dir: str | None = None
        # A driver connected to a shared head (its kernel is in another process).
        self.connected = False
        # The one-time warnings already given in this session (``_api.warn_once``).
        self.warned: set[str] = set()
        # The dashboard this process serves (``init(include_dashboard=True)``), and the
        # URL of the one to look at, without a scheme as Ray gives it (for a driver
        # joined to a head: the head's).
        self.dashboard: Dashboard | None = None
        self.dashboard_url: str | None = None
        # Debug mode (``init(debug=True)``): no runtime thread, no processes; the
        # client runs every task in the calling thread (``_clients.debug``).
        self.debug = False

    @property
    def embedded(self) -> bool:
        """Whether the session is private to this driver and its children.

        True for ``init()`` without an address (and in its workers): no other
        driver can ever connect. False for a driver connected to a shared head
        and for the head's workers.
        """
        return not self.connected and self.address == "local"

    @property
    def namespace(self) -> str:
        """The job's namespace; in a shared head's worker, that of the job it now serves."""
        job = _task_context.current_job
        return self._namespace if job is None else job[1]

    @property
    def job_id(self) -> str:
        job = _task_context.current_job
        return self._job_id if job is None else job[0]


_session: Session | None = None
_lock = threading.RLock()
_atexit_registered = False


class RayContext(Mapping[str, Any]):
    """What ``init`` returns, as Ray's: ``address_info``, ``dashboard_url``, versions.

    A context manager (``with asyncray.init(): ...`` shuts down on exit).
    Reading it as a mapping (``ctx["address"]``) works with Ray's
    ``DeprecationWarning``: use ``ctx.address_info["address"]``.
    """

    def __init__(self, address_info: dict[str, Any], dashboard_url: str | None = None) -> None:
        self.address_info = address_info
        # "127.0.0.1:PORT" without a scheme, as Ray's; None when no dashboard is served.
        self.dashboard_url = dashboard_url
        self.python_version = "{}.{}.{}".format(*sys.version_info[:3])
        # The versions of the library that answers for Ray here.
        self.ray_version = __version__
        self.ray_commit = ""

    def __getitem__(self, key: str) -> Any:
        _warn_once(
            "ray_context_getitem",
            f'Accessing values through ctx["{key}"] is deprecated. '
            f'Use ctx.address_info["{key}"] instead.',
        )
        return self.address_info[key]

    def __len__(self) -> int:
        _warn_once("ray_context_len", "len(ctx) is deprecated. Use len(ctx.address_info) instead.")
        return len(self.address_info)

    def __iter__(self) -> Iterator[str]:
        _warn_once(
            "ray_context_iter", "iter(ctx) is deprecated. Use iter(ctx.address_info) instead."
        )
        return iter(self.address_info)

    def __repr__(self) -> str:
        return (
            f"RayContext(address_info={self.address_info!r}, dashboard_url={self.dashboard_url!r})"
        )

    def __enter__(self) -> RayContext:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        shutdown()

    def disconnect(self) -> None:
        shutdown()


_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, DeprecationWarning, stacklevel=3)


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
    debug: bool | None = None,
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
        local_mode: removed in Ray 2.60; raises as Ray does. See ``debug``.
        debug: debug mode (default: the ``ASYNCRAY_DEBUG`` variable, ``1`` or ``true``):
            no runtime thread, zygote or worker is started; every task and actor call
            runs in this process, in the thread that submits it, in submission order,
            so ``breakpoint()``, pdb and coverage work in remote code (README,
            "Debugging"). ``debug=True`` with an ``address`` raises ``ValueError``; the
            variable makes ``init`` ignore the address instead, with a ``RuntimeWarning``.
        log_to_driver: forward workers' output to this process's stdout/stderr.
        object_store_memory: bytes of shared memory for large objects (default: 30% of
            RAM, at most what the shared-memory directory can hold). Beyond it, objects
            are spilled to disk; ``ObjectStoreFullError`` if nothing can be spilled.
        object_spilling_directory: where spilled objects go (default: the temp directory).
        _system_config: Ray's tuning dict; ``max_direct_call_object_size`` (bytes) sets
            the size from which buffers go to shared memory (default 100 KiB),
            ``object_spilling_config`` (Ray's JSON) may name the spill directory, and
            ``maximum_gcs_destroyed_actor_cached_count`` bounds the dead actors kept.
            Other keys warn once that they have no effect.
        **kwargs: Ray's other keywords. ``configure_logging``, ``logging_level`` and
            ``logging_format`` configure the "asyncray" logger as Ray's configure its
            "ray" logger; ``_temp_dir`` is where spilled objects go by default.
            ``include_dashboard=True`` (or a ``dashboard_port``) serves the live dashboard
            on 127.0.0.1 (port 8265 by default, another free one if it is taken;
            ``dashboard_port=0``: any free port); its URL is the context's
            ``dashboard_url``. It needs ``pip install 'asyncray[dashboard]'``. A driver
            joining a head serves none: its ``dashboard_url`` is the head's. The rest
            (cgroup, Redis, ... options) warn once per process that they have no effect
            here. A keyword Ray does not accept raises ``RuntimeError``.

    Returns:
        A ``RayContext`` mapping (usable as ``with asyncray.init(): ...``).

    Raises:
        RuntimeError: a second call without ``ignore_reinit_error``, an unknown keyword,
            a platform that lacks what asyncray needs (it supports Linux).
        ValueError, TypeError: a bad resource or namespace; a ``dashboard_host`` other
            than 127.0.0.1/localhost (the dashboard binds loopback only).
        ImportError: the dashboard is asked for and its extra is not installed.
    """
    options = init_options.check_kwargs(kwargs)
    if local_mode:
        raise RuntimeError(
            "`local_mode` is no longer supported. For interactive debugging consider using "
            "the Ray distributed debugger. (asyncray: init(debug=True), or ASYNCRAY_DEBUG=1, "
            "runs tasks and actor calls in this process, where breakpoint() works.)"
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
        if address is None or address == head_files.AUTO:
            # As Ray: the variable names the head when no address, or "auto", is given.
            address = os.environ.get("ASYNCRAY_ADDRESS") or os.environ.get("RAY_ADDRESS") or address
        connected = address not in (None, "local")
        platform_checks.check(embedded=not connected)
        init_options.apply(
            {**options, "object_spilling_directory": object_spilling_directory},
            _system_config,
            connected=connected,
        )
        from_env = debug is None
        if from_env:
            debug = os.environ.get("ASYNCRAY_DEBUG", "").strip().lower() in ("1", "true", "yes")
        if debug:
            if connected and not from_env:
                raise ValueError(
                    "Debug mode (init(debug=True)) runs every task in this process; it cannot "
                    f"join a head (address={address!r}). Drop the address, or drop debug=True."
                )
            if connected:
                # The variable is for running a program unchanged in debug mode: its
                # own address (or ASYNCRAY_ADDRESS) gives way, loudly.
                warnings.warn(
                    f"ASYNCRAY_DEBUG is set: debug mode runs every task in this process, so "
                    f"init() does not join the head at {address!r}.",
                    RuntimeWarning,
                    stacklevel=2,
                )
            session = _debug_session(num_cpus, num_gpus, resources, namespace, options)
            return _begin(session, None)
        # Checked before anything starts or connects (loopback only, a port number).
        dashboard = init_options.dashboard_request(options)
        if connected:
            assert address is not None
            session = _connect(
                address,
                namespace,
                log_to_driver,
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                resources=resources,
                object_store_memory=object_store_memory,
            )
            context = _begin(session, options["runtime_env"])
            try:
                _heads_dashboard(session, options)
            except BaseException:  # a warning turned into an error: leave the head again
                shutdown()
                raise
            return context
        if dashboard.start:
            from .. import _dashboard

            _dashboard.require()  # before anything starts: nothing to undo
        totals = _resources.resource_totals(num_cpus, num_gpus, resources)
        namespace = _resources.check_namespace(namespace)
        store = _resources.store_config(
            object_store_memory, object_spilling_directory, _system_config
        )
        if store.spill_root is None:
            store = store._replace(spill_root=init_options.spill_root(options["_temp_dir"]))
        from .._core import retention

        retention.configure(_system_config)  # records of dead actors kept
        session = Session(totals, namespace, "01000000", uuid.uuid4().hex + os.urandom(12).hex())
        _start(session, log_to_driver, store)
        context = _begin(session, options["runtime_env"])
        if dashboard.start:
            try:
                _serve_dashboard(session, options["dashboard_host"], dashboard.port)
            except BaseException:
                shutdown()
                raise
            context.dashboard_url = session.dashboard_url
            context.address_info["webui_url"] = session.dashboard_url
        return context


def _debug_session(
    num_cpus: int | None,
    num_gpus: int | None,
    resources: dict[str, float] | None,
    namespace: str | None,
    options: dict[str, Any],
) -> Session:
    """A debug-mode session: a ``DebugClient``, no thread, no process, no shared memory."""
    from .._clients.debug import DebugClient

    if options["include_dashboard"] or options["dashboard_port"] is not None:
        init_options.warn_no_effect(
            "include_dashboard" if options["include_dashboard"] else "dashboard_port",
            "debug mode runs no runtime, so it serves no dashboard",
            stacklevel=4,
        )
    totals = _resources.resource_totals(num_cpus, num_gpus, resources)
    session = Session(
        totals,
        _resources.check_namespace(namespace),
        "01000000",
        uuid.uuid4().hex + os.urandom(12).hex(),
    )
    session.debug = True
    shm.keep_in_band()  # values are pickled whole: no segment, nothing to clean up
    session.client = DebugClient(totals)
    return session


def _serve_dashboard(session: Session, host: str | None, port: int | None) -> None:
    """Serve the embedded session's dashboard (its own thread; see ``_dashboard``)."""
    from .. import _dashboard

    assert session.loop is not None
    served, note = _dashboard.start(
        session.loop, session.client.runtime, host=host, port=port, kind="driver"
    )
    session.dashboard = served
    session.dashboard_url = served.url
    if note:
        logger.warning("asyncray dashboard: %s", note)
    logger.info("Started a local asyncray instance. View the dashboard at http://%s", served.url)


def _heads_dashboard(session: Session, options: dict[str, Any]) -> None:
    """A joined driver serves no dashboard: the head's is the one (its URL, if it has one)."""
    asked = options["include_dashboard"] or options["dashboard_port"] is not None
    if not asked:
        return
    if session.dashboard_url is None:
        init_options.warn_no_effect(
            "include_dashboard" if options["include_dashboard"] else "dashboard_port",
            "a driver joining a head serves no dashboard, and this head serves none "
            "(it was started with --include-dashboard false, or without the dashboard "
            "extra)",
            stacklevel=4,
        )
    elif options["dashboard_port"] is not None:
        init_options.warn_no_effect(
            "dashboard_port",
            f"a driver joining a head serves no dashboard; the head's is at "
            f"http://{session.dashboard_url}",
            stacklevel=4,
        )


def _begin(session: Session, runtime_env: Any) -> RayContext:
    """Under ``_lock``: ``session`` (embedded or connected) becomes this process's.

    ``runtime_env`` (checked) is the job's: every task and actor inherits it.
    """
    global _session, _atexit_registered
    _session = session
    runtime_env_of.set_job_env(runtime_env)
    progress.install()  # workers' tqdm_ray bars are drawn here
    base.set_current(session.client)
    # As Ray's init: SIGTERM exits through atexit's shutdown, so the driver's
    # finally blocks and exit handlers run.
    _exit_on_sigterm.install()
    if not _atexit_registered:
        atexit.register(shutdown)
        _atexit_registered = True
    return _context(session)


def _context(session: Session) -> RayContext:
    return RayContext(
        {
            "node_ip_address": "127.0.0.1",
            "raylet_ip_address": "127.0.0.1",
            "address": session.address,
            "session_dir": session.session_dir,
            "webui_url": session.dashboard_url,
            "gcs_address": None,
            "node_id": session.node_id,
            "namespace": session.namespace,
        },
        session.dashboard_url,
    )


def _connect(
    address: str,
    namespace: str | None,
    log_to_driver: bool,
    *,
    num_cpus: Any,
    num_gpus: Any,
    resources: Any,
    object_store_memory: Any,
) -> Session:
    """Join the shared head at ``address`` (``init(address=...)``) as a new job."""
    from .._clients.connected import ConnectedClient, connect

    if not isinstance(address, str):
        raise TypeError(f"address must be a string, got {type(address).__name__}")
    if num_cpus is not None or num_gpus is not None:
        raise ValueError(
            "When connecting to an existing cluster, num_cpus and num_gpus must not be provided."
        )
    if resources is not None:
        raise ValueError("When connecting to an existing cluster, resources must not be provided.")
    if object_store_memory is not None:
        raise ValueError(
            "When connecting to an existing cluster, object_store_memory must not be provided."
        )
    if address.startswith("ray://") or (":" in address and not os.path.exists(address)):
        raise ConnectionError(
            f"asyncray cannot connect to {address!r}: an asyncray head listens on a unix socket "
            "on this machine, never on TCP. Use init(address='auto') for the head "
            "`asyncray start --head` started, init(address=<the socket path it printed>), or "
            "init() with no address to run embedded. (A Ray cluster's address needs Ray itself.)"
        )
    namespace = _resources.check_namespace(namespace)
    files = head_files.resolve(address)
    if not os.path.exists(files.socket):
        where = "for this user" if address == head_files.AUTO else f"at {files.socket}"
        raise ConnectionError(
            f"Could not find any running asyncray head {where}. Start one with "
            "`asyncray start --head`, or call asyncray.init() without an address to run "
            "embedded in this process."
        )
    head_files.check_private(files.directory, is_dir=True)  # never trust another user's head
    try:
        token = files.read_token()
    except FileNotFoundError:
        raise ConnectionError(
            f"the asyncray head at {files.socket} has no token file ({files.token}): it is "
            "starting or stopping, or was started by another user."
        ) from None
    try:
        sock, welcome = connect(files.socket, token, namespace, log_to_driver)
    except ConnectionRefusedError:
        raise ConnectionError(
            f"Could not find any running asyncray head at {files.socket} (a stale socket: "
            "the head is gone). Start one with `asyncray start --head`."
        ) from None
    shm.join_session(
        welcome.shm_tag, welcome.shm_directory, welcome.spill_directory, welcome.shm_threshold
    )
    client = ConnectedClient(sock, files.socket, welcome)
    client.start()
    session = Session(dict(welcome.totals), welcome.namespace, welcome.job_id, welcome.node_id)
    session.client = client
    session.address = files.socket
    session.session_dir = welcome.session_dir
    session.connected = True
    info = files.read_info() or {}
    url = info.get("dashboard_url")
    session.dashboard_url = url if isinstance(url, str) else None
    return session


def _start(session: Session, log_to_driver: bool, store: _resources.StoreConfig) -> None:
    # Segment names carry the tag; the driver's pid in it is for people
    # reading /dev/shm (a session's liveness is judged by its lock file).
    session.shm_tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        shm.configure(session.shm_tag, store.threshold, store.spill_root)
        _start_processes(session, log_to_driver, store)
    except BaseException:
        shm.remove_session(session.shm_tag)  # and the locks configure took
        raise


def fork_zygote(session: Session, store: _resources.StoreConfig) -> tuple[int, socket.socket]:
    """Size the store, then fork the session's zygote (before any thread of ours starts)."""
    # Loaded once here, before the zygote forks, not in every child (an
    # embedded driver or a head; a driver that only connects needs none).
    from .._clients import worker  # noqa: F401
    from .._core.zygote import start_zygote
    from .._worker import actor_host  # noqa: F401
    from .._worker.main import child_main

    capacity = store.capacity
    if capacity is None:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        capacity = int(
            min(
                ram * _resources.DEFAULT_STORE_RAM_FRACTION,
                shm.free_bytes() * _resources.DEFAULT_STORE_SHM_FRACTION,
            )
        )
    session.store_capacity = capacity
    session.totals["object_store_memory"] = float(capacity)
    _resources.raise_open_files_limit()  # before the zygote forks: children inherit it
    # Children read the session when they start: they are forked from the
    # zygote, which is forked from here, so they inherit it.
    global _boot
    _boot = session
    # The zygote removes the session's files once its children are gone,
    # also when the driver died without a shutdown (SIGKILL, os._exit).
    return start_zygote(
        functools.partial(child_main, attach=_attach_child),
        on_exit=functools.partial(shm.remove_session, session.shm_tag),
    )


def _start_processes(session: Session, log_to_driver: bool, store: _resources.StoreConfig) -> None:
    """The zygote and the runtime thread, for a session whose store is configured."""
    import uvloop

    zygote_pid, zygote_sock = fork_zygote(session, store)
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
    client = DriverClient(loop, thread)
    session.client = client
    session.loop = loop
    session.thread = thread
    session.zygote_pid = zygote_pid
    thread.start()
    ready.wait()
    if failure:
        with contextlib.suppress(OSError):
            zygote_sock.close()  # EOF: the zygote exits now instead of at the timeout
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
    import asyncio

    from .._core.runtime import Runtime

    asyncio.set_event_loop(loop)
    session.client.conn.job = session.job_id
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
        close_loop(loop)


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what still runs on the stopped runtime ``loop``, then close it."""
    import asyncio

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
        if session is None or (
            session.loop is None and not session.connected and not session.debug
        ):
            return  # not started, or inside a worker (the driver owns the session)
        _session = None
        base.set_current(None)
        _task_context.set_runtime_env(None)  # the job's env ends with its session
        progress.uninstall()
    client = session.client
    if session.debug:
        client.close()
        _exit_on_sigterm.uninstall()
        return
    if session.connected:
        client.close()  # the head releases this driver's job
        _exit_on_sigterm.uninstall()
        return
    loop = session.loop
    if loop is None or session.thread is None:
        return  # inside a worker: the session belongs to the driver
    if session.dashboard is not None:
        session.dashboard.stop()  # first: no page waits on a runtime that is stopping
        session.dashboard = None

    def stop() -> None:
        client.runtime.stop()
        loop.call_soon(loop.stop)

    client.baton.close()  # a parked runtime thread resumes; no driver thread drives
    driving.restore_sigint()
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(stop)
    session.thread.join(timeout=10)
    client.fail_all_waiters()
    if not session.thread.is_alive():
        client.baton.dispose()
    _reap_zygote(session.zygote_pid)
    shm.remove_session(session.shm_tag)
    _exit_on_sigterm.uninstall()
    global _saved_switch_interval
    if _saved_switch_interval is not None:
        sys.setswitchinterval(_saved_switch_interval)
        _saved_switch_interval = None


class _SigtermExit:
    """SIGTERM ends the driver through ``SystemExit``, as in Ray's ``init``.

    So ``docker stop``, systemd and Kubernetes get an orderly ``shutdown()``
    (atexit) and exit status 15. Without it the zygote still cleans up after
    the dead driver, except where SIGTERM's default does nothing at all: a
    driver that is PID 1 of a container ignores it, and is SIGKILLed with
    every process of its namespace seconds later. Installed only from the
    main thread and only over the default disposition: a handler the program
    set itself is left alone (Ray replaces it).
    """

    def __init__(self) -> None:
        self.installed = False

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, self._handle)
            self.installed = True

    def uninstall(self) -> None:
        if not self.installed or threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) == self._handle:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self.installed = False

    @staticmethod
    def _handle(signum: int, _frame: Any) -> None:
        sys.exit(signum)


_exit_on_sigterm = _SigtermExit()


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


def client() -> base.ClientBase:
    return _auto_init().client


def client_and_totals() -> tuple[base.ClientBase, dict[str, float]]:
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


def _attach_child(channel: SocketChannel) -> WorkerClient:
    """In a freshly forked child: adopt the session it inherited, with a client of its own.

    The child side (``_worker``) is handed this at fork rather than importing
    the session: it never touches the driver's session itself.
    """
    global _session, _lock
    # init() held this lock while the zygote was forked: this process's copy is held.
    _lock = threading.RLock()
    boot = _boot
    assert boot is not None, "child started without an inherited session"
    from .._clients.worker import WorkerClient  # loaded before the fork: free here

    client = WorkerClient(channel)
    session = Session(boot.totals, boot.namespace, boot.job_id, boot.node_id)
    session.client = client
    session.address = boot.address  # a shared head's workers are not embedded
    _session = session
    base.set_current(client)
    shm.become_child()
    return client


def namespace_of_session() -> str:
    return _auto_init().namespace
