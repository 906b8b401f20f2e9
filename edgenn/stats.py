"""Statistics on timings, with no opinion on units: summaries, paired ratios and their spread.

numpy only. Benchmarks on a shared machine drift (frequency, other tenants, caches), so two variants
are compared *per round*: each round times every variant back to back, the per-round ratio cancels
what the round had in common, and the median of those ratios is the figure. Its 95% confidence
interval comes from order statistics (distribution-free: no normality is assumed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Summary:
    """Location and spread of a sample (percentiles interpolate linearly, as numpy's default)."""

    n: int
    median: float
    p90: float
    p99: float
    mean: float
    std: float  # sample standard deviation (n - 1); 0 for a single value
    min: float
    max: float

    def scaled(self, factor: float) -> Summary:
        """The same summary in other units (every figure but n multiplied by `factor`)."""
        return Summary(
            self.n,
            *(getattr(self, k) * factor for k in ("median", "p90", "p99", "mean", "std", "min", "max")),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RatioSummary:
    """The median of per-round ratios, its 95% confidence interval and the spread of the ratios."""

    median: float
    ci_low: float  # distribution-free 95% interval for the median (see median_interval)
    ci_high: float
    ci_level: float  # the interval's real coverage: >= 0.95, or lower when there are too few rounds
    p10: float
    p90: float
    rounds: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(values: Sequence[float] | np.ndarray) -> Summary:
    data = _as_sample(values)
    p50, p90, p99 = np.percentile(data, [50, 90, 99])
    std = float(data.std(ddof=1)) if data.size > 1 else 0.0
    return Summary(
        int(data.size),
        float(p50),
        float(p90),
        float(p99),
        float(data.mean()),
        std,
        float(data.min()),
        float(data.max()),
    )


def paired_ratios(numerators: Sequence[float] | np.ndarray, denominators: Sequence[float] | np.ndarray) -> np.ndarray:
    """Round-by-round ratios numerators[i] / denominators[i]; both sequences hold one value per round."""
    top, bottom = _as_sample(numerators), _as_sample(denominators)
    if top.shape != bottom.shape:
        raise ValueError(f"paired samples differ in length: {top.size} rounds against {bottom.size}")
    if np.any(bottom <= 0) or np.any(top <= 0):
        raise ValueError("ratios of timings need positive values")
    return top / bottom


def summarize_ratios(ratios: Sequence[float] | np.ndarray, level: float = 0.95) -> RatioSummary:
    data = np.sort(_as_sample(ratios))
    low, high, coverage = median_interval(data, level)
    p10, p90 = np.percentile(data, [10, 90])
    return RatioSummary(float(np.median(data)), low, high, coverage, float(p10), float(p90), int(data.size))


def paired_ratio(
    numerators: Sequence[float] | np.ndarray, denominators: Sequence[float] | np.ndarray, level: float = 0.95
) -> RatioSummary:
    """summarize_ratios(paired_ratios(...)): the figure that compares two interleaved variants."""
    return summarize_ratios(paired_ratios(numerators, denominators), level)


def median_interval(values: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(low, high, coverage): a distribution-free confidence interval for the median.

    The number of values below the true median is Binomial(n, 1/2), so [x_(j), x_(n+1-j)] (sorted,
    1-based) covers it with probability 1 - 2 P(X <= j - 1). j is the largest rank that keeps the
    coverage at `level` or above; with too few values (n < 6 for 95%) no rank does, and the
    interval is [min, max] with its lower, true coverage.
    """
    data = np.sort(_as_sample(values))
    n = data.size
    # The binomial tail is summed in Python integers: exact, and no overflow for large n.
    j, tail = 1, 1  # j = 1 is [min, max]; tail = 2**n * P(X <= j - 1)
    while j + 1 <= (n + 1) // 2:
        next_tail = tail + math.comb(n, j)
        if 1 - 2 * next_tail / 2**n < level:
            break
        j, tail = j + 1, next_tail
    coverage = 1 - 2 * tail / 2**n
    return float(data[j - 1]), float(data[n - j]), float(coverage)


def _as_sample(values: Sequence[float] | np.ndarray) -> np.ndarray:
    data = np.asarray(values, dtype=np.float64).ravel()
    if data.size == 0:
        raise ValueError("no values to summarise")
    if not np.all(np.isfinite(data)):
        raise ValueError("timings must be finite numbers")
    return data
