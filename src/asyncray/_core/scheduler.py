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
    """Totals and availability of the host's resources, plus GPU slot ids.

    Each GPU is a slot with a capacity: 1.0 for a device of the host, or the
    share of a device a placement-group bundle reserved (``{"GPU": 0.5}`` is
    one slot of 0.5). A request below one GPU must fit in one slot; a whole
    request takes whole, wholly free devices (the fraction of a ``1.5`` goes
    to one more slot).
    """

    def __init__(self, totals: dict[str, float], gpu_ids: list[int] | None = None) -> None:
        self.totals = {k: float(v) for k, v in totals.items()}
        self.available = dict(self.totals)
        gpus = self.totals.get("GPU", 0.0)
        whole = int(gpus + _EPSILON)
        fraction = gpus - whole
        capacities = [1.0] * whole + ([fraction] if fraction > _EPSILON else [])
        # Capacity and free share of each GPU slot, and its device id (a bundle
        # owns the ids the host gave it; the host's are 0..n-1).
        self._gpu_cap = capacities
        self._gpu_free = list(capacities)
        self._gpu_names = gpu_ids if gpu_ids is not None else list(range(len(capacities)))
        if len(self._gpu_names) != len(capacities):
            raise ValueError(
                f"{len(self._gpu_names)} GPU ids given for {gpus:g} GPUs ({len(capacities)} slots)"
            )

    def fits(self, shape: Shape, available: dict[str, float] | None = None) -> bool:
        avail = self.available if available is None else available
        for name, qty in shape:
            if avail.get(name, 0.0) + _EPSILON < qty:
                return False
        if available is None:
            for name, qty in shape:
                if name == "GPU":
                    return _pick_gpus(self._gpu_free, qty) is not None
        return True

    def acquire(self, shape: Shape) -> list[int]:
        """Take the resources of ``shape``; returns the GPU ids assigned (maybe empty)."""
        gpu_ids: list[int] = []
        for name, qty in shape:
            self.available[name] = self.available.get(name, 0.0) - qty
            if name == "GPU":
                gpu_ids = self._take_gpus(qty)
        return gpu_ids

    def acquire_all(self, shapes: list[Shape]) -> list[list[int]] | None:
        """Take every one of ``shapes`` together, or nothing (a placement group's bundles).

        Returns each shape's GPU ids, in order, or None if they do not all fit
        at once. Counters must fit summed; GPU shares are planned largest
        first (whole devices, then fractions best-fit), so bundles that fit on
        different devices are placed and a fraction that fits no device is not.
        """
        total: dict[str, float] = {}
        for shape in shapes:
            for name, qty in shape:
                total[name] = total.get(name, 0.0) + qty
        for name, qty in total.items():
            if self.available.get(name, 0.0) + _EPSILON < qty:
                return None
        free = list(self._gpu_free)
        slots: list[list[int]] = [[] for _ in shapes]
        wanted = [(dict(shape).get("GPU", 0.0), i) for i, shape in enumerate(shapes)]
        for qty, i in sorted((w for w in wanted if w[0] > 0), key=lambda w: -w[0]):
            picked = _pick_gpus(free, qty)
            if picked is None:
                return None
            _take_slots(free, picked, qty)
            slots[i] = picked
        for shape in shapes:
            for name, qty in shape:
                self.available[name] = self.available.get(name, 0.0) - qty
        self._gpu_free = free
        return [[self._gpu_names[j] for j in picked] for picked in slots]

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

    def _take_gpus(self, qty: float) -> list[int]:
        picked = _pick_gpus(self._gpu_free, qty)
        if picked is None:
            return []
        _take_slots(self._gpu_free, picked, qty)
        return [self._gpu_names[i] for i in picked]

    def _give_gpus(self, qty: float, ids: list[int]) -> None:
        shares = _shares(qty, len(ids))
        for gpu, share in zip(ids, shares):
            i = self._gpu_names.index(gpu)
            self._gpu_free[i] = min(self._gpu_cap[i], self._gpu_free[i] + share)


def _pick_gpus(free: list[float], qty: float) -> list[int] | None:
    """The slots a GPU request takes from ``free``, or None if it does not fit.

    Whole devices for the whole part (slots of capacity 1 with nothing taken);
    the fraction packs onto the fullest other slot that still fits, as Ray does.
    """
    whole = int(qty + _EPSILON)
    fraction = qty - whole
    slots = [i for i, f in enumerate(free) if f >= 1 - _EPSILON][:whole]
    if len(slots) < whole:
        return None
    if fraction > _EPSILON:
        candidates = [i for i, f in enumerate(free) if f + _EPSILON >= fraction and i not in slots]
        if not candidates:
            return None
        slots.append(min(candidates, key=lambda j: free[j]))
    return slots


def _shares(qty: float, n: int) -> list[float]:
    """What each of the ``n`` slots a request of ``qty`` took holds: 1.0 each, the fraction last."""
    whole = int(qty + _EPSILON)
    fraction = qty - whole
    return [1.0] * min(whole, n) + ([fraction] if fraction > _EPSILON and n > whole else [])


def _take_slots(free: list[float], slots: list[int], qty: float) -> None:
    for i, share in zip(slots, _shares(qty, len(slots))):
        free[i] -= share


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

    def first(self, shape: K) -> Any:
        """The item ``pop(shape)`` would return, left in place."""
        return self._by_shape[shape][0]

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
