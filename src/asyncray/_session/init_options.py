"""``init``'s keywords that Ray accepts but that change little or nothing on one host.

Each is either honoured (the logging keywords, ``_temp_dir``, the dashboard's) or named in one
``RuntimeWarning`` per process saying it has no effect here and why. Nothing
is dropped silently; a keyword Ray itself refuses raises as Ray does.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any, NamedTuple

from .. import _options

# Ray 2.60's ``init`` keywords handled here, with Ray's defaults: a value
# other than the default is what the user asked for.
RAY_INIT_DEFAULTS: dict[str, Any] = {
    "labels": None,
    "include_dashboard": None,
    "dashboard_host": None,
    "dashboard_port": None,
    "job_config": None,
    "configure_logging": True,
    "logging_level": None,
    "logging_format": None,
    "logging_config": None,
    "runtime_env": None,
    "enable_resource_isolation": False,
    "cgroup_path": None,
    "system_reserved_cpu": None,
    "system_reserved_memory": None,
    "proxy_server_url": None,
}

# Ray's hidden ``**kwargs`` of ``init`` (its ``kwargs.pop`` list), with their
# defaults. ``object_spilling_directory`` and ``_system_config`` are named
# parameters of asyncray's ``init``.
RAY_HIDDEN_DEFAULTS: dict[str, Any] = {
    "_enable_object_reconstruction": False,
    "_plasma_directory": None,
    "_node_ip_address": None,
    "_driver_object_store_memory": None,
    "_memory": None,
    "_redis_username": None,
    "_redis_password": None,
    "_temp_dir": None,
    "_metrics_export_port": None,
    "_tracing_startup_hook": None,
    "_node_name": None,
    "_skip_env_hook": False,
}

# Why each keyword changes nothing here: one sentence, after "has no effect in asyncray".
_NO_EFFECT: dict[str, str] = {
    "labels": "node labels select among nodes, and asyncray runs on one host",
    "job_config": "asyncray does not read Ray's JobConfig; pass namespace and runtime_env "
    "to init directly",
    "logging_config": "Ray's LoggingConfig configures Ray's worker processes; configure "
    "the standard logging module in your tasks instead",
    "enable_resource_isolation": "asyncray reserves no cgroup for system processes "
    "(its runtime is a thread of the driver)",
    "cgroup_path": "asyncray reserves no cgroup for system processes",
    "system_reserved_cpu": "asyncray reserves no cgroup for system processes; lower "
    "num_cpus instead",
    "system_reserved_memory": "asyncray reserves no cgroup for system processes",
    "proxy_server_url": "asyncray's dashboard is served on 127.0.0.1 only, through no proxy",
    "_enable_object_reconstruction": "objects live in this host's store and are never "
    "lost with a node, so nothing is reconstructed",
    "_plasma_directory": "asyncray keeps large objects in /dev/shm (or its file-backed "
    "fallback); use object_spilling_directory for what overflows",
    "_node_ip_address": "asyncray runs on one host and listens on no IP address",
    "_driver_object_store_memory": "it is deprecated in Ray; use object_store_memory",
    "_memory": "asyncray does not schedule by memory",
    "_redis_username": "asyncray has no Redis or GCS",
    "_redis_password": "asyncray has no Redis or GCS",
    "_metrics_export_port": "asyncray exports no metrics",
    "_tracing_startup_hook": "asyncray has no tracing hook",
    "_node_name": "asyncray runs one node",
    "_skip_env_hook": "asyncray runs no runtime_env hook",
    "_temp_dir": "a driver joining a head uses the head's directories",
}
# Why the store's and kernel's settings change nothing for a driver joining a head.
_JOINING = "a driver joining a head uses the head's object store and settings"

# ``_system_config`` keys asyncray reads (resources.store_config, retention).
KNOWN_SYSTEM_CONFIG_KEYS = frozenset(
    {
        "max_direct_call_object_size",
        "object_spilling_config",
        "maximum_gcs_destroyed_actor_cached_count",
        "task_events_max_num_task_in_gcs",
    }
)

# The keywords already warned about in this process: one warning each.
_warned: set[str] = set()


def warn_no_effect(keyword: str, why: str, *, stacklevel: int = 4) -> None:
    """One ``RuntimeWarning`` per keyword per process: it has no effect here, and why.

    ``stacklevel`` 4 points at the caller of ``init`` when called from ``apply``.
    """
    if keyword in _warned:
        return
    _warned.add(keyword)
    warnings.warn(
        f"init({keyword}=...) has no effect in asyncray: {why}.",
        RuntimeWarning,
        stacklevel=stacklevel,
    )


def check_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Refuse what Ray's ``init`` refuses; return every keyword with its value or default."""
    if kwargs.get("allow_multiple"):
        raise RuntimeError(
            "`allow_multiple` argument is passed to `ray.init` when the ray client is not "
            "used. Do not pass the `allow_multiple` to `ray.init` to fix the issue."
        )
    if kwargs.get("storage"):
        raise RuntimeError(
            "Cluster-wide storage configuration has been removed. The last Ray version "
            "supporting the `storage` argument is `ray==2.47`."
        )
    # As Ray: falsy allow_multiple/storage are popped only by its client path,
    # so they are unknown here too.
    unknown = [k for k in kwargs if k not in RAY_INIT_DEFAULTS and k not in RAY_HIDDEN_DEFAULTS]
    if unknown:
        raise RuntimeError(f"Unknown keyword argument(s): {', '.join(unknown)}")
    return {**RAY_INIT_DEFAULTS, **RAY_HIDDEN_DEFAULTS, **kwargs}


