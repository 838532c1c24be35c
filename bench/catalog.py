"""Every workload, in run order, and which systems can run it.

Names are byte-for-byte those ``ray microbenchmark`` prints where Ray has the
benchmark; the rest (payload and worker scaling, latency, driver load, init
to first result, idle memory, generators, cancel) are asyncray's additions.

The ``client:`` workloads are those of Ray's client microbenchmark
(``ray_client_microbenchmark.py``: get, put, put gigabytes, tasks and put
batch, 1:1 actor calls sync/async/concurrent), plus ``client: tasks
sync``/``async``, each with the body of its embedded counterpart, run by a
driver connected to a shared head (:data:`~bench.spec.CLIENT_GROUP`), and
``connect time``: a fresh process's import, ``init(address="auto")`` and
first result. They run on asyncray only: Ray's client mode needs a
``ray://`` client server on a Ray cluster.
"""

from __future__ import annotations

import os

from bench import peers
from bench import workloads as w
from bench.spec import (
    CLIENT_GROUP,
    CUSTOM_GROUP,
    FRESH,
    SAMPLE,
    SCALING_GROUP,
    Metric,
    Workload,
    cpus_group,
)

RUNTIMES = ("asyncray", "ray")
PEERS = tuple(peers.POOLS)
SYSTEMS = RUNTIMES + PEERS

CALL = frozenset({"call"})
MANY = frozenset({"many"})

PAYLOADS = (("1 B", 1, 1000), ("1 KB", 1000, 1000), ("100 KB", 100_000, 200))
PAYLOADS += (("1 MB", 1_000_000, 50), ("10 MB", 10_000_000, 10))
"""(label, bytes, tasks per call) for payload scaling."""

WORKER_COUNTS = (1, 2, 4)
MEMORY_GROUP = "memory"
"""A fresh ``init()`` with defaults, for the memory-with-actors workload."""
LATENCY_SAMPLES = 200

PINGPONG = "socketpair ping-pong, one core (physical limit)"
PINGPONG_TWO_CORES = "socketpair ping-pong, two cores"
LIMIT_COMPARED = ("single client tasks sync", "1:1 actor calls sync")
"""Rows the report prints as a share of :data:`PINGPONG` and :data:`PINGPONG_TWO_CORES`."""
MEMCPY = "memcpy"
"""The physical limit of the GB/s rows in the chart (a numpy copy, no runtime)."""
COMPOSITE_UNITS = frozenset({"batches/s", "loops/s", "rounds/s"})
"""Rates whose unit is many calls (1,000 tasks, a wait over 1k refs, 10 tasks
with a 100 MiB argument): the chart sets no per-call limit for them."""
MILLION_ENV = "ASYNCRAY_BENCH_1M"
"""Set to 1 to add the 1M-pending-tasks point (opt-in: minutes, GBs)."""
RAY_PENDING_MAX = 10_000
"""Ray runs the pending and ref-count curves up to this N (its ~2k tasks/s and
puts/s would make larger N take minutes per trial)."""

FRESH_METRICS = (
    Metric("init to first result", "s", higher_is_better=False),
    Metric("idle memory (driver + children RSS)", "MB", higher_is_better=False),
)
CONNECT_METRICS = (
    Metric("connect time", "ms", higher_is_better=False),
    Metric("connected driver idle memory (RSS)", "MB", higher_is_better=False),
)

CLIENT_WORKLOADS = (
    # (name, unit, setup, embedded counterpart); Ray's client names where it has them
    ("client: get calls", "gets/s", w.setup_get_calls, "single client get calls (Plasma Store)"),
    ("client: put calls", "puts/s", w.setup_put_calls, "single client put calls (Plasma Store)"),
    (
        "client: tasks and put batch",
        "puts/s",
        w.setup_multi_put_calls,
        "multi client put calls (Plasma Store)",
    ),
    ("client: put gigabytes", "GB/s", w.setup_put_gigabytes, "single client put gigabytes"),
    ("client: tasks sync", "tasks/s", w.setup_tasks_sync, "single client tasks sync"),
    ("client: tasks async", "tasks/s", w.setup_tasks_async, "single client tasks async"),
    ("client: 1:1 actor calls sync", "calls/s", w.setup_actor_sync, "1:1 actor calls sync"),
    ("client: 1:1 actor calls async", "calls/s", w.setup_actor_async, "1:1 actor calls async"),
    (
        "client: 1:1 actor calls concurrent",
        "calls/s",
        w.setup_actor_concurrent,
        "1:1 actor calls concurrent",
    ),
)
"""The connected-driver variants of embedded workloads (same setup functions)."""


