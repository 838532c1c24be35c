"""The dashboard's web server: aiohttp on a daemon thread of its own, loopback only, GET only.

Why a thread and a loop of its own: the runtime loop must never wait on a
browser, and a slow page must never delay a task. The server asks the
runtime loop for a copy of the kernel's state (``call_soon_threadsafe`` with
a ``concurrent.futures.Future``), at most once per ``MIN_REFRESH_S`` whoever
asks, and builds the page's JSON here. When no page polls, nothing is asked
and nothing is sampled: the thread sleeps in ``epoll``.

Read-only by construction: every route is a GET (aiohttp answers any other
method with 405), none changes anything, the socket is bound to 127.0.0.1,
and a request whose ``Host`` is not the loopback address is refused (a web
page elsewhere cannot read the dashboard through DNS rebinding).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from . import DEFAULT_PORT, HOSTS
from . import snapshot as snap

logger = logging.getLogger("asyncray")

# A page polls every second; snapshots asked for within this share one gather.
MIN_REFRESH_S = 0.5
# How long a request waits for the runtime loop before answering 503.
GATHER_TIMEOUT_S = 5.0
# How long stop() waits for requests in flight, then for the thread.
SHUTDOWN_TIMEOUT_S = 1.0
THREAD_JOIN_S = 5.0

_STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
# The files the page is made of (nothing else under static/ is served).
_FILES = {
    "index.html": "text/html",
    "app.js": "application/javascript",
    "app.css": "text/css",
    "uPlot.iife.min.js": "application/javascript",
    "uPlot.min.css": "text/css",
}
_VENDOR = {"uPlot.iife.min.js", "uPlot.min.css"}
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'none'"
    ),
}


def bind(port: int | None) -> tuple[socket.socket, str | None]:
    """A listening socket on 127.0.0.1:``port`` (default 8265; 0 for any free port).

    If the port is taken, a free one is bound instead; the second value then
    says so (the caller tells the user).
    """
    wanted = DEFAULT_PORT if port is None else int(port)
    if not 0 <= wanted <= 65535:
        raise ValueError(f"dashboard_port must be between 0 and 65535, got {wanted}")
    note = None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # A restarted head may take its port back while old connections linger.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", wanted))
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            sock.bind(("127.0.0.1", 0))
            note = (
                f"port {wanted} is in use: the dashboard listens on port "
                f"{sock.getsockname()[1]} instead"
            )
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock, note


class Dashboard:
    """One dashboard: a daemon thread serving the page for one runtime.

    ``gather`` is called on ``runtime_loop`` (the kernel's one owner) and
    returns ``_core.dashboard_view.gather``'s copy. ``kind`` is "driver" or
    "head" (shown on the page).
    """

    def __init__(
        self,
        runtime_loop: asyncio.AbstractEventLoop,
        gather: Callable[[], dict[str, Any]],
        sock: socket.socket,
        *,
        kind: str,
    ) -> None:
        self._runtime_loop = runtime_loop
        self._gather = gather
        self._sock = sock
        self.port: int = sock.getsockname()[1]
        self.kind = kind
        self._history = snap.History()
        self._processes: dict[int, Any] = {}
        self._cached: tuple[float, bytes] | None = None
        self._pending: set[concurrent.futures.Future[dict[str, Any]]] = set()
        self._pending_lock = threading.Lock()
        # The thread's loop and the event that ends it, set by the thread; ``_stopping``
        # tells a thread that has not made them yet. All three under ``_state_lock``.
        self._state_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="asyncray-dashboard", daemon=True)
        self._files = _read_static()

    @property
    def url(self) -> str:
        """``127.0.0.1:PORT``, without a scheme, as Ray's ``dashboard_url``."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Serve, from a thread of its own; returns at once.

        The socket already listens: a page loaded before the thread has
        imported aiohttp (a few hundred milliseconds, not spent by ``init`` or
        ``asyncray start``) waits in the socket's backlog until it serves.
        """
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and end the thread; the port is free when this returns. Idempotent."""
        with self._pending_lock:
            for fut in self._pending:
                fut.cancel()  # requests waiting for a runtime that is stopping
        with self._state_lock:
            self._stopping = True
            loop, event = self._loop, self._stop_event
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # its loop already closed
                loop.call_soon_threadsafe(event.set)
        if self._thread.is_alive():
            self._thread.join(THREAD_JOIN_S)
        with contextlib.suppress(OSError):
            self._sock.close()

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        event = asyncio.Event()
        with self._state_lock:
            self._loop, self._stop_event = loop, event
            if self._stopping:
                event.set()  # stop() came first; nothing waits on it yet
        try:
            loop.run_until_complete(self._serve(event))
        except BaseException:  # never into the runtime: logged, and the dashboard stops
            logger.exception("asyncray dashboard stopped on an error")
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self, stop: asyncio.Event) -> None:
        from aiohttp import web

        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/snapshot", self._snapshot)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        try:
            site = web.SockSite(runner, self._sock)
            await site.start()
            await stop.wait()
        finally:
            await runner.cleanup()

    # ------------------------------------------------------------ routes

    @property
    def _guard(self) -> Any:
        from aiohttp import web

        allowed = {f"{host}:{self.port}" for host in HOSTS}

        @web.middleware
        async def guard(request: Any, handler: Any) -> Any:
            if request.host not in allowed:
                return web.Response(
                    status=403,
                    text="asyncray's dashboard answers only at "
                    f"http://127.0.0.1:{self.port} (loopback).\n",
                )
            response = await handler(request)
            response.headers.update(_HEADERS)
            return response

        return guard

    async def _index(self, request: Any) -> Any:
        return self._file("index.html")

    async def _static(self, request: Any) -> Any:
        from aiohttp import web

        name = request.match_info["name"]
        if name not in _FILES:
            raise web.HTTPNotFound()
        return self._file(name)

    def _file(self, name: str) -> Any:
        from aiohttp import web

        return web.Response(body=self._files[name], content_type=_FILES[name])

    async def _snapshot(self, request: Any) -> Any:
        from aiohttp import web

        now = time.monotonic()
        cached = self._cached
        if cached is None or now - cached[0] >= MIN_REFRESH_S:
            try:
                raw = await self._gather_on_runtime()
            except (asyncio.TimeoutError, concurrent.futures.CancelledError, RuntimeError) as e:
                return web.Response(status=503, text=f"the runtime did not answer: {e!r}\n")
            stats = self._process_stats(snap.pids_of(raw))
            body = json.dumps(snap.build(raw, self._history, stats, kind=self.kind))
            cached = self._cached = (time.monotonic(), body.encode())
        return web.Response(body=cached[1], content_type="application/json")

    async def _gather_on_runtime(self) -> dict[str, Any]:
        """``gather()`` run on the runtime loop, awaited here."""
        fut: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()

        def run() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(self._gather())
            except BaseException as e:
                fut.set_exception(e)

        with self._pending_lock:
            self._pending.add(fut)
        try:
            self._runtime_loop.call_soon_threadsafe(run)  # RuntimeError once it closed
            return await asyncio.wait_for(asyncio.wrap_future(fut), GATHER_TIMEOUT_S)
        finally:
            with self._pending_lock:
                self._pending.discard(fut)

    def _process_stats(self, pids: list[int]) -> dict[int, dict[str, float]]:
        """CPU % (since the previous poll) and resident memory of each process."""
        import psutil

        known = self._processes
        stats: dict[int, dict[str, float]] = {}
        for pid in pids:
            try:
                proc = known.get(pid)
                if proc is None:
                    proc = known[pid] = psutil.Process(pid)
                with proc.oneshot():
                    stats[pid] = {
                        "cpu_percent": proc.cpu_percent(None),
                        "rss": float(proc.memory_info().rss),
                    }
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                known.pop(pid, None)
        for pid in set(known) - set(pids):
            del known[pid]  # ended: its Process object would only grow the table
        return stats


def _read_static() -> dict[str, bytes]:
    """The page's files, read once (a few tens of KiB): served from memory."""
    files = {}
    for name in _FILES:
        path = os.path.join(_STATIC, "vendor" if name in _VENDOR else "", name)
        with open(path, "rb") as f:
            files[name] = f.read()
    return files
