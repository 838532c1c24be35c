"""The shared head: the kernel in a process of its own (``asyncray start --head``).

The head is an embedded session without a driver in it: the same store,
zygote and ``Runtime``, run on the head's main thread, with a unix socket
(``head_files``) where drivers connect as ``ClientConn`` s. Drivers share
its resources, workers and actors; each is a job of its own, released when
it disconnects. ``run_head`` returns when the head is told to stop
(SIGTERM or SIGINT: ``asyncray stop``); it then stops every worker, removes
every segment and its files, and a later head starts clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from .._core import retention
from .._core.client_conn import ClientConn, HeadIdentity
from .._wire import shm
from . import bootstrap, platform_checks
from . import resources as _resources
from .head_files import HeadFiles, private_directory

if TYPE_CHECKING:
    from .._core.runtime import Runtime
    from .._dashboard.server import Dashboard

logger = logging.getLogger("asyncray")

# How long a stopping head waits for its zygote (which reaps every worker).
STOP_TIMEOUT_S = 3.0
# How often a head checks that its socket is still there. A head whose
# directory was removed (a temporary directory cleaned up, `rm -rf`) can be
# reached by nobody: it stops instead of running on unseen.
SOCKET_CHECK_S = 2.0


class HeadRunning(RuntimeError):
    """A head already serves at this address."""


class DashboardOptions(NamedTuple):
    """``--include-dashboard`` (None: if its extra is installed) and ``--dashboard-port``."""

    include: bool | None
    port: int | None


def _serve_dashboard(
    loop: asyncio.AbstractEventLoop,
    runtime: Runtime,
    options: DashboardOptions,
    info: dict[str, Any],
) -> Dashboard | None:
    """Start the head's dashboard as asked; its URL (or why there is none) goes into ``info``.

    Asked for explicitly, a failure stops the head from starting; by default
    the head starts without it and says why.
    """
    from .. import _dashboard

    if options.include is False:
        return None
    if options.include is None and _dashboard.missing():
        info["dashboard_note"] = (
            f"not started: its packages are missing ({_dashboard.INSTALL_HINT})"
        )
        logger.warning("asyncray head: dashboard %s", info["dashboard_note"])
        return None
    try:
        served, note = _dashboard.start(loop, runtime, port=options.port, kind="head")
    except Exception as e:
        if options.include:
            raise
        info["dashboard_note"] = f"not started: {e}"
        logger.warning("asyncray head: dashboard %s", info["dashboard_note"])
        return None
    info["dashboard_url"] = served.url
    if note:
        info["dashboard_note"] = note
        logger.warning("asyncray head: dashboard: %s", note)
    logger.info("asyncray head: dashboard at http://%s", served.url)
    return served


def head_alive(files: HeadFiles) -> bool:
    """Whether something accepts connections on the head's socket."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2.0)
        probe.connect(files.socket)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def run_head(
    files: HeadFiles,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    resources: dict[str, float] | None = None,
    object_store_memory: int | None = None,
    include_dashboard: bool | None = None,
    dashboard_port: int | None = None,
    on_ready: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Run a head serving at ``files`` until SIGTERM or SIGINT.

    ``on_ready`` is called with the head's info once drivers can connect.
    The dashboard is served unless ``include_dashboard`` is False (with None,
    only if its extra is installed; the info's ``dashboard_note`` says why not).

    Raises:
        HeadRunning: another head already serves there.
        PermissionError: the head's directory is not private to this user.
    """
    private_directory(files.directory)
    # The lock, not just a probe of the socket, decides: two heads started at
    # once would both find nobody listening, and the second would unlink the
    # first's socket and serve in its place, the first left running unseen.
    lock = files.take_lock()
    if lock is None or head_alive(files):
        if lock is not None:
            os.close(lock)
        raise HeadRunning(
            f"an asyncray head is already running at {files.socket}. Stop it with "
            "`asyncray stop`, or start another with `asyncray start --head --address <dir>`."
        )
    try:
        _run_locked(
            files,
            num_cpus,
            num_gpus,
            resources,
            object_store_memory,
            DashboardOptions(include_dashboard, dashboard_port),
            on_ready,
        )
    finally:
        os.close(lock)  # after its files are removed: a new head may start now


def _run_locked(
    files: HeadFiles,
    num_cpus: int | None,
    num_gpus: int | None,
    resources: dict[str, float] | None,
    object_store_memory: int | None,
    dashboard: DashboardOptions,
    on_ready: Callable[[dict[str, Any]], None] | None,
) -> None:
    import uvloop

    platform_checks.check(embedded=True)  # as init(): what is missing, named at once
    totals = _resources.resource_totals(num_cpus, num_gpus, resources)
    store = _resources.store_config(object_store_memory, None, None)
    retention.configure(None)
    node_id = uuid.uuid4().hex + os.urandom(12).hex()
    session = bootstrap.Session(totals, "", "", node_id)
    session.shm_tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    session.address = files.socket
    session.session_dir = files.directory
    shm.configure(session.shm_tag, store.threshold, store.spill_root)
    files_ours = True
    try:
        zygote_pid, zygote_sock = bootstrap.fork_zygote(session, store)
        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            files_ours = _serve(loop, session, files, zygote_pid, zygote_sock, dashboard, on_ready)
        finally:
            bootstrap._reap_zygote(zygote_pid)
    finally:
        if files_ours:  # not a later head's, made where ours were removed
            files.remove()
        shm.remove_session(session.shm_tag)


def _serve(
    loop: asyncio.AbstractEventLoop,
    session: bootstrap.Session,
    files: HeadFiles,
    zygote_pid: int,
    zygote_sock: socket.socket,
    dashboard: DashboardOptions,
    on_ready: Callable[[dict[str, Any]], None] | None,
) -> bool:
    """Serve until told to stop; returns whether the files at ``files`` are still this head's."""
    from .._core.runtime import Runtime

    runtime = Runtime(
        loop,
        session.totals,
        zygote_pid,
        zygote_sock,
        namespace="",
        job_id="",  # no driver in this process: every job connects
        store_capacity=session.store_capacity,
    )
    runtime.start()
    token = secrets.token_hex(32)
    files.write_token(token)
    identity = HeadIdentity(
        token=token, uid=os.getuid(), node_id=session.node_id, session_dir=files.directory
    )
    with contextlib.suppress(FileNotFoundError):
        os.unlink(files.socket)  # a dead head's (head_alive said nobody listens)
    old_umask = os.umask(0o177)  # the socket is created 0600, never briefly wider
    try:
        server = loop.run_until_complete(
            loop.create_unix_server(lambda: ClientConn(runtime, identity), path=files.socket)
        )
    finally:
        os.umask(old_umask)
    os.chmod(files.socket, 0o600)
    mine = os.stat(files.socket)
    info = {
        "pid": os.getpid(),
        "address": files.socket,
        "started": time.time(),
        "resources": session.totals,
        "node_id": session.node_id,
        "shm_tag": session.shm_tag,
    }
    served = _serve_dashboard(loop, runtime, dashboard, info)
    files.write_info(info)
    stopping: asyncio.Future[str] = loop.create_future()

    def stop(why: str) -> None:
        if not stopping.done():
            stopping.set_result(why)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop, signal.Signals(sig).name)

    def check_socket() -> None:
        try:
            now = os.stat(files.socket)
        except OSError:
            now = None
        if now is None or (now.st_ino, now.st_dev) != (mine.st_ino, mine.st_dev):
            stop(f"its socket {files.socket} was removed or replaced: nobody can reach it")
            return
        loop.call_later(SOCKET_CHECK_S, check_socket)

    loop.call_later(SOCKET_CHECK_S, check_socket)
    logger.info("asyncray head: serving at %s (pid %s)", files.socket, os.getpid())
    if on_ready is not None:
        on_ready(info)
    files_ours = True
    try:
        why = loop.run_until_complete(stopping)
        files_ours = "removed or replaced" not in why
        logger.info("asyncray head: stopping (%s)", why)
    finally:
        if served is not None:
            served.stop()  # first: no page waits on a runtime that is stopping
        server.close()
        with contextlib.suppress(Exception):
            loop.run_until_complete(server.wait_closed())
        for conn in list(runtime.jobs.live.values()):
            if conn.conn is not None and conn.conn.transport is not None:
                conn.conn.transport.abort()  # drivers fail their waiting calls at once
        runtime.stop()
        loop.call_soon(loop.stop)
        with contextlib.suppress(Exception):
            loop.run_forever()
        bootstrap.close_loop(loop)
    return files_ours
