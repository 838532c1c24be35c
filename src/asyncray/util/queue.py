"""``ray.util.queue``: a FIFO queue shared by the driver, tasks and actors.

Ray's module path for ``asyncray._queue``, which holds the implementation
(it reaches the runtime's queues through the client, as the public API
does; ``util`` itself is built on the public surface only).
"""

from __future__ import annotations

from .._queue import Empty, Full, Queue

__all__ = ["Empty", "Full", "Queue"]

# Ray's module path in reprs and pickles, as with `import ray`.
for _cls in (Empty, Full, Queue):
    _cls.__module__ = __name__
