"""Turn cells into the table, the JSON record, the markdown file and the chart.

A ratio is always "how many times better asyncray is than the peer": for a
rate, asyncray / peer; for a time or a size (lower is better), peer /
asyncray. So > 1 means asyncray wins, < 1 means it loses, on every row.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.catalog import BY_NAME, CURVES, LIMIT_COMPARED, PINGPONG, PINGPONG_TWO_CORES
from bench.harness import summarize
from bench.orchestrate import Cell
from bench.spec import Metric, Workload

BASE = "asyncray"
NOT_RUN = "—"


@dataclass
class Row:
    """One metric across systems: a summary, an error, or nothing per system."""

    metric: Metric
    workload: str
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)

    def ratio(self, peer: str) -> float | None:
        """asyncray's advantage over ``peer`` (> 1 is better), if both ran."""
        if BASE not in self.stats or peer not in self.stats:
            return None
        a, p = self.stats[BASE]["median"], self.stats[peer]["median"]
        if a <= 0 or p <= 0:
            return None
        return a / p if self.metric.higher_is_better else p / a


def build_rows(workloads: list[Workload], cells: list[Cell]) -> list[Row]:
    """One :class:`Row` per metric that any system ran, in catalog order.

    A value beats an error for the same system (a child can die in cleanup
    after reporting).
    """
    rows: list[Row] = []
    for wl in workloads:
        for metric in wl.metric_list():
            row = Row(metric, wl.name)
            for cell in cells:
                if cell.workload != wl.name or cell.metric not in ("", metric.name):
                    continue
                if cell.values:
                    row.stats[cell.system] = summarize(cell.values)
                    row.extras[cell.system] = cell.extras
                elif cell.error:
                    row.errors.setdefault(cell.system, cell.error)
            if row.stats or row.errors:
                rows.append(row)
    return rows


# ------------------------------------------------------------------ numbers


def fmt(v: float) -> str:
    """Three significant figures, k/M suffixes for big numbers."""
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    if a >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


def fmt_ratio(r: float | None) -> str:
    """``12x``, ``1.35x``, ``0.0089x``: two significant figures below 0.1."""
    if r is None:
        return NOT_RUN
    if r >= 10:
        return f"{r:.0f}x"
    return f"{r:.2f}x" if r >= 0.1 else f"{r:.2g}x"


def spread_pct(s: dict[str, float]) -> float:
    """Half the min-max range, as a percentage of the median."""
    return 100 * (s["max"] - s["min"]) / 2 / s["median"] if s["median"] else 0.0


# -------------------------------------------------------------------- table


