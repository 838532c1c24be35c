"""Driver 1 of the tour's cross-process example: a detached actor outlives its driver.

Joins the shared head (``init(address="auto")``) in namespace "colors",
creates the actor "orange" with ``lifetime="detached"`` and the actor
"lemon" without, and exits. When a driver disconnects the head releases
what it left behind, "lemon" included; the detached "orange" lives on until
it is killed (or the head stops).

Run by examples/shared_head/run.py, which starts the head first.
"""

from __future__ import annotations

import os

import asyncray as ray


@ray.remote
class Actor:
    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0

    def ping(self) -> str:
        self.calls += 1
        return f"{self.name} (pid {os.getpid()}), call {self.calls}"


def main() -> None:
    ray.init(address="auto", namespace="colors")
    print("driver 1: connected in namespace", repr(ray.get_runtime_context().namespace))
    orange = Actor.options(name="orange", lifetime="detached").remote("orange")
    print("driver 1: created the detached actor:", ray.get(orange.ping.remote()))
    lemon = Actor.options(name="lemon").remote("lemon")
    print("driver 1: and a non-detached one:", ray.get(lemon.ping.remote()))
    print("driver 1: exiting")


if __name__ == "__main__":
    main()
