"""Command line: choose systems and workloads, run them, print and save the results.

``python bench/run.py`` (or ``python -m bench``) with ``--help`` for options.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import catalog, report
from bench.harness import FULL, QUICK, Timing
from bench.orchestrate import RunConfig, Runner
from bench.spec import DEFAULT_GROUP, Workload
from bench.systems import REPO_ROOT, System, default_ray_python, resolve

RESULTS_DIR = Path(__file__).with_name("results")
QUICK_SCALE = 0.02
"""Quick mode shrinks per-call work (tasks per batch, array sizes) to this fraction."""
IDLE_S = {"full": 1.0, "quick": 0.3}
"""How long a fresh process idles before its memory is read."""
WORKLOAD_TIMEOUT_S = {"full": 300.0, "quick": 60.0}
"""Default hard limit on one workload's silence (setup + warm-up + trials)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python bench/run.py",
        description="Ray-microbenchmark-style comparison of asyncray, Ray and process pools.",
    )
    p.add_argument(
        "--quick", action="store_true", help="smoke run: short trials, less work, < 1 min"
    )
    p.add_argument("--runs", type=int, help="timed trials per workload (default 5; quick 2)")
    p.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run workloads whose name contains NAME (repeatable)",
    )
    p.add_argument(
        "--systems",
        default=",".join(catalog.SYSTEMS),
        help=f"comma-separated, from {','.join(catalog.SYSTEMS)} (default: all)",
    )
    p.add_argument(
        "--ray-python",
        default=default_ray_python(),
        help="interpreter of a venv with ray installed "
        "(default: $ASYNCRAY_BENCH_RAY_PYTHON or /opt/venvs/ray/bin/python)",
    )
    p.add_argument(
        "--asyncray-python", help="interpreter for asyncray (default: this one, with src/)"
    )
    p.add_argument("--timeout", type=float, help="seconds one workload may take (300; quick 60)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    p.add_argument("--list", action="store_true", help="list workloads and where they run")
    args = p.parse_args(argv)
    unknown = set(args.systems.split(",")) - set(catalog.SYSTEMS)
    if unknown:
        p.error(f"unknown systems: {', '.join(sorted(unknown))}")
    return args


def list_workloads(workloads: list[Workload]) -> None:
    """Print each workload with its unit and the systems that implement it."""
    for wl in workloads:
        where = ",".join(s for s in catalog.SYSTEMS if catalog.runs_on(wl, s))
        for m in wl.metric_list():
            print(f"{m.name:52} {m.unit:10} {where}")


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def run_all(
    systems: list[System], workloads: list[Workload], config: RunConfig
) -> tuple[Runner, float]:
    """Run every available system on the workloads it implements, with a progress bar."""
    from tqdm import tqdm

    plan = [
        (s, [wl for wl in workloads if catalog.runs_on(wl, s.name)]) for s in systems if s.available
    ]
    if config.fresh_in_child:
        # Quick mode: Ray last, so its slow shutdown (1-2 s) overlaps the report.
        plan.sort(key=lambda p: p[0].name == "ray")
    total = sum(len(wls) for _, wls in plan)
    with tqdm(total=total, unit="wl", dynamic_ncols=True, file=sys.stderr) as bar:

        def on_done(system: str, workload: str) -> None:
            bar.set_postfix_str(f"{system}: {workload}"[:60])
            bar.update(1)

        runner = Runner(config, on_done)
        t0 = time.monotonic()
        for i, (system, wls) in enumerate(plan):
            bar.set_postfix_str(f"{system.name}: starting")
            runner.run_system(system, wls, last=i == len(plan) - 1)
    return runner, time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = parse_args(argv)
    workloads = catalog.select(args.only)
    if args.list:
        list_workloads(workloads)
        return 0
    if not workloads:
        print(f"no workload matches {args.only}", file=sys.stderr)
        return 2
    if args.quick and not args.only:
        skipped = [wl.name for wl in workloads if wl.group != DEFAULT_GROUP]
        workloads = [wl for wl in workloads if wl.group == DEFAULT_GROUP]
        if skipped:
            print(
                f"note: --quick skips workloads needing their own init() "
                f"({'; '.join(skipped)}); select them with --only",
                file=sys.stderr,
            )
    mode = "quick" if args.quick else "full"
    timing = QUICK if args.quick else FULL
    if args.runs:
        timing = dataclasses.replace(timing, trials=args.runs)
    fresh_runs = args.runs or (1 if args.quick else FULL.trials)
    config = RunConfig(
        timing=timing,
        scale=QUICK_SCALE if args.quick else 1.0,
        fresh_runs=fresh_runs,
        idle_s=IDLE_S[mode],
        workload_timeout_s=args.timeout or WORKLOAD_TIMEOUT_S[mode],
        log_dir=args.out / "logs",
        fresh_in_child=args.quick and fresh_runs == 1,
    )
    overhead = {"harness start": started_s()}
    t0 = time.monotonic()
    systems = resolve(args.systems.split(","), args.ray_python, args.asyncray_python)
    overhead["probe interpreters"] = time.monotonic() - t0
    for s in systems:
        if not s.available:
            print(f"note: skipping {s.name}: {s.skip}", file=sys.stderr)
    runner, elapsed = run_all(systems, workloads, config)
    t0 = time.monotonic()
    names = [s.name for s in systems if s.available]
    rows = report.build_rows(workloads, runner.cells)
    text = report.table(rows, names)
    timing_text = describe_timing(timing, config)
    print()
    print(text)
    print(report.legend(timing_text))
    print(report.extras_text(rows))
    print(report.client_text(rows), end="")
    print(report.limit_text(rows), end="")
    chart = report.write_chart(args.out / "latest.png", rows, names)
    scaling_chart = report.write_scaling_chart(args.out / "latest-scaling.png", rows)
    overhead["report"] = time.monotonic() - t0
    runner.finish()  # the last system's shutdown ran during the table and chart
    meta = run_meta(args, mode, timing, config, systems, runner, elapsed)
    meta["phases"] = {"harness": overhead, "systems": runner.phases}
    meta["workload_phases"] = runner.workload_phases
    save(args.out, rows, runner, names, meta, timing_text)
    print(chart)
    if scaling_chart:
        print(scaling_chart)
    print(phases_text(runner, overhead), end="")
    print(f"finished in {elapsed:.0f}s ({started_s():.0f}s in all); logs in {config.log_dir}")
    return 0


def started_s() -> float:
    """Seconds since this interpreter started (its own start and the harness's imports).

    From ``/proc`` (10 ms resolution), where psutil's start time is only as
    exact as the boot time, to the second; 0 where there is no ``/proc``.
    """
    try:
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def phases_text(runner: Runner, overhead: dict[str, float]) -> str:
    """Where the wall time went: per system and phase, then the harness's own."""
    lines = ["time by phase (s, wall):"]
    for system, phases in runner.phases.items():
        total = sum(phases.values())
        parts = []
        for phase, seconds in phases.items():
            part = f"{phase} {seconds:.1f}"
            inner = runner.workload_phases.get(system) if phase == "workloads" else None
            if inner:
                part += " (" + ", ".join(f"{k} {v:.1f}" for k, v in inner.items()) + ")"
            parts.append(part)
        lines.append(f"  {system:9} {total:5.1f}  " + " | ".join(parts))
    lines.append("  harness   " + " | ".join(f"{k} {v:.1f}" for k, v in overhead.items()))
    return "\n".join(lines) + "\n"


def describe_timing(timing: Timing, config: RunConfig) -> str:
    fresh = f"{config.fresh_runs} fresh process" + ("" if config.fresh_runs == 1 else "es")
    if config.fresh_in_child:
        fresh += ", which then runs the other workloads"
    return (
        f"{timing.warmup_s}s warm-up, {timing.trials} trials x {timing.trial_s}s, "
        f"work scale {config.scale}, {fresh}"
    )


def run_meta(
    args: argparse.Namespace,
    mode: str,
    timing: Timing,
    config: RunConfig,
    systems: list[System],
    runner: Runner,
    elapsed: float,
) -> dict[str, Any]:
    """Everything needed to reproduce or judge the run."""
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": git_commit(),
        "mode": mode,
        "argv": sys.argv[1:],
        "timing": dataclasses.asdict(timing),
        "scale": config.scale,
        "fresh_runs": config.fresh_runs,
        "elapsed_s": elapsed,
        "systems": {
            s.name: {"python": s.python, "skip": s.skip, **runner.versions.get(s.name, {})}
            for s in systems
        },
    }


def save(
    out: Path,
    rows: list[report.Row],
    runner: Runner,
    names: list[str],
    meta: dict[str, Any],
    timing_text: str,
) -> None:
    """Write latest.json and latest.md into ``out`` (the chart is written before)."""
    report.write_json(out / "latest.json", rows, runner.cells, names, meta)
    md = f"Run {meta['time']} ({meta['mode']}, commit {meta['commit']}).\n\n"
    md += report.table(rows, names, markdown=True) + "\n" + report.legend(timing_text)
    client = report.client_text(rows)
    md += f"\n```\n{client}```\n" if client else ""
    limit = report.limit_text(rows)
    md += f"\n```\n{limit}```\n" if limit else ""
    (out / "latest.md").write_text(md)
    print(f"results: {out / 'latest.json'}, {out / 'latest.md'}")
