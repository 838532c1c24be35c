"""Where a task or actor runs: the ``scheduling_strategy`` option, resolved at ``.remote()``.

On one host there are two pools: the host's free resources, and the bundles
of placement groups. This module turns Ray's options — a strategy value, the
deprecated ``placement_group=`` keywords, or the parent's captured group —
into ``(group id, bundle index, capture children)`` and checks, at the call
site as Ray does, that the request fits the chosen bundle(s).
"""

from __future__ import annotations

from typing import Any

from . import _task_context

NO_GROUP: tuple[bytes, int, bool] = (b"", -1, False)
# The options that name a strategy or a group.
_GROUP_OPTIONS = frozenset(
    {
        "scheduling_strategy",
        "placement_group",
        "placement_group_bundle_index",
        "placement_group_capture_child_tasks",
    }
)


def resolve(
    options: dict[str, Any], request: dict[str, float], what: str
) -> tuple[bytes, int, bool]:
    """``(pg_id, bundle_index, capture)`` for a submission; ``NO_GROUP`` for the host."""
    if not options.keys() & _GROUP_OPTIONS:
        # The common case, on every .remote(): no strategy, so only a parent's
        # captured group could apply (the imports below cost more than this).
        ctx = _task_context.current_task()
        if ctx.placement_group is None or not ctx.pg_capture:
            return NO_GROUP
    from ._placement_group import PlacementGroup, check_session
    from ._scheduling_strategies import (
        NodeAffinitySchedulingStrategy,
        NodeLabelSchedulingStrategy,
        PlacementGroupSchedulingStrategy,
    )

    strategy = options.get("scheduling_strategy")
    group = options.get("placement_group", "default")
    index = options.get("placement_group_bundle_index", -1)
    capture = options.get("placement_group_capture_child_tasks")
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        group = strategy.placement_group
        index = strategy.placement_group_bundle_index
        capture = strategy.placement_group_capture_child_tasks
    elif strategy in ("DEFAULT", "SPREAD"):
        return NO_GROUP  # also opts out of a parent's captured group
    elif isinstance(strategy, NodeAffinitySchedulingStrategy):
        _check_node(strategy)
        return NO_GROUP
    elif isinstance(strategy, NodeLabelSchedulingStrategy):
        return NO_GROUP
    elif strategy is not None:
        raise ValueError(
            f"Invalid scheduling_strategy {strategy!r}: use None, 'DEFAULT', 'SPREAD', "
            "PlacementGroupSchedulingStrategy, NodeAffinitySchedulingStrategy or "
            "NodeLabelSchedulingStrategy."
        )
    elif group == "default":
        ctx = _task_context.current_task()
        if ctx.placement_group is None or not ctx.pg_capture:
            if index not in (-1, None):
                raise ValueError(
                    "If placement_group is not set, the value of placement_group_bundle_index "
                    "must be -1."
                )
            return NO_GROUP
        group, index, capture = ctx.placement_group, -1, True
    if group is None:
        return NO_GROUP
    if not isinstance(group, PlacementGroup):
        raise TypeError(f"placement_group must be a PlacementGroup, got {type(group)}")
    check_session(group)
    index = -1 if index is None else index
    count = group.bundle_count
    if isinstance(index, bool) or not isinstance(index, int) or index < -1 or index >= count:
        raise ValueError(
            f"placement group bundle index {index} is invalid. Valid placement group indexes: "
            f"0-{count}"
        )
    bundles = group.bundle_specs if index == -1 else [group.bundle_specs[index]]
    wanted = {k: v for k, v in request.items() if v > 0}
    if not any(all(b.get(k, 0.0) + 1e-9 >= v for k, v in wanted.items()) for b in bundles):
        raise ValueError(
            f"Cannot schedule {what} with the placement group because the resource request "
            f"{wanted} cannot fit into any bundles for the placement group, {bundles}."
        )
    return group.id.binary(), index, bool(capture)


def _check_node(strategy: Any) -> None:
    from . import _api

    if strategy.soft:
        return
    node_id = _api._auto_init().node_id
    if strategy.node_id != node_id:
        from .exceptions import TaskUnschedulableError

        raise TaskUnschedulableError(
            f"NodeAffinitySchedulingStrategy(node_id={strategy.node_id!r}, soft=False) names a "
            f"node that is not this host ({node_id}); use soft=True or this node's id."
        )
