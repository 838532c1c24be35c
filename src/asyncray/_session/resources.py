"""What a session has: its resources (CPUs, GPUs, custom ones), namespace and object store.

Checked from ``init``'s arguments and the machine, before anything starts.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import uuid
from typing import Any, NamedTuple

from .. import _options, _task_context

_DEFAULT_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")


class StoreConfig(NamedTuple):
    """The object-store arguments of ``init``, checked."""

    capacity: int | None
    spill_root: str | None
    threshold: int | None


def store_config(object_store_memory: Any, spill_directory: Any, system_config: Any) -> StoreConfig:
    """Validate the object-store arguments of ``init`` (Ray's names)."""
    if object_store_memory is not None and (
        isinstance(object_store_memory, bool)
        or not isinstance(object_store_memory, numbers.Integral)
        or not 0 < int(object_store_memory) <= _options.MAX_WIRE_INT
    ):
        raise ValueError(
            "object_store_memory must be a positive whole number of bytes, at most "
            f"{_options.MAX_WIRE_INT}, got {_options.shown(object_store_memory)}"
        )
    if system_config is not None and not isinstance(system_config, dict):
        raise TypeError(f"_system_config must be a dict, got {type(system_config).__name__}")
    config = system_config or {}
    threshold = config.get("max_direct_call_object_size")
    if threshold is not None and (
        isinstance(threshold, bool)
        or not isinstance(threshold, numbers.Integral)
        or not 0 <= int(threshold) <= _options.MAX_WIRE_INT
    ):
        raise ValueError(
            f"_system_config['max_direct_call_object_size'] must be a non-negative number of "
            f"bytes, got {_options.shown(threshold)}"
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
    return StoreConfig(
        None if object_store_memory is None else int(object_store_memory),
        None if spill_directory is None else os.fspath(spill_directory),
        None if threshold is None else int(threshold),
    )


# The default store: this share of RAM (as Ray), and at most this share of
# what the shared-memory directory can hold.
DEFAULT_STORE_RAM_FRACTION = 0.3
DEFAULT_STORE_SHM_FRACTION = 0.8


def visible_gpu_ids() -> list[str] | None:
    """The device ids ``CUDA_VISIBLE_DEVICES`` lists, or None if it is unset."""
    return _task_context.parse_visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES"))


def detect_gpus() -> int:
    """The GPUs the NVIDIA driver lists, at most as many as CUDA_VISIBLE_DEVICES names (Ray)."""
    try:
        found = len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        found = 0
    visible = visible_gpu_ids()
    return found if visible is None else min(found, len(visible))


def _gpu_totals(num_gpus: Any) -> Any:
    """``num_gpus`` for the session (detected if None), checked against CUDA_VISIBLE_DEVICES.

    Records the visible device ids for the session, so GPU slot i is device
    ``visible[i]`` in tasks' ``CUDA_VISIBLE_DEVICES`` and ``get_gpu_ids()``.
    """
    visible = visible_gpu_ids()
    if num_gpus is None:
        num_gpus = detect_gpus()
    elif visible is not None and num_gpus > len(visible):
        raise ValueError(
            f"init(num_gpus={_options.shown(num_gpus)}) asks for more GPUs than "
            f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r} makes visible "
            f"({len(visible)}): pass num_gpus={len(visible)} or fewer, or change "
            "CUDA_VISIBLE_DEVICES."
        )
    _task_context.set_cuda_at_init(os.environ.get("CUDA_VISIBLE_DEVICES"))
    return num_gpus


def _check_total(option: str, value: Any) -> None:
    """A resource total given to ``init``: a whole number from 0 to Ray's maximum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"init({option}=...) must be a whole number, got {_options.shown(value)} (type "
            f"{type(value).__name__})"
        )
    number: Any = value  # compared as is: float() of a huge int overflows
    if not 0 <= number <= _options.MAX_RESOURCE_QUANTITY or number != round(number):
        raise ValueError(
            f"init({option}={_options.shown(value)}): resource quantities must be whole numbers "
            "from 0 to "
            f"{_options.MAX_RESOURCE_QUANTITY:g}."
        )


def resource_totals(
    num_cpus: Any, num_gpus: Any, resources: dict[str, float] | None
) -> dict[str, float]:
    for key, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus)):
        if value is not None:
            _check_total(key, value)
    if resources is not None and not isinstance(resources, dict):
        raise TypeError(
            f"init(resources=...) must be a dict of {{name: quantity}}, got {type(resources)}"
        )
    if num_cpus is None:
        try:
            num_cpus = len(os.sched_getaffinity(0))
        except AttributeError:
            num_cpus = os.cpu_count() or 1
    num_gpus = _gpu_totals(num_gpus)
    totals: dict[str, float] = {"CPU": float(num_cpus)}
    if num_gpus:
        totals["GPU"] = float(num_gpus)
    page = os.sysconf("SC_PAGE_SIZE")
    totals["memory"] = float(int(os.sysconf("SC_PHYS_PAGES") * page * 0.7))
    totals["object_store_memory"] = float(int(totals["memory"] * 0.3 / 0.7))
    for name, qty in (resources or {}).items():
        if not isinstance(name, str):
            raise TypeError(
                f"init(resources=...): resource names must be strings, got {_options.shown(name)}"
            )
        if name in _DEFAULT_RESOURCES:
            raise AssertionError(
                f"{resources} -> `{name}` cannot be a custom resource because it is one of the "
                f"default resources ({set(_DEFAULT_RESOURCES)}). Use `num_cpus` instead. "
                "For example, use `ray start --num-cpus=10` instead of "
                "`ray start --resources={'CPU': 10}`."
            )
        _check_total(f"resources={{{name!r}: ...}}", qty)
        totals[name] = float(qty)
    totals["node:127.0.0.1"] = 1.0
    totals["node:__internal_head__"] = 1.0
    return totals


def check_namespace(namespace: Any) -> str:
    if namespace is None:
        return str(uuid.uuid4())
    if not isinstance(namespace, str):
        raise TypeError("namespace must be None or a string.")
    if namespace == "":
        raise ValueError('"" is not a valid namespace. Pass None to not specify a namespace.')
    return namespace


# The open-files limit init() raises the soft limit to (never above the hard
# one): the driver holds a socket per child, so 1,000 actors need more than
# the 1,024 many systems start with. Ray raises it too.
OPEN_FILES_WANTED = 65536


def raise_open_files_limit() -> None:
    """Raise this process's soft RLIMIT_NOFILE toward ``OPEN_FILES_WANTED``."""
    try:
        import resource
    except ImportError:  # not a POSIX system
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES_WANTED)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
