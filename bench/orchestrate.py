"""Parent side: run each system's workloads in subprocesses, with hard timeouts.

Data flow for one system::

    Runner.run_system
      |- fresh workloads: N x  python fresh.py SYSTEM   (stdout -> temp file)
      |                   + 3 x  python -c pass         (interpreter start)
      '- other workloads: python -m bench.child  <- JSON spec on stdin
                              |  "@@bench {...}" lines on stdout -> reader thread -> queue
                              '  everything else -> results/logs/SYSTEM.log

Workloads of the ``client`` group (``client:`` and ``connect time``) need a
shared head: the runner makes a private directory for it
(:func:`bench.head.head_directory`) and, after the processes that use it
have ended in whatever way, stops any head left there. For ``connect
time`` the runner starts the head before the probes, which connect with
``init(address="auto")``; for the ``client:`` workloads the child starts
and stops it around the group.

In quick mode (``fresh_in_child``) the two are one process: ``python
fresh.py SYSTEM IDLE_S child`` measures the fresh probe, reports it as a
``fresh`` event, then runs :func:`bench.child.main` on the same runtime.

The runner adds up the wall time of each system's phases (fresh probe,
child start, init, workloads, close, exit) in :attr:`Runner.phases`, and the
children's per-workload setup, warm-up, trials and cleanup in
:attr:`Runner.workload_phases`; the command line prints both.

Every subprocess gets its own session (``start_new_session``). If the child
is silent for longer than the current phase allows (startup, init, one
workload, shutdown), its whole process tree and session are killed, the
workload in progress gets a timeout error, and a new child resumes with the
workloads left. A child that dies is handled the same way. So asyncray (or
Ray) hanging or crashing costs one cell, never the run, and leaves no
processes behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

from bench import head
from bench.catalog import BY_NAME
from bench.child import PREFIX
from bench.harness import Timing
from bench.spec import CLIENT_GROUP, DEFAULT_GROUP, FRESH, Workload
from bench.systems import REPO_ROOT, System

STARTUP_TIMEOUT_S = 60.0
"""Child start to its hello line: interpreter start and imports."""
INIT_TIMEOUT_S = 120.0
"""One ``init()`` (Ray takes seconds, more on a loaded machine)."""
SHUTDOWN_TIMEOUT_S = 60.0
"""Last result to child exit: ``shutdown()`` of the runtime or pool."""
FRESH_TIMEOUT_S = 120.0
"""One fresh-process probe, end to end."""
KILL_GRACE_S = 5.0
"""How long killed processes get to disappear before we stop waiting."""
POLL_S = 0.5
"""How often the parent wakes up to check deadlines and child liveness."""
FRESH_SCRIPT = Path(__file__).with_name("fresh.py")


@dataclass
class Cell:
    """One measured figure (or failure) of one system on one metric."""

    system: str
    workload: str
    metric: str
    values: list[float] = field(default_factory=list)
    error: str = ""
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    """Everything the runner needs besides the systems and workloads."""

    timing: Timing
    scale: float
    fresh_runs: int
    idle_s: float
    workload_timeout_s: float
    log_dir: Path
    fresh_in_child: bool = False
    """Quick mode: the fresh probe process goes on to run the system's other
    workloads (see :mod:`bench.fresh`), instead of a probe plus a new child."""


# ---------------------------------------------------------- process hygiene


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid``, its descendants and anything left in its session."""
    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        procs = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.kill()
    wait_dead(procs, KILL_GRACE_S)
    reap_session(pid)


def reap_session(sid: int) -> None:
    """SIGKILL every process still in session ``sid`` (ours, by construction)."""
    leftovers = []
    for pid in psutil.pids():
        try:
            if pid != os.getpid() and os.getsid(pid) == sid:
                os.kill(pid, signal.SIGKILL)
                leftovers.append(pid)
        except (ProcessLookupError, PermissionError):
            continue
    if leftovers:
        procs = []
        for pid in leftovers:
            with contextlib.suppress(psutil.Error):
                procs.append(psutil.Process(pid))
        wait_dead(procs, KILL_GRACE_S)


