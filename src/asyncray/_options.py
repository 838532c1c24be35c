"""Validation of ``@remote`` and ``.options()`` keywords, with Ray's names and messages.

Options are checked when they are given (decoration and ``.options()``), never
when the task runs, so a typo fails at the line that made it.
"""

from __future__ import annotations

import numbers
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


def _check_quantity(key: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"The type of keyword '{key}' must be (<class 'int'>, <class 'float'>), "
            f"but received type {type(value)}"
        )
    if value < 0:
        raise ValueError(f"The quantity of resource {key} cannot be negative")
    if value != round(value, 4):
        raise ValueError(f"The precision of resource {key} cannot exceed 0.0001, got {value}")


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
            raise TypeError(f"Resource names must be strings, got {name!r}")
        if name in ("CPU", "GPU"):
            raise ValueError(
                "Use the 'num_cpus' and 'num_gpus' keyword instead of 'CPU' and 'GPU' "
                "in 'resources' keyword"
            )
        if name in _RESERVED_RESOURCES:
            raise ValueError(f"'{name}' cannot be used in the 'resources' keyword")
        _check_quantity(name, qty)


def _check_max_retries(value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < -1:
        raise ValueError(
            "The keyword 'max_retries' only accepts None, 0, -1 or a positive integer, "
            "where -1 represents infinity."
        )


def _check_retry_exceptions(value: Any) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, (list, tuple)) and all(
        isinstance(t, type) and issubclass(t, BaseException) for t in value
    ):
        return
    raise TypeError(
        f"retry_exceptions must be either a boolean or a list of exceptions, but received {value!r}"
    )


def _check_num_returns(value: Any) -> None:
    if value is None or value in ("streaming", "dynamic"):
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            "The type of keyword 'num_returns' must be (<class 'int'>, <class 'str'>, None), "
            f"but received type {type(value)}"
        )
    if value < 0:
        raise ValueError("num_returns must be >= 0, 'streaming' or 'dynamic'")


def _check_backpressure(value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            "The type of keyword '_generator_backpressure_num_objects' must be <class 'int'>, "
            f"but received type {type(value)}"
        )
    if value == 0:
        raise ValueError(
            "_generator_backpressure_num_objects=0 is not allowed. Use a value > 0. "
            "Use -1 to disable the backpressure."
        )


def _check_timeout(value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value <= 0:
        raise ValueError(f"timeout_s must be a positive number of seconds or None, got {value!r}")


_CHECKS: dict[str, Any] = {
    "num_cpus": lambda v: _check_quantity("num_cpus", v),
    "num_gpus": lambda v: _check_quantity("num_gpus", v),
    "memory": lambda v: _check_quantity("memory", v),
    "resources": _check_resources,
    "max_retries": _check_max_retries,
    "retry_exceptions": _check_retry_exceptions,
    "num_returns": _check_num_returns,
    "_generator_backpressure_num_objects": _check_backpressure,
    "timeout_s": _check_timeout,
}


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
