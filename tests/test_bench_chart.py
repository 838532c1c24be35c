"""The benchmark chart: each row's ratio to Ray and to its physical limit.

Checks the ratios the chart draws (not pixels) on a few made-up rows, and
that drawing them writes a file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import report
from bench.catalog import MEMCPY, PINGPONG
from bench.spec import Metric


def _row(name: str, unit: str, higher: bool = True, **medians: float) -> report.Row:
    row = report.Row(Metric(name, unit, higher), name)
    for system, m in medians.items():
        row.stats[system] = {"median": m, "min": m, "max": m}
    return row


def _rows() -> list[report.Row]:
    return [
        _row(PINGPONG, "round trips/s", asyncray=100_000, ray=80_000),
        _row(MEMCPY, "GB/s", asyncray=10.0, ray=8.0),
        _row("single client tasks sync", "tasks/s", asyncray=10_000, ray=1_000, mp=5_000),
        _row("single client put gigabytes", "GB/s", asyncray=5.0, ray=2.0),
        _row("single client tasks and get batch", "batches/s", asyncray=30, ray=2),
        _row("tasks of 1 ms: efficiency", "%", asyncray=90.0, ray=50.0),
        _row("init to first result", "s", higher=False, asyncray=0.1, ray=2.0),
        _row("generator items sync", "items/s", asyncray=150_000),  # Ray did not run it
    ]


def test_chart_ratios() -> None:
    data = {c.name: c for c in report.chart_rows(_rows(), ["asyncray", "ray", "mp"])}
    tasks = data["single client tasks sync"]
    assert tasks.limit == PINGPONG
    assert tasks.vs_peer == pytest.approx({"ray": 10.0, "mp": 2.0})
    assert list(tasks.vs_peer) == ["ray", "mp"]  # Ray first
    # Each system against its own ping-pong of the same run.
    assert tasks.vs_limit == pytest.approx({"asyncray": 0.1, "ray": 1_000 / 80_000})
    gb = data["single client put gigabytes"]
    assert gb.limit == MEMCPY
    assert gb.vs_limit == pytest.approx({"asyncray": 0.5, "ray": 0.25})
    eff = data["tasks of 1 ms: efficiency"]
    assert eff.vs_limit == pytest.approx({"asyncray": 0.9, "ray": 0.5})
    # Lower is better: the ratio is Ray / asyncray; no limit applies to a time.
    init = data["init to first result"]
    assert init.vs_peer == pytest.approx({"ray": 20.0})
    assert init.limit is None and init.vs_limit == {}
    # A rate whose unit is many calls gets no per-call limit.
    assert data["single client tasks and get batch"].vs_limit == {}
    # A row Ray did not run still shows its share of the limit.
    gen = data["generator items sync"]
    assert gen.vs_peer == {} and gen.vs_limit == pytest.approx({"asyncray": 1.5})
    assert data[PINGPONG].vs_limit == pytest.approx({"asyncray": 1.0, "ray": 1.0})


def test_chart_file(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "latest.png"
    note = report.write_chart(path, _rows(), ["asyncray", "ray", "mp"], title="fake rows")
    assert note == f"chart: {path}"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_carries_the_limit_ratios(tmp_path: Path) -> None:
    import json

    path = tmp_path / "latest.json"
    report.write_json(path, _rows(), [], ["asyncray", "ray"], {})
    rows = {r["metric"]: r for r in json.loads(path.read_text())["rows"]}
    assert rows["single client tasks sync"]["limit"] == PINGPONG
    assert rows["single client tasks sync"]["vs_limit"] == pytest.approx(
        {"asyncray": 0.1, "ray": 0.0125}
    )
    assert rows["init to first result"]["limit"] is None
