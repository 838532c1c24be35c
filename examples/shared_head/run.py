"""Run the tour's cross-process example: two drivers sharing a detached actor.

Run:  python examples/shared_head/run.py   (examples/tour.py runs it too)
      ASYNCRAY_BACKEND=ray python examples/shared_head/run.py   (on real Ray)

1. a shared head starts in a fresh private temp directory (so it never
   meets a head you run yourself): ``asyncray start --head --address DIR``;
2. driver_colors.py (namespace "colors") creates the detached actor
   "orange" and exits;
3. driver_fruit.py (namespace "fruit") looks "orange" up: not found in its
   own namespace, found with ``namespace="colors"``;
4. a last driver in "colors" finds "orange" by name alone and kills it;
5. the head stops (``asyncray stop``) — always, also when a step failed.

The drivers find the head with ``init(address="auto")`` through
``ASYNCRAY_HEAD_DIR=DIR``; the last one names it, ``init(address=DIR)``.

With ``ASYNCRAY_BACKEND=ray`` the head is a real Ray head instead:
``ray start --head --block`` on a free port, its files in the temp
directory, and the drivers find it through ``RAY_ADDRESS`` (``"auto"`` then
means that address). It is stopped by SIGTERM to that ``ray start``
process, which shuts down its own processes only: ``ray stop`` would stop
every Ray process on the machine, other people's clusters included.
``RAY_AUTH_MODE=token`` (unless set) makes the drivers present the token in
``~/.ray/auth_token``, which a head from ``ray start`` requires by default
(seen with Ray 2.60; a driver given an address does not send it unasked).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# Generous: a step takes well under a second (a few seconds on Ray).
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


def run_drivers(address: str, env: dict[str, str]) -> None:
    for name in ("driver_colors.py", "driver_fruit.py"):
        step(f"python {name}", [sys.executable, os.path.join(HERE, name)], env)
    step("clean up the detached actor", [sys.executable, "-c", CLEANUP, address], env)


def with_asyncray_head(base: str, env: dict[str, str]) -> None:
    head_dir = os.path.join(base, "head")
    env["ASYNCRAY_HEAD_DIR"] = head_dir
    try:
        step(
            "asyncray start --head --num-cpus 2 --address DIR",
            asyncray("start", "--head", "--num-cpus", "2", "--address", head_dir),
            env,
        )
        run_drivers(head_dir, env)
    finally:
        step("asyncray stop --address DIR", asyncray("stop", "--address", head_dir), env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_ray_head(base: str, env: dict[str, str]) -> None:
    port = free_port()
    temp_dir = os.path.join(base, "ray")
    env.setdefault("RAY_AUTH_MODE", "token")
    argv = ["ray", "start", "--head", "--block", "--port", str(port), "--num-cpus", "2"]
    argv += ["--include-dashboard=false", "--disable-usage-stats", "--temp-dir", temp_dir]
    print(f"\n$ {' '.join(argv[:-1])} DIR", flush=True)
    # ``python -m ray.scripts.scripts`` is the ``ray`` command (no PATH needed).
    head = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", *argv[1:]], env=env)
    try:
        ready = os.path.join(temp_dir, "ray_current_cluster")  # written once it is up
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while not os.path.exists(ready):
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start --head did not start (exit code {head.poll()})")
            time.sleep(0.2)
        env["RAY_ADDRESS"] = f"127.0.0.1:{port}"
        run_drivers(env["RAY_ADDRESS"], env)
    finally:
        print("\n$ stop the head: SIGTERM to its `ray start --block`", flush=True)
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=STEP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        print("Stopped the Ray head.")


def main() -> None:
    base = tempfile.mkdtemp(prefix="asyncray-example-")
    env = dict(os.environ)
    for name in ("RAY_ADDRESS", "ASYNCRAY_ADDRESS"):  # they would win over "auto"
        env.pop(name, None)
    try:
        if os.environ.get("ASYNCRAY_BACKEND") == "ray":
            with_ray_head(base, env)
        else:
            with_asyncray_head(base, env)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
