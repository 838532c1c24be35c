"""Driver 2 of the tour's cross-process example: finding the actor by namespace.

Joins the same head in namespace "fruit" after driver 1 has exited. The
name "orange" is not found in its own namespace; with ``namespace="colors"``
it is, and the actor still has the state driver 1 gave it. "lemon", driver
1's non-detached actor, went with driver 1.

Run by examples/shared_head/run.py, after driver_colors.py.
"""

from __future__ import annotations

import asyncray as ray


def lookup(name: str, namespace: str | None = None) -> ray.ActorHandle | None:
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:  # Ray's error for a name not found
        return None


def main() -> None:
    ray.init(address="auto", namespace="fruit")
    print("driver 2: connected in namespace", repr(ray.get_runtime_context().namespace))
    print('driver 2: get_actor("orange") in its own namespace:', lookup("orange") or "not found")
    orange = lookup("orange", namespace="colors")
    assert orange is not None, "the detached actor should have outlived driver 1"
    print('driver 2: get_actor("orange", namespace="colors"):', ray.get(orange.ping.remote()))
    print(
        'driver 2: get_actor("lemon", namespace="colors"):',
        lookup("lemon", namespace="colors") or "not found",
        "(released when driver 1 disconnected)",
    )


if __name__ == "__main__":
    main()
