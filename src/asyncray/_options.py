"""Validation of ``@remote`` and ``.options()`` keywords, with Ray's names and messages.

Options are checked when they are given (decoration and ``.options()``), never
when the task runs, so a typo fails at the line that made it.
"""

from __future__ import annotations

import numbers
import os
import sys
import types
import warnings
from typing import Any

# Ray's default for ``max_retries`` of tasks (override: RAY_TASK_MAX_RETRIES).
DEFAULT_MAX_RETRIES = 3

_COMMON = (
    "num_cpus",
    "num_gpus",
    "resources",
    "memory",
    "accelerator_type",
    "max_calls",
    "name",
    "scheduling_strategy",
    "placement_group",
    "placement_group_bundle_index",
    "placement_group_capture_child_tasks",
    "runtime_env",
    "enable_task_events",
    "label_selector",
    "fallback_strategy",
    "_labels",
    "_metadata",
    "object_store_memory",
)

TASK_OPTIONS = frozenset(
    (
        *_COMMON,
        "max_retries",
        "retry_exceptions",
        "num_returns",
        "_generator_backpressure_num_objects",
        "_num_objects_per_yield",
        "timeout_s",
    )
)

_RESERVED_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory", "bundle")

# Counts travel in msgpack frames as signed 64-bit integers: a larger one
# cannot be sent at all (it failed while framing, inside the runtime).
MAX_WIRE_INT = 2**63 - 1
# Ray's ceiling on a resource quantity (a node's total): a request above it
# can never fit anywhere. Lower would refuse real byte counts for ``memory``.
MAX_RESOURCE_QUANTITY = 1e14
# ``num_returns`` ids, refs and object-table entries are all made when the
# task is submitted. Measured (2-core VM, 2026-12-04): 10**5 returns submit
# in 0.12 s, 10**6 in 1.2 s (3.6 s to the last value, ~440 MB peak RSS);
# beyond that a typo (say ``10**9``) would stall the caller and exhaust
# memory instead of failing. Ray has no explicit limit (it overflows at 2**63).
MAX_NUM_RETURNS = 1_000_000
# A timeout this long is "wait for ever": beyond it threading's lock
# timeouts overflow (``threading.TIMEOUT_MAX`` is about 9.2e9 s) and uvloop
# clamps its timers anyway. Shorter would turn a legitimate long wait into
# for ever, which no program can tell apart before ~31 years.
FOREVER_S = 1e9


# Bad values are quoted in error messages up to this many characters (a huge
# int or a long string would bury the message; str() of an int over 4300
# digits even raises).
SHOWN_CHARS = 40