def wait_dead(procs: list[psutil.Process], timeout: float) -> None:
    """Wait until every process in ``procs`` is gone or a zombie, for at most ``timeout``.

    A zombie has released its memory and CPU; it only waits for its parent
    (often init, for orphans such as loky's workers) to reap it, which can
    take a second or two. Zombies that are our own children are reaped here.
    """
    deadline = time.monotonic() + timeout
    alive = list(procs)
    while alive:
        still = []
        for p in alive:
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    still.append(p)
                    continue
                with contextlib.suppress(psutil.Error):
                    p.wait(timeout=0)  # reaps it if it is our child
            except psutil.NoSuchProcess:
                continue
        alive = still
        if not alive or time.monotonic() > deadline:
            return
        time.sleep(0.01)


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    """Reader thread: forward protocol lines, then ``None`` at EOF."""
    for line in stream:
        if line.startswith(PREFIX):
            lines.put(line[len(PREFIX) :])
    lines.put(None)


# ------------------------------------------------------------------ runner


class Runner:
    """Runs workloads on systems and collects :class:`Cell` records."""

    def __init__(self, config: RunConfig, on_done: Callable[[str, str], None]) -> None:
        self.config = config
        self.on_done = on_done  # called with (system, workload) as each finishes
        self.cells: list[Cell] = []
        self.versions: dict[str, dict[str, str]] = {}
        self.phases: dict[str, dict[str, float]] = {}
        """Seconds per system and phase, as seen by the parent (see :meth:`_spend`)."""
        self.workload_phases: dict[str, dict[str, float]] = {}
        """Seconds per system summed over its workloads: setup, warm-up, trials, cleanup."""
        self._defer_exit = False
        self._pending: list[tuple[str, subprocess.Popen[str], contextlib.ExitStack]] = []

    def _spend(self, system: str, phase: str, seconds: float) -> None:
        """Add ``seconds`` of wall time to ``system``'s ``phase``."""
        bucket = self.phases.setdefault(system, {})
        bucket[phase] = bucket.get(phase, 0.0) + seconds

    def run_system(self, system: System, workloads: list[Workload], last: bool = False) -> None:
        """Fresh-process workloads first (on a quiet machine), then the rest.

        Workloads marked ``own_process`` each get a child of their own, last.

        With ``fresh_in_child``, the first fresh workload's probe process runs
        the rest too. With ``last`` (nothing is measured after this system),
        the child's shutdown is not waited for: it overlaps whatever the
        caller does next, until :meth:`finish`.
        """
        fresh = [wl for wl in workloads if wl.kind == FRESH]
        others = [wl.name for wl in workloads if wl.kind != FRESH and not wl.own_process]
        alone = [wl.name for wl in workloads if wl.kind != FRESH and wl.own_process]
        # Only a default-group probe (plain ``init()``) can become the child.
        default = [wl for wl in fresh if wl.group == DEFAULT_GROUP]
        handoff = default[0] if default and self.config.fresh_in_child else None
        self._defer_exit = False
        for wl in fresh:
            if wl is handoff:
                continue
            t0 = time.monotonic()
            self._run_fresh(system, wl)
            self._spend(system.name, "fresh", time.monotonic() - t0)
            self.on_done(system.name, wl.name)
        children = [(others, handoff)] if others or handoff else []
        children += [([name], None) for name in alone]
        for i, (names, first) in enumerate(children):
            # Only the very last child's shutdown may overlap what comes next.
            self._defer_exit = last and i == len(children) - 1
            self._run_children(system, names, first)

    # ---- fresh processes

    def _run_fresh(self, system: System, wl: Workload) -> None:
        start_s = self._interpreter_start(system)
        runs: list[dict[str, Any]] = []
        errors: list[str] = []
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-fresh-"))
            script = Path(shutil.copy(FRESH_SCRIPT, tmp))
            env, address = system.env, ""
            if wl.group == CLIENT_GROUP:
                head_dir = stack.enter_context(head.head_directory(system.python, system.env))
                try:
                    head.start_head(head_dir, system.python, system.env)
                except Exception as exc:
                    errors.append(f"head did not start: {type(exc).__name__}: {exc}")
                env, address = {**system.env, head.HEAD_DIR_ENV: head_dir}, "auto"
            for _ in range(self.config.fresh_runs if not errors else 0):
                try:
                    runs.append(self._fresh_once(system, script, env, address))
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
        self._fresh_cells(system, wl, runs, errors, start_s)

    def _fresh_cells(
        self,
        system: System,
        wl: Workload,
        runs: list[dict[str, Any]],
        errors: list[str],
        start_s: float,
    ) -> None:
        """Record the two cells (init time, idle memory) of fresh probe results."""
        init, mem = wl.metric_list()
        init_metric, mem_metric = init.name, mem.name
        if not runs:
            for metric in (init_metric, mem_metric):
                self.cells.append(Cell(system.name, wl.name, metric, error=errors[0]))
            return
        med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
        init_extras = {k: med(k) for k in ("import_s", "init_s", "first_s", "end_to_end_s")}
        init_extras["interpreter_start_s"] = start_s
        totals = [r["total_s"] for r in runs]
        if init.unit == "ms":  # connect time: the same probe, reported in ms
            init_extras = {k.removesuffix("_s") + "_ms": v * 1e3 for k, v in init_extras.items()}
            totals = [t * 1e3 for t in totals]
        pss = [r["pss_mb"] for r in runs if r["pss_mb"] is not None]
        mem_extras = {"pss_mb": statistics.median(pss) if pss else None}
        mem_extras["n_procs"] = med("n_procs")
        self.cells.append(Cell(system.name, wl.name, init_metric, totals, "", init_extras))
        self.cells.append(
            Cell(system.name, wl.name, mem_metric, [r["rss_mb"] for r in runs], "", mem_extras)
        )

    def _interpreter_start(self, system: System) -> float:
        """Median wall time of ``python -c pass`` with the system's environment."""
        times = []
        for _ in range(max(1, min(3, self.config.fresh_runs))):
            t0 = time.perf_counter()
            subprocess.run([system.python, "-c", "pass"], env=system.env, check=True, timeout=60)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    def _fresh_once(
        self, system: System, script: Path, env: dict[str, str], address: str = ""
    ) -> dict[str, Any]:
        """One fresh-process probe; the output goes to a file, not a pipe.

        A file cannot block on a forgotten grandchild holding the pipe open.
        With ``address``, the probe calls ``init(address=address)``.
        """
        argv = [system.python, str(script), system.name, str(self.config.idle_s)]
        argv += ["--address", address] if address else []
        with tempfile.TemporaryFile("w+") as out, self._log(system) as log:
            wall0 = time.time()
            proc = subprocess.Popen(
                argv,
                cwd=script.parent,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=log,
                start_new_session=True,
            )
            try:
                proc.wait(timeout=FRESH_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                kill_tree(proc.pid)
                raise TimeoutError(f"fresh probe timed out after {FRESH_TIMEOUT_S:.0f}s")
            reap_session(proc.pid)
            out.seek(0)
            found = [ln for ln in out if ln.startswith(PREFIX)]
        if not found:
            raise RuntimeError(f"fresh probe exited {proc.returncode} without a result; see log")
        result: dict[str, Any] = json.loads(found[-1][len(PREFIX) :])
        result["end_to_end_s"] = result["first_wall"] - wall0
        return result

    # ---- long-lived children

    def _log(self, system: System) -> IO[str]:
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        return open(self.config.log_dir / f"{system.name}.log", "a")

    def _run_children(
        self, system: System, names: list[str], handoff: Workload | None = None
    ) -> None:
        """Run ``names`` in children, restarting after a timeout or a crash.

        With ``handoff``, the first child is that fresh workload's probe (see
        :mod:`bench.fresh`); a restart is a plain child.
        """
        remaining = ([handoff.name] if handoff else []) + list(names)
        while remaining:
            self._one_child(system, remaining, handoff)
            handoff = None

    def _one_child(self, system: System, remaining: list[str], handoff: Workload | None) -> None:
        """Start a child on ``remaining``; return when it ends, fails or hangs.

        Finished (or abandoned) workloads are removed from ``remaining``.
        """
        spec = {
            "system": system.name,
            "workloads": [n for n in remaining if BY_NAME[n].kind != FRESH],
            "scale": self.config.scale,
            "timing": dataclasses.asdict(self.config.timing),
        }
        start_s = 0.0
        if handoff:
            t0 = time.monotonic()
            start_s = self._interpreter_start(system)
            self._spend(system.name, "fresh", time.monotonic() - t0)
        with contextlib.ExitStack() as stack:
            if any(
                BY_NAME[n].group == CLIENT_GROUP and BY_NAME[n].kind != FRESH for n in remaining
            ):
                # Stops the head the child starts here, whatever becomes of the child.
                spec["head_dir"] = stack.enter_context(
                    head.head_directory(system.python, system.env)
                )
            if handoff:
                tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-fresh-"))
                script = shutil.copy(FRESH_SCRIPT, tmp)
                argv = [system.python, script, system.name, str(self.config.idle_s), "child"]
                cwd: Path | str = tmp
            else:
                argv, cwd = [system.python, "-m", "bench.child"], REPO_ROOT
            with self._log(system) as log:
                what = "fresh probe, then" if handoff else "child for"
                log.write(f"\n===== {time.ctime()} {what} {len(spec['workloads'])} workloads\n")
                log.flush()
                wall0 = time.time()
                proc = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=system.env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                    start_new_session=True,
                )
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps(spec))
            proc.stdin.close()
            lines: queue.Queue[str | None] = queue.Queue()
            threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
            watch = _Watch(system.name, self.config.workload_timeout_s, handoff is not None)
            conv = _Conversation(handoff, wall0, start_s)
            clean = False
            try:
                clean = self._converse(system, proc, lines, watch, remaining, conv)
            finally:
                if clean and self._defer_exit and watch.phase != "end":
                    self._pending.append((system.name, proc, stack.pop_all()))
                else:
                    t0 = time.monotonic()
                    self._finish(proc, clean)
                    self._spend(system.name, "exit", time.monotonic() - t0)

    def finish(self) -> None:
        """Wait for (or kill) a last child whose shutdown was left to run on."""
        for system, proc, stack in self._pending:
            t0 = time.monotonic()
            with stack:
                self._finish(proc, clean=True)
            self._spend(system, "close+exit (overlapped)", time.monotonic() - t0)
        self._pending.clear()

    def _converse(
        self,
        system: System,
        proc: subprocess.Popen[str],
        lines: queue.Queue[str | None],
        watch: _Watch,
        remaining: list[str],
        conv: _Conversation,
    ) -> bool:
        """Read events until ``end``, EOF, death or timeout; update the records.

        Returns True if the child ended normally (it may still be shutting down).
        When the last system's last workload is done (``_defer_exit``), that
        counts as the end: its shutdown is left to :meth:`finish`.
        """
        while True:
            try:
                line = lines.get(timeout=POLL_S)
            except queue.Empty:
                if watch.expired():
                    self._spend(system.name, watch.bucket(None), watch.elapsed())
                    self._abandon(system, watch, remaining, f"timed out: {watch.describe()}")
                    return False
                if proc.poll() is not None and lines.empty():
                    line = None
                else:
                    continue
            if line is None:
                if watch.phase == "end":
                    return True
                self._spend(system.name, watch.bucket(None), watch.elapsed())
                code = proc.poll()
                self._abandon(system, watch, remaining, f"child died (exit code {code})")
                return False
            event = json.loads(line)
            self._spend(system.name, watch.bucket(event["event"]), watch.elapsed())
            watch.advance(event)
            self._on_event(system, event, remaining, conv)
            if self._defer_exit and event["event"] == "done" and not remaining:
                return True

    def _on_event(
        self, system: System, event: dict[str, Any], remaining: list[str], conv: _Conversation
    ) -> None:
        kind = event["event"]
        if kind == "fresh" and conv.handoff is not None:
            event["end_to_end_s"] = event["first_wall"] - conv.wall0
            self._fresh_cells(system, conv.handoff, [event], [], conv.start_s)
            remaining.remove(conv.handoff.name)
            self.on_done(system.name, conv.handoff.name)
        elif kind == "hello":
            self.versions[system.name] = {"python": event["python"], "version": event["version"]}
        elif kind == "result":
            cell = Cell(system.name, event["workload"], event.get("metric", ""))
            cell.values = event.get("values", [])
            cell.error = event.get("error", "")
            self.cells.append(cell)
        elif kind == "done":
            bucket = self.workload_phases.setdefault(system.name, {})
            for phase, seconds in event.get("phases", {}).items():
                bucket[phase] = bucket.get(phase, 0.0) + seconds
            remaining.remove(event["workload"])
            self.on_done(system.name, event["workload"])

    def _abandon(self, system: System, watch: _Watch, remaining: list[str], why: str) -> None:
        """Kill the child; record ``why`` for what it was doing and drop that work."""
        if watch.phase == "fresh":
            victims = [n for n in remaining if BY_NAME[n].kind == FRESH][:1]
        elif watch.phase == "workload" and watch.workload in remaining:
            victims = [watch.workload]
        elif watch.phase == "init":
            victims = [n for n in remaining if BY_NAME[n].group == watch.group]
        elif watch.phase == "startup":
            victims = list(remaining)
        else:  # between groups or at the end: finished work is kept, a new child resumes
            victims = []
        if watch.phase == "startup":
            why += f"; see {self.config.log_dir / (system.name + '.log')}"
        for name in victims:
            self.cells.append(Cell(system.name, name, "", error=why))
            remaining.remove(name)
            self.on_done(system.name, name)

    def _finish(self, proc: subprocess.Popen[str], clean: bool) -> None:
        """Let a clean child exit within the shutdown timeout; then kill what is left."""
        if clean:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
        kill_tree(proc.pid)


