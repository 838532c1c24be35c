"""A Queue feeding two consumer tasks.

Run:  python examples/queue_consumers.py
      ASYNCRAY_BACKEND=ray python examples/queue_consumers.py   (on real Ray)

``ray.util.queue.Queue`` is an actor-backed queue that can be passed to
tasks and actors. The driver puts ten items; two consumer tasks take items
with ``get(block=True, timeout=1)`` until the queue has stayed empty for a
second (``Empty``). Every item is taken exactly once, by one consumer or
the other. The consumers' prints reach the driver's terminal (tagged with
the task), in whatever order they ran; each consumer also returns its
items, which the driver prints.
"""

from __future__ import annotations

import asyncray as ray
from asyncray.util.queue import Empty, Queue


@ray.remote
def consumer(id: int, queue: Queue) -> list[int]:
    got = []
    try:
        while True:
            next_item = queue.get(block=True, timeout=1)
            print(f"consumer {id} got work {next_item}")
            got.append(next_item)
    except Empty:
        return got


def main() -> None:
    ray.init(num_cpus=2)
    queue = Queue(maxsize=100)
    for i in range(10):
        queue.put(i)
    consumers = [consumer.remote(id, queue) for id in range(2)]
    parts = ray.get(consumers)
    print("items taken, all consumers together:", sorted(x for part in parts for x in part))
    print("queue empty now:", queue.empty())
    ray.shutdown()


if __name__ == "__main__":
    main()