def shown(value: Any) -> str:
    """``repr(value)`` for an error message, cut to ``SHOWN_CHARS``."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"{'-' if value < 0 else ''}<an int of {value.bit_length()} bits>"
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def _type_name(value: Any) -> str:
    return type(value).__name__


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_timeout(name: str, value: Any) -> float | None:
    """A timeout in seconds, checked: None means wait for ever (so do ``inf`` and
    anything beyond ``FOREVER_S``).

    Raises:
        TypeError: not a number (``bool`` is not one).
        ValueError: NaN or negative (Ray's message for negative).
    """
    if value is None:
        return None
    if not _is_number(value):
        raise TypeError(
            f"The '{name}' argument must be a number of seconds or None, got {shown(value)} "
            f"(type {_type_name(value)})."
        )
    if value != value:
        raise ValueError(
            f"The '{name}' argument must be a number of seconds >= 0 or None (wait for ever), "
            "got nan."
        )
    if value < 0:
        raise ValueError(f"The '{name}' argument must be nonnegative. Received {shown(value)}")
    if value >= FOREVER_S:
        return None
    return float(value)


def check_count(
    name: str, value: Any, *, minimum: int, maximum: int = MAX_WIRE_INT, accepts: str = ""
) -> None:
    """An integer option or argument in ``[minimum, maximum]`` (None passes).

    ``accepts`` describes the valid values in Ray's words ("None, 0, -1 or a
    positive integer, where -1 represents infinity"); the default says the range.

    Raises:
        TypeError: not an int (``bool`` is not one), as Ray's option checks.
        ValueError: out of range, naming the option and the range.
    """
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"The type of keyword '{name}' must be (<class 'int'>, <class 'NoneType'>), "
            f"but received type {type(value)}"
        )
    if minimum <= int(value) <= maximum:
        return
    what = accepts or f"None or an integer from {minimum} to {maximum}"
    raise ValueError(f"The keyword '{name}' only accepts {what}; got {shown(value)}.")


def _range_text(minimum: int, maximum: int, infinite: bool = False) -> str:
    if infinite:
        return f"None, 0, -1 or a positive integer up to {maximum}, where -1 represents infinity"
    if minimum == 0:
        return f"None, 0 or a positive integer up to {maximum}"
    return f"None or an integer from {minimum} to {maximum}"


def check_counting(name: str, value: Any, *, infinite: bool, maximum: int = MAX_WIRE_INT) -> None:
    """Ray's "counting option": an int >= 0, or >= -1 where -1 means infinity."""
    minimum = -1 if infinite else 0
    check_count(
        name,
        value,
        minimum=minimum,
        maximum=maximum,
        accepts=_range_text(minimum, maximum, infinite),
    )


def _check_quantity(key: str, value: Any) -> None:
    if value is None:
        return
    if not _is_number(value):
        raise TypeError(
            f"The type of keyword '{key}' must be (<class 'int'>, <class 'float'>), "
            f"but received type {type(value)}"
        )
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(
            f"The quantity of resource {key} must be a finite number from 0 to "
            f"{MAX_RESOURCE_QUANTITY:g}, got {shown(value)}"
        )
    if value < 0:
        raise ValueError(f"The quantity of resource {key} cannot be negative")
    if value > MAX_RESOURCE_QUANTITY:
        raise ValueError(
            f"The quantity of resource {key} must be at most {MAX_RESOURCE_QUANTITY:g} "
            f"(Ray's limit), got {shown(value)}"
        )
    if value != round(value, 4):
        raise ValueError(
            f"The precision of resource {key} cannot exceed 0.0001, got {shown(value)}"
        )


def _check_gpus(value: Any) -> None:
    """``num_gpus``: a quantity; above one, whole devices only (as Ray)."""
    _check_quantity("num_gpus", value)
    if value is not None and value > 1 and value != int(value):
        raise ValueError(
            f"GPU resource quantities >1 must be whole numbers. The specified quantity "
            f"{value} is invalid."
        )


def _check_resources(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise TypeError(
            f"The type of keyword 'resources' must be (<class 'dict'>, None), "
            f"but received type {type(value)}"
        )
    for name, qty in value.items():
        if not isinstance(name, str):
            raise TypeError(f"Resource names must be strings, got {shown(name)}")
        if name in ("CPU", "GPU"):
            raise ValueError(
                "Use the 'num_cpus' and 'num_gpus' keyword instead of 'CPU' and 'GPU' "
                "in 'resources' keyword"
            )
        if name in _RESERVED_RESOURCES:
            raise ValueError(f"'{name}' cannot be used in the 'resources' keyword")
        _check_quantity(name, qty)


def _check_max_retries(value: Any) -> None:
    check_counting("max_retries", value, infinite=True)


def _check_retry_exceptions(value: Any) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, (list, tuple)) and all(
        isinstance(t, type) and issubclass(t, BaseException) for t in value
    ):
        return
    raise TypeError(
        "retry_exceptions must be either a boolean or a list of exceptions, but received "
        f"{shown(value)}"
    )


def _check_num_returns(value: Any) -> None:
    if value is None or (isinstance(value, str) and value in ("streaming", "dynamic")):
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            "The type of keyword 'num_returns' must be (<class 'int'>, <class 'str'>, None), "
            f"but received type {type(value)}"
        )
    if value < 0:
        raise ValueError("num_returns must be >= 0, 'streaming' or 'dynamic'")
    if value > MAX_NUM_RETURNS:
        raise ValueError(
            f"num_returns must be from 0 to {MAX_NUM_RETURNS}, 'streaming' or 'dynamic'; "
            f"got {shown(value)}. For many results, return a list or use a generator."
        )


def _check_backpressure(value: Any, name: str = "_generator_backpressure_num_objects") -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"The type of keyword '{name}' must be <class 'int'>, but received type {type(value)}"
        )
    if value == 0:
        raise ValueError(
            f"{name}=0 is not allowed. Use a value > 0. Use -1 to disable the backpressure."
        )
    if value < -1 or value > MAX_WIRE_INT:
        raise ValueError(
            f"The keyword '{name}' only accepts -1 (no backpressure) or a positive integer up "
            f"to {MAX_WIRE_INT}; got {shown(value)}."
        )


def _check_timeout(value: Any) -> None:
    if value is None:
        return
    if not _is_number(value) or not value > 0 or value == float("inf"):
        raise ValueError(
            f"timeout_s must be a positive, finite number of seconds or None, got {shown(value)}"
        )


