"""Ray's utilities under Ray's module paths: ``ActorPool``, ``queue``, placement groups,
``multiprocessing.Pool``, the ``joblib`` backend, ``inspect_serializability`` and the
state API (``util.state``); ``as_completed`` and ``map_unordered``."""

from __future__ import annotations

import importlib
from typing import Any

from ..actor import list_named_actors
from .placement_group import (
    PlacementGroup,
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)

__all__ = [
    "ActorPool",
    "PlacementGroup",
    "as_completed",
    "get_current_placement_group",
    "get_placement_group",
    "inspect_serializability",
    "list_named_actors",
    "map_unordered",
    "placement_group",
    "placement_group_table",
    "remove_placement_group",
]


# Submodules that ``import ray; ray.util.<name>`` reaches, as in Ray; loaded on
# first use, so programs that only use placement groups skip them.
# ``joblib`` needs joblib installed: reaching it without raises joblib's ImportError.
_LAZY_SUBMODULES = (
    "queue",
    "actor_pool",
    "scheduling_strategies",
    "multiprocessing",
    "joblib",
    "check_serialize",
    "helpers",
    "state",
)


def __getattr__(name: str) -> Any:
    if name == "ActorPool":
        from .actor_pool import ActorPool

        return ActorPool
    if name in ("as_completed", "map_unordered"):
        from . import helpers

        return getattr(helpers, name)
    if name == "inspect_serializability":
        from .check_serialize import inspect_serializability

        return inspect_serializability
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'asyncray.util' has no attribute {name!r}")