def apply(options: dict[str, Any], system_config: Any, *, connected: bool) -> None:
    """Honour what means something here, warn once about the rest (embedded or connected)."""
    configure_logger(
        options["configure_logging"], options["logging_level"], options["logging_format"]
    )
    _options.check_runtime_env(options["runtime_env"], job=True)  # refused before any start
    for keyword, default in {**RAY_INIT_DEFAULTS, **RAY_HIDDEN_DEFAULTS}.items():
        if keyword not in _NO_EFFECT:
            continue  # honoured
        if keyword == "_temp_dir" and not connected:
            continue  # honoured: the spill root (``spill_root``)
        value = options[keyword]
        if value is default or (default is None and value in ({}, [])):
            continue
        warn_no_effect(keyword, _NO_EFFECT[keyword])
    if connected and options.get("object_spilling_directory") is not None:
        warn_no_effect("object_spilling_directory", _JOINING)
    if isinstance(system_config, dict):
        for key in system_config:
            if connected:
                warn_no_effect(f"_system_config[{key!r}]", _JOINING)
            elif key not in KNOWN_SYSTEM_CONFIG_KEYS:
                warn_no_effect(
                    f"_system_config[{key!r}]",
                    "asyncray reads only "
                    + ", ".join(sorted(KNOWN_SYSTEM_CONFIG_KEYS))
                    + " from _system_config",
                )


def spill_root(temp_dir: Any) -> str | None:
    """Where spilled objects go under Ray's ``_temp_dir`` (as under the default temp dir)."""
    if temp_dir is None:
        return None
    if not isinstance(temp_dir, (str, os.PathLike)):
        raise TypeError(f"_temp_dir must be a path, got {type(temp_dir).__name__}")
    path = os.fspath(temp_dir)
    if not os.path.isabs(path):
        raise ValueError(f"_temp_dir must be an absolute path, got {path!r}")
    return os.path.join(path, "asyncray-spill")


# The handler ``logging_format`` installs on the "asyncray" logger (one at a time).
_handler: logging.Handler | None = None


def configure_logger(configure: Any, level: Any, fmt: Any) -> None:
    """Configure the "asyncray" logger as Ray's init configures its "ray" logger.

    ``logging_level`` sets its level (a name such as ``"debug"`` or a number);
    ``logging_format`` writes its records to stderr in that format. Both are
    ignored when ``configure_logging`` is false, as in Ray; then a handler an
    earlier ``init`` installed is removed (Ray clears its logger's handlers;
    asyncray removes only its own).
    """
    global _handler
    logger = logging.getLogger("asyncray")
    if not configure:
        if _handler is not None:
            logger.removeHandler(_handler)
            _handler = None
        return
    if level is not None:
        if isinstance(level, str):
            resolved = logging.getLevelName(level.upper())
            if not isinstance(resolved, int):
                raise ValueError(f"logging_level must be a logging level, got {level!r}")
            level = resolved
        logger.setLevel(level)
    if fmt is not None:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(fmt))
        if _handler is not None:
            logger.removeHandler(_handler)
        logger.addHandler(handler)
        _handler = handler


class DashboardRequest(NamedTuple):
    """What ``init``'s dashboard keywords ask for."""

    start: bool
    port: int | None


def dashboard_request(options: dict[str, Any]) -> DashboardRequest:
    """Check ``include_dashboard``, ``dashboard_host`` and ``dashboard_port``.

    The dashboard starts for ``include_dashboard=True``, or when a
    ``dashboard_port`` is given and ``include_dashboard`` is left at None (the
    port says the user wants one). Unlike Ray, ``None`` alone does not start
    it: an embedded session starts in milliseconds and serves nothing unasked.

    Raises:
        ValueError: ``dashboard_host`` is not a loopback name (it is never bound
            elsewhere), or the port is not a port number.
    """
    from .._dashboard import check_host

    include = options["include_dashboard"]
    port = options["dashboard_port"]
    check_host(options["dashboard_host"])
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)):
        raise TypeError(f"dashboard_port must be an int, got {type(port).__name__}")
    if port is not None and not 0 <= port <= 65535:
        raise ValueError(f"dashboard_port must be between 0 and 65535, got {port}")
    start = bool(include) or (include is None and port is not None)
    return DashboardRequest(start, port)