def _check_bundle_index(value: Any) -> None:
    check_count(
        "placement_group_bundle_index",
        value,
        minimum=-1,
        accepts=f"-1 (any bundle) or a bundle index from 0 to {MAX_WIRE_INT}",
    )


def _check_type(key: str, types: tuple[type, ...]) -> Any:
    def check(value: Any) -> None:
        if value is not None and not isinstance(value, types):
            names = ", ".join(str(t) for t in types)
            raise TypeError(
                f"The type of keyword '{key}' must be ({names}, None), but received type "
                f"{type(value)}"
            )

    return check


_CHECKS: dict[str, Any] = {
    "num_cpus": lambda v: _check_quantity("num_cpus", v),
    "num_gpus": lambda v: _check_gpus(v),
    "memory": lambda v: _check_quantity("memory", v),
    "resources": _check_resources,
    "max_retries": _check_max_retries,
    "retry_exceptions": _check_retry_exceptions,
    "num_returns": _check_num_returns,
    "_generator_backpressure_num_objects": _check_backpressure,
    "timeout_s": _check_timeout,
    "max_calls": lambda v: check_counting("max_calls", v, infinite=False),
    "placement_group_bundle_index": _check_bundle_index,
    "_num_objects_per_yield": lambda v: check_count(
        "_num_objects_per_yield", v, minimum=1, accepts="a positive integer"
    ),
}
# Checks of the options tasks and actors share (Ray's ``_common_options``).
COMMON_CHECKS: dict[str, Any] = {
    "num_cpus": _CHECKS["num_cpus"],
    "num_gpus": _CHECKS["num_gpus"],
    "memory": _CHECKS["memory"],
    "resources": _check_resources,
    "placement_group_bundle_index": _check_bundle_index,
    "name": _check_type("name", (str,)),
    "accelerator_type": _check_type("accelerator_type", (str,)),
    "enable_task_events": _check_type("enable_task_events", (bool,)),
    "placement_group_capture_child_tasks": _check_type(
        "placement_group_capture_child_tasks", (bool,)
    ),
    "runtime_env": lambda v: check_runtime_env(v),
    "label_selector": _check_type("label_selector", (dict,)),
    "fallback_strategy": _check_type("fallback_strategy", (list,)),
    "_labels": _check_type("_labels", (dict,)),
}
_CHECKS.update(COMMON_CHECKS)


def validate_task_options(options: dict[str, Any], *, in_options_call: bool = False) -> None:
    """Raise ``ValueError``/``TypeError`` naming the first bad keyword."""
    for key, value in options.items():
        if key not in TASK_OPTIONS:
            raise ValueError(
                f"Invalid option keyword {key} for remote functions. "
                f"Valid ones are {sorted(TASK_OPTIONS)}."
            )
        check = _CHECKS.get(key)
        if check is not None:
            check(value)
    if in_options_call and "max_calls" in options:
        raise ValueError("Setting 'max_calls' is not supported in '.options()'.")
    if in_options_call and "_num_objects_per_yield" in options:
        raise ValueError("Setting '_num_objects_per_yield' is not supported in '.options()'.")
    if options.get("object_store_memory") is not None:
        raise ValueError("Setting 'object_store_memory' is not implemented for tasks")
    legacy = {
        "placement_group",
        "placement_group_bundle_index",
        "placement_group_capture_child_tasks",
    }
    if options.get("scheduling_strategy") is not None and any(
        options.get(k) not in (None, "default", -1) for k in legacy
    ):
        raise ValueError(
            "Placement groups should be specified via the scheduling_strategy option. "
            "The placement_group option is deprecated."
        )


def resource_request(options: dict[str, Any], *, default_cpus: float = 1) -> dict[str, float]:
    """The counted resources a task or actor asks for."""
    num_cpus = options.get("num_cpus")
    request: dict[str, float] = {"CPU": float(default_cpus if num_cpus is None else num_cpus)}
    if options.get("num_gpus"):
        request["GPU"] = float(options["num_gpus"])
    if options.get("memory"):
        request["memory"] = float(options["memory"])
    for name, qty in (options.get("resources") or {}).items():
        if qty:
            request[name] = float(qty)
    return request


def shortfall(request: dict[str, float], totals: dict[str, float]) -> str | None:
    """``"CPU=3 (this host has 2), ..."`` for what ``request`` asks beyond the host, or None."""
    bad = {k: v for k, v in request.items() if v > 0 and v > totals.get(k, 0.0) + 1e-9}
    if not bad:
        return None
    return ", ".join(f"{k}={v:g} (this host has {totals.get(k, 0.0):g})" for k, v in bad.items())


