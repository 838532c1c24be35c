"""An async actor runs its calls concurrently on one event loop.

Run:  python examples/async_actor.py
      ASYNCRAY_BACKEND=ray python examples/async_actor.py   (on real Ray)

An actor whose methods are ``async def`` interleaves its calls at each
``await``: four calls that each sleep 0.5 s finish together in about
0.5 s, not 2 s. The driver may be asynchronous too: ``await`` an actor
call, or ``asyncio.wait`` on refs; ``ray.wait`` is the blocking way.
Corrected from the tour: the method is ``start`` throughout
(``actor.start.remote()``, not ``run_task`` or ``start().remote()``), and
``asyncio.run`` runs the coroutine that is defined.
"""

from __future__ import annotations

import asyncio
import time

import asyncray as ray


@ray.remote
class AsyncActor:
    async def start(self, i: int) -> str:
        await asyncio.sleep(0.5)
        return f"finished {i}"


@ray.remote
def task() -> int:
    return 1


async def monitor(actor) -> str:
    return await actor.start.remote(4)


async def wait_obj() -> int:
    # asyncio.wait takes futures and tasks only (Python >= 3.11); a Ray ObjectRef
    # is awaitable but not a future, so ensure_future wraps it in a task.
    done, _ = await asyncio.wait([asyncio.ensure_future(task.remote())])
    return len(done)


def main() -> None:
    ray.init()
    actor = AsyncActor.remote()
    ray.get(actor.start.remote(-1))  # the actor is up: time the calls alone
    t0 = time.perf_counter()
    print(ray.get([actor.start.remote(i) for i in range(4)]))
    print("four 0.5 s calls overlapped:", time.perf_counter() - t0 < 1.5)
    print("awaited from asyncio:", asyncio.run(monitor(actor)))

    ready, _ = ray.wait([task.remote()])  # way 1: block
    print("ray.wait ready:", len(ready))
    print("asyncio.wait done:", asyncio.run(wait_obj()))  # way 2: await
    ray.shutdown()


if __name__ == "__main__":
    main()
