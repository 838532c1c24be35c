"""How many records of ended things the kernel keeps: bounded growth.

Live tasks, actors, objects, streams, queues and placement groups each have
a record for exactly as long as they live. What ended leaves at most a few
records behind for inspection, a fixed number of the most recent ones, so a
service that creates actors and groups all day runs in flat memory:

- a dead actor keeps a *tombstone* (its death error, ~0.5 KB; the ~3 KB
  record goes): calls on its handle raise that ``ActorDiedError`` with its
  cause. Beyond the newest ``maximum_gcs_destroyed_actor_cached_count``
  (Ray's knob, set by ``init(_system_config=...)`` or the environment
  variable ``RAY_maximum_gcs_destroyed_actor_cached_count``) they raise an
  ``ActorDiedError`` that says the record was dropped.
- a removed placement group keeps its record (``placement_group_table``
  shows it ``REMOVED``) among the newest ``REMOVED_GROUPS_KEPT``.

Finished tasks keep no record at all (their results are objects, freed by
reference counting), so Ray's ``task_events_max_num_task_in_gcs`` has
nothing to bound here.

``init`` calls ``configure`` once per session; the managers read
``current()`` when the runtime is built.
"""

from __future__ import annotations

import numbers
import os
from typing import Any, NamedTuple

# Ray's name for the number of dead actors the GCS remembers.
DEAD_ACTORS_KEY = "maximum_gcs_destroyed_actor_cached_count"
# Dead actors whose death error is kept (~0.5 KB each: ~5 MB at most). Ray
# keeps 100 000 in its GCS process; here the records live in the driver, so
# fewer. Older ones still raise ActorDiedError, without their cause.
DEAD_ACTORS_KEPT = 10_000
# Removed placement groups whose record is kept (~1 KB each), for
# ``placement_group_table``. Ray keeps them all.
REMOVED_GROUPS_KEPT = 1_000


class Retention(NamedTuple):
    """The bounds, as the runtime uses them."""

    dead_actors: int
    removed_groups: int


_current = Retention(DEAD_ACTORS_KEPT, REMOVED_GROUPS_KEPT)


def configure(system_config: dict[str, Any] | None) -> None:
    """Set the bounds of the next runtime from ``init``'s ``_system_config`` (or Ray's
    ``RAY_<name>`` environment variable); defaults otherwise.

    Raises:
        ValueError: the value is not a non-negative whole number.
    """
    global _current
    value: Any = (system_config or {}).get(DEAD_ACTORS_KEY)
    source = f"_system_config[{DEAD_ACTORS_KEY!r}]"
    if value is None:
        env = os.environ.get(f"RAY_{DEAD_ACTORS_KEY}")
        if env is not None:
            source = f"the environment variable RAY_{DEAD_ACTORS_KEY}"
            try:
                value = int(env)
            except ValueError:
                value = env
    if value is None:
        value = DEAD_ACTORS_KEPT
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(
            f"{source} must be a non-negative whole number of dead actors to remember, "
            f"got {value!r}"
        )
    _current = Retention(int(value), REMOVED_GROUPS_KEPT)


def current() -> Retention:
    """The bounds ``init`` configured (the defaults if it did not)."""
    return _current