def infeasible_message(
    what: str, request: dict[str, float], totals: dict[str, float]
) -> str | None:
    """A message naming the resources ``request`` can never get on this host, or None."""
    parts = shortfall(request, totals)
    if parts is None:
        return None
    return (
        f"{what} requests {parts}: it can never be scheduled on this host. "
        "Lower the request, or pass the resource to asyncray.init(num_cpus=..., num_gpus=..., "
        "resources={...})."
    )


# Ray 2.60's documentation of object spilling, which its deprecation message links.
_SPILLING_DOCS = "https://docs.ray.io/en/releases-2.60.0/ray-core/objects/object-spilling.html"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _user_stacklevel() -> int:
    """The ``stacklevel`` (for the caller's ``warnings.warn``) of the first frame outside
    asyncray, so a warning names the user's line rather than ours."""
    frame = sys._getframe(2)
    level = 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


# runtime_env keys that install packages or pull images: nothing of the kind
# happens on one host, so they are refused rather than ignored.
RUNTIME_ENV_INSTALLS = ("pip", "uv", "conda", "container", "image_uri")
# Keys Ray knows that need what one host does not have (another interpreter,
# a JVM, a profiler wrapping the worker): refused, naming what to do instead.
_RUNTIME_ENV_REFUSED = {
    "py_executable": "run the driver with the interpreter you want: workers are forked from it",
    "java_jars": "asyncray runs Python only",
    "_nsight": "run the driver under the profiler instead",
    "nsight": "run the driver under the profiler instead",
    "_rocprof_sys": "run the driver under the profiler instead",
    "worker_process_setup_hook": (
        "asyncray does not run setup hooks yet: do the setup at the top of the task or in "
        "the actor's __init__"
    ),
}
_RUNTIME_ENV_CONFIG_KEYS = ("setup_timeout_seconds", "eager_install", "log_files")


def normalize_runtime_env(runtime_env: Any, *, job: bool = False) -> dict[str, Any] | None:
    """``runtime_env`` (tasks, actors, ``init``) checked as Ray checks it, in canonical form.

    ``job``: the job's (``init``). Only there may ``working_dir`` and
    ``py_modules`` name local directories, as in Ray (which uploads them for
    the job); a task's or actor's local one raises Ray's ``ValueError``.

    Paths become absolute (relative ones are read from the current directory,
    now), module objects in ``py_modules`` become their paths, and empty
    entries go, so equal envs compare equal. None: no env (None or empty).

    Raises:
        TypeError: not a dict, or a field of the wrong type (Ray's messages).
        ValueError: a field that needs a package install, a remote URI, a path
            that does not exist, or a field asyncray cannot apply.
    """
    if runtime_env is None:
        return None
    if not isinstance(runtime_env, dict):
        raise TypeError(
            "The type of keyword 'runtime_env' must be (<class 'dict'>, None), but received "
            f"type {type(runtime_env)}"
        )
    out: dict[str, Any] = {}
    for key, value in runtime_env.items():
        if value is None:
            continue
        if key in RUNTIME_ENV_INSTALLS:
            if value:
                raise ValueError(
                    f"runtime_env[{key!r}] needs a package install or an image, which "
                    "asyncray does not do on this host: install what the code needs in "
                    "this Python environment before running it (or run it on a Ray cluster)."
                )
        elif key in _RUNTIME_ENV_REFUSED:
            raise ValueError(
                f"runtime_env[{key!r}] is not supported by asyncray: {_RUNTIME_ENV_REFUSED[key]}."
            )
        elif key == "env_vars":
            env_vars = _env_vars(value)
            if env_vars:
                out[key] = env_vars
        elif key == "working_dir":
            if not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"`working_dir` must be a string, got {type(value)}.")
            if not job:
                _job_level_only(os.fspath(value))
            out[key] = _local_path("working_dir", os.fspath(value), directory=True)
        elif key == "py_modules":
            if not isinstance(value, (list, tuple)):
                raise TypeError(f"`py_modules` must be a list of strings, got {type(value)}.")
            if not job:
                for entry in value:
                    if not isinstance(entry, (str, os.PathLike)):
                        raise TypeError(f"`py_module` must be a string, got {type(entry)}.")
                    _job_level_only(os.fspath(entry))
            modules = [_py_module(entry) for entry in value]
            if modules:
                out[key] = modules
        elif key == "excludes":
            # Ray leaves these out of the working_dir and py_modules it uploads;
            # asyncray uploads nothing (workers read the directories in place),
            # so there is nothing to leave out. Checked as Ray checks them.
            if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) for p in value):
                raise TypeError(
                    f"runtime_env['excludes'] must be of type List[str], got {type(value)}"
                )
            if value:
                out[key] = list(value)
        elif key == "config":
            config = value if isinstance(value, dict) else getattr(value, "__dict__", None)
            if not isinstance(config, dict):
                raise TypeError(
                    f"runtime_env['config'] must be a dict or RuntimeEnvConfig, got {type(value)}"
                )
            unknown = [k for k in config if k not in _RUNTIME_ENV_CONFIG_KEYS]
            if unknown:
                raise ValueError(
                    f"runtime_env['config'] has unknown fields {unknown}: the known ones are "
                    f"{list(_RUNTIME_ENV_CONFIG_KEYS)}."
                )
            # Nothing is installed, so setup never times out and is never eager or
            # lazy: the fields are checked and kept (get_runtime_env_string shows them).
            if config:
                out[key] = dict(config)
        else:
            raise ValueError(
                f"runtime_env has an unknown field {key!r}: asyncray applies env_vars, "
                "working_dir, py_modules, excludes and config (Ray's runtime_env plugins do "
                "not run here)."
            )
    return out or None


