"""Code that runs inside worker processes: task bodies, actor classes, remote handles.

Everything here is importable by reference (``bench.tasks``) from any worker
of any system, because the harness puts the repository root on
``PYTHONPATH`` and child processes inherit it (Ray's raylet passes its
environment on to its workers, multiprocessing and loky do the same).

The bodies mirror ``ray/_private/ray_perf.py``. They are plain functions and
classes; :class:`Defs` turns them into remote functions and actor classes for
one runtime module (``ray`` or ``asyncray``). Task and actor code that itself
submits work (``Actor.small_value_batch``, ``work``, ``Client``) finds the
runtime with :func:`runtime` and the remote handles with :func:`defs`, so the
same source runs on both runtimes.

This module imports only the standard library at import time, so that peer
workers (``multiprocessing``, loky) start as fast as they can.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Iterator
from functools import cached_property
from types import ModuleType
from typing import Any

RUNTIME_ENV = "ASYNCRAY_BENCH_RUNTIME"
"""Environment variable naming the runtime module (``ray`` or ``asyncray``)."""

CANCEL_SLEEP_LIMIT_S = 10.0
"""How long the cancel-latency victim sleeps if cancel never reaches it."""


def runtime() -> ModuleType:
    """Return the runtime module this process uses (``ray`` or ``asyncray``).

    Raises:
        RuntimeError: if neither the environment nor ``sys.modules`` names one.
    """
    name = os.environ.get(RUNTIME_ENV)
    if name:
        return importlib.import_module(name)
    for candidate in ("asyncray", "ray"):
        if candidate in sys.modules:
            return sys.modules[candidate]
    raise RuntimeError(f"no runtime: set {RUNTIME_ENV}=ray or asyncray")


# ---------------------------------------------------------------- task bodies


def small_value() -> bytes:
    """The unit of work of every throughput benchmark."""
    return b"ok"


def echo(x: Any) -> Any:
    """Return the argument: payload scaling sends it both ways."""
    return x


def consume(arr: Any) -> int:
    """Accept a large argument and return only its size."""
    return int(arr.nbytes)


def do_put_small() -> None:
    """``multi client put calls``: 100 small puts from inside a task."""
    rt = runtime()
    for _ in range(100):
        rt.put(0)


def do_put(n_elems: int) -> None:
    """``multi client put gigabytes``: 10 puts of an int64 array of ``n_elems``."""
    import numpy as np

    rt = runtime()
    for _ in range(10):
        rt.put(np.zeros(n_elems, dtype=np.int64))


def create_object_containing_ref(n: int = 10_000) -> list[Any]:
    """Return a list of ``n`` refs, each to a small object put by this task."""
    rt = runtime()
    return [rt.put(1) for _ in range(n)]


def work(actors: list[Any], n: int) -> None:
    """``n:n actor calls async``: one caller task spreading ``n`` calls over actors."""
    k = len(actors)
    runtime().get([actors[i % k].small_value.remote() for i in range(n)])


def gen_items(n: int) -> Iterator[int]:
    """A task generator yielding ``n`` small items."""
    # Not ``yield from range(n)``: Ray's streaming generator calls ``send`` on
    # the delegated iterator, which a range iterator does not have.
    for i in range(n):  # noqa: UP028
        yield i


def sleeper(marker_path: str) -> str:
    """Touch ``marker_path`` (so the driver knows we run), then sleep until cancelled."""
    with open(marker_path, "w"):
        pass
    deadline = time.monotonic() + CANCEL_SLEEP_LIMIT_S
    while time.monotonic() < deadline:
        time.sleep(0.001)
    return "not cancelled"


def gate(marker_path: str, limit_s: float = 600.0) -> bytes:
    """Return once ``marker_path`` exists: the tasks that take this ref stay pending until then."""
    deadline = time.monotonic() + limit_s
    while not os.path.exists(marker_path):
        if time.monotonic() > deadline:
            raise TimeoutError("the gate was never opened")
        time.sleep(0.0005)
    return b"ok"


def sleep_for(seconds: float) -> bytes:
    """A task of a given duration (``time.sleep``; 0 returns at once)."""
    if seconds > 0:
        time.sleep(seconds)
    return b"ok"


def measured_sleep(seconds: float, total_s: float = 0.2) -> float:
    """What ``time.sleep(seconds)`` really takes where this runs (mean over ~0.2 s)."""
    n = max(5, int(total_s / seconds))
    t0 = time.perf_counter()
    for _ in range(n):
        time.sleep(seconds)
    return (time.perf_counter() - t0) / n


# -------------------------------------------------------------- actor classes


class Actor:
    """Ray's ``Actor`` (declared with ``num_cpus=0``)."""

    def small_value(self) -> bytes:
        return b"ok"

    def small_value_arg(self, x: Any) -> bytes:
        return b"ok"

    def small_value_batch(self, n: int) -> None:
        """Submit ``n`` ``small_value`` *tasks* and wait for them."""
        runtime().get([defs().small_value.remote() for _ in range(n)])


