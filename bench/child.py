"""The per-system process: run a list of workloads on one system, report as JSON lines.

Run as ``python -m bench.child`` by :mod:`bench.orchestrate`, with a JSON
spec on stdin::

    {"system": "ray", "workloads": [...names...], "scale": 1.0,
     "timing": {"warmup_s": 0.5, "trials": 5, "trial_s": 1.0},
     "head_dir": "/tmp/bench-head-..."}   # only with client: workloads

For the ``client`` group, the child starts a shared head in ``head_dir``
(``asyncray start --head``), connects with ``init(address="auto")`` and
``$ASYNCRAY_HEAD_DIR`` set, and stops the head after the group; the parent
stops it too, should the child die or hang (:func:`bench.head.head_directory`).

Protocol (parent <- child), one line each, prefixed with :data:`PREFIX` on
the original stdout; everything else the runtime prints (Ray forwards worker
output to the driver's stdout) is diverted to stderr, which the parent logs::

    hello  {python, runtime_version}
    init   {group}                      before init() / creating the pool
    start  {workload}
    result {workload, metric, values} or {workload, error}
    done   {workload, phases}           after the workload's cleanup; phases are
                                        the seconds of setup, warm-up, trials, cleanup
    end                                 after shutdown

The parent times out on silence between two lines, so a hung workload costs
one timeout, not the run. Workloads run grouped by init group, in the order
given; a workload that raises is reported and the next one runs.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from typing import IO, Any

from bench import head, peers, tasks
from bench.catalog import BY_NAME, RUNTIMES
from bench.harness import Timing, time_rate, time_samples
from bench.spec import (
    CLIENT_GROUP,
    DEFAULT_GROUP,
    RATE,
    PeerCtx,
    RuntimeCtx,
    Scaled,
    Workload,
    init_kwargs,
    pool_workers,
)

PREFIX = "@@bench "
ERROR_CHARS = 400
"""Error text kept per cell; the full traceback goes to the system's log."""


class Emitter:
    """Writes protocol lines to a private duplicate of the original stdout."""

    def __init__(self) -> None:
        self._out: IO[str] = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)  # from now on, fd 1 (stdout) goes where stderr goes

    def __call__(self, event: str, **fields: Any) -> None:
        self._out.write(PREFIX + json.dumps({"event": event, **fields}) + "\n")
        self._out.flush()


def describe(exc: BaseException) -> str:
    """One-line description of an exception, for a table cell's footnote."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text[:ERROR_CHARS]


class Session:
    """One init group on one system: the runtime (or pool) and its context.

    ``initialized`` says the runtime is already up with this group's
    ``init()`` arguments (the quick-mode fresh probe started it), so the
    session adopts it instead of calling ``init()`` again.
    """

    def __init__(
        self,
        system: str,
        group: str,
        scale: float,
        initialized: bool = False,
        head_dir: str | None = None,
    ) -> None:
        self.system = system
        self.ctx: Scaled
        if system in RUNTIMES:
            rt = importlib.import_module(system)
            self._close: Callable[[], None] = rt.shutdown
            if group == CLIENT_GROUP:
                self._start_head(head_dir)
                self._close = lambda: self._stop_head(rt.shutdown, head_dir)
            if not initialized:
                try:
                    rt.init(**init_kwargs(group))
                except BaseException:
                    self.close()
                    raise
            self.ctx = RuntimeCtx(scale, rt=rt, defs=tasks.Defs(rt))
        else:
            pool = peers.POOLS[system](pool_workers(group))
            self.ctx = PeerCtx(scale, pool=pool)
            self._close = pool.close

    @staticmethod
    def _start_head(head_dir: str | None) -> None:
        """Start the group's shared head; drivers of this process find it with "auto"."""
        if not head_dir:
            raise RuntimeError("a client workload needs a head directory from the harness")
        t0 = time.monotonic()
        pid = head.start_head(head_dir)
        os.environ[head.HEAD_DIR_ENV] = head_dir
        took = time.monotonic() - t0
        print(f"head started in {head_dir} (pid {pid}): {took:.2f}s", file=sys.stderr)

    @staticmethod
    def _stop_head(shutdown: Callable[[], None], head_dir: str | None) -> None:
        """Disconnect, then stop the head (``asyncray stop``)."""
        try:
            shutdown()
        finally:
            os.environ.pop(head.HEAD_DIR_ENV, None)
            if head_dir:
                t0 = time.monotonic()
                said = head.stop_head(head_dir)
                print(f"head stopped: {said} ({time.monotonic() - t0:.2f}s)", file=sys.stderr)

    def run(self, wl: Workload, timing: Timing, phases: dict[str, float]) -> dict[str, list[float]]:
        """Set ``wl`` up, time it, clean up; return values per metric.

        The wall time of each phase (setup, warm-up, trials, cleanup) goes
        into ``phases``.
        """
        setup = wl.runtime if self.system in RUNTIMES else wl.peer
        assert setup is not None, f"{wl.name} has no implementation for {self.system}"
        t0 = time.perf_counter()
        prepared = setup(self.ctx)  # type: ignore[arg-type]
        phases["setup"] = time.perf_counter() - t0
        try:
            if wl.kind == RATE:
                return {wl.name: time_rate(prepared.fn, prepared.multiplier, timing, phases)}
            return time_samples(prepared.fn, timing, phases)
        finally:
            t0 = time.perf_counter()
            if prepared.cleanup is not None:
                try:
                    prepared.cleanup()
                except Exception:
                    print(f"cleanup of {wl.name} failed:", file=sys.stderr)
                    traceback.print_exc()
            phases["cleanup"] = time.perf_counter() - t0

    def close(self) -> None:
        """Shut the runtime down, or close the pool."""
        self._close()


