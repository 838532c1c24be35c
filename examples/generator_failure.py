"""Streaming generators: an error at item 1, and stopping one with ray.cancel.

Run:  python examples/generator_failure.py
      ASYNCRAY_BACKEND=ray python examples/generator_failure.py   (on real Ray)

A remote generator yields each item as soon as it is made. When it raises
after item 0, the caller gets item 0 and then the error, raised as the
user's exception class (here ValueError). A generator that would run on
and on is stopped with ``ray.cancel``: the caller then sees
``TaskCancelledError`` instead of the next item.
"""

from __future__ import annotations

import time

import asyncray as ray


@ray.remote
def f():
    for i in range(5):
        if i == 1:
            raise ValueError("failed at item 1")
        yield i


@ray.remote
def endless():
    i = 0
    while True:
        time.sleep(0.05)
        yield i
        i += 1


def main() -> None:
    ray.init()
    got = []
    try:
        for obj_ref in f.remote():
            got.append(ray.get(obj_ref))
            print("item:", got[-1])
    except ValueError as e:
        print("then ValueError:", isinstance(e, ValueError), "| items before it:", got)

    gen = endless.remote()
    print("endless generator, first two items:", ray.get(next(gen)), ray.get(next(gen)))
    ray.cancel(gen)
    try:
        for ref in gen:  # items made before the cancel may still come
            ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        print("after ray.cancel: TaskCancelledError")
    ray.shutdown()


if __name__ == "__main__":
    main()