@dataclass
class _Conversation:
    """What one child's events need besides the records: the fresh probe it runs, if any."""

    handoff: Workload | None
    wall0: float
    """``time.time()`` just before the spawn, for the fresh probe's end-to-end time."""
    start_s: float
    """Interpreter start (``python -c pass``), measured before the spawn."""


class _Watch:
    """Tracks the child's phase and the deadline for its next line.

    A child that starts as a fresh probe (``fresh``) is in phase ``fresh``
    until its ``fresh`` event, with the probe's time limit.
    """

    def __init__(self, system: str, workload_timeout_s: float, fresh: bool = False) -> None:
        self.system = system
        self.workload_timeout_s = workload_timeout_s
        self.phase = "fresh" if fresh else "startup"
        self.group = ""
        self.workload = ""
        self._limit = FRESH_TIMEOUT_S if fresh else STARTUP_TIMEOUT_S
        self._since = time.monotonic()

    def advance(self, event: dict[str, Any]) -> None:
        """Move to the phase ``event`` starts and restart the clock."""
        kind = event["event"]
        if kind == "fresh":
            self.phase, self._limit = "startup", STARTUP_TIMEOUT_S
        elif kind == "init":
            self.phase, self.group, self._limit = "init", event["group"], INIT_TIMEOUT_S
        elif kind == "start":
            self.phase, self.workload = "workload", event["workload"]
            self._limit = self.workload_timeout_s
        elif kind == "done":
            self.phase, self._limit = "between", self.workload_timeout_s
        elif kind == "end":
            self.phase, self._limit = "end", SHUTDOWN_TIMEOUT_S
        self._since = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self._since

    def bucket(self, next_event: str | None) -> str:
        """The phase the time up to ``next_event`` (None: death or timeout) counts as.

        ``fresh`` (probe: start, import, init, first result, idle), ``start``
        (interpreter and harness imports), ``init``, ``workloads``, ``close``
        (shutting a runtime or pool down, between groups and at the end).
        """
        if self.phase == "fresh":
            return "fresh"
        if self.phase == "startup":
            return "start"
        if self.phase == "between" and next_event in ("init", "end"):
            return "close"
        return {"init": "init", "end": "close"}.get(self.phase, "workloads")

    def expired(self) -> bool:
        return self.elapsed() > self._limit

    def describe(self) -> str:
        what = {"workload": self.workload, "init": f"init of group {self.group}"}
        what["fresh"] = "the fresh probe (import, init, first result)"
        return f"no progress in {self._limit:g}s during {what.get(self.phase, self.phase)}"
