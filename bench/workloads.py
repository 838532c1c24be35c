"""Runtime workloads, written once against the Ray API (``ray`` or ``asyncray``).

Each ``setup_*`` function takes a :class:`~bench.spec.RuntimeCtx` whose ``rt``
is the runtime module, does the one-off setup and returns a
:class:`~bench.spec.Prepared`. The bodies follow ``ray/_private/ray_perf.py``
(Ray's own microbenchmark): same call pattern, same
work per call and multiplier, ``n_cpu = cpu_count() // 2``. In quick mode
``ctx.n`` scales the per-call work down; the multiplier follows, so the unit
(tasks/s, GB/s) is unchanged.

Large arrays use ``MiB / 1000`` as their "gigabytes" multiplier, as Ray does
(800 MiB counts as 0.8).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.harness import percentile
from bench.spec import Prepared, RuntimeCtx

MIB = 1024 * 1024
BATCH = 1000
"""Ray's batch: calls submitted before one ``get`` in the "async" workloads."""
MIN_BATCH = 100
"""Smallest batch quick mode scales ``BATCH`` down to."""
CANCEL_START_TIMEOUT_S = 30.0
"""How long cancel latency waits for its victim task to start running."""
CANCEL_GET_TIMEOUT_S = 20.0
"""How long cancel latency waits for ``get`` to raise after ``cancel``."""


