"""What the compatibility suite needs to know about the backend it runs on.

The suite imports ``asyncray`` only. Run normally, that is asyncray; with
``ASYNCRAY_BACKEND=ray`` the backend switch hands every name to real Ray.
``ON_RAY`` lets a test branch where the two differ on purpose: each branch
says why and points to the row of docs/ray-compatibility.md.

Code that runs in a task or actor may use only what it defines itself and
installed modules: Ray's workers cannot import the test modules (cloudpickle
pickles a plain module-level function by reference), whereas asyncray's
workers, forked from the driver, can.
"""

from __future__ import annotations

import os
import sys

import asyncray as ray


def _on_ray() -> bool:
    if os.environ.get("ASYNCRAY_BACKEND", "").lower() == "ray":
        return True
    real = sys.modules.get("ray")
    # Also true when ``asyncray`` is real Ray under another name (a shim).
    return ray.__name__ == "ray" or (real is not None and ray.init is getattr(real, "init", None))


ON_RAY = _on_ray()

# Every init of the suite asks for this many CPUs: enough for the actors,
# pools and placement groups a test holds at once.
NUM_CPUS = 4


def eventually(predicate, timeout=10.0, what="condition"):
    """Poll ``predicate`` until it is true (Ray applies kills, removals and
    resource releases asynchronously)."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} never became true"
        time.sleep(0.05)
