"""The records that describe a benchmark: what to time, how to name and scale it.

A :class:`Workload` names one benchmark and holds up to two setup functions:
``runtime`` (written once against the Ray API, run on ``ray`` and
``asyncray``) and ``peer`` (written against :class:`PeerPool`, run on the
standard-library and loky pools). A setup does its one-off work (create
actors, put an object) and returns a :class:`Prepared`: the function to time,
its multiplier (work units per call) and an optional cleanup.

Workloads sharing a ``group`` run under one ``init()`` (or one pool): the
group decides the init arguments, so Ray's phases stay separate.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol

DEFAULT_GROUP = "default"
CUSTOM_GROUP = "custom"
"""Ray's phase 2: ``init(resources={"custom": 100})`` for placement groups."""
SCALING_GROUP = "scaling"
"""The scaling curves: a plain ``init()`` of their own (quick mode skips them)."""
CLIENT_GROUP = "client"
"""A driver connected to a shared head: ``init(address="auto")``, with
``$ASYNCRAY_HEAD_DIR`` naming the directory of a head the harness starts
(``asyncray start --head``) for the group and stops after it (asyncray only)."""

RATE = "rate"  # fn() is timed by harness.time_rate
SAMPLE = "sample"  # fn() returns {metric: value}; one call per trial
FRESH = "fresh"  # measured by the parent in fresh processes (bench/fresh.py)


def cpus_group(n: int) -> str:
    """Group name for ``init(num_cpus=n)``; the default group when ``n`` is all cores."""
    return DEFAULT_GROUP if n == os.cpu_count() else f"cpus={n}"


def init_kwargs(group: str) -> dict[str, Any]:
    """Keyword arguments for the runtime's ``init()`` in ``group``."""
    if group == CUSTOM_GROUP:
        return {"resources": {"custom": 100}}
    if group == CLIENT_GROUP:
        return {"address": "auto"}
    if group.startswith("cpus="):
        return {"num_cpus": int(group.removeprefix("cpus="))}
    return {}


def pool_workers(group: str) -> int:
    """Number of worker processes a peer pool gets in ``group``."""
    if group.startswith("cpus="):
        return int(group.removeprefix("cpus="))
    return os.cpu_count() or 1


@dataclass
class Prepared:
    """A ready-to-time workload: ``fn`` does ``multiplier`` units of work per call."""

    fn: Callable[[], Any]
    multiplier: float = 1.0
    cleanup: Callable[[], None] | None = None


@dataclass(frozen=True)
class Metric:
    """One reported figure: a row of the table."""

    name: str
    unit: str
    higher_is_better: bool = True


class PeerPool(Protocol):
    """What a standard-library or loky pool offers the peer workloads.

    ``ops`` says which of ``call`` (one synchronous call) and ``many`` (submit
    a batch, then collect every result) the pool implements.
    """

    ops: frozenset[str]

    def call(self, fn: Callable[..., Any], *args: Any) -> Any: ...

    def many(self, fn: Callable[..., Any], args: list[tuple[Any, ...]]) -> list[Any]: ...

    def close(self) -> None: ...


@dataclass
class Scaled:
    """Base for contexts: ``n(base)`` scales a work size by ``scale`` (quick mode)."""

    scale: float

    def n(self, base: int, minimum: int = 1) -> int:
        """Return ``base`` scaled down by ``scale``, at least ``minimum``."""
        return max(minimum, int(base * self.scale))


@dataclass
class RuntimeCtx(Scaled):
    """What a runtime setup gets: the module, its remote handles, Ray's ``n_cpu``."""

    rt: ModuleType = field(default=None)  # type: ignore[assignment]
    defs: Any = None
    n_cpu: int = max(1, (os.cpu_count() or 2) // 2)


@dataclass
class PeerCtx(Scaled):
    """What a peer setup gets: the pool."""

    pool: PeerPool = field(default=None)  # type: ignore[assignment]


@dataclass(frozen=True)
class Workload:
    """One benchmark, with its implementations and where it runs."""

    name: str
    unit: str
    kind: str = RATE
    group: str = DEFAULT_GROUP
    runtime: Callable[[RuntimeCtx], Prepared] | None = None
    peer: Callable[[PeerCtx], Prepared] | None = None
    peer_needs: frozenset[str] = frozenset()
    metrics: tuple[Metric, ...] = ()
    higher_is_better: bool = True
    note: str = ""
    # Run in a child process of its own, after the others: for figures that
    # what ran before would skew (asyncray forks its zygote from the driver
    # at init(), so every child would map the heap earlier workloads grew).
    own_process: bool = False
    # For a ``client:`` workload: the embedded workload it repeats through a
    # connected driver; the report prints the ratio client / embedded.
    embedded: str = ""
    # If set, the only systems that run this workload (rows Ray cannot run
    # fairly or within the machine, such as 1,000 of its actors).
    systems: tuple[str, ...] = ()

    def metric_list(self) -> tuple[Metric, ...]:
        """The table rows this workload produces (one, named as the workload, by default)."""
        return self.metrics or (Metric(self.name, self.unit, self.higher_is_better),)