class Footnotes:
    """Numbers repeated errors, so a cell shows ``ERR1`` and the text comes once."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def ref(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return f"ERR{self.texts.index(text) + 1}"


def _cell(row: Row, system: str, notes: Footnotes, long: bool) -> str:
    if system in row.stats:
        s = row.stats[system]
        if long:
            return f"{fmt(s['median'])} ({fmt(s['min'])}-{fmt(s['max'])})"
        return f"{fmt(s['median'])} ±{spread_pct(s):.0f}%"
    if system in row.errors:
        return notes.ref(row.errors[system])
    return NOT_RUN


def table(rows: list[Row], systems: list[str], markdown: bool = False) -> str:
    """The results table (plain text, or markdown with min-max spreads)."""
    peers = [s for s in systems if s != BASE] if BASE in systems else []
    header = ["workload", "unit", *systems, *(f"vs {p}" for p in peers)]
    notes = Footnotes()
    body = [
        [
            r.metric.name,
            r.metric.unit,
            *(_cell(r, s, notes, markdown) for s in systems),
            *(fmt_ratio(r.ratio(p)) for p in peers),
        ]
        for r in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(b) + " |" for b in body]
    else:
        widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header))]
        just = lambda x, i: x.ljust(widths[i]) if i < 2 else x.rjust(widths[i])  # noqa: E731
        lines = ["  ".join(just(x, i) for i, x in enumerate(line)) for line in [header, *body]]
        lines.insert(1, "  ".join("-" * w for w in widths))
    lines += ["", *(f"ERR{i + 1}: {t}" for i, t in enumerate(notes.texts))]
    return "\n".join(lines).rstrip() + "\n"


def legend(timing_text: str) -> str:
    """What the numbers in the table mean."""
    return (
        f"Median over trials ({timing_text}); ±% is half the min-max range. "
        f"Ratios: how many times better {BASE} is (>1 = {BASE} faster or smaller), "
        f"so 1/ratio for rows where lower is better (s, ms, MB). {NOT_RUN} = not run.\n"
    )


# ---------------------------------------------------------------- artefacts


def write_json(
    path: Path, rows: list[Row], cells: list[Cell], systems: list[str], meta: dict[str, Any]
) -> None:
    """Raw results: every per-trial value, summaries, ratios, errors, versions."""
    peers = [s for s in systems if s != BASE]
    doc = {
        "meta": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            **meta,
        },
        "rows": [
            {
                "metric": r.metric.name,
                "workload": r.workload,
                "unit": r.metric.unit,
                "higher_is_better": r.metric.higher_is_better,
                "stats": r.stats,
                "errors": r.errors,
                "extras": r.extras,
                "ratios": {p: r.ratio(p) for p in peers if r.ratio(p) is not None},
            }
            for r in rows
        ],
        "client_vs_embedded": client_ratios(rows),
        "vs_physical_limit": limit_ratios(rows),
        "cells": [asdict(c) for c in cells],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")


def write_chart(path: Path, rows: list[Row], systems: list[str]) -> str:
    """Bar chart of asyncray's ratios (log scale); returns a note of what happened."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "chart skipped: matplotlib is not installed (pip install matplotlib)"
    peers = [s for s in systems if s != BASE]
    plotted = [r for r in rows if any(r.ratio(p) is not None for p in peers)]
    if not plotted:
        return f"chart skipped: no row has both {BASE} and a peer"
    fig, ax = plt.subplots(figsize=(10, len(plotted) * (0.12 * len(peers) + 0.15) + 1.5))
    height = 0.8 / max(1, len(peers))
    for k, peer in enumerate(peers):
        ys, xs = [], []
        for i, r in enumerate(plotted):
            ratio = r.ratio(peer)
            if ratio is not None:
                ys.append(i + k * height)
                xs.append(ratio)
        # Bars grow from 1 (parity): right when asyncray wins, left when it loses.
        ax.barh(ys, [x - 1 for x in xs], height=height, left=1, label=f"vs {peer}")
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(plotted))])
    ax.set_yticklabels([r.metric.name for r in plotted], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"times better than the peer (log scale; >1 = {BASE} wins)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"chart: {path}"


def client_ratios(rows: list[Row]) -> dict[str, dict[str, float]]:
    """Each ``client:`` row against its embedded counterpart (asyncray medians).

    ``ratio`` is client / embedded (for rates: the share of the embedded
    speed a connected driver keeps).
    """
    by_metric = {r.metric.name: r for r in rows}
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        wl = BY_NAME.get(r.workload)
        base = by_metric.get(wl.embedded) if wl is not None and wl.embedded else None
        if base is None or BASE not in r.stats or BASE not in base.stats:
            continue
        c, e = r.stats[BASE]["median"], base.stats[BASE]["median"]
        if e > 0:
            out[r.metric.name] = {"client": c, "embedded": e, "ratio": c / e}
    return out


def client_text(rows: list[Row]) -> str:
    """The connected-driver rows side by side with the embedded ones."""
    ratios = client_ratios(rows)
    if not ratios:
        return ""
    units = {r.metric.name: r.metric.unit for r in rows}
    width = max(len(n) for n in ratios)
    lines = [f"connected driver vs embedded ({BASE} medians; ratio = client / embedded):"]
    for name, v in ratios.items():
        lines.append(
            f"  {name:{width}}  {fmt(v['client']):>6} vs {fmt(v['embedded']):>6} "
            f"{units[name]:8} {v['ratio']:.2f}"
        )
    return "\n".join(lines) + "\n"


def extras_text(rows: list[Row]) -> str:
    """The fresh-process breakdown (interpreter start, import, init, first task, PSS)."""
    lines = []
    for r in rows:
        for system, ex in r.extras.items():
            if ex:
                parts = ", ".join(
                    f"{k}={fmt(v)}" for k, v in ex.items() if isinstance(v, (int, float))
                )
                lines.append(f"  {r.metric.name} [{system}]: {parts}")
    return ("details:\n" + "\n".join(lines) + "\n") if lines else ""


def limit_ratios(rows: list[Row]) -> dict[str, dict[str, dict[str, float]]]:
    """Each synchronous-call row as a share of the socketpair ping-pong, per system.

    Both medians come from the same run (and the same child process): the
    share is row / limit, so 1.0 would be a call as cheap as one bare round
    trip between two processes on one core. ``share_two_cores`` is the
    same against the ping-pong across two cores, when that row ran.
    """
    by_metric = {r.metric.name: r for r in rows}
    limit = by_metric.get(PINGPONG)
    two = by_metric.get(PINGPONG_TWO_CORES)
    out: dict[str, dict[str, dict[str, float]]] = {}
    if limit is None:
        return out
    for name in LIMIT_COMPARED:
        row = by_metric.get(name)
        if row is None:
            continue
        for system, s in row.stats.items():
            lim = limit.stats.get(system, {}).get("median", 0.0)
            if lim > 0:
                v = {"value": s["median"], "limit": lim, "share": s["median"] / lim}
                lim2 = two.stats.get(system, {}).get("median", 0.0) if two else 0.0
                if lim2 > 0:
                    v |= {"limit_two_cores": lim2, "share_two_cores": s["median"] / lim2}
                out.setdefault(name, {})[system] = v
    return out


def limit_text(rows: list[Row]) -> str:
    """The synchronous-call rows against the physical limit, per system."""
    ratios = limit_ratios(rows)
    if not ratios:
        return ""
    lines = [f"vs the physical limit ({PINGPONG}, same run; share = row / limit):"]
    width = max(len(n) for n in ratios)
    for name, by_system in ratios.items():
        for system, v in by_system.items():
            line = (
                f"  {name:{width}}  {system:8} {fmt(v['value']):>6} / {fmt(v['limit']):>6} "
                f"= {v['share']:.2f}"
            )
            if "share_two_cores" in v:
                line += f" (two cores: / {fmt(v['limit_two_cores'])} = {v['share_two_cores']:.2f})"
            lines.append(line)
    return "\n".join(lines) + "\n"


def write_scaling_chart(path: Path, rows: list[Row]) -> str:
    """The scaling curves and the shares of the physical limit, one panel each.

    Plots every system's medians; returns a note of what happened.
    """
    panels: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for r in rows:
        if r.metric.name not in CURVES:
            continue
        panel, series, x = CURVES[r.metric.name]
        for system, s in r.stats.items():
            label = f"{system} {series}".strip()
            panels.setdefault(panel, {}).setdefault(label, []).append((x, s["median"]))
    shares = limit_ratios(rows)
    if not panels and not shares:
        return ""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "scaling chart skipped: matplotlib is not installed"
    n = len(panels) + (1 if shares else 0)
    fig, axes = plt.subplots(n, 1, figsize=(7, 3.2 * n), squeeze=False)
    k = 0
    if shares:
        ax = axes[k][0]
        k += 1
        labels, values = [], []
        for name, by_system in shares.items():
            for system, v in by_system.items():
                labels.append(f"{name} [{system}]")
                values.append(v["share"])
                if "share_two_cores" in v:
                    labels.append(f"{name} [{system}, vs two cores]")
                    values.append(v["share_two_cores"])
        ax.barh(range(len(values)), values)
        ax.set_yticks(range(len(values)))
        ax.set_yticklabels(labels, fontsize=7)
        ax.invert_yaxis()
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_title("share of the physical limit (1-byte socketpair round trips)", fontsize=9)
    for panel, series in panels.items():
        ax = axes[k][0]
        k += 1
        for label, points in series.items():
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        ax.set_xscale("log")
        if "efficiency" not in panel:
            ax.set_yscale("log")
        ax.set_title(panel, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"scaling chart: {path}"
