"""Consuming generators with asyncio: two consumers interleave.

Run:  python examples/async_generators.py
      ASYNCRAY_BACKEND=ray python examples/async_generators.py   (on real Ray)

The caller can be asynchronous too: ``async for`` over a generator's refs
and ``await`` on each ref, so one event loop consumes two generator tasks
at once. Each item takes 0.2 s to make; both streams of five items finish
in about 1 s rather than 2.
"""

from __future__ import annotations

import asyncio
import time

import asyncray as ray


@ray.remote
def task(name: str):
    for i in range(5):
        time.sleep(0.2)
        yield f"{name}{i}"


async def async_task(name: str) -> list[str]:
    items = []
    async for ref in task.remote(name):
        items.append(await ref)
    return items


async def consume_both() -> None:
    t0 = time.perf_counter()
    a, b = await asyncio.gather(async_task("a"), async_task("b"))
    elapsed = time.perf_counter() - t0
    print("consumer a got:", a)
    print("consumer b got:", b)
    print("the two streams overlapped:", elapsed < 1.8)


def main() -> None:
    ray.init(num_cpus=2)
    asyncio.run(consume_both())
    ray.shutdown()


if __name__ == "__main__":
    main()
