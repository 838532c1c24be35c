"""A tour of asyncray: the Ray Core tour's programs, then what asyncray adds.

Run:  python3 examples/tour.py
      ASYNCRAY_BACKEND=ray python3 examples/tour.py   (the programs, on real Ray)

First it runs the Ray Core tour's programs, one script each in examples/
(typos corrected, ``import asyncray as ray`` in place of ``import ray``),
and the tour's cross-process example, several drivers sharing a detached
actor through a shared head (examples/shared_head/run.py). Each also runs
on its own: ``python3 examples/<name>.py``.

Then it shows asyncray's own behaviour beyond the tour, each section
printing what it shows: errors, resources, asyncio (``get_async`` and
``wait_async`` are asyncray extras), cancel and ``timeout_s`` (an asyncray
extra), placement groups, zero-copy large objects, reference counting and
the bounded object store (read through asyncray's internal stats). These
sections are asyncray's, so with ``ASYNCRAY_BACKEND=ray`` they are skipped.
docs/architecture.md explains how it runs.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import time

import asyncray as ray

HERE = os.path.dirname(os.path.abspath(__file__))
ON_RAY = os.environ.get("ASYNCRAY_BACKEND") == "ray"
# The Ray Core tour's programs, in the tour's order.
PROGRAMS = [
    "nested_tasks.py",
    "generator_failure.py",
    "actor_generators.py",
    "async_generators.py",
    "wait_loop.py",
    "counter_from_tasks.py",
    "async_actor.py",
    "concurrency_groups.py",
    "actor_pool.py",
    "queue_consumers.py",
    "progress.py",
]


def section(title: str) -> None:
    print(f"\n== {title}")


def run_example(*path: str) -> None:
    """Run one example script as ``python examples/<path>`` would."""
    sys.stdout.flush()
    subprocess.run([sys.executable, os.path.join(HERE, *path)], check=True)


def tour_programs() -> None:
    for name in PROGRAMS:
        with open(os.path.join(HERE, name)) as f:
            summary = f.readline().strip().strip('"')
        section(f"{name}: {summary}")
        run_example(name)


# ---------------------------------------------------------------- tasks


@ray.remote
def square(x: int) -> int:
    return x * x


@ray.remote(num_cpus=1, num_gpus=1)
def on_gpu() -> tuple[str | None, list[int]]:
    return os.environ.get("CUDA_VISIBLE_DEVICES"), ray.get_gpu_ids()


@ray.remote(num_returns=2)
def divmod_task(a: int, b: int) -> tuple[int, int]:
    return divmod(a, b)


class NotANumber(ValueError):
    pass


@ray.remote
def fails() -> None:
    raise NotANumber("this task raised")


@ray.remote
def talk() -> str:
    print("a line printed inside a task reaches the driver, tagged")
    return "ok"


def tour_tasks() -> None:
    section("tasks and objects")
    t0 = time.perf_counter()
    print("squares:", ray.get([square.remote(i) for i in range(8)]))
    print(f"  (8 tasks in {1000 * (time.perf_counter() - t0):.1f} ms)")
    ref = ray.put(21)
    print("a ref as argument is resolved:", ray.get(square.remote(ref)))
    q, r = divmod_task.remote(17, 5)
    print("num_returns=2:", ray.get(q), ray.get(r))
    print("a GPU task sees its device:", ray.get(on_gpu.remote()))
    refs = [square.remote(i) for i in range(4)]
    ready, not_ready = ray.wait(refs, num_returns=2)
    print(f"wait: {len(ready)} ready, {len(not_ready)} not ready, input order kept")
    try:
        ray.get(fails.remote())
    except NotANumber as e:  # the error is the user's class *and* RayTaskError
        print(
            "error caught as the user's class:",
            type(e).__name__,
            isinstance(e, ray.exceptions.RayTaskError),
        )
    try:
        square.options(num_cpus=64).remote(1)
    except ray.exceptions.TaskUnschedulableError as e:
        print("infeasible request rejected at once:", str(e).split(":")[0])
    ray.get(talk.remote())
    print(
        "resources now free:",
        {k: v for k, v in ray.available_resources().items() if k in ("CPU", "GPU")},
    )


# ---------------------------------------------------------------- asyncio


async def tour_asyncio() -> None:
    section("asyncio")
    print("await ref:", await square.remote(7))
    print("gather:", await asyncio.gather(*[square.remote(i) for i in range(4)]))
    done, _ = await asyncio.wait([square.remote(2), square.remote(3)])
    print("asyncio.wait on refs:", sorted(r.result() for r in done))
    print("get_async:", await ray.get_async([square.remote(5), square.remote(6)]))
    ready, _ = await ray.wait_async([square.remote(1)], timeout=5)
    print("wait_async ready:", len(ready))


# ---------------------------------------------------------------- actors


@ray.remote
class Counter:
    def __init__(self) -> None:
        self.value = 0

    def increment(self) -> int:
        self.value += 1
        return self.value


@ray.remote
class BadInit:
    def __init__(self) -> None:
        raise RuntimeError("the constructor failed")

    def method(self) -> int:
        return 1


def tour_actors() -> None:
    section("actors: kill, a failed constructor")
    counter = Counter.remote()
    print("a call before the kill:", ray.get(counter.increment.remote()))
    ray.kill(counter)
    try:
        ray.get(counter.increment.remote())
    except ray.exceptions.ActorDiedError as e:
        print("after kill:", str(e).splitlines()[-1])
    try:
        ray.get(BadInit.remote().method.remote())
    except ray.exceptions.ActorDiedError as e:
        print("failed __init__:", str(e).splitlines()[0][:70], "...")


# ---------------------------------------------------------------- generators, cancel


@ray.remote
def countdown(n: int):
    for i in range(n, 0, -1):
        time.sleep(0.05)
        yield i


@ray.remote
def sleeps_forever() -> None:
    time.sleep(3600)


@ray.remote
def too_slow() -> None:
    time.sleep(10)


def tour_generators_and_cancel() -> None:
    section("streaming generators and cancel")
    t0 = time.perf_counter()
    gen = countdown.remote(4)
    first = ray.get(next(gen))
    print(f"first item {first} after {1000 * (time.perf_counter() - t0):.0f} ms (not 200)")
    print("the rest:", [ray.get(ref) for ref in gen])
    ref = sleeps_forever.remote()
    time.sleep(0.2)
    t0 = time.perf_counter()
    ray.cancel(ref)
    try:
        ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        print(f"cancel interrupted time.sleep in {1000 * (time.perf_counter() - t0):.1f} ms")
    try:
        # timeout_s is asyncray's (Ray has no such option): given here, not in
        # the decorator, so that this module imports on real Ray too.
        ray.get(too_slow.options(timeout_s=0.2).remote())
    except ray.exceptions.TaskTimeoutError as e:
        print("timeout_s:", e)


# ---------------------------------------------------------------- placement groups


def tour_placement_groups() -> None:
    from asyncray.util import placement_group, remove_placement_group
    from asyncray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    section("placement groups")
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK")
    print(
        "reserved atomically:",
        pg.wait(5),
        "| free CPU now:",
        ray.available_resources().get("CPU", 0),
    )
    in_bundle = square.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0))
    print("a task in bundle 0:", ray.get(in_bundle.remote(9)))
    remove_placement_group(pg)
    time.sleep(0.1)
    print("after removal, free CPU:", ray.available_resources().get("CPU", 0))


# ---------------------------------------------------------------- utilities, large objects


@ray.remote
def checksum(array) -> float:
    return float(array.sum())


def tour_large_objects() -> None:
    try:
        import numpy as np
    except ImportError:
        return
    section("large objects (shared memory, zero-copy)")
    array = np.ones(25_000_000)  # 200 MB
    ref = ray.put(array)
    t0 = time.perf_counter()
    view = ray.get(ref)
    print(
        f"get of 200 MB in {1000 * (time.perf_counter() - t0):.2f} ms; read-only view:",
        not view.flags.writeable,
    )
    print("ten tasks read the same pages:", ray.get([checksum.remote(ref) for _ in range(10)])[0])


def store_stats() -> dict:
    return ray._api.client().query("stats")


def tour_refcounting() -> None:
    try:
        import numpy as np
    except ImportError:
        return
    section("reference counting")
    inner = ray.put(np.ones(2_000_000))  # 16 MB
    outer = ray.put([inner])  # a ref inside a stored object
    del inner
    print("nested ref keeps its object:", ray.get(ray.get(outer)[0]).shape)
    del outer
    gc.collect()
    store_stats()  # lets the releases reach the runtime
    print("after the last ref goes, bytes in use:", store_stats()["store_resident"])


def tour_bounded_store() -> None:
    try:
        import numpy as np
    except ImportError:
        return
    section("bounded object store: spilling, ObjectStoreFullError")
    ray.init(num_cpus=1, object_store_memory=50 * 1024 * 1024)
    refs = [ray.put(np.full(20 * 1024 * 1024, i, dtype=np.uint8)) for i in range(4)]
    stats = store_stats()
    print(
        f"80 MB put into a 50 MB store: {stats['store_resident'] >> 20} MB in shared memory, "
        f"{stats['spilled_bytes'] >> 20} MB spilled to disk"
    )
    print("spilled objects read back:", [int(ray.get(r)[0]) for r in refs])
    try:
        ray.put(np.zeros(60 * 1024 * 1024, dtype=np.uint8))
    except ray.exceptions.ObjectStoreFullError as e:
        print("ObjectStoreFullError:", str(e)[:72], "...")
    del refs
    ray.shutdown()


# ---------------------------------------------------------------- several drivers


def tour_shared_head() -> None:
    section("a shared head: two drivers, namespaces, a detached actor")
    # Separate processes by nature: the runner starts a head, runs one driver
    # after the other against it, and stops it.
    run_example("shared_head", "run.py")


def tour_asyncray() -> None:
    t0 = time.perf_counter()
    ray.init(num_cpus=2, num_gpus=1)
    print(
        f"\ninit in {1000 * (time.perf_counter() - t0):.1f} ms:",
        ray.cluster_resources()["CPU"],
        "CPUs",
    )
    tour_tasks()
    asyncio.run(tour_asyncio())
    tour_actors()
    tour_generators_and_cancel()
    tour_placement_groups()
    tour_large_objects()
    tour_refcounting()
    ray.shutdown()
    tour_bounded_store()


def main() -> None:
    t0 = time.perf_counter()
    print("# The Ray Core tour's programs")
    tour_programs()
    tour_shared_head()
    if ON_RAY:
        print("\n(asyncray's own sections are skipped on real Ray)")
    else:
        print("\n# Beyond the tour: asyncray's behaviour and extras")
        tour_asyncray()
    print(f"\ntour done in {time.perf_counter() - t0:.2f} s; is_initialized={ray.is_initialized()}")


if __name__ == "__main__":
    main()
