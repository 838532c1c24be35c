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

- an ended task or actor call keeps one row (~300 bytes: its name, process,
  times and outcome) for the state API and the timeline, among the newest
  ``task_events_max_num_task_in_gcs`` (Ray's knob and variable, as above).
  Its results are objects, freed by reference counting.

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
# Ray's name for the number of task events the GCS keeps.
TASK_EVENTS_KEY = "task_events_max_num_task_in_gcs"
# Ended tasks and calls whose row is kept (~300 bytes each: ~3 MB at most).
# Ray keeps 100 000.
TASK_EVENTS_KEPT = 10_000


class Retention(NamedTuple):
    """The bounds, as the runtime uses them."""

    dead_actors: int
    removed_groups: int
    task_events: int


_current = Retention(DEAD_ACTORS_KEPT, REMOVED_GROUPS_KEPT, TASK_EVENTS_KEPT)


def configure(system_config: dict[str, Any] | None) -> None:
    """Set the bounds of the next runtime from ``init``'s ``_system_config`` (or Ray's
    ``RAY_<name>`` environment variable); defaults otherwise.

    Raises:
        ValueError: the value is not a non-negative whole number.
    """
    global _current
    dead = _bound(system_config, DEAD_ACTORS_KEY, DEAD_ACTORS_KEPT, "dead actors to remember")
    events = _bound(system_config, TASK_EVENTS_KEY, TASK_EVENTS_KEPT, "ended tasks to remember")
    _current = Retention(dead, REMOVED_GROUPS_KEPT, events)


def _bound(system_config: dict[str, Any] | None, key: str, default: int, what: str) -> int:
    """``_system_config[key]``, else ``RAY_<key>``, else ``default``: a whole number >= 0."""
    value: Any = (system_config or {}).get(key)
    source = f"_system_config[{key!r}]"
    if value is None:
        env = os.environ.get(f"RAY_{key}")
        if env is not None:
            source = f"the environment variable RAY_{key}"
            try:
                value = int(env)
            except ValueError:
                value = env
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{source} must be a non-negative whole number of {what}, got {value!r}")
    return int(value)


def current() -> Retention:
    """The bounds ``init`` configured (the defaults if it did not)."""
    return _current
