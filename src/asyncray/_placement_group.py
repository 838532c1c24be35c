"""Placement groups: reserve bundles of resources atomically (gang scheduling).

``placement_group(bundles)`` returns at once; the group is created in the
background when all its bundles fit together. ``pg.ready()`` is an
``ObjectRef`` (usable with ``get``, ``wait`` and ``await``) and ``pg.wait()``
blocks with a timeout. Tasks and actors scheduled with
``PlacementGroupSchedulingStrategy(pg, i)`` draw from bundle ``i`` only.
"""

from __future__ import annotations

from typing import Any

from . import _api, _options, _task_context
from ._clients import session_ids
from ._wire import protocol as P
from ._wire import serialization as ser
from .object_ref import ObjectRef

VALID_STRATEGIES = frozenset({"PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"})


class BinaryID:
    """An id with Ray's accessors (``.hex()``, ``.binary()``): placement groups, actors."""

    def __init__(self, binary: bytes) -> None:
        self._binary = binary

    def hex(self) -> str:
        return self._binary.hex()

    def binary(self) -> bytes:
        return self._binary

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._binary == self._binary

    def __hash__(self) -> int:
        return hash(self._binary)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hex()})"


class PlacementGroupID(BinaryID):
    """The id of a placement group."""


class PlacementGroup:
    """A handle to a placement group."""

    def __init__(self, id: PlacementGroupID, bundle_cache: list[dict[str, float]] | None = None):
        self.id = id
        self.bundle_cache = bundle_cache or []

    @property
    def bundle_specs(self) -> list[dict[str, float]]:
        return [dict(b) for b in self.bundle_cache]

    @property
    def bundle_count(self) -> int:
        return len(self.bundle_cache)

    @property
    def is_empty(self) -> bool:
        return not self.bundle_cache

    def ready(self) -> ObjectRef[PlacementGroup]:
        """A ref that resolves to this group once it is created (raises if it was removed).

        Raises:
            ValueError: the group was made in an earlier session (before ``shutdown()``).
        """
        _api._auto_init()
        check_session(self)
        return ObjectRef(P.pg_ready_object_id(self.id.binary()))

    def wait(self, timeout_seconds: float = 30) -> bool:
        """Block until the group is created (True) or ``timeout_seconds`` pass (False)."""
        _options.check_timeout("timeout_seconds", timeout_seconds)
        ready, _ = _api.wait([self.ready()], timeout=timeout_seconds)
        if ready and _state(self) != "CREATED":  # removed (or its record long dropped)
            raise Exception(f"Placement group {self.id!r} does not exist.")
        return bool(ready)

    async def wait_async(self, timeout_seconds: float = 30) -> bool:
        """The awaitable twin of ``wait``."""
        _options.check_timeout("timeout_seconds", timeout_seconds)
        ready, _ = await _api.wait_async([self.ready()], timeout=timeout_seconds)
        return bool(ready) and _state(self) == "CREATED"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"PlacementGroup({self.id.hex()}, bundles={self.bundle_cache})"

    def __reduce__(self) -> Any:
        return (_rebuild, (self.id.binary(), self.bundle_cache))


def _rebuild(binary: bytes, bundles: list[dict[str, float]]) -> PlacementGroup:
    return PlacementGroup(PlacementGroupID(binary), bundles)


def check_session(pg: PlacementGroup) -> None:
    """Raise ``ValueError`` if ``pg`` was made in an earlier session of this process.

    Such a group no longer exists: a task scheduled on it would wait for ever.
    """
    if session_ids.from_ended_session(pg.id.binary()):
        raise ValueError(
            f"Placement group {pg.id.hex()} was created in an earlier asyncray session (before "
            "the last shutdown()): placement groups do not survive shutdown(). Create it "
            "again in this session."
        )


def _state(pg: PlacementGroup) -> str | None:
    row = _api.client().query_arg("pg_table", pg.id.hex())
    return None if row is None else row["state"]


def _check_bundles(bundles: Any) -> list[dict[str, float]]:
    if not isinstance(bundles, list):
        raise ValueError(f"Placement group bundles must be a list, got {type(bundles)}.")
    if not bundles:
        raise ValueError(
            "Bundles must be a non-empty list of resource dictionaries. For example: "
            '`[{"CPU": 1.0}, {"GPU": 1.0}]`. Got empty list instead.'
        )
    out = []
    for i, bundle in enumerate(bundles):
        if not isinstance(bundle, dict) or not all(isinstance(k, str) for k in bundle):
            raise ValueError(
                "Bundles must be a non-empty list of resource dictionaries. For example: "
                f'`[{{"CPU": 1.0}}, {{"GPU": 1.0}}]`. Bundle {i} is {bundle!r}.'
            )
        for name, qty in bundle.items():
            try:
                _options._check_quantity(name, qty)
            except (TypeError, ValueError) as e:
                raise type(e)(f"Placement group bundle {i}: {e}") from None
        if not bundle or all(v == 0 for v in bundle.values()):
            raise ValueError(
                "Bundles cannot be an empty dictionary or resources with only 0 values. "
                f"Bundles: {bundles}"
            )
        if "bundle" in bundle:
            raise ValueError("The resource name 'bundle' is reserved for placement groups.")
        if "object_store_memory" in bundle:
            _options.warn_object_store_memory("bundles")
        out.append({k: float(v) for k, v in bundle.items() if v > 0})
    return out