def _int64_zeros(mib: float) -> Any:
    import numpy as np

    return np.zeros(int(mib * MIB) // 8, dtype=np.int64)


def _remote_default(actor_cls: Any) -> Any:
    """Ray's ``Actor._remote()``: default actor resources instead of the decorator's.

    A runtime without the private ``_remote`` gets the public ``remote()``.
    """
    private = getattr(actor_cls, "_remote", None)
    return private() if private is not None else actor_cls.remote()


def _killer(ctx: RuntimeCtx, actors: list[Any]) -> Callable[[], None]:
    """A cleanup that kills ``actors`` so their processes do not pile up."""

    def cleanup() -> None:
        for actor in actors:
            ctx.rt.kill(actor)

    return cleanup


def _gets(ctx: RuntimeCtx, make: Callable[[], Any], n: int) -> Prepared:
    """Submit ``n`` remote calls made by ``make`` and get them all, per call of fn."""
    return Prepared(lambda: ctx.rt.get([make() for _ in range(n)]), multiplier=n)


# ------------------------------------------------------------- object store


def setup_get_calls(ctx: RuntimeCtx) -> Prepared:
    value = ctx.rt.put(0)
    return Prepared(lambda: ctx.rt.get(value))


def setup_put_calls(ctx: RuntimeCtx) -> Prepared:
    return Prepared(lambda: ctx.rt.put(0))


def setup_multi_put_calls(ctx: RuntimeCtx) -> Prepared:
    d, n = ctx.defs, ctx.n(10, minimum=2)
    return Prepared(lambda: ctx.rt.get([d.do_put_small.remote() for _ in range(n)]), 100 * n)


def setup_put_gigabytes(ctx: RuntimeCtx) -> Prepared:
    mib = 800 * ctx.scale
    arr = _int64_zeros(mib)
    return Prepared(lambda: ctx.rt.put(arr), multiplier=mib / 1000)


def setup_multi_put_gigabytes(ctx: RuntimeCtx) -> Prepared:
    mib = 80 * ctx.scale
    n_elems = int(mib * MIB) // 8
    d = ctx.defs
    fn = lambda: ctx.rt.get([d.do_put.remote(n_elems) for _ in range(10)])  # noqa: E731
    return Prepared(fn, multiplier=100 * mib / 1000)


def setup_get_gigabytes(ctx: RuntimeCtx) -> Prepared:
    mib = 200 * ctx.scale
    ref = ctx.rt.put(_int64_zeros(mib))
    return Prepared(lambda: ctx.rt.get(ref), multiplier=mib / 1000)


def setup_large_arg(ctx: RuntimeCtx) -> Prepared:
    """Put a 100 MiB array, pass its ref to 10 tasks, get their results."""
    arr = _int64_zeros(100 * ctx.scale)
    d = ctx.defs

    def fn() -> None:
        ref = ctx.rt.put(arr)
        ctx.rt.get([d.consume.remote(ref) for _ in range(10)])

    return Prepared(fn)


def setup_get_10k_refs(ctx: RuntimeCtx) -> Prepared:
    obj = ctx.defs.create_object_containing_ref.remote(ctx.n(10_000, minimum=1000))
    return Prepared(lambda: ctx.rt.get(obj))


def setup_memcpy(ctx: RuntimeCtx) -> Prepared:
    """numpy copy of a 200 MiB array: the physical limit for any object store."""
    import numpy as np

    mib = 200 * ctx.scale
    src = np.ones(int(mib * MIB) // 8, dtype=np.int64)
    dst = np.empty_like(src)
    return Prepared(lambda: np.copyto(dst, src), multiplier=mib / 1000)


# -------------------------------------------------------------------- tasks


def setup_tasks_sync(ctx: RuntimeCtx) -> Prepared:
    d = ctx.defs
    return Prepared(lambda: ctx.rt.get(d.small_value.remote()))


def setup_tasks_async(ctx: RuntimeCtx) -> Prepared:
    return _gets(ctx, ctx.defs.small_value.remote, ctx.n(BATCH, minimum=MIN_BATCH))


def setup_tasks_batch(ctx: RuntimeCtx) -> Prepared:
    """Like tasks async, but counted in batches of 1000 per second.

    Quick mode submits smaller batches and converts to 1000-task batches.
    """
    prepared = _gets(ctx, ctx.defs.small_value.remote, ctx.n(BATCH, minimum=MIN_BATCH))
    prepared.multiplier /= BATCH
    return prepared


def setup_wait_1k_refs(ctx: RuntimeCtx) -> Prepared:
    d = ctx.defs

    def fn() -> None:
        not_ready = [d.small_value.remote() for _ in range(1000)]
        for i in range(1000):
            _, not_ready = ctx.rt.wait(not_ready, fetch_local=(i == 0))

    return Prepared(fn)


def setup_multi_client_tasks(ctx: RuntimeCtx) -> Prepared:
    actors = [ctx.defs.Actor.remote() for _ in range(4)]
    n = ctx.n(10_000)
    fn = lambda: ctx.rt.get([a.small_value_batch.remote(n) for a in actors])  # noqa: E731
    return Prepared(fn, multiplier=4 * n, cleanup=_killer(ctx, actors))


def setup_payload(size: int, batch: int) -> Callable[[RuntimeCtx], Prepared]:
    """Tasks whose argument and return are ``size`` bytes; ``batch`` per call."""

    def setup(ctx: RuntimeCtx) -> Prepared:
        payload = b"x" * size
        return _gets(ctx, lambda: ctx.defs.echo.remote(payload), ctx.n(batch, minimum=5))

    return setup


def setup_latency(n_samples: int) -> Callable[[RuntimeCtx], Prepared]:
    """Sequential round trips; each trial reports its p50 and p99 in ms."""

    def setup(ctx: RuntimeCtx) -> Prepared:
        d = ctx.defs

        def fn() -> dict[str, float]:
            samples = []
            for _ in range(ctx.n(n_samples, minimum=20)):
                t0 = time.perf_counter()
                ctx.rt.get(d.small_value.remote())
                samples.append((time.perf_counter() - t0) * 1e3)
            return latency_metrics(samples)

        return Prepared(fn)

    return setup


ACTORS_ALIVE = 100
MEMORY_WITH_ACTORS = "memory with 100 actors alive"


def setup_memory_with_actors(ctx: RuntimeCtx) -> Prepared:
    """The process tree's PSS and RSS (MB) with ``ACTORS_ALIVE`` actors that have each answered."""
    from bench.fresh import tree_memory

    actors = [ctx.defs.Actor.remote() for _ in range(ACTORS_ALIVE)]
    ctx.rt.get([a.small_value.remote() for a in actors])

    def fn() -> dict[str, float]:
        time.sleep(1.0)  # let the actors settle after the previous trial's measuring
        memory = tree_memory()
        return {
            f"{MEMORY_WITH_ACTORS} (PSS)": memory["pss_mb"],
            f"{MEMORY_WITH_ACTORS} (RSS)": memory["rss_mb"],
        }

    return Prepared(fn, cleanup=_killer(ctx, actors))


def latency_metrics(samples_ms: list[float]) -> dict[str, float]:
    """The two latency rows, from one trial's samples."""
    return {
        "single task round-trip latency p50": percentile(samples_ms, 50),
        "single task round-trip latency p99": percentile(samples_ms, 99),
    }


class BusyThread:
    """A daemon thread spinning a pure-Python loop, competing for the GIL."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True, name="bench-busy")
        self._thread.start()

    def _spin(self) -> None:
        x = 0
        while not self._stop.is_set():
            for _ in range(1000):
                x += 1

    def stop(self) -> None:
        """Stop spinning and join the thread."""
        self._stop.set()
        self._thread.join()


def setup_tasks_async_busy_driver(ctx: RuntimeCtx) -> Prepared:
    busy = BusyThread()
    prepared = _gets(ctx, ctx.defs.small_value.remote, ctx.n(BATCH, minimum=MIN_BATCH))
    prepared.cleanup = busy.stop
    return prepared


def setup_cancel_latency(ctx: RuntimeCtx) -> Prepared:
    """Cancel a running task; time from ``cancel`` until ``get`` raises, in ms."""
    d = ctx.defs
    tmpdir = tempfile.mkdtemp(prefix="bench-cancel-")

    def fn() -> dict[str, float]:
        marker = os.path.join(tmpdir, uuid.uuid4().hex)
        ref = d.sleeper.remote(marker)
        deadline = time.monotonic() + CANCEL_START_TIMEOUT_S
        while not os.path.exists(marker):
            if time.monotonic() > deadline:
                raise TimeoutError("victim task never started")
            time.sleep(0.0005)
        t0 = time.perf_counter()
        ctx.rt.cancel(ref)
        try:
            ctx.rt.get(ref, timeout=CANCEL_GET_TIMEOUT_S)
        except Exception as exc:
            if "Cancel" not in type(exc).__name__:
                raise
        else:
            raise RuntimeError("cancelled task returned a value")
        return {"cancel latency": (time.perf_counter() - t0) * 1e3}

    return Prepared(fn)


# --------------------------------------------------------------- generators


def setup_generator_sync(ctx: RuntimeCtx) -> Prepared:
    n = ctx.n(10_000)
    d = ctx.defs

    def fn() -> None:
        for ref in d.gen_items.remote(n):
            ctx.rt.get(ref)

    return Prepared(fn, multiplier=n)


def setup_generator_async(ctx: RuntimeCtx) -> Prepared:
    n = ctx.n(10_000)
    d = ctx.defs
    loop = asyncio.new_event_loop()

    async def consume() -> None:
        async for ref in d.gen_items.remote(n):
            await ref

    return Prepared(lambda: loop.run_until_complete(consume()), n, cleanup=loop.close)


# ------------------------------------------------------------------- actors


def setup_actor_sync(ctx: RuntimeCtx) -> Prepared:
    a = ctx.defs.Actor.remote()
    return Prepared(lambda: ctx.rt.get(a.small_value.remote()), cleanup=_killer(ctx, [a]))


def setup_actor_async(ctx: RuntimeCtx) -> Prepared:
    a = ctx.defs.Actor.remote()
    return _with_cleanup(
        _gets(ctx, a.small_value.remote, ctx.n(BATCH, minimum=MIN_BATCH)), _killer(ctx, [a])
    )


def setup_actor_concurrent(ctx: RuntimeCtx) -> Prepared:
    a = ctx.defs.Actor.options(max_concurrency=16).remote()
    return _with_cleanup(
        _gets(ctx, a.small_value.remote, ctx.n(BATCH, minimum=MIN_BATCH)), _killer(ctx, [a])
    )


def _with_cleanup(prepared: Prepared, cleanup: Callable[[], None]) -> Prepared:
    prepared.cleanup = cleanup
    return prepared


def setup_one_to_n(actor_attr: str, make: Callable[[Any], Any]) -> Callable[..., Prepared]:
    """``1:n``: one Client actor calls each of ``n_cpu`` servers ``n`` times."""

    def setup(ctx: RuntimeCtx) -> Prepared:
        n = ctx.n(5000)
        servers = [make(getattr(ctx.defs, actor_attr)) for _ in range(ctx.n_cpu)]
        client = ctx.defs.Client.remote(servers)
        fn = lambda: ctx.rt.get(client.small_value_batch.remote(n))  # noqa: E731
        return Prepared(fn, n * ctx.n_cpu, cleanup=_killer(ctx, [*servers, client]))

    return setup


def setup_n_to_n(actor_attr: str) -> Callable[[RuntimeCtx], Prepared]:
    """``n:n``: 4 caller tasks each spread ``n`` calls over ``n_cpu`` actors."""

    def setup(ctx: RuntimeCtx) -> Prepared:
        n, m = ctx.n(5000), 4
        actors = [getattr(ctx.defs, actor_attr).remote() for _ in range(ctx.n_cpu)]
        fn = lambda: ctx.rt.get([ctx.defs.work.remote(actors, n) for _ in range(m)])  # noqa: E731
        return Prepared(fn, m * n, cleanup=_killer(ctx, actors))

    return setup


def setup_n_to_n_with_arg(ctx: RuntimeCtx) -> Prepared:
    n = ctx.n(1000)
    servers = [_remote_default(ctx.defs.Actor) for _ in range(ctx.n_cpu)]
    clients = [ctx.defs.Client.remote(s) for s in servers]
    fn = lambda: ctx.rt.get([c.small_value_batch_arg.remote(n) for c in clients])  # noqa: E731
    return Prepared(fn, n * ctx.n_cpu, cleanup=_killer(ctx, [*servers, *clients]))


def setup_async_actor_sync(ctx: RuntimeCtx) -> Prepared:
    a = ctx.defs.AsyncActor.remote()
    return Prepared(lambda: ctx.rt.get(a.small_value.remote()), cleanup=_killer(ctx, [a]))


def setup_async_actor_async(ctx: RuntimeCtx) -> Prepared:
    a = ctx.defs.AsyncActor.remote()
    return _with_cleanup(
        _gets(ctx, a.small_value.remote, ctx.n(BATCH, minimum=MIN_BATCH)), _killer(ctx, [a])
    )


def setup_async_actor_with_args(ctx: RuntimeCtx) -> Prepared:
    a = ctx.defs.AsyncActor.remote()
    n = ctx.n(BATCH, minimum=MIN_BATCH)
    fn = lambda: ctx.rt.get([a.small_value_with_arg.remote(i) for i in range(n)])  # noqa: E731
    return Prepared(fn, n, cleanup=_killer(ctx, [a]))


def setup_actor_creation(ctx: RuntimeCtx) -> Prepared:
    """Create 10 actors, get one result from each, then kill them."""
    cls = ctx.defs.Actor
    n = ctx.n(10, minimum=2)

    def fn() -> None:
        actors = [cls.remote() for _ in range(n)]
        ctx.rt.get([a.small_value.remote() for a in actors])
        for a in actors:
            ctx.rt.kill(a)

    return Prepared(fn, multiplier=n)


# --------------------------------------------------------- placement groups


def setup_placement_groups(ctx: RuntimeCtx) -> Prepared:
    util = importlib.import_module(f"{ctx.rt.__name__}.util")

    def fn() -> None:
        pgs = [util.placement_group(bundles=[{"custom": 0.001}]) for _ in range(100)]
        for pg in pgs:
            pg.wait(timeout_seconds=30)
        for pg in pgs:
            util.remove_placement_group(pg)

    return Prepared(fn, multiplier=100)


# --------------------------------------------------------------- the limit

PINGPONG_ROUND_TRIPS = 100
"""Round trips per call of ``fn`` in the socketpair ping-pong."""
_ECHO_CHILD = (
    "import os, socket, sys\n"
    "os.sched_setaffinity(0, {int(sys.argv[2])})\n"
    "s = socket.socket(fileno=int(sys.argv[1]))\n"
    "while True:\n"
    "    m = s.recv(64)\n"
    "    if not m:\n"
    "        break\n"
    "    s.sendall(m)\n"
)


def setup_socketpair_pingpong(same_core: bool) -> Callable[[RuntimeCtx], Prepared]:
    """Synchronous 1-byte round trips with a child process over a socketpair: no runtime.

    The physical limit of a synchronous call between two processes on this
    machine, which ``single client tasks sync`` and ``1:1 actor calls
    sync`` are read against. Both ends are pinned (the driver thread for
    the workload's duration, restored at cleanup): on one core a round trip
    is two context switches; on two cores each message also wakes an idle
    core, which costs 3-4 times more on this VM. Unpinned, the scheduler
    picks either, so the figure would swing 3x between runs. The echo child
    is a fresh interpreter (not a fork of a driver with runtime threads).
    """

    def setup(ctx: RuntimeCtx) -> Prepared:
        import socket
        import subprocess
        import sys

        cpus = sorted(os.sched_getaffinity(0))
        mine_cpu = cpus[0]
        child_cpu = cpus[0] if same_core or len(cpus) < 2 else cpus[1]
        saved = os.sched_getaffinity(0)
        mine, theirs = socket.socketpair()
        child = subprocess.Popen(
            [sys.executable, "-c", _ECHO_CHILD, str(theirs.fileno()), str(child_cpu)],
            pass_fds=[theirs.fileno()],
        )
        theirs.close()
        os.sched_setaffinity(0, {mine_cpu})
        n = ctx.n(PINGPONG_ROUND_TRIPS, minimum=10)

        def fn() -> None:
            for _ in range(n):
                mine.send(b"x")
                mine.recv(64)

        def cleanup() -> None:
            os.sched_setaffinity(0, saved)
            mine.close()
            child.wait(timeout=10)

        return Prepared(fn, multiplier=n, cleanup=cleanup)

    return setup


# ---------------------------------------------------------- scaling curves

PENDING_COUNTS = (1_000, 10_000, 100_000, 1_000_000)
REF_COUNTS = (10, 100, 1_000, 10_000, 100_000)
ACTORS_MANY = 1_000
TASK_DURATIONS_MS = (0.0, 0.1, 1.0, 10.0)
DURATION_BATCH = 1000
"""Most tasks per call of the task-duration rows (fewer for long tasks: ~0.5 s ideal)."""


def pending_name(n: int) -> str:
    return f"{_count(n)} tasks pending"


def _count(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k" if n >= 1000 else str(n)


def setup_pending(n_tasks: int) -> Callable[[RuntimeCtx], Prepared]:
    """Submit N tiny tasks that all wait on one gate task, so all N are pending at once.

    Per trial: the driver's RSS once all N are submitted (the gate still
    shut), less its RSS at setup, per pending task; then the gate opens and
    the throughput is N over the time from the first submission to the last
    result.
    """

    def setup(ctx: RuntimeCtx) -> Prepared:
        import psutil

        d, n = ctx.defs, ctx.n(n_tasks, minimum=min(n_tasks, 100))
        me = psutil.Process()
        tmpdir = tempfile.mkdtemp(prefix="bench-gate-")
        ctx.rt.get(d.echo.remote(b"ok"))  # a worker has started and run echo once
        base = me.memory_info().rss
        name = pending_name(n_tasks)

        def fn() -> dict[str, float]:
            marker = os.path.join(tmpdir, uuid.uuid4().hex)
            gate = d.gate.remote(marker)
            t0 = time.perf_counter()
            refs = [d.echo.remote(gate) for _ in range(n)]
            submitted = time.perf_counter() - t0
            rss = me.memory_info().rss
            with open(marker, "w"):
                pass
            ctx.rt.get(refs)
            elapsed = time.perf_counter() - t0
            del refs
            return {
                f"{name}: throughput": n / elapsed,
                f"{name}: submission": n / submitted,
                f"{name}: driver RSS": rss / MIB,
                f"{name}: driver memory per pending task": (rss - base) / n / 1024,
            }

        return Prepared(fn)

    return setup


def ref_name(op: str, n: int) -> str:
    return f"{op} of {_count(n)} refs"


def setup_get_refs(n_refs: int, op: str) -> Callable[[RuntimeCtx], Prepared]:
    """``get`` (or ``wait`` with ``num_returns=N``) of N ready refs, counted per ref."""

    def setup(ctx: RuntimeCtx) -> Prepared:
        n = ctx.n(n_refs, minimum=min(n_refs, 10))
        refs = [ctx.rt.put(i) for i in range(n)]
        if op == "get":
            return Prepared(lambda: ctx.rt.get(refs), multiplier=n)
        return Prepared(lambda: ctx.rt.wait(refs, num_returns=n), multiplier=n)

    return setup


ACTORS_MANY_NAME = "1,000 actors alive"


def setup_many_actors(ctx: RuntimeCtx) -> Prepared:
    """Create 1,000 actors (one result from each): creation rate, then their PSS each.

    PSS counts a page shared by n processes as 1/n in each, so forked
    actors that share the zygote's pages are charged their real share. The
    actors are the driver's descendants that were not there before.
    """
    import psutil

    cls, n = ctx.defs.Actor, ctx.n(ACTORS_MANY, minimum=10)
    me = psutil.Process()

    def fn() -> dict[str, float]:
        before = {p.pid for p in me.children(recursive=True)}
        t0 = time.perf_counter()
        actors = [cls.remote() for _ in range(n)]
        ctx.rt.get([a.small_value.remote() for a in actors])
        rate = n / (time.perf_counter() - t0)
        time.sleep(0.5)
        pss = rss = 0
        count = 0
        for p in me.children(recursive=True):
            if p.pid in before:
                continue
            try:
                info = p.memory_full_info()
            except psutil.Error:
                continue
            pss += info.pss
            rss += info.rss
            count += 1
        driver_pss = me.memory_full_info().pss
        for a in actors:
            ctx.rt.kill(a)
        return {
            f"{ACTORS_MANY_NAME}: creation": rate,
            f"{ACTORS_MANY_NAME}: PSS per actor": pss / max(1, count) / MIB,
            f"{ACTORS_MANY_NAME}: RSS per actor": rss / max(1, count) / MIB,
            f"{ACTORS_MANY_NAME}: driver PSS": driver_pss / MIB,
        }

    return Prepared(fn)


def duration_name(ms: float) -> str:
    return f"tasks of {ms:g} ms"


def setup_task_duration(ms: float) -> Callable[[RuntimeCtx], Prepared]:
    """Batches of ``sleep_for(ms)`` tasks: tasks/s and efficiency on the CPU slots.

    Ideal = CPU slots / duration (each task takes one CPU); efficiency =
    achieved / ideal, in %. ``time.sleep`` overshoots (by up to the
    thread's timer slack, 50 µs by default on Linux, plus the wake-up),
    which ``efficiency`` counts against the runtime; ``efficiency vs
    measured sleep`` takes as ideal slots / the duration a ``time.sleep``
    really takes in a task of the system (measured at setup), so a runtime
    that changes its workers' timer slack is compared with its own sleep.
    """

    def setup(ctx: RuntimeCtx) -> Prepared:
        slots = float(ctx.rt.cluster_resources().get("CPU", 1))
        seconds = ms / 1000
        batch = DURATION_BATCH if ms == 0 else min(DURATION_BATCH, int(slots / seconds * 0.5))
        n = ctx.n(batch, minimum=min(batch, 20))
        d, name = ctx.defs, duration_name(ms)
        body = ctx.rt.get(d.measured_sleep.remote(seconds)) if seconds > 0 else 0.0

        def fn() -> dict[str, float]:
            t0 = time.perf_counter()
            ctx.rt.get([d.sleep_for.remote(seconds) for _ in range(n)])
            rate = n / (time.perf_counter() - t0)
            out = {f"{name}: throughput": rate}
            if seconds > 0:
                out[f"{name}: efficiency"] = 100 * rate / (slots / seconds)
                out[f"{name}: efficiency vs measured sleep"] = 100 * rate / (slots / body)
            return out

        return Prepared(fn)

    return setup
