"""Placement groups on the runtime side: atomic reservations of resource bundles.

A group is created all or nothing: its bundles are taken from the host's
pool together, and each bundle becomes a ``ResourcePool`` of its own. Tasks
and actors scheduled into a group draw only from their bundle (or from any
bundle, for index -1), never from the free pool. ``STRICT_SPREAD`` with more
than one bundle cannot be satisfied on one host and stays ``PENDING``, as in
Ray. Removing a group ends the actors in it, fails its queued and running
tasks with ``TaskPlacementGroupRemoved``, and returns its resources.

A removed group's ``pg.ready()`` object is freed: a get of it is answered
with ``TaskPlacementGroupRemoved`` from its id (``ready_gone_payload``). The
record stays for ``placement_group_table`` among the newest
``REMOVED_GROUPS_KEPT`` removed ones (``retention.py``), so creating and
removing groups all day keeps memory flat.

``PlacementGroupManager`` is part of the ``Runtime`` and touches state only
on the runtime loop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .. import exceptions as exc
from .._wire import protocol as P
from .._wire import serialization as ser
from . import retention
from .scheduler import ResourcePool, Shape, shape_of

if TYPE_CHECKING:
    from .conn import Conn
    from .runtime import Runtime

# Ray reports this much of the ``bundle`` resource per bundle.
BUNDLE_UNITS = 1000.0
# What every ``pg.ready()`` object id starts with.
_READY_PREFIX = P.pg_ready_object_id(b"")[:-4]


class PlacementGroupRecord:
    """One placement group: its spec, state and (once created) its bundle pools."""

    def __init__(self, spec: P.CreatePlacementGroup, owner: Conn) -> None:
        self.spec = spec
        self.owner = owner
        self.job: str = owner.job  # a non-detached group is removed when its job ends
        self.pg_id = spec.pg_id
        self.state = "PENDING"
        self.bundles: list[ResourcePool] = []
        self.gpu_ids: list[list[int]] = []

    def pool_for(self, bundle: int, shape: Shape) -> ResourcePool | None:
        """The bundle that can run ``shape`` now (``bundle`` -1: any), or None."""
        if self.state != "CREATED":
            return None
        if bundle >= 0:
            pool = self.bundles[bundle] if bundle < len(self.bundles) else None
            return pool if pool is not None and pool.fits(shape) else None
        for pool in self.bundles:
            if pool.fits(shape):
                return pool
        return None


class PlacementGroupManager:
    """Placement-group handlers of the runtime (``runtime.groups``)."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.groups: dict[bytes, PlacementGroupRecord] = {}
        self.pending: list[PlacementGroupRecord] = []
        # Removed groups still in ``groups``, oldest first, at most ``removed_kept``.
        self.removed: deque[bytes] = deque()
        self.removed_kept = retention.current().removed_groups

    def __iter__(self) -> Iterator[PlacementGroupRecord]:
        return iter(self.groups.values())

    def get(self, pg_id: bytes) -> PlacementGroupRecord | None:
        return self.groups.get(pg_id)

    def is_gone(self, pg_id: bytes) -> bool:
        """The group was removed (or its record, long removed, was dropped): nothing will
        ever run in it."""
        group = self.groups.get(pg_id)
        return group is None or group.state == "REMOVED"

    # ================================================================ create

    def on_create(self, conn: Conn, msg: P.CreatePlacementGroup) -> None:
        group = PlacementGroupRecord(msg, conn)
        self.groups[msg.pg_id] = group
        self.rt.objects.create(P.pg_ready_object_id(msg.pg_id))
        self.pending.append(group)
        self.place_pending()

    def place_pending(self) -> None:
        """Create every pending group whose bundles all fit now, in creation order."""
        if not self.pending:
            return
        still: list[PlacementGroupRecord] = []
        for group in self.pending:
            if group.state == "PENDING" and not self._try_place(group):
                still.append(group)
        self.pending = still

    def _try_place(self, group: PlacementGroupRecord) -> bool:
        spec = group.spec
        if spec.strategy == "STRICT_SPREAD" and len(spec.bundles) > 1:
            return False  # needs one node per bundle: never on one host
        gpu_ids = self.rt.resources.acquire_all([shape_of(b) for b in spec.bundles])
        if gpu_ids is None:
            return False
        group.gpu_ids = gpu_ids
        group.bundles = [ResourcePool(b, gpu_ids=ids) for b, ids in zip(spec.bundles, gpu_ids)]
        group.state = "CREATED"
        self.rt.objects.seal(P.pg_ready_object_id(group.pg_id), spec.handle)
        return True

    # ================================================================ remove

    def on_remove(self, conn: Conn, msg: P.RemovePlacementGroup) -> None:
        group = self.groups.get(msg.pg_id)
        if group is None or group.state == "REMOVED":
            return
        was_created = group.state == "CREATED"
        group.state = "REMOVED"
        removed = removed_payload()
        ready_id = P.pg_ready_object_id(group.pg_id)
        ready = self.rt.objects.get(ready_id)
        if ready is not None and ready.data is None:
            self.rt.objects.seal(ready_id, removed, True)  # who waits on pg.ready() raises
        # The group's unit: the entry goes (later gets raise from ``ready_gone_payload``).
        self.rt.objects.release(ready_id)
        self.rt.fail_group_tasks(group.pg_id, removed)
        self.rt.actors.end_group_actors(group.pg_id)
        if was_created:
            for bundle, gpu_ids in zip(group.spec.bundles, group.gpu_ids):
                self.rt.resources.release(shape_of(bundle), gpu_ids)
        group.bundles = []
        group.gpu_ids = []
        self._keep_removed(group.pg_id)
        self.rt.dispatch()

    def end_job(self, job_id: str) -> None:
        """A driver's job ended: its groups are removed, except detached ones (as in Ray)."""
        for group in [g for g in self.groups.values() if g.job == job_id]:
            if not group.spec.detached and group.state != "REMOVED":
                self.on_remove(group.owner, P.RemovePlacementGroup(group.pg_id))

    def _keep_removed(self, pg_id: bytes) -> None:
        """Keep the removed group's record for inspection; drop the oldest beyond the bound."""
        self.removed.append(pg_id)
        while len(self.removed) > self.removed_kept:
            self.groups.pop(self.removed.popleft(), None)

    def ready_gone_payload(self, object_id: bytes) -> bytes | None:
        """The error for a ``pg.ready()`` object that is gone (its group was removed)."""
        if object_id.startswith(_READY_PREFIX):
            return removed_payload()
        return None

    # ================================================================ state

    def table(self, pg_id: bytes | None = None) -> Any:
        if pg_id is not None:
            group = self.groups.get(pg_id)
            return None if group is None else self._row(group)
        return {g.pg_id.hex(): self._row(g) for g in self.groups.values()}

    def _row(self, group: PlacementGroupRecord) -> dict[str, Any]:
        spec = group.spec
        return {
            "placement_group_id": group.pg_id.hex(),
            "name": spec.name,
            "bundles": {i: dict(b) for i, b in enumerate(spec.bundles)},
            "bundles_to_node_id": {i: "local" for i in range(len(spec.bundles))}
            if group.state == "CREATED"
            else {},
            "strategy": spec.strategy,
            "state": group.state,
            "creator_job_id": group.job,
            "is_detached": spec.detached,
            "stats": {"scheduling_state": "FINISHED" if group.state == "CREATED" else "PENDING"},
        }

    def lookup(self, namespace: str, name: str) -> bytes | None:
        for group in self.groups.values():
            spec = group.spec
            if spec.name == name and spec.namespace == namespace and group.state != "REMOVED":
                return spec.handle
        return None

    def derived_resources(self, available: bool) -> dict[str, float]:
        """Ray's per-group resources: ``CPU_group_<id>``, ``CPU_group_<i>_<id>``, ``bundle_*``."""
        out: dict[str, float] = {}
        for group in self.groups.values():
            if group.state != "CREATED":
                continue
            gid = group.pg_id.hex()
            for i, pool in enumerate(group.bundles):
                amounts = pool.available if available else pool.totals
                for name, qty in amounts.items():
                    if available and qty <= 1e-9:
                        continue
                    out[f"{name}_group_{i}_{gid}"] = qty
                    out[f"{name}_group_{gid}"] = out.get(f"{name}_group_{gid}", 0.0) + qty
                out[f"bundle_group_{i}_{gid}"] = BUNDLE_UNITS
                out[f"bundle_group_{gid}"] = out.get(f"bundle_group_{gid}", 0.0) + BUNDLE_UNITS
        return out


def removed_payload() -> bytes:
    """``pg.ready()`` and the tasks of a removed group raise this, as in Ray."""
    return ser.dumps_function(exc.TaskPlacementGroupRemoved())
