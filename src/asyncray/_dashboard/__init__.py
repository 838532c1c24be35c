"""The live dashboard: a read-only web page of one runtime, served on 127.0.0.1.

Started by the session (``init(include_dashboard=True)``) or the shared head
(``asyncray start --head``), which own the ``Runtime``; see ``server`` for
how it reads the kernel without slowing it, and ``snapshot`` for what the
page shows. It needs the ``dashboard`` extra (aiohttp, psutil). This module
is light (no asyncio, no aiohttp): ``server`` is imported only when a
dashboard starts.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

    from .._core.runtime import Runtime
    from .server import Dashboard

INSTALL_HINT = "pip install 'asyncray[dashboard]'"
# Ray's default port.
DEFAULT_PORT = 8265
# The names ``dashboard_host`` may take: the dashboard binds 127.0.0.1, nothing else.
HOSTS = ("127.0.0.1", "localhost")


def check_host(host: str | None) -> str:
    """The address to bind for Ray's ``dashboard_host``: loopback, or ``ValueError``."""
    if host is None or host in HOSTS:
        return "127.0.0.1"
    raise ValueError(
        f"dashboard_host={host!r}: asyncray's dashboard binds only the loopback address "
        "(127.0.0.1 or 'localhost'), so that nobody else on the network can read it. "
        "To view it from another machine, forward the port (e.g. `ssh -L 8265:127.0.0.1:8265`)."
    )


def missing() -> list[str]:
    """The dashboard's packages that are not installed (empty when it can run)."""
    return [name for name in ("aiohttp", "psutil") if importlib.util.find_spec(name) is None]


def require() -> None:
    """Raise ``ImportError`` naming the extra to install if the dashboard cannot run."""
    absent = missing()
    if absent:
        raise ImportError(
            f"the dashboard needs {' and '.join(absent)}, which "
            f"{'is' if len(absent) == 1 else 'are'} not installed: {INSTALL_HINT}"
        )


def start(
    runtime_loop: asyncio.AbstractEventLoop,
    runtime: Runtime,
    *,
    host: str | None = None,
    port: int | None = None,
    kind: str,
) -> tuple[Dashboard, str | None]:
    """Serve ``runtime``'s dashboard; returns it and a note if another port had to be used.

    ``runtime_loop`` is the loop that owns ``runtime`` (the only thread that
    reads it). Returns once the port listens (the server starts serving on
    its thread right after).

    Raises:
        ValueError: ``host`` is not loopback, or ``port`` is out of range.
        ImportError: the ``dashboard`` extra is not installed.
    """
    from .._core.dashboard_view import gather
    from .server import Dashboard, bind

    check_host(host)
    require()
    sock, note = bind(port)
    dashboard = Dashboard(runtime_loop, lambda: gather(runtime), sock, kind=kind)
    try:
        dashboard.start()
    except BaseException:
        dashboard.stop()
        raise
    return dashboard, note
