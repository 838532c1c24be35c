"""A tour of asyncray: every feature built so far, each printing what it shows.

Run:  python3 examples/tour.py
It follows Ray Core's tour of its features (typos corrected), with
`import asyncray as ray` in place of `import ray`; docs/architecture.md
explains how it runs. Its last section, several drivers sharing a detached
actor through a shared head, runs examples/shared_head/run.py.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import threading
import time

import asyncray as ray


def section(title: str) -> None:
    print(f"\n== {title}")


# ---------------------------------------------------------------- tasks


@ray.remote
def square(x: int) -> int:
    return x * x


@ray.remote(num_cpus=1, num_gpus=1)
def on_gpu() -> tuple[str | None, list[int]]:
    return os.environ.get("CUDA_VISIBLE_DEVICES"), ray.get_gpu_ids()


@ray.remote
def fib(n: int) -> int:
    if n < 2:
        return n
    return sum(ray.get([fib.remote(n - 1), fib.remote(n - 2)]))


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
    print("nested tasks, fib(10) with 2 CPUs:", ray.get(fib.remote(10)))
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

    def get_counter(self) -> int:
        return self.value


@ray.remote
def bump(counter: ray.ActorHandle, times: int) -> None:
    for _ in range(times):
        ray.get(counter.increment.remote())


@ray.remote
class AsyncActor:
    async def start(self, i: int) -> int:
        await asyncio.sleep(0.2)
        return i


@ray.remote(max_concurrency=4)
class ThreadedActor:
    def work(self) -> str:
        time.sleep(0.1)
        return threading.current_thread().name


@ray.remote(concurrency_groups={"io": 2, "compute": 4})
class AsyncIOActor:
    @ray.method(concurrency_group="io")
    async def f1(self) -> str:
        return "io"

    @ray.method(concurrency_group="compute")
    async def f2(self) -> str:
        return "compute"

    async def f3(self) -> str:
        return "default"


@ray.remote
class BadInit:
    def __init__(self) -> None:
        raise RuntimeError("the constructor failed")

    def method(self) -> int:
        return 1


def tour_actors() -> None:
    section("actors")
    counter = Counter.options(name="demo").remote()
    ray.get([bump.remote(counter, 10) for _ in range(3)])
    print("three tasks x 10 increments on one actor:", ray.get(counter.get_counter.remote()))
    print("found by name:", ray.get(ray.get_actor("demo").get_counter.remote()))
    same = Counter.options(name="demo", get_if_exists=True).remote()
    print("get_if_exists returns the same actor:", same == counter)

    a = AsyncActor.remote()
    t0 = time.perf_counter()
    print(
        "async actor, 10 overlapping calls:",
        ray.get([a.start.remote(i) for i in range(10)]),
        f"in {time.perf_counter() - t0:.2f} s",
    )
    t = ThreadedActor.remote()
    names = set(ray.get([t.work.remote() for _ in range(8)]))
    print(f"threaded actor ran 8 calls on {len(names)} threads")
    g = AsyncIOActor.remote()
    print(
        "concurrency groups:",
        ray.get(
            [
                g.f1.remote(),
                g.f2.remote(),
                g.f3.remote(),
                g.f3.options(concurrency_group="compute").remote(),
            ]
        ),
    )

    ray.kill(counter)
    try:
        ray.get(counter.get_counter.remote())
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
def stream_with_error():
    for i in range(5):
        if i == 1:
            raise ValueError("raised mid-stream")
        yield i


@ray.remote
class Producer:
    async def items(self, n: int):
        for i in range(n):
            await asyncio.sleep(0.01)
            yield i


@ray.remote
def sleeps_forever() -> None:
    time.sleep(3600)


@ray.remote(timeout_s=0.2)
def too_slow() -> None:
    time.sleep(10)


def tour_generators_and_cancel() -> None:
    section("streaming generators and cancel")
    t0 = time.perf_counter()
    gen = countdown.remote(4)
    first = ray.get(next(gen))
    print(f"first item {first} after {1000 * (time.perf_counter() - t0):.0f} ms (not 200)")
    print("the rest:", [ray.get(ref) for ref in gen])
    got = []
    try:
        for ref in stream_with_error.remote():
            got.append(ray.get(ref))
    except ValueError as e:
        print("items before the error:", got, "| then", type(e).__name__)

    async def consume() -> list[int]:
        return [await ref async for ref in Producer.remote().items.remote(3)]

    print("async for over an async actor's generator:", asyncio.run(consume()))
    ref = sleeps_forever.remote()
    time.sleep(0.2)
    t0 = time.perf_counter()
    ray.cancel(ref)
    try:
        ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        print(f"cancel interrupted time.sleep in {1000 * (time.perf_counter() - t0):.1f} ms")
    try:
        ray.get(too_slow.remote())
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
class Doubler:
    def double(self, n: int) -> int:
        return n * 2


@ray.remote
def consumer(worker_id: int, queue) -> list[int]:
    from asyncray.util.queue import Empty

    got = []
    try:
        while True:
            got.append(queue.get(block=True, timeout=1))
    except Empty:
        return got


@ray.remote
def checksum(array) -> float:
    return float(array.sum())


def tour_utilities() -> None:
    from asyncray.util import ActorPool
    from asyncray.util.queue import Queue

    section("ActorPool, Queue")
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    print("ActorPool.map:", list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4])))
    queue = Queue(maxsize=100)
    for i in range(10):
        queue.put(i)
    drained = ray.get([consumer.remote(i, queue) for i in range(2)])
    print("two consumers drained the queue:", sorted(x for part in drained for x in part))


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
    runner = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shared_head", "run.py")
    sys.stdout.flush()
    subprocess.run([sys.executable, runner], check=True)


def main() -> None:
    t0 = time.perf_counter()
    ray.init(num_cpus=2, num_gpus=1)
    print(
        f"init in {1000 * (time.perf_counter() - t0):.1f} ms:",
        ray.cluster_resources()["CPU"],
        "CPUs",
    )
    tour_tasks()
    asyncio.run(tour_asyncio())
    tour_actors()
    tour_generators_and_cancel()
    tour_placement_groups()
    tour_utilities()
    tour_large_objects()
    tour_refcounting()
    ray.shutdown()
    tour_bounded_store()
    tour_shared_head()
    print(f"\ntour done in {time.perf_counter() - t0:.2f} s; is_initialized={ray.is_initialized()}")


if __name__ == "__main__":
    main()
