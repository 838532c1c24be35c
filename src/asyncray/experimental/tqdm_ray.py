"""Ray's ``ray.experimental.tqdm_ray``: a tqdm that tasks and actors update, drawn on the driver.

In a task or actor, ``tqdm(...)`` prints its state as one JSON line (Ray's
format) at most once per ``flush_interval_s``; the driver turns those lines
into one terminal bar per worker bar, instead of a line per update. In the
driver it draws its bar directly. The arguments are Ray's subset of tqdm's.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

from .. import _task_context
from .._wire.output import PROGRESS_MAGIC

T = TypeVar("T")

RAY_TQDM_MAGIC = PROGRESS_MAGIC


class tqdm(Generic[T]):  # lower case: Ray's (and tqdm's) name
    """A progress bar usable from any task or actor, shown once on the driver."""

    DEFAULT_FLUSH_INTERVAL_SECONDS = 1.0

    def __init__(
        self,
        iterable: Iterable[T] | None = None,
        desc: str | None = None,
        total: int | None = None,
        unit: str | None = None,
        position: int | None = None,
        flush_interval_s: float | None = None,
    ) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except (TypeError, AttributeError):
                total = None
        self._iterable = iterable
        self._desc = desc or ""
        self._total = total
        self._unit = unit or "it"
        self._pid = os.getpid()
        self._pos = position or 0
        self._uuid = uuid.uuid4().hex
        self._x = 0
        self._closed = False
        self._flush_interval_s = (
            self.DEFAULT_FLUSH_INTERVAL_SECONDS if flush_interval_s is None else flush_interval_s
        )
        self._last_flush_time = 0.0

    def set_description(self, desc: str) -> None:
        """As ``tqdm.tqdm.set_description``."""
        self._desc = desc
        self._dump_state()

    def update(self, n: int = 1) -> None:
        """As ``tqdm.tqdm.update``: ``n`` more done."""
        self._x += n
        self._dump_state()

    def close(self) -> None:
        """As ``tqdm.tqdm.close``: the bar shows its final state."""
        if self._closed:
            return
        self._closed = True
        self._dump_state(force_flush=True)

    def refresh(self) -> None:
        """As ``tqdm.tqdm.refresh``."""
        self._dump_state(force_flush=True)

    @property
    def total(self) -> int | None:
        return self._total

    @total.setter
    def total(self, total: int) -> None:
        self._total = total

    @property
    def n(self) -> int:
        return self._x

    @n.setter
    def n(self, n: int) -> None:
        self._x = n

    def __iter__(self) -> Iterator[T]:
        if self._iterable is None:
            raise ValueError("No iterable provided")
        for x in self._iterable:
            self.update(1)
            yield x
        self.close()

    def __enter__(self) -> tqdm[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _dump_state(self, force_flush: bool = False) -> None:
        now = time.time()
        if not force_flush and now - self._last_flush_time < self._flush_interval_s:
            return
        self._last_flush_time = now
        state = self._state()
        if _task_context.in_worker:
            # One write, newline included, so the line reaches the driver whole.
            print(json.dumps(state) + "\n", end="", flush=True)
        else:
            from .._session import progress

            progress.manager().update(state)

    def _state(self) -> dict[str, Any]:
        return {
            "__magic_token__": RAY_TQDM_MAGIC,
            "x": self._x,
            "pos": self._pos,
            "desc": self._desc,
            "total": self._total,
            "unit": self._unit,
            "ip": "127.0.0.1",
            "pid": self._pid,
            "uuid": self._uuid,
            "closed": self._closed,
        }
