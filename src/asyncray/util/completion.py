"""``as_completed(refs)``: results in the order their tasks finish, sync or async.

::

    for value in as_completed(refs):            # blocks until the next one is ready
        ...
    async for value in as_completed(refs):      # awaits it instead
        ...
    for value in tqdm(as_completed(refs)):      # len() is the number left: a progress bar
        ...

A task that failed raises its error from ``next()`` (``RayTaskError``, as
``get`` does); the iteration can go on with the others. ``timeout`` bounds
the whole iteration: when it passes, ``GetTimeoutError`` is raised.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Generic, TypeVar

from .. import _api
from ..exceptions import GetTimeoutError
from ..object_ref import ObjectRef

T = TypeVar("T")


class as_completed(Generic[T]):  # lower case: used as the function it stands for
    """Iterate over ``refs`` 's values as their tasks finish (``for`` or ``async for``)."""

    def __init__(self, refs: Iterable[ObjectRef[T]], timeout: float | None = None) -> None:
        self._pending: list[ObjectRef[T]] = list(refs)
        for ref in self._pending:
            if not isinstance(ref, ObjectRef):
                raise TypeError(
                    f"as_completed() takes ObjectRefs, got {type(ref).__name__}: pass the refs "
                    "that .remote() returned."
                )
        self._ready: deque[ObjectRef[T]] = deque()
        self._deadline = None if timeout is None else time.monotonic() + timeout

    def __len__(self) -> int:
        """How many values are still to come."""
        return len(self._pending) + len(self._ready)

    def _remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def _take(self, ready: list[ObjectRef[T]], pending: list[ObjectRef[T]]) -> None:
        self._ready.extend(ready)
        self._pending = pending

    def _timed_out(self) -> GetTimeoutError:
        return GetTimeoutError(f"as_completed() timed out with {len(self)} of its refs not ready.")

    # ------------------------------------------------------------ sync

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if not self._ready:
            if not self._pending:
                raise StopIteration
            # Everything ready now at once, else block for the next one.
            ready, pending = _api.wait(self._pending, num_returns=len(self._pending), timeout=0)
            if not ready:
                ready, pending = _api.wait(self._pending, num_returns=1, timeout=self._remaining())
                if not ready:
                    raise self._timed_out()
            self._take(ready, pending)
        return _api.get(self._ready.popleft())

    # ------------------------------------------------------------ async

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        if not self._ready:
            if not self._pending:
                raise StopAsyncIteration
            ready, pending = await _api.wait_async(
                self._pending, num_returns=len(self._pending), timeout=0
            )
            if not ready:
                ready, pending = await _api.wait_async(
                    self._pending, num_returns=1, timeout=self._remaining()
                )
                if not ready:
                    raise self._timed_out()
            self._take(ready, pending)
        return await _api.get_async(self._ready.popleft())