def _build() -> list[Workload]:
    wl = [
        Workload(
            "init to first result",
            "s",
            kind=FRESH,
            peer_needs=CALL,
            metrics=FRESH_METRICS,
            note="fresh process: import, init, get(f.remote()); idle tree memory after",
        ),
        Workload("single client get calls (Plasma Store)", "gets/s", runtime=w.setup_get_calls),
        Workload("single client put calls (Plasma Store)", "puts/s", runtime=w.setup_put_calls),
        Workload(
            "multi client put calls (Plasma Store)", "puts/s", runtime=w.setup_multi_put_calls
        ),
        Workload("single client put gigabytes", "GB/s", runtime=w.setup_put_gigabytes),
        Workload(
            "single client tasks and get batch",
            "batches/s",
            runtime=w.setup_tasks_batch,
            peer=peers.setup_tasks_batch,
            peer_needs=MANY,
        ),
        Workload("multi client put gigabytes", "GB/s", runtime=w.setup_multi_put_gigabytes),
        Workload(
            "single client get object containing 10k refs", "gets/s", runtime=w.setup_get_10k_refs
        ),
        Workload("single client wait 1k refs", "loops/s", runtime=w.setup_wait_1k_refs),
        Workload(
            "single client tasks sync",
            "tasks/s",
            runtime=w.setup_tasks_sync,
            peer=peers.setup_tasks_sync,
            peer_needs=CALL,
        ),
        Workload(
            "single client tasks async",
            "tasks/s",
            runtime=w.setup_tasks_async,
            peer=peers.setup_tasks_async,
            peer_needs=MANY,
        ),
        Workload("multi client tasks async", "tasks/s", runtime=w.setup_multi_client_tasks),
        Workload("1:1 actor calls sync", "calls/s", runtime=w.setup_actor_sync),
        Workload("1:1 actor calls async", "calls/s", runtime=w.setup_actor_async),
        Workload("1:1 actor calls concurrent", "calls/s", runtime=w.setup_actor_concurrent),
        Workload(
            "1:n actor calls async",
            "calls/s",
            runtime=w.setup_one_to_n("Actor", w._remote_default),
        ),
        Workload("n:n actor calls async", "calls/s", runtime=w.setup_n_to_n("Actor")),
        Workload("n:n actor calls with arg async", "calls/s", runtime=w.setup_n_to_n_with_arg),
        Workload("1:1 async-actor calls sync", "calls/s", runtime=w.setup_async_actor_sync),
        Workload("1:1 async-actor calls async", "calls/s", runtime=w.setup_async_actor_async),
        Workload(
            "1:1 async-actor calls with args async",
            "calls/s",
            runtime=w.setup_async_actor_with_args,
        ),
        Workload(
            "1:n async-actor calls async",
            "calls/s",
            runtime=w.setup_one_to_n("AsyncActor", lambda cls: cls.remote()),
        ),
        Workload("n:n async-actor calls async", "calls/s", runtime=w.setup_n_to_n("AsyncActor")),
        Workload("actor creation", "actors/s", runtime=w.setup_actor_creation),
        Workload(
            w.MEMORY_WITH_ACTORS,
            "MB",
            kind=SAMPLE,
            # A process and a session of its own: the figure is not inflated
            # by earlier workloads, and quick mode (default group only) skips it.
            group=MEMORY_GROUP,
            own_process=True,
            runtime=w.setup_memory_with_actors,
            metrics=tuple(
                Metric(f"{w.MEMORY_WITH_ACTORS} ({kind})", "MB", higher_is_better=False)
                for kind in ("PSS", "RSS")
            ),
        ),
        Workload("single client get gigabytes", "GB/s", runtime=w.setup_get_gigabytes),
        Workload("pass large arg to 10 tasks", "rounds/s", runtime=w.setup_large_arg),
        Workload(MEMCPY, "GB/s", runtime=w.setup_memcpy, note="numpy copy; no runtime"),
        Workload("generator items sync", "items/s", runtime=w.setup_generator_sync),
        Workload("generator items async for", "items/s", runtime=w.setup_generator_async),
        Workload(
            "cancel latency",
            "ms",
            kind=SAMPLE,
            runtime=w.setup_cancel_latency,
            higher_is_better=False,
        ),
        Workload(
            "single task round-trip latency",
            "ms",
            kind=SAMPLE,
            runtime=w.setup_latency(LATENCY_SAMPLES),
            peer=peers.setup_latency(LATENCY_SAMPLES),
            peer_needs=CALL,
            metrics=tuple(
                Metric(f"single task round-trip latency {p}", "ms", higher_is_better=False)
                for p in ("p50", "p99")
            ),
        ),
        Workload(
            "single client tasks async (driver thread busy)",
            "tasks/s",
            runtime=w.setup_tasks_async_busy_driver,
            peer=peers.setup_tasks_async_busy_driver,
            peer_needs=MANY,
            note="a second driver thread spins a pure-Python loop meanwhile",
        ),
    ]
    wl.append(
        Workload(
            PINGPONG,
            "round trips/s",
            runtime=w.setup_socketpair_pingpong(same_core=True),
            note="1-byte echo with a child over a socketpair, both on one core; no runtime",
        )
    )
    wl.append(
        Workload(
            PINGPONG_TWO_CORES,
            "round trips/s",
            runtime=w.setup_socketpair_pingpong(same_core=False),
            note="the same, the child pinned to another core",
        )
    )
    wl += [
        Workload(
            f"payload scaling: {label} arg+return",
            "tasks/s",
            runtime=w.setup_payload(size, batch),
            peer=peers.setup_payload(size, batch),
            peer_needs=MANY,
        )
        for label, size, batch in PAYLOADS
    ]
    wl.append(
        Workload(
            "placement group create/removal",
            "PGs/s",
            group=CUSTOM_GROUP,
            runtime=w.setup_placement_groups,
        )
    )
    wl += [
        Workload(
            f"worker scaling: tasks async num_cpus={n}",
            "tasks/s",
            group=cpus_group(n),
            runtime=w.setup_tasks_async,
            peer=peers.setup_tasks_async,
            peer_needs=MANY,
        )
        for n in WORKER_COUNTS
    ]
    wl += scaling_workloads()
    wl.append(
        Workload(
            "connect time",
            "ms",
            kind=FRESH,
            group=CLIENT_GROUP,
            metrics=CONNECT_METRICS,
            note="fresh process: import, init(address='auto') to a running head, "
            "get(f.remote()); idle driver memory after",
        )
    )
    wl += [
        Workload(name, unit, group=CLIENT_GROUP, runtime=setup, embedded=embedded)
        for name, unit, setup, embedded in CLIENT_WORKLOADS
    ]
    return wl


