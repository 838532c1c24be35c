"""Ray's utilities under Ray's module paths: ``ActorPool``, ``queue``, placement groups."""

from __future__ import annotations

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
    "get_current_placement_group",
    "get_placement_group",
    "list_named_actors",
    "placement_group",
    "placement_group_table",
    "remove_placement_group",
]


def __getattr__(name: str) -> Any:
    # Imported on first use: programs that only use placement groups skip it.
    if name == "ActorPool":
        from .actor_pool import ActorPool

        return ActorPool
    raise AttributeError(f"module 'asyncray.util' has no attribute {name!r}")
