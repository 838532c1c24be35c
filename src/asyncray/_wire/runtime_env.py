"""``runtime_env``: the environment a task or actor submitted now runs under.

As in Ray, a task or actor with no ``runtime_env`` of its own inherits its
parent's (the job's, in a driver; the submitting worker's, in a task or
actor), and one with its own is merged over the parent's: its fields replace
the parent's, ``env_vars`` merge variable by variable. The result travels as a
``WorkerEnv`` whose key is the env's canonical JSON; the kernel runs it on a
worker set up for that key.
"""

from __future__ import annotations

import os
from typing import Any

from .. import _options, _task_context
from . import protocol as P

# (parent key, own canonical JSON) → the merged env: built once per pair.
# Emptied when full, so a program that makes an env per task stays bounded.
_merged: dict[tuple[str, str], P.WorkerEnv | None] = {}
_MERGED_MAX = 1024


class OwnEnv:
    """A task's or actor's own ``runtime_env`` option, checked and in canonical form."""

    __slots__ = ("fields", "key")

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields
        self.key = _canonical(fields)


def own_env(runtime_env: Any) -> OwnEnv | None:
    """The ``runtime_env`` option, checked (``TypeError``/``ValueError`` as Ray's), or None."""
    fields = _options.normalize_runtime_env(runtime_env)
    return None if fields is None else OwnEnv(fields)


def for_submit(own: OwnEnv | None) -> P.WorkerEnv | None:
    """The env a task or actor submitted now runs under: ``own`` merged over the parent's."""
    parent: P.WorkerEnv | None = _task_context.runtime_env()
    if own is None:
        return parent
    cache_key = ("" if parent is None else parent.key, own.key)
    env = _merged.get(cache_key, _merged)
    if env is _merged:
        fields = merge(None if parent is None else _parsed(parent.key), own.fields)
        if len(_merged) >= _MERGED_MAX:
            _merged.clear()
        env = _merged[cache_key] = worker_env(fields)
    return env  # type: ignore[return-value]


def merge(parent: dict[str, Any] | None, child: dict[str, Any]) -> dict[str, Any]:
    """Ray's merge: the child's fields replace the parent's; ``env_vars`` merge by variable."""
    out = dict(parent or {})
    env_vars = {**out.get("env_vars", {}), **child.get("env_vars", {})}
    out.update(child)
    if env_vars:
        out["env_vars"] = env_vars
    return out


def worker_env(fields: dict[str, Any] | None) -> P.WorkerEnv | None:
    """The ``WorkerEnv`` of canonical ``fields`` (None for none)."""
    if not fields:
        return None
    py_paths: list[str] = []
    for path in fields.get("py_modules", ()):
        # A package directory or a module file is imported by its own name, so
        # its parent directory goes on the path.
        parent = os.path.dirname(path.rstrip(os.sep))
        if parent not in py_paths:
            py_paths.append(parent)
    return P.WorkerEnv(
        key=_canonical(fields),
        env_vars=fields.get("env_vars", {}),
        working_dir=fields.get("working_dir", ""),
        py_paths=py_paths,
    )


def _canonical(fields: dict[str, Any]) -> str:
    import json  # only where a runtime_env is used: ``import asyncray`` stays light

    return json.dumps(fields, sort_keys=True)


def _parsed(key: str) -> dict[str, Any]:
    import json

    parsed: dict[str, Any] = json.loads(key)
    return parsed


def set_job_env(runtime_env: Any) -> None:
    """``init(runtime_env=...)``: the env every task and actor of this driver's job inherits."""
    fields = _options.normalize_runtime_env(runtime_env, job=True)
    _task_context.set_runtime_env(worker_env(fields))


def current() -> dict[str, Any]:
    """The env this process runs under, as a dict (``RuntimeContext.runtime_env``)."""
    env: P.WorkerEnv | None = _task_context.runtime_env()
    return {} if env is None else _parsed(env.key)


def current_string() -> str:
    """The env this process runs under, as JSON (``get_runtime_env_string()``)."""
    env: P.WorkerEnv | None = _task_context.runtime_env()
    return "{}" if env is None else env.key
