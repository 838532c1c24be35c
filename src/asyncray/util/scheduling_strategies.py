"""``ray.util.scheduling_strategies``: values for the ``scheduling_strategy`` option.

Ray's module path for ``asyncray._scheduling_strategies``.
"""

from __future__ import annotations

from .._scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    NodeLabelSchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)

__all__ = [
    "NodeAffinitySchedulingStrategy",
    "NodeLabelSchedulingStrategy",
    "PlacementGroupSchedulingStrategy",
]
