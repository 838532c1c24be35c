"""Generators on the three kinds of actor: plain, async and threaded.

Run:  python examples/actor_generators.py
      ASYNCRAY_BACKEND=ray python examples/actor_generators.py   (on real Ray)

A method that yields streams its items back like a generator task does,
whichever kind of actor it is on: a plain actor (``def``), an async actor
(``async def``, runs on an event loop) or a threaded actor
(``max_concurrency=N``, runs on N threads). The tour's class names
disagreed between definition and use; here they match.
"""

from __future__ import annotations

import asyncray as ray


# A plain loop, not ``yield from range(5)``: Ray resumes an actor's generator
# with ``send()``, which ``yield from`` passes on to the range iterator
# (AttributeError: 'range_iterator' object has no attribute 'send').
@ray.remote
class Actor:
    def f(self):
        for i in range(5):  # noqa: UP028
            yield i


@ray.remote
class AsyncActor:
    async def f(self):
        for i in range(5):
            yield i


@ray.remote(max_concurrency=5)
class ThreadedActor:
    def f(self):
        for i in range(5):  # noqa: UP028
            yield i


def main() -> None:
    ray.init()
    actor = Actor.remote()
    print("Actor.f:", [ray.get(ref) for ref in actor.f.remote()])

    actor = AsyncActor.remote()
    print("AsyncActor.f:", [ray.get(ref) for ref in actor.f.remote()])

    actor = ThreadedActor.remote()
    print("ThreadedActor.f:", [ray.get(ref) for ref in actor.f.remote()])

    # A generator that is no longer needed: drop it (``del gen``) to release
    # the items it has not handed out yet.
    gen = Actor.remote().f.remote()
    print("first item, then the rest dropped:", ray.get(next(gen)))
    del gen
    ray.shutdown()


if __name__ == "__main__":
    main()
