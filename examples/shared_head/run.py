"""Run the tour's cross-process example: two drivers sharing a detached actor.

Run:  python3 examples/shared_head/run.py   (examples/tour.py runs it too)

1. ``asyncray start --head --address DIR`` starts a shared head in a fresh
   private temp directory (so it never meets a head you run yourself);
2. driver_colors.py (namespace "colors") creates the detached actor
   "orange" and exits;
3. driver_fruit.py (namespace "fruit") looks "orange" up: not found in its
   own namespace, found with ``namespace="colors"``;
4. a last driver in "colors" finds "orange" by name alone and kills it;
5. ``asyncray stop`` stops the head — always, also when a step failed.

The drivers find the head with ``init(address="auto")`` through
``ASYNCRAY_HEAD_DIR=DIR``; the last one names it, ``init(address=DIR)``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
# Generous: a step takes well under a second.
STEP_TIMEOUT_S = 120

CLEANUP = """
import sys
import asyncray as ray
ray.init(address=sys.argv[1], namespace="colors")
orange = ray.get_actor("orange")  # its own namespace: no namespace= needed
ray.kill(orange)
print('cleanup: get_actor("orange") in namespace "colors" found it; killed')
"""


def step(title: str, argv: list[str], env: dict[str, str]) -> None:
    print(f"\n$ {title}", flush=True)
    subprocess.run(argv, env=env, check=True, timeout=STEP_TIMEOUT_S)


def asyncray(*args: str) -> list[str]:
    """The ``asyncray`` command, as ``python -m asyncray`` (no PATH needed)."""
    return [sys.executable, "-m", "asyncray", *args]


def main() -> None:
    base = tempfile.mkdtemp(prefix="asyncray-example-")
    head_dir = os.path.join(base, "head")
    env = dict(os.environ, ASYNCRAY_HEAD_DIR=head_dir)
    for name in ("RAY_ADDRESS", "ASYNCRAY_ADDRESS"):  # they would win over "auto"
        env.pop(name, None)
    try:
        step(
            "asyncray start --head --num-cpus 2 --address DIR",
            asyncray("start", "--head", "--num-cpus", "2", "--address", head_dir),
            env,
        )
        step(
            "python driver_colors.py",
            [sys.executable, os.path.join(HERE, "driver_colors.py")],
            env,
        )
        step(
            "python driver_fruit.py",
            [sys.executable, os.path.join(HERE, "driver_fruit.py")],
            env,
        )
        step("clean up the detached actor", [sys.executable, "-c", CLEANUP, head_dir], env)
    finally:
        try:
            step("asyncray stop --address DIR", asyncray("stop", "--address", head_dir), env)
        finally:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
