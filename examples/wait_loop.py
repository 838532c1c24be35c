"""ray.wait over generators and plain refs together, in one loop.

Run:  python examples/wait_loop.py
      ASYNCRAY_BACKEND=ray python examples/wait_loop.py   (on real Ray)

``ray.wait`` accepts generators alongside object refs: a generator is
ready when its next item is (or when it is finished). The loop tells them
apart with ``isinstance(r, ray.ObjectRefGenerator)`` (the public name; the
tour imported it from ``ray._raylet``), takes one item from a ready
generator and puts the generator back until it is exhausted. (The tour's
``ref`` list was never defined: here it is two plain tasks.)
"""

from __future__ import annotations

import time

import asyncray as ray


@ray.remote
def generator_task():
    for i in range(5):
        time.sleep(0.1)
        yield i


@ray.remote
def plain_task(x: int) -> int:
    time.sleep(0.1)
    return x


def main() -> None:
    ray.init(num_cpus=2)
    gen = [generator_task.remote()]
    ref = [plain_task.remote(10), plain_task.remote(20)]
    ready, unready = [], [*gen, *ref]
    result = []
    while unready:
        ready, unready = ray.wait(unready)
        for r in ready:
            if isinstance(r, ray.ObjectRefGenerator):
                try:
                    ref = next(r)
                    result.append(ray.get(ref))
                except StopIteration:
                    pass
                else:
                    unready.append(r)
            else:
                result.append(ray.get(r))
    print("every item and value, once each:", sorted(result))
    ray.shutdown()


if __name__ == "__main__":
    main()