PENDING = "N tasks pending at once (tasks/s)"
PENDING_MEM = "driver memory per pending task (KB)"
REFS = "get / wait of N ready refs (refs/s)"
DURATION = "efficiency vs task duration (% of CPU slots, ms)"
CURVES: dict[str, tuple[str, str, float]] = {}
"""Scaling metric -> (chart panel, series, x): what the scaling chart plots."""


def _curve(metric: str, panel: str, series: str, x: float) -> str:
    CURVES[metric] = (panel, series, x)
    return metric


def _limited(n: int) -> tuple[str, ...]:
    return () if n <= RAY_PENDING_MAX else ("asyncray",)


def scaling_workloads() -> list[Workload]:
    """The scaling curves (issue #20), in group :data:`~bench.spec.SCALING_GROUP`."""
    wl: list[Workload] = []
    counts = [n for n in w.PENDING_COUNTS if n < 1_000_000 or os.environ.get(MILLION_ENV) == "1"]
    for n in counts:
        name = w.pending_name(n)
        wl.append(
            Workload(
                name,
                "tasks/s",
                kind=SAMPLE,
                group=SCALING_GROUP,
                own_process=True,
                runtime=w.setup_pending(n),
                systems=_limited(n),
                metrics=(
                    Metric(_curve(f"{name}: throughput", PENDING, "throughput", n), "tasks/s"),
                    Metric(_curve(f"{name}: submission", PENDING, "submission", n), "tasks/s"),
                    Metric(f"{name}: driver RSS", "MB", higher_is_better=False),
                    Metric(
                        _curve(f"{name}: driver memory per pending task", PENDING_MEM, "", n),
                        "KB",
                        higher_is_better=False,
                    ),
                ),
            )
        )
    for op in ("get", "wait"):
        wl += [
            Workload(
                _curve(w.ref_name(op, n), REFS, op, n),
                "refs/s",
                group=SCALING_GROUP,
                runtime=w.setup_get_refs(n, op),
                systems=_limited(n),
            )
            for n in w.REF_COUNTS
        ]
    for ms in w.TASK_DURATIONS_MS:
        name = w.duration_name(ms)
        metrics = (Metric(f"{name}: throughput", "tasks/s"),)
        if ms > 0:
            metrics += (
                Metric(_curve(f"{name}: efficiency", DURATION, "", ms), "%"),
                Metric(
                    _curve(f"{name}: efficiency vs measured sleep", DURATION, "vs sleep", ms), "%"
                ),
            )
        wl.append(
            Workload(
                name,
                "tasks/s",
                kind=SAMPLE,
                group=SCALING_GROUP,
                runtime=w.setup_task_duration(ms),
                metrics=metrics,
            )
        )
    wl.append(
        Workload(
            w.ACTORS_MANY_NAME,
            "actors/s",
            kind=SAMPLE,
            group=SCALING_GROUP,
            own_process=True,
            runtime=w.setup_many_actors,
            # Ray: ~45 MB PSS per actor (memory with 100 actors alive), so
            # 1,000 of them would not fit in this machine's 24 GB.
            systems=("asyncray",),
            metrics=(
                Metric(f"{w.ACTORS_MANY_NAME}: creation", "actors/s"),
                Metric(f"{w.ACTORS_MANY_NAME}: PSS per actor", "MB", higher_is_better=False),
                Metric(f"{w.ACTORS_MANY_NAME}: RSS per actor", "MB", higher_is_better=False),
                Metric(f"{w.ACTORS_MANY_NAME}: driver PSS", "MB", higher_is_better=False),
            ),
        )
    )
    return wl


WORKLOADS: list[Workload] = _build()
BY_NAME: dict[str, Workload] = {wl.name: wl for wl in WORKLOADS}


def runs_on(workload: Workload, system: str) -> bool:
    """Whether ``system`` has an implementation of ``workload``."""
    if workload.group == CLIENT_GROUP:
        return system == "asyncray"
    if workload.systems and system not in workload.systems:
        return False
    if system in RUNTIMES:
        return workload.runtime is not None or workload.kind == FRESH
    has_impl = workload.peer is not None or workload.kind == FRESH
    return has_impl and workload.peer_needs <= peers.PEER_OPS[system]


def select(only: list[str] | None) -> list[Workload]:
    """Workloads whose name, or one of whose metric names, contains an ``only`` string.

    A selected ``client:`` workload brings its embedded counterpart along,
    so the two are compared side by side.
    """
    if not only:
        return list(WORKLOADS)
    chosen = {
        wl.name
        for wl in WORKLOADS
        if any(s in name for s in only for name in (wl.name, *(m.name for m in wl.metric_list())))
    }
    chosen |= {BY_NAME[n].embedded for n in list(chosen) if BY_NAME[n].embedded}
    return [wl for wl in WORKLOADS if wl.name in chosen]