class AsyncActor:
    """Ray's ``AsyncActor``: coroutine methods, default options."""

    async def small_value(self) -> bytes:
        return b"ok"

    async def small_value_with_arg(self, x: Any) -> bytes:
        return b"ok"


class Client:
    """Ray's ``Client`` (``num_cpus=0``): an actor that calls other actors."""

    def __init__(self, servers: Any) -> None:
        self.servers = servers if isinstance(servers, list) else [servers]

    def small_value_batch(self, n: int) -> None:
        """Submit ``n`` calls to each server, then get them all."""
        refs = [s.small_value.remote() for s in self.servers for _ in range(n)]
        runtime().get(refs)

    def small_value_batch_arg(self, n: int) -> None:
        """Like :meth:`small_value_batch`, passing one put ref as the argument."""
        x = runtime().put(0)
        refs = [s.small_value_arg.remote(x) for s in self.servers for _ in range(n)]
        runtime().get(refs)


# ------------------------------------------------------------- remote handles


class Defs:
    """Remote functions and actor classes of one runtime, built on first use.

    Each handle is built lazily, so a runtime that rejects one option (for
    example ``num_returns="streaming"``) fails only the workloads that use it.
    """

    def __init__(self, rt: ModuleType) -> None:
        self.rt = rt

    @cached_property
    def small_value(self) -> Any:
        return self.rt.remote(small_value)

    @cached_property
    def echo(self) -> Any:
        return self.rt.remote(echo)

    @cached_property
    def consume(self) -> Any:
        return self.rt.remote(consume)

    @cached_property
    def do_put_small(self) -> Any:
        return self.rt.remote(do_put_small)

    @cached_property
    def do_put(self) -> Any:
        return self.rt.remote(do_put)

    @cached_property
    def create_object_containing_ref(self) -> Any:
        return self.rt.remote(create_object_containing_ref)

    @cached_property
    def work(self) -> Any:
        return self.rt.remote(work)

    @cached_property
    def gen_items(self) -> Any:
        return self.rt.remote(num_returns="streaming")(gen_items)

    @cached_property
    def sleeper(self) -> Any:
        return self.rt.remote(sleeper)

    @cached_property
    def gate(self) -> Any:
        return self.rt.remote(gate)

    @cached_property
    def sleep_for(self) -> Any:
        return self.rt.remote(sleep_for)

    @cached_property
    def measured_sleep(self) -> Any:
        return self.rt.remote(measured_sleep)

    @cached_property
    def Actor(self) -> Any:
        return self.rt.remote(num_cpus=0)(Actor)

    @cached_property
    def AsyncActor(self) -> Any:
        return self.rt.remote(AsyncActor)

    @cached_property
    def Client(self) -> Any:
        return self.rt.remote(num_cpus=0)(Client)


_DEFS: dict[str, Defs] = {}


def defs() -> Defs:
    """Return this process's :class:`Defs` for :func:`runtime` (worker side)."""
    rt = runtime()
    if rt.__name__ not in _DEFS:
        _DEFS[rt.__name__] = Defs(rt)
    return _DEFS[rt.__name__]
