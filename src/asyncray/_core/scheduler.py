"""Resource accounting and the queue of tasks waiting for resources.

Resources are counters: ``CPU``, ``GPU``, ``memory`` and custom names. A task
runs only when its whole request fits. GPUs are also slots with ids, so a
task that holds ``GPU: 1`` knows *which* device it holds (fractional requests
share one device).

Ready tasks wait in one FIFO per *shape* (the sorted resource request): a
task that cannot fit does not block a smaller one behind it, while tasks of
the same shape keep their submission order. Dispatch walks the shapes, not
the tasks, so it costs O(shapes) however many tasks are queued.

Pure logic, no I/O: unit-tested without processes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterator
from typing import Any, Generic, TypeVar

Shape = tuple[tuple[str, float], ...]

# A ready-queue key: a shape, or (as the runtime keys it) a shape with its placement group.
K = TypeVar("K", bound=Hashable)

# Quantities are compared with this slack so 0.1 + 0.2 fits in 0.3.
_EPSILON = 1e-9


def shape_of(request: dict[str, float]) -> Shape:
    """The hashable, order-independent key of a resource request.

    Cached by the request dict itself: the driver sends the same dict with
    every call of a function, so most tasks skip the sort.
    """
    hit = _shapes.get(id(request))
    if hit is not None and hit[0] is request:
        return hit[1]
    shape = tuple(sorted((k, v) for k, v in request.items() if v > 0))
    if len(_shapes) >= _SHAPE_CACHE_SIZE:
        _shapes.clear()  # requests decoded from children are new dicts every time
    _shapes[id(request)] = (request, shape)  # holding it: its id cannot be reused
    return shape


_SHAPE_CACHE_SIZE = 1024
_shapes: dict[int, tuple[dict[str, float], Shape]] = {}


class ResourcePool:
    """Totals and availability of the host's resources, plus GPU slot ids."""

    def __init__(self, totals: dict[str, float], gpu_ids: list[int] | None = None) -> None:
        self.totals = {k: float(v) for k, v in totals.items()}
        self.available = dict(self.totals)
        # Free capacity of each GPU slot: whole requests take whole devices.
        self._gpu_free = [1.0] * int(self.totals.get("GPU", 0))
        # The device id of each slot (a placement-group bundle owns some of the host's).
        self._gpu_names = gpu_ids if gpu_ids is not None else list(range(len(self._gpu_free)))

    def fits(self, shape: Shape, available: dict[str, float] | None = None) -> bool:
        avail = self.available if available is None else available
        for name, qty in shape:
            if avail.get(name, 0.0) + _EPSILON < qty:
                return False
        if available is None:
            for name, qty in shape:
                if name == "GPU":
                    return self._gpu_fits(qty)
        return True

    def acquire(self, shape: Shape) -> list[int]:
        """Take the resources of ``shape``; returns the GPU ids assigned (maybe empty)."""
        gpu_ids: list[int] = []
        for name, qty in shape:
            self.available[name] = self.available.get(name, 0.0) - qty
            if name == "GPU":
                gpu_ids = self._take_gpus(qty)
        return gpu_ids

    def release(self, shape: Shape, gpu_ids: list[int]) -> None:
        for name, qty in shape:
            self.available[name] = self.available.get(name, 0.0) + qty
            if name == "GPU":
                self._give_gpus(qty, gpu_ids)

    def adjust(self, name: str, delta: float) -> None:
        """Lend (negative) or take back (positive) a counted resource, e.g. a blocked task's CPU."""
        self.available[name] = self.available.get(name, 0.0) + delta

    def snapshot_available(self) -> dict[str, float]:
        """Availability as Ray reports it: keys at zero (or below) are left out."""
        return {k: v for k, v in self.available.items() if v > _EPSILON}

    # ---------------------------------------------------------------- GPU ids

    def _gpu_fits(self, qty: float) -> bool:
        if qty >= 1:
            return sum(1 for f in self._gpu_free if f >= 1 - _EPSILON) >= int(qty)
        return any(f + _EPSILON >= qty for f in self._gpu_free)

    def _take_gpus(self, qty: float) -> list[int]:
        if qty >= 1:
            slots = [i for i, f in enumerate(self._gpu_free) if f >= 1 - _EPSILON][: int(qty)]
            for i in slots:
                self._gpu_free[i] = 0.0
            return [self._gpu_names[i] for i in slots]
        # Fractional: pack onto the fullest device that still fits, as Ray does.
        candidates = [i for i, f in enumerate(self._gpu_free) if f + _EPSILON >= qty]
        if not candidates:
            return []
        i = min(candidates, key=lambda j: self._gpu_free[j])
        self._gpu_free[i] -= qty
        return [self._gpu_names[i]]

    def _give_gpus(self, qty: float, ids: list[int]) -> None:
        for gpu in ids:
            i = self._gpu_names.index(gpu)
            self._gpu_free[i] = min(1.0, self._gpu_free[i] + (1.0 if qty >= 1 else qty))


class ReadyQueue(Generic[K]):
    """Tasks whose dependencies are ready, one FIFO per resource shape."""

    def __init__(self) -> None:
        self._by_shape: dict[K, deque[Any]] = {}
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def push(self, shape: K, item: Any) -> None:
        q = self._by_shape.get(shape)
        if q is None:
            q = self._by_shape[shape] = deque()
        q.append(item)
        self._len += 1

    def push_front(self, shape: K, item: Any) -> None:
        q = self._by_shape.get(shape)
        if q is None:
            q = self._by_shape[shape] = deque()
        q.appendleft(item)
        self._len += 1

    def has(self, shape: K) -> bool:
        return shape in self._by_shape

    def shapes(self) -> Iterator[tuple[K, deque[Any]]]:
        # A copy: dispatching may add shapes (retries) while we iterate.
        return iter(list(self._by_shape.items()))

    def pop(self, shape: K) -> Any:
        q = self._by_shape[shape]
        item = q.popleft()
        self._len -= 1
        if not q:
            del self._by_shape[shape]
        return item

    def remove(self, shape: K, item: Any) -> bool:
        q = self._by_shape.get(shape)
        if q is None:
            return False
        try:
            q.remove(item)
        except ValueError:
            return False
        self._len -= 1
        if not q:
            del self._by_shape[shape]
        return True
