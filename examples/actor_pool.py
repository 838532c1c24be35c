"""ActorPool: spread work over a fixed set of actors.

Run:  python examples/actor_pool.py
      ASYNCRAY_BACKEND=ray python examples/actor_pool.py   (on real Ray)

``ActorPool.map`` hands each value to a free actor and yields the results
in input order (``map_unordered`` as they finish). Corrected from the tour:
``from ray.util import ActorPool`` (it wrote ``import ray.util import``).
"""

from __future__ import annotations

import asyncray as ray
from asyncray.util import ActorPool


@ray.remote
class Actor:
    def double(self, n: int) -> int:
        return n * 2


def main() -> None:
    ray.init()
    pool = ActorPool([Actor.remote(), Actor.remote()])
    gen = pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4])
    print(list(gen))  # [2, 4, 6, 8]
    gen = pool.map_unordered(lambda a, v: a.double.remote(v), [5, 6, 7, 8])
    print("map_unordered, sorted:", sorted(gen))
    ray.shutdown()


if __name__ == "__main__":
    main()
