"""Queue throughput: put+get pairs per second from one driver, asyncray vs Ray.

    python bench/queue_bench.py                  # asyncray, then Ray if its venv exists
    python bench/queue_bench.py --system asyncray --n 5000 --runs 5
    /opt/venvs/ray/bin/python bench/queue_bench.py --system ray

One line per workload: the median rate over ``--runs`` trials (pairs/s, or
calls/s for the actor round-trip baseline), the spread, and the ratio to Ray
when Ray was run too. Workloads:

* ``actor round trip``: ``get(actor.noop.remote())`` on an async actor; the
  cost of every single-item call of Ray's queue (one call = one round trip).
  asyncray's driver makes none: its calls work on the runtime's state.
* ``seq``: N ``put`` then N ``get``; ``interleaved``: ``put`` then ``get`` N times.
* ``nowait``: the same as ``seq`` with ``put_nowait``/``get_nowait``.
* ``batch``: ``put_nowait_batch``/``get_nowait_batch`` of 1,000 items.
* ``async gather``: N ``put_async`` then N ``get_async``, all in flight at once.
* ``in a task``: one task does ``put`` then ``get`` N times (the path of
  every call made in a worker; the driver only waits for the task).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

RAY_PYTHON = os.environ.get("ASYNCRAY_BENCH_RAY_PYTHON", "/opt/venvs/ray/bin/python")
BATCH = 1000


def _workloads(ray: Any, Queue: Any, n: int) -> dict[str, tuple[Callable[[], None], int]]:
    @ray.remote
    class Echo:
        async def noop(self) -> None:
            return None

    @ray.remote
    def pairs_in_task(q: Any, n: int) -> None:
        for i in range(n):
            q.put(i)
            q.get()

    echo = Echo.remote()
    ray.get(echo.noop.remote())
    q = Queue()
    q.put(0)
    q.get()
    ray.get(pairs_in_task.remote(q, 1))

    def round_trip() -> None:
        for _ in range(n):
            ray.get(echo.noop.remote())

    def seq() -> None:
        for i in range(n):
            q.put(i)
        for _ in range(n):
            q.get()

    def interleaved() -> None:
        for i in range(n):
            q.put(i)
            q.get()

    def nowait() -> None:
        for i in range(n):
            q.put_nowait(i)
        for _ in range(n):
            q.get_nowait()

    def batch() -> None:
        items = list(range(BATCH))
        for _ in range(n // 10):
            q.put_nowait_batch(items)
            q.get_nowait_batch(BATCH)

    async def gather() -> None:
        await asyncio.gather(*(q.put_async(i) for i in range(n)))
        await asyncio.gather(*(q.get_async() for _ in range(n)))

    return {
        "actor round trip (calls/s)": (round_trip, n),
        "seq put x N, get x N": (seq, n),
        "interleaved put, get": (interleaved, n),
        "nowait put x N, get x N": (nowait, n),
        f"batch of {BATCH}": (batch, (n // 10) * BATCH),
        "async gather put x N, get x N": (lambda: asyncio.run(gather()), n),
        "in a task: put, get": (lambda: ray.get(pairs_in_task.remote(q, n)), n),
    }


def measure(system: str, n: int, runs: int) -> dict[str, list[float]]:
    """Rates of every workload on ``system`` (``asyncray`` or ``ray``), ``runs`` trials each."""
    if system == "ray":
        import ray
        from ray.util.queue import Queue

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    else:
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
        import asyncray as ray
        from asyncray.util.queue import Queue

        ray.init(num_cpus=2)
    try:
        rates: dict[str, list[float]] = {}
        for name, (fn, pairs) in _workloads(ray, Queue, n).items():
            rates[name] = []
            for _ in range(runs):
                start = time.perf_counter()
                fn()
                rates[name].append(pairs / (time.perf_counter() - start))
        return rates
    finally:
        ray.shutdown()


def _ray_rates(n: int, runs: int) -> dict[str, list[float]] | None:
    if not os.path.exists(RAY_PYTHON):
        return None
    # Ray is ~50x slower per item: fewer items keep its run short.
    cmd = [RAY_PYTHON, __file__, "--system", "ray", "--n", str(max(50, n // 20))]
    out = subprocess.run([*cmd, "--runs", str(runs), "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        print(f"(Ray run failed: {out.stderr.strip().splitlines()[-1:]})")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--system", choices=["asyncray", "ray", "both"], default="both")
    parser.add_argument("--n", type=int, default=5000, help="items per trial")
    parser.add_argument("--runs", type=int, default=5, help="trials per workload")
    parser.add_argument("--json", action="store_true", help="print the raw rates as JSON")
    args = parser.parse_args()
    if args.json:
        print(json.dumps(measure(args.system, args.n, args.runs)))
        return
    systems = ["asyncray"] if args.system == "both" else [args.system]
    rates = measure(systems[0], args.n, args.runs)
    peer = _ray_rates(args.n, args.runs) if args.system == "both" else None
    print(f"{systems[0]}: n={args.n}, {args.runs} runs, median (min-max)")
    for name, values in rates.items():
        spread = f"({min(values):,.0f}-{max(values):,.0f})"
        line = f"  {name:32} {statistics.median(values):>10,.0f}/s  {spread:>20}"
        if peer and name in peer:
            ray_median = statistics.median(peer[name])
            line += f"   ray {ray_median:>8,.0f}/s   x{statistics.median(values) / ray_median:,.1f}"
        print(line)


if __name__ == "__main__":
    main()