def _job_level_only(path: str) -> None:
    """A task's or actor's ``working_dir``/``py_modules``: Ray takes only URIs there."""
    if "://" in path:
        _local_path("working_dir", path, directory=True)  # the remote-URI error
    raise ValueError(
        f"{path} is not a valid URI. Passing directories or modules to be dynamically "
        "uploaded is only supported at the job level (i.e., passed to `ray.init`)."
    )


def _env_vars(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise TypeError(
            f"runtime_env['env_vars'] must be of type Dict[str, str], got {type(value)}"
        )
    for k, v in value.items():
        if not isinstance(k, str):
            raise TypeError(
                "runtime_env['env_vars'] must be of type Dict[str, str], but the key "
                f"{k} is of type {type(k)}"
            )
        if not isinstance(v, str):
            raise TypeError(
                "runtime_env['env_vars'] must be of type Dict[str, str], but the value "
                f"{v} is of type {type(v)}"
            )
    return dict(value)


def _local_path(key: str, path: str, *, directory: bool) -> str:
    """``path`` made absolute, checked to be a local directory (or, for py_modules, a .py file)."""
    if "://" in path:
        raise ValueError(
            f"runtime_env[{key!r}] = {path!r} is a remote URI, which asyncray does not "
            "download: give a local directory."
        )
    full = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(full) or (not directory and full.endswith(".py") and os.path.isfile(full)):
        return full
    if full.endswith((".whl", ".zip")) and os.path.isfile(full):
        raise ValueError(
            f"runtime_env[{key!r}] = {path!r} is a package file, which asyncray does not "
            "unpack or install: give the directory it holds (or install the wheel)."
        )
    what = "an existing directory" if directory else "an existing directory or .py file"
    raise ValueError(f"runtime_env[{key!r}] = {path!r} is not {what}.")


def _py_module(entry: Any) -> str:
    """A ``py_modules`` entry (a path, or a module object) as an absolute path."""
    if isinstance(entry, types.ModuleType):
        paths = getattr(entry, "__path__", None)
        source = next(iter(paths), None) if paths is not None else getattr(entry, "__file__", None)
        if not source:
            raise ValueError(
                f"runtime_env['py_modules'] has the module {entry.__name__!r}, which has no "
                "file to import it from."
            )
        return _local_path("py_modules", source, directory=False)
    if not isinstance(entry, (str, os.PathLike)):
        raise TypeError(f"`py_module` must be a string, got {type(entry)}.")
    return _local_path("py_modules", os.fspath(entry), directory=False)


def check_runtime_env(runtime_env: Any, *, job: bool = False) -> None:
    """Validate ``runtime_env`` at the call site (see ``normalize_runtime_env``)."""
    normalize_runtime_env(runtime_env, job=job)


def warn_object_store_memory(what: str) -> None:
    """Ray's ``DeprecationWarning`` for ``object_store_memory`` on ``what`` (actors, bundles).

    The text is Ray's; it is attributed to the user's line (Ray attributes it
    to its own module, where the default filters hide it).
    """
    warnings.warn(
        f"Setting 'object_store_memory' for {what} is deprecated since it doesn't actually "
        "reserve the required object store memory. Use object spilling that's enabled by "
        f"default ({_SPILLING_DOCS}) instead to bypass the object store memory size limitation.",
        DeprecationWarning,
        stacklevel=_user_stacklevel(),
    )
