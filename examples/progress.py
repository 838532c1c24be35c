"""Progress: results as they finish, and progress bars updated inside tasks.

Run:  python examples/progress.py
      ASYNCRAY_BACKEND=ray python examples/progress.py   (on real Ray)

``ray.util.as_completed(refs, chunk_size=1)`` yields each result as soon
as its task finishes, so the fast ones are handled first.
``ray.experimental.tqdm_ray.tqdm`` is a progress bar a task updates as often
as it likes: the driver shows one bar per task on stderr, not one line per
update.
"""

from __future__ import annotations

import time

import asyncray as ray
from asyncray.experimental.tqdm_ray import tqdm
from asyncray.util import as_completed


@ray.remote
def download(name: str, chunks: int) -> str:
    for _ in tqdm(range(chunks), desc=name, flush_interval_s=0.05):
        time.sleep(0.02)
    return name


@ray.remote
def warm_up() -> None:
    time.sleep(0.3)  # two at once: both worker processes are up before the real work


def main() -> None:
    ray.init(num_cpus=2)
    ray.get([warm_up.remote() for _ in range(2)])
    refs = [download.remote("big.bin", 60), download.remote("small.txt", 5)]
    # chunk_size=1: each value as soon as its task is done (Ray's default waits for 10).
    print("in the order they finished:", list(as_completed(refs, chunk_size=1)))
    ray.shutdown()


if __name__ == "__main__":
    main()
