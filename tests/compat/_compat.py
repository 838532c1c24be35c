"""What the compatibility suite needs to know about the backend it runs on.

The suite imports ``asyncray`` only. Run normally, that is asyncray; with
``ASYNCRAY_BACKEND=ray`` the backend switch hands every name to real Ray.
``ON_RAY`` lets a test branch where the two differ on purpose: each branch
says why and points to the row of docs/ray-compatibility.md.
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