def placement_group(
    bundles: list[dict[str, float]],
    strategy: str = "PACK",
    name: str = "",
    lifetime: str | None = None,
    _soft_target_node_id: Any = None,
    bundle_label_selector: Any = None,
    **kwargs: Any,
) -> PlacementGroup:
    """Reserve ``bundles`` atomically; returns the handle at once.

    Raises:
        ValueError: bad bundles, strategy or lifetime; a bundle larger than this host.
    """
    bundle_list = _check_bundles(bundles)
    strategy = strategy or "PACK"
    if not isinstance(strategy, str) or strategy not in VALID_STRATEGIES:
        raise ValueError(
            f"Invalid placement group strategy {strategy}. Supported strategies are: "
            f"{sorted(VALID_STRATEGIES)}."
        )
    if name is not None and not isinstance(name, str):
        raise TypeError(f"Placement group name must be a string, got {type(name)}.")
    if lifetime not in (None, "detached"):
        raise ValueError(
            "Placement group `lifetime` argument must be either `None` or 'detached'. "
            f"Got {lifetime}."
        )
    session = _api._auto_init()
    totals = session.totals
    for i, bundle in enumerate(bundle_list):
        parts = _options.shortfall(bundle, totals)
        if parts is not None:
            raise ValueError(
                f"Bundle {i} {bundle} can never be placed on this host: it asks for {parts}. "
                "Shrink the bundle or pass more resources to asyncray.init()."
            )
    if lifetime == "detached":
        _api.warn_detached_if_embedded("placement group")
    pg_id = session_ids.new_id(16)
    handle = PlacementGroup(PlacementGroupID(pg_id), bundle_list)
    session.client.post(
        P.CreatePlacementGroup(
            pg_id=pg_id,
            bundles=bundle_list,
            strategy=strategy,
            name=name or "",
            namespace=session.namespace,
            detached=lifetime == "detached",
            handle=ser.dumps_function(handle),
        )
    )
    return handle


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Remove the group: its actors die, its tasks fail, its resources return."""
    if not isinstance(placement_group, PlacementGroup):
        raise TypeError(
            f"remove_placement_group expects a PlacementGroup, got {type(placement_group)}"
        )
    if session_ids.from_ended_session(placement_group.id.binary()):
        return  # removed with its session
    _api.client().post(P.RemovePlacementGroup(placement_group.id.binary()))


def get_placement_group(placement_group_name: str) -> PlacementGroup:
    """The live group named ``placement_group_name`` in this namespace."""
    if not placement_group_name:
        raise ValueError("Please supply a non-empty value to get_placement_group")
    if not isinstance(placement_group_name, str):
        raise TypeError(f"placement_group_name must be a string, got {type(placement_group_name)}")
    session = _api._auto_init()
    blob = session.client.query_arg("pg_by_name", f"{session.namespace}\x00{placement_group_name}")
    if blob is None:
        raise ValueError(f"Failed to look up placement group with name: {placement_group_name}")
    return ser.loads(blob)


def placement_group_table(placement_group: PlacementGroup | None = None) -> Any:
    """State of one group, or of all groups keyed by id."""
    if placement_group is not None and not isinstance(placement_group, PlacementGroup):
        raise TypeError(
            f"placement_group_table expects a PlacementGroup or None, got {type(placement_group)}"
        )
    client = _api.client()
    if placement_group is None:
        table = client.query_arg("pg_table", "")
        return {pg_id: _ray_row(row) for pg_id, row in table.items()}
    return _ray_row(client.query_arg("pg_table", placement_group.id.hex()))


# What the kernel's rows carry beyond Ray's ``placement_group_table`` (for the state API).
_STATE_API_ONLY = ("creator_job_id", "is_detached")


def _ray_row(row: Any) -> Any:
    if isinstance(row, dict):
        for key in _STATE_API_ONLY:
            row.pop(key, None)
    return row


def get_current_placement_group() -> PlacementGroup | None:
    """The group the calling task or actor runs in (None in the driver)."""
    return _task_context.current_task().placement_group
