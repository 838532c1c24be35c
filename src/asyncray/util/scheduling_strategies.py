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

# Ray's module path in reprs and pickles, as with `import ray`.
for _cls in (
    NodeAffinitySchedulingStrategy,
    NodeLabelSchedulingStrategy,
    PlacementGroupSchedulingStrategy,
):
    _cls.__module__ = __name__
