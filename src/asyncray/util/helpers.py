"""Ray's ``ray.util.as_completed`` and ``ray.util.map_unordered``, with the same arguments.

``as_completed(refs, chunk_size=1)`` yields each value as soon as its task
finishes; with Ray's default ``chunk_size=10`` it waits for batches of up to
ten ready refs (each batch in submission order), as Ray's does. Other
keyword arguments go to ``wait`` (``timeout``, ``fetch_local``). Beyond
Ray's: the same object works with ``async for`` (awaiting instead of
blocking), and ``len()`` says how many values are still to come, so
``tqdm(as_completed(refs))`` shows a bar.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from .. import _api
from ..object_ref import ObjectRef

# Ray's defaults (ray/util/helpers.py).
DEFAULT_CHUNK_SIZE = 10
DEFAULT_BACKPRESSURE_SIZE = 100


def _check(chunk_size: int, wait_kwargs: dict[str, Any]) -> None:
    if chunk_size < 1:
        raise ValueError("`chunk_size` must be >= 1")
    if "num_returns" in wait_kwargs:
        raise ValueError("Use the `chunk_size` argument instead of `num_returns`.")


class as_completed:  # lower case: Ray's function, as an object that also supports async for
    """Iterate over ``refs`` 's values (or refs) as their tasks finish, in batches of
    ``chunk_size`` (Ray's ``ray.util.as_completed``)."""

    def __init__(
        self,
        refs: Iterable[ObjectRef[Any]],
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        yield_obj_refs: bool = False,
        **kwargs: Any,
    ) -> None:
        _check(chunk_size, kwargs)
        self._pending: list[ObjectRef[Any]] = list(refs)
        for ref in self._pending:
            if not isinstance(ref, ObjectRef):
                raise TypeError(
                    f"as_completed() takes ObjectRefs, got {type(ref).__name__}: pass the refs "
                    "that .remote() returned."
                )
        self._chunk_size = chunk_size
        self._yield_refs = yield_obj_refs
        self._wait_kwargs = kwargs
        self._ready: deque[Any] = deque()

    def __len__(self) -> int:
        """How many values are still to come."""
        return len(self._pending) + len(self._ready)

    def _num_returns(self) -> int:
        return min(self._chunk_size, len(self._pending))

    # ------------------------------------------------------------ sync

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        while not self._ready:
            if not self._pending:
                raise StopIteration
            ready, self._pending = _api.wait(
                self._pending, num_returns=self._num_returns(), **self._wait_kwargs
            )
            # As Ray's: a batch is fetched at once, and its first error raises here.
            self._ready.extend(ready if self._yield_refs else _api.get(ready))
        return self._ready.popleft()

    # ------------------------------------------------------------ async

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        while not self._ready:
            if not self._pending:
                raise StopAsyncIteration
            ready, self._pending = await _api.wait_async(
                self._pending, num_returns=self._num_returns(), **self._wait_kwargs
            )
            self._ready.extend(ready if self._yield_refs else await _api.get_async(ready))
        return self._ready.popleft()


def map_unordered(
    fn: Any,
    items: Iterable[Any],
    *,
    backpressure_size: int | None = DEFAULT_BACKPRESSURE_SIZE,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    yield_obj_refs: bool = False,
    **kwargs: Any,
) -> Iterator[Any]:
    """``fn.remote(item)`` for each item, at most ``backpressure_size`` in flight; the
    results as they finish (Ray's ``ray.util.map_unordered``)."""
    limit: float = float("inf") if backpressure_size is None else backpressure_size
    if limit <= 0:
        raise ValueError("backpressure_size must be positive.")
    _check(chunk_size, kwargs)
    refs: list[ObjectRef[Any]] = []
    for item in items:
        refs.append(fn.remote(item))
        if len(refs) >= limit:
            ready, refs = _api.wait(refs, num_returns=min(chunk_size, len(refs)), **kwargs)
            yield from (ready if yield_obj_refs else _api.get(ready))
    yield from as_completed(refs, chunk_size=chunk_size, yield_obj_refs=yield_obj_refs, **kwargs)
