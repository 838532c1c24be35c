"""Threaded actors and concurrency groups: how many calls run at once.

Run:  python examples/concurrency_groups.py
      ASYNCRAY_BACKEND=ray python examples/concurrency_groups.py   (on real Ray)

A sync actor with ``max_concurrency`` (or concurrency groups) runs its calls
on threads; an async actor runs them on event loops. A concurrency group
caps how many calls of its methods run at once: each method below records
the most calls it saw running together. Methods without a group run in the
default group (``max_concurrency``), and ``.options(concurrency_group=...)``
puts a single call in another group. Corrected from the tour:
``@ray.method(concurrency_group="io")`` (it wrote ``concurrency_group:"hello"``,
a group that was never declared).
"""

from __future__ import annotations

import asyncio
import threading
import time

import asyncray as ray


@ray.remote(concurrency_groups={"io": 2})
class ThreadedActor:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = self.most = 0

    @ray.method(concurrency_group="io")
    def task1(self) -> str:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.3)
        with self.lock:
            self.running -= 1
        return "hello 1"

    def most_at_once(self) -> int:
        return self.most


@ray.remote(concurrency_groups={"io": 2, "compute": 4})
class AsyncIOActor:
    def __init__(self) -> None:
        self.running = {"io": 0, "compute": 0, "default": 0}
        self.most = dict(self.running)

    async def _run(self, group: str, name: str) -> str:
        self.running[group] += 1
        self.most[group] = max(self.most[group], self.running[group])
        await asyncio.sleep(0.3)
        self.running[group] -= 1
        return name

    @ray.method(concurrency_group="io")
    async def f1(self) -> str:
        return await self._run("io", "f1")

    @ray.method(concurrency_group="compute")
    async def f2(self) -> str:
        return await self._run("compute", "f2")

    async def f3(self) -> str:
        return await self._run("default", "f3")

    async def most_at_once(self) -> dict:
        return self.most


def main() -> None:
    ray.init()
    a = ThreadedActor.options(max_concurrency=10).remote()
    print(ray.get([a.task1.remote() for _ in range(6)]))
    print("threaded actor, group io (2 threads), most at once:", ray.get(a.most_at_once.remote()))

    b = AsyncIOActor.remote()
    calls = [b.f1.remote() for _ in range(6)] + [b.f2.remote() for _ in range(8)]
    calls += [b.f3.remote() for _ in range(8)]
    ray.get(calls)
    print("async actor, most at once per group:", ray.get(b.most_at_once.remote()))
    one_call = b.f3.options(concurrency_group="compute").remote()  # this call only
    print('f3.options(concurrency_group="compute"):', ray.get(one_call))
    ray.shutdown()


if __name__ == "__main__":
    main()
