"""One Counter actor, incremented by three tasks at once.

Run:  python examples/counter_from_tasks.py
      ASYNCRAY_BACKEND=ray python examples/counter_from_tasks.py   (on real Ray)

An actor handle can be passed to tasks: three tasks each call
``increment`` ten times on the same actor while the driver reads the
count. The actor runs one call at a time, so no increment is lost: the
count ends at 30. The actor is named, so ``ray.get_actor("demo")`` finds
it, and ``get_if_exists=True`` returns it instead of making another.

Corrected from the tour: its ``Counter`` asked for ``num_cpus=2``, which an
actor holds for its whole life, so on a 2-CPU machine the three tasks could
never start; here the actor asks for none (an actor's default).
"""

from __future__ import annotations

import time

import asyncray as ray


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
def f(counter) -> None:
    refs = []
    for _ in range(10):
        time.sleep(0.05)
        refs.append(counter.increment.remote())  # call an actor method
    ray.get(refs)


def main() -> None:
    ray.init(num_cpus=2)
    counter = Counter.options(name="demo").remote()  # create the actor
    tasks = [f.remote(counter) for _ in range(3)]
    seen = []
    for _ in range(10):
        time.sleep(0.1)
        seen.append(ray.get(counter.get_counter.remote()))
    print("the count while the tasks run:", seen)
    print("never goes down:", seen == sorted(seen))
    ray.get(tasks)
    print("after the three tasks:", ray.get(counter.get_counter.remote()))
    print("found by name:", ray.get(ray.get_actor("demo").get_counter.remote()))
    same = Counter.options(name="demo", get_if_exists=True).remote()
    print("get_if_exists returns the same actor:", ray.get(same.get_counter.remote()))
    ray.shutdown()


if __name__ == "__main__":
    main()
