"""edgenn.stats on injected timings: summaries, order-statistic intervals, and why pairing matters."""

import subprocess
import sys

import numpy as np
import pytest

from edgenn.stats import (
    Summary,
    median_interval,
    paired_ratio,
    paired_ratios,
    summarize,
    summarize_ratios,
)


def test_summary_of_one_to_hundred():
    s = summarize(np.arange(1, 101))
    # numpy's linear interpolation: the q-th percentile sits at rank 1 + q/100 * (n - 1)
    assert (s.n, s.median, s.min, s.max) == (100, 50.5, 1.0, 100.0)
    assert s.p90 == pytest.approx(90.1, abs=1e-12)
    assert s.p99 == pytest.approx(99.01, abs=1e-12)
    assert s.mean == pytest.approx(50.5, abs=1e-12)
    assert s.std == pytest.approx(29.011491975882016, rel=1e-12)  # sample std, n - 1


def test_summary_is_robust_to_one_outlier_where_the_mean_is_not():
    s = summarize([10.0] * 99 + [10_000.0])
    assert s.median == 10.0 and s.p90 == 10.0
    assert s.mean == pytest.approx(109.9)
    assert s.max == 10_000.0


def test_single_value_has_zero_spread():
    assert summarize([7]) == Summary(1, 7.0, 7.0, 7.0, 7.0, 0.0, 7.0, 7.0)


def test_scaled_changes_units_but_not_count():
    s = summarize([1000, 2000, 3000]).scaled(1e-3)
    assert (s.n, s.median, s.mean, s.min, s.max) == (3, 2.0, 2.0, 1.0, 3.0)
    assert s.std == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [float("inf")]])
def test_no_summary_of_empty_or_non_finite(bad):
    with pytest.raises(ValueError):
        summarize(bad)


def test_paired_ratios_are_round_by_round():
    assert paired_ratios([4, 9, 10], [2, 3, 5]).tolist() == [2.0, 3.0, 2.0]
    with pytest.raises(ValueError, match="differ in length"):
        paired_ratios([1, 2], [1])
    with pytest.raises(ValueError, match="positive"):
        paired_ratios([1, 2], [1, 0])


@pytest.mark.parametrize(
    "n, ranks, coverage",
    [  # ranks (1-based) of the classic distribution-free 95% interval for the median
        (5, (1, 5), 0.9375),  # too few values for 95%: [min, max] and its real coverage
        (6, (1, 6), 0.96875),
        (10, (2, 9), 0.978515625),
        (25, (8, 18), 0.9567147),
        (100, (40, 61), 0.9647998),
    ],
)
def test_median_interval_matches_binomial_tables(n, ranks, coverage):
    values = np.arange(1, n + 1)[::-1] * 1.0  # unsorted on purpose
    low, high, level = median_interval(values)
    assert (low, high) == ranks
    assert level == pytest.approx(coverage, abs=1e-6)


def test_ratio_summary_fields():
    r = summarize_ratios([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    assert (r.median, r.ci_low, r.ci_high, r.rounds) == (5.5, 2.0, 9.0, 10)
    assert r.p10 == pytest.approx(1.9) and r.p90 == pytest.approx(9.1)
    assert set(r.to_dict()) == {"median", "ci_low", "ci_high", "ci_level", "p10", "p90", "rounds"}


def test_pairing_cancels_drift_that_unpaired_figures_cannot():
    # Each round the machine runs at a different speed (factor 1 to 3); the variant is always
    # exactly twice as fast as the baseline, give or take 1% of noise.
    rng = np.random.default_rng(0)
    drift = rng.uniform(1.0, 3.0, size=40)
    baseline = 100.0 * drift * rng.uniform(0.99, 1.01, size=40)
    variant = 50.0 * drift * rng.uniform(0.99, 1.01, size=40)
    paired = paired_ratio(baseline, variant)
    assert paired.median == pytest.approx(2.0, abs=0.02)
    assert paired.ci_low <= 2.0 <= paired.ci_high and paired.ci_high - paired.ci_low < 0.03
    # The same samples with the pairing broken (another round's baseline) give a far wider interval.
    broken = paired_ratio(np.roll(baseline, 7), variant)
    assert broken.ci_high - broken.ci_low > 20 * (paired.ci_high - paired.ci_low)


def test_stats_imports_numpy_only():
    code = "import sys, edgenn.stats; print(sorted({'torch', 'onnxruntime', 'onnx'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