def runtime_version(system: str) -> str:
    """The runtime's ``__version__`` (or loky's), or the Python version for stdlib peers."""
    module = {"asyncray": "asyncray", "ray": "ray", "loky": "loky"}.get(system)
    if module is None:
        return platform.python_version()
    try:
        return str(getattr(importlib.import_module(module), "__version__", "?"))
    except Exception as exc:
        return f"unavailable ({describe(exc)})"


def grouped(names: list[str]) -> dict[str, list[Workload]]:
    """Workloads by init group, groups in order of first appearance."""
    groups: dict[str, list[Workload]] = {}
    for name in names:
        wl = BY_NAME[name]
        groups.setdefault(wl.group, []).append(wl)
    return groups


def run_group(
    emit: Emitter,
    system: str,
    group: str,
    wls: list[Workload],
    spec: dict[str, Any],
    initialized: bool = False,
) -> None:
    """Init once (unless ``initialized``), run the group's workloads one by one, shut down."""
    timing = Timing(**spec["timing"])
    emit("init", group=group)
    t0 = time.monotonic()
    try:
        session = Session(system, group, spec["scale"], initialized, spec.get("head_dir"))
        took = "adopted the running runtime" if initialized else f"{time.monotonic() - t0:.2f}s"
        print(f"[{system}] init {group}: {took}", file=sys.stderr)
    except Exception as exc:
        traceback.print_exc()
        for wl in wls:
            emit("result", workload=wl.name, error=f"init failed: {describe(exc)}")
            emit("done", workload=wl.name)
        return
    for wl in wls:
        emit("start", workload=wl.name)
        t0 = time.monotonic()
        phases: dict[str, float] = {}
        try:
            for metric, values in session.run(wl, timing, phases).items():
                emit("result", workload=wl.name, metric=metric, values=values)
        except Exception as exc:
            print(f"workload {wl.name!r} failed:", file=sys.stderr)
            traceback.print_exc()
            emit("result", workload=wl.name, error=describe(exc))
        detail = ", ".join(f"{k} {v:.2f}" for k, v in phases.items())
        print(f"[{system}] {wl.name}: {time.monotonic() - t0:.2f}s ({detail})", file=sys.stderr)
        emit("done", workload=wl.name, phases=phases)
    t0 = time.monotonic()
    session.close()
    print(f"[{system}] close {group}: {time.monotonic() - t0:.2f}s", file=sys.stderr)


def main(initialized: bool = False) -> None:
    """Read the spec from stdin and run it.

    ``initialized``: this process already called the runtime's ``init()``
    with default arguments (:mod:`bench.fresh` in quick mode hands itself
    over to this function). The first group adopts that runtime if it is the
    default group; otherwise the runtime is shut down first.
    """
    spec = json.load(sys.stdin)
    emit = Emitter()
    system = spec["system"]
    emit("hello", python=platform.python_version(), version=runtime_version(system))
    groups = grouped(spec["workloads"])
    adopt = initialized and next(iter(groups), None) == DEFAULT_GROUP
    if initialized and not adopt and system in RUNTIMES:
        importlib.import_module(system).shutdown()
    for i, (group, wls) in enumerate(groups.items()):
        run_group(emit, system, group, wls, spec, initialized=adopt and i == 0)
    emit("end")


if __name__ == "__main__":
    main()
