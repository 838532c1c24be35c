"""Progress: results as they finish, and progress bars updated inside tasks.

Run:  python examples/progress.py
      ASYNCRAY_BACKEND=ray python examples/progress.py   (on real Ray)

``as_completed(refs)`` (asyncray's; on Ray the same loop is written with
``ray.wait``) yields each result as soon as its task finishes, so the fast
ones are handled first. ``tqdm_ray.tqdm`` (Ray's ``ray.experimental.tqdm_ray``)
is a progress bar a task updates as often as it likes: the driver shows one
bar per task on stderr, not one line per update.
"""

from __future__ import annotations

import time

import asyncray as ray
from asyncray.experimental.tqdm_ray import tqdm


@ray.remote
def download(name: str, chunks: int) -> str:
    for _ in tqdm(range(chunks), desc=name, flush_interval_s=0.05):
        time.sleep(0.02)
    return name


def in_completion_order(refs: list[ray.ObjectRef]) -> list[str]:
    try:
        from asyncray.util import as_completed
    except ImportError:  # real Ray has no as_completed: the same with ray.wait
        done = []
        while refs:
            ready, refs = ray.wait(refs, num_returns=1)
            done.append(ray.get(ready[0]))
        return done
    return list(as_completed(refs))


def main() -> None:
    ray.init(num_cpus=2)
    refs = [download.remote("big.bin", 30), download.remote("small.txt", 5)]
    print("in the order they finished:", in_completion_order(refs))
    ray.shutdown()


if __name__ == "__main__":
    main()
