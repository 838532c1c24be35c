"""Ray's scheduling strategies, as values for the ``scheduling_strategy`` option.

On one host, ``"DEFAULT"``, ``"SPREAD"`` and node affinity to this node all
mean "the host's free pool"; ``PlacementGroupSchedulingStrategy`` draws from
a placement group's bundle.
"""

from __future__ import annotations

from typing import Any


class PlacementGroupSchedulingStrategy:
    """Run in ``placement_group`` (bundle ``placement_group_bundle_index``, -1 for any)."""

    def __init__(
        self,
        placement_group: Any,
        placement_group_bundle_index: int = -1,
        placement_group_capture_child_tasks: bool | None = None,
    ) -> None:
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks

    def __repr__(self) -> str:
        return (
            f"PlacementGroupSchedulingStrategy({self.placement_group!r}, "
            f"placement_group_bundle_index={self.placement_group_bundle_index}, "
            f"placement_group_capture_child_tasks={self.placement_group_capture_child_tasks})"
        )


class NodeAffinitySchedulingStrategy:
    """Run on node ``node_id``; on one host only this node exists."""

    def __init__(
        self,
        node_id: str,
        soft: bool,
        _spill_on_unavailable: bool = False,
        _fail_on_unavailable: bool = False,
    ) -> None:
        self.node_id = node_id
        self.soft = soft
        self._spill_on_unavailable = _spill_on_unavailable
        self._fail_on_unavailable = _fail_on_unavailable


class NodeLabelSchedulingStrategy:
    """Run on a node whose labels match; on one host, the host itself."""

    def __init__(self, hard: dict[str, Any], *, soft: dict[str, Any] | None = None) -> None:
        self.hard = hard
        self.soft = soft or {}


__all__ = [
    "NodeAffinitySchedulingStrategy",
    "NodeLabelSchedulingStrategy",
    "PlacementGroupSchedulingStrategy",
]
