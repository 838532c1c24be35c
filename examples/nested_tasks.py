"""Tasks: a remote function with resources, and tasks that start tasks.

Run:  python examples/nested_tasks.py
      ASYNCRAY_BACKEND=ray python examples/nested_tasks.py   (on real Ray)

The tour's first program: ``@ray.remote(num_cpus=1, num_gpus=1)`` (the tour
writes ``num=gpus=1``) and a blocking ``ray.get``. ``init(num_gpus=1)``
declares one GPU so the task can be scheduled on a machine without one.
Then a task that calls other tasks from inside and waits for them: while it
waits in ``ray.get`` it gives its CPU back, so fib(7) runs on 2 CPUs.
"""

from __future__ import annotations

import asyncray as ray


@ray.remote(num_cpus=1, num_gpus=1)
def f() -> int:
    return 1


@ray.remote
def fib(n: int) -> int:
    if n < 2:
        return n
    # Nested: this task submits two more and blocks until they finish.
    return sum(ray.get([fib.remote(n - 1), fib.remote(n - 2)]))


def main() -> None:
    ray.init(num_cpus=2, num_gpus=1)
    # Blocking call
    print("f() with num_cpus=1, num_gpus=1:", ray.get(f.remote()))
    print("fib(7) from nested tasks:", ray.get(fib.remote(7)))
    ray.shutdown()


if __name__ == "__main__":
    main()
