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

from bench.catalog import (
    BY_NAME,
    COMPOSITE_UNITS,
    CURVES,
    LIMIT_COMPARED,
    MEMCPY,
    PINGPONG,
    PINGPONG_TWO_CORES,
)
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
    limits = vs_limit(rows)
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
                "limit": limit_of(r.metric),
                "vs_limit": limits.get(r.metric.name, {}),
            }
            for r in rows
        ],
        "client_vs_embedded": client_ratios(rows),
        "vs_physical_limit": limit_ratios(rows),
        "cells": [asdict(c) for c in cells],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")


PEER = "ray"
"""The peer the chart compares with first (the other peers follow it)."""
IDEAL = "100 % (the ideal)"


def limit_of(metric: Metric) -> str | None:
    """What the chart measures ``metric`` against, or None when no limit applies.

    * a per-call rate (``tasks/s``, ``calls/s``, ``gets/s``, ...):
      :data:`~bench.catalog.PINGPONG`, the bare round trips/s between two
      processes on one core;
    * ``GB/s``: :data:`~bench.catalog.MEMCPY`, a numpy copy;
    * ``%`` (the efficiency rows, already a share of an ideal): :data:`IDEAL`;
    * none for times and sizes (``s``, ``ms``, ``MB``, ``KB``), where lower is
      better and nothing physical bounds them from below, nor for rates whose
      unit is many calls (:data:`~bench.catalog.COMPOSITE_UNITS`).
    """
    unit = metric.unit
    if unit == "GB/s":
        return MEMCPY
    if unit == "%":
        return IDEAL
    if metric.higher_is_better and unit.endswith("/s") and unit not in COMPOSITE_UNITS:
        return PINGPONG
    return None


def vs_limit(rows: list[Row]) -> dict[str, dict[str, float]]:
    """Each row's median / its limit's median (see :func:`limit_of`), per system.

    The limit is the same system's median in the same run (for ``%`` rows,
    100). A system without the limit row (the pools run neither ping-pong
    nor memcpy) gets no value.
    """
    by_metric = {r.metric.name: r for r in rows}
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        limit = limit_of(r.metric)
        if limit is None:
            continue
        for system, s in r.stats.items():
            if limit == IDEAL:
                lim = 100.0
            else:
                lim_row = by_metric.get(limit)
                lim = lim_row.stats.get(system, {}).get("median", 0.0) if lim_row else 0.0
            if lim > 0 and s["median"] > 0:
                out.setdefault(r.metric.name, {})[system] = s["median"] / lim
    return out


@dataclass
class ChartRow:
    """One row of the chart: the ratios drawn for it."""

    name: str
    unit: str
    limit: str | None
    vs_peer: dict[str, float] = field(default_factory=dict)
    """Peer -> asyncray's advantage over it (:meth:`Row.ratio`)."""
    vs_limit: dict[str, float] = field(default_factory=dict)
    """System -> median / limit (:func:`vs_limit`)."""


def chart_rows(rows: list[Row], systems: list[str]) -> list[ChartRow]:
    """What the chart draws: every row with a ratio to a peer or to its limit."""
    peers = sorted((s for s in systems if s != BASE), key=lambda p: p != PEER)
    limits = vs_limit(rows)
    out = []
    for r in rows:
        c = ChartRow(r.metric.name, r.metric.unit, limit_of(r.metric))
        c.vs_peer = {p: x for p in peers if (x := r.ratio(p)) is not None}
        c.vs_limit = {s: x for s in (BASE, PEER) if (x := limits.get(c.name, {}).get(s))}
        if c.vs_peer or c.vs_limit:
            out.append(c)
    return out


_COLORS = {"asyncray": "tab:blue", "ray": "tab:orange", "mp": "tab:green", "mp-map": "tab:olive"}
_COLORS |= {"cf": "tab:purple", "loky": "tab:brown"}
_LIMIT_LABEL = {PINGPONG: "/ ping-pong", MEMCPY: "/ memcpy", IDEAL: "/ 100 %"}


def _fmt_x(x: float) -> str:
    return f"{x:.0f}" if x >= 10 else f"{x:.2f}" if x >= 0.1 else f"{x:.2g}"


