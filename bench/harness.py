"""Timing and statistics: Ray's ``timeit`` recipe, shortened, plus medians.

Ray's ``ray_microbenchmark_helpers.timeit`` sleeps 10 s, warms up for 1 s,
then runs 4 trials of at least 2 s and prints mean ± std. We keep its shape
(warm-up sets a batch ``step``; each trial calls ``fn`` in batches of
``step`` until the trial time has passed; rate = multiplier * calls /
elapsed), drop the sleep, shorten the times, and summarise with the median
and the spread (min-max and quartiles) instead of the mean, because a shared
two-core machine produces outliers that a mean would smear into every figure.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """How long to warm up and how many, how long, timed trials to run."""

    warmup_s: float = 0.5
    trials: int = 5
    trial_s: float = 1.0


FULL = Timing()
QUICK = Timing(warmup_s=0.0, trials=2, trial_s=0.05)


def time_rate(
    fn: Callable[[], object],
    multiplier: float,
    timing: Timing,
    phases: dict[str, float] | None = None,
) -> list[float]:
    """Return one rate per trial: ``multiplier * calls / seconds``.

    ``fn`` is called at least once during warm-up and at least once per trial,
    so a call slower than ``trial_s`` makes each trial a single call. If
    ``phases`` is given, the warm-up and trial wall times go into it.
    """
    count = 0
    start = time.perf_counter()
    while True:
        fn()
        count += 1
        if time.perf_counter() - start >= timing.warmup_s:
            break
    trials_start = time.perf_counter()
    if phases is not None:
        phases["warm-up"] = trials_start - start
    step = count // 10 + 1
    rates = []
    for _ in range(timing.trials):
        calls = 0
        t0 = time.perf_counter()
        while True:
            for _ in range(step):
                fn()
            calls += step
            elapsed = time.perf_counter() - t0
            if elapsed >= timing.trial_s:
                break
        rates.append(multiplier * calls / elapsed)
    if phases is not None:
        phases["trials"] = time.perf_counter() - trials_start
    return rates


def time_samples(
    fn: Callable[[], Mapping[str, float]],
    timing: Timing,
    phases: dict[str, float] | None = None,
) -> dict[str, list[float]]:
    """Call ``fn`` once to warm up, then once per trial; collect each metric it returns."""
    start = time.perf_counter()
    fn()
    trials_start = time.perf_counter()
    if phases is not None:
        phases["warm-up"] = trials_start - start
    samples: dict[str, list[float]] = {}
    for _ in range(timing.trials):
        for name, value in fn().items():
            samples.setdefault(name, []).append(value)
    if phases is not None:
        phases["trials"] = time.perf_counter() - trials_start
    return samples


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summarize(values: list[float]) -> dict[str, float]:
    """Median, min, max and quartiles of one metric's per-trial values."""
    if len(values) >= 2:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    else:
        q1 = q3 = values[0]
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "q1": q1,
        "q3": q3,
        "n": len(values),
    }
