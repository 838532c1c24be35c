"""``ray.util.placement_group``: reserve bundles of resources atomically (gang scheduling).

Ray's module path for ``asyncray._placement_group``, which holds the
implementation (``util`` itself is built on the public surface only).
"""

from __future__ import annotations

from .._placement_group import (
    PlacementGroup,
    PlacementGroupID,
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)

__all__ = [
    "PlacementGroup",
    "PlacementGroupID",
    "get_current_placement_group",
    "get_placement_group",
    "placement_group",
    "placement_group_table",
    "remove_placement_group",
]

# Ray's module path in reprs and pickles, as with `import ray`.
for _cls in (PlacementGroup, PlacementGroupID):
    _cls.__module__ = __name__