def write_chart(path: Path, rows: list[Row], systems: list[str], title: str = "") -> str:
    """Two horizontal log-scale bar panels per row; returns a note of what happened.

    Left: asyncray's advantage over Ray (then any other peer that ran),
    ``>1`` = asyncray better. Right: the row's median as a share of its
    physical limit (:func:`limit_of`), for asyncray and Ray, each against
    its own limit measured in the same run.
    """
    data = chart_rows(rows, systems)
    if not data:
        return f"chart skipped: no row has both {BASE} and a peer, or a limit"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "chart skipped: matplotlib is not installed (pip install matplotlib)"
    peers = [p for p in dict.fromkeys(p for c in data for p in c.vs_peer)]
    lim_systems = [s for s in (BASE, PEER) if any(s in c.vs_limit for c in data)]
    n = len(data)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(15, 0.3 * n + 2.2), sharey=True, layout="constrained"
    )
    for ax, series, values in (
        (left, peers, lambda c: c.vs_peer),
        (right, lim_systems, lambda c: c.vs_limit),
    ):
        h = 0.8 / max(1, len(series))
        xs_all = [v for c in data for v in values(c).values()] or [1.0]
        lo, hi = min(min(xs_all), 0.5), max(max(xs_all), 2.0)
        for k, name in enumerate(series):
            ys, xs = [], []
            for i, c in enumerate(data):
                if name in values(c):
                    ys.append(i - 0.4 + h * (k + 0.5))
                    xs.append(values(c)[name])
            label = f"vs {name}" if ax is left else name
            # Bars grow from 1: right when better than the reference, left when worse.
            ax.barh(ys, [x - 1 for x in xs], height=h, left=1, color=_COLORS.get(name), label=label)
            for y, x in zip(ys, xs):
                ax.text(
                    x * (1.08 if x >= 1 else 1 / 1.08),
                    y,
                    _fmt_x(x),
                    va="center",
                    ha="left" if x >= 1 else "right",
                    fontsize=6,
                )
        ax.set_xscale("log")
        # Room beyond the longest bars for their values (and the limit's note).
        ax.set_xlim(lo / (4 if ax is left else 30), hi * (4 if ax is left else 60))
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.grid(axis="x", which="major", linewidth=0.3)
        ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1, 1), ncol=6, frameon=False)
    for i, c in enumerate(data):
        if not c.vs_peer:
            left.text(1, i, "  no peer ran this row", va="center", fontsize=6, color="gray")
        if not c.vs_limit:
            why = "no limit applies" if c.limit is None else f"limit {c.limit!r} not run"
            right.text(1, i, f"  {why} ({c.unit})", va="center", fontsize=6, color="gray")
        elif c.limit is not None:
            right.text(
                right.get_xlim()[1],
                i,
                f"{_LIMIT_LABEL[c.limit]} ",
                va="center",
                ha="right",
                fontsize=6,
                color="gray",
            )
    left.set_yticks(range(n))
    left.set_yticklabels([f"{c.name} ({c.unit})" for c in data], fontsize=7)
    left.set_ylim(n - 0.5, -0.5)
    left.set_xlabel(
        f"{BASE}'s advantage: {BASE}/peer for rates, peer/{BASE} for s, ms, MB, KB "
        f"\n(log scale; >1 = {BASE} better)",
        fontsize=8,
    )
    right.set_xlabel(
        "median / the same system's physical limit in the same run (log scale):\n"
        "per-call rates / one-core ping-pong round trips/s, GB/s / memcpy, % / 100",
        fontsize=8,
    )
    left.set_title(f"{BASE} vs {PEER} (and other peers)", fontsize=9, loc="left")
    right.set_title("share of the physical limit", fontsize=9, loc="left")
    if title:
        fig.suptitle(title, fontsize=9)
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
    """The scaling curves, one panel each (the shares of the physical limit are in
    :func:`write_chart`).

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
    if not panels:
        return ""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "scaling chart skipped: matplotlib is not installed"
    n = len(panels)
    fig, axes = plt.subplots(n, 1, figsize=(7, 3.2 * n), squeeze=False)
    for k, (panel, series) in enumerate(panels.items()):
        ax = axes[k][0]
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
