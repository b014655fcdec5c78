"""Bootstrap intervals: coverage over seeded synthetic trials, pairing, determinism.

Coverage tolerances are 5 binomial standard deviations around the nominal level: with the
trial counts below, a correct percentile bootstrap (true coverage within ~0.5 point of
nominal for these sample sizes) fails with probability far below 1e-5 for any seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.metrics.detection import det_auc
from bench.metrics.stats import (bootstrap_indices, bootstrap_mean_ci, bootstrap_stat_ci, paired_bootstrap_diff,
                         paired_bootstrap_stat_diff, unpaired_bootstrap_diff, unpaired_bootstrap_stat_diff)


def _band(level: float, trials: int) -> float:
    return 5.0 * math.sqrt(level * (1 - level) / trials)


@pytest.mark.parametrize("level,trials", [(0.95, 1000), (0.80, 400)])
def test_mean_interval_coverage(level, trials):
    mu, n = 0.37, 200
    covered = 0
    for t in range(trials):
        x = np.random.default_rng(10_000 + t).normal(mu, 0.2, size=n)
        lo, hi = bootstrap_mean_ci(x, 1000, seed=t, level=level)
        covered += lo <= mu <= hi
    coverage = covered / trials
    assert abs(coverage - level) <= _band(level, trials), coverage


def test_paired_diff_interval_coverage():
    trials, n, true_diff = 500, 150, 0.03
    covered = 0
    for t in range(trials):
        rng = np.random.default_rng(50_000 + t)
        base = rng.uniform(0.2, 0.8, size=n)  # per-image difficulty shared by both runs
        a = base + true_diff + rng.normal(0, 0.05, n)
        b = base + rng.normal(0, 0.05, n)
        d, lo, hi = paired_bootstrap_diff(a, b, 1000, seed=t)
        assert d == pytest.approx(a.mean() - b.mean(), abs=1e-12)
        covered += lo <= true_diff <= hi
    assert abs(covered / trials - 0.95) <= _band(0.95, trials)


def test_paired_narrower_than_unpaired_on_correlated_runs():
    rng = np.random.default_rng(7)
    base = rng.uniform(0, 1, size=300)
    a = np.clip(base + rng.normal(0.02, 0.03, 300), 0, 1)
    b = np.clip(base + rng.normal(0.0, 0.03, 300), 0, 1)
    d1, plo, phi = paired_bootstrap_diff(a, b, 1000, seed=0)
    d2, ulo, uhi = unpaired_bootstrap_diff(a, b, 1000, seed=0)
    assert d1 == pytest.approx(d2, abs=1e-15)
    assert (phi - plo) < 0.25 * (uhi - ulo)
    assert plo > 0 and ulo < 0  # pairing detects the difference; independent resampling cannot
    # the unpaired width matches the textbook standard error of a difference of two means
    se = math.sqrt(a.var() / a.size + b.var() / b.size)
    assert (uhi - ulo) == pytest.approx(2 * 1.96 * se, rel=0.1)


def test_paired_diff_shares_indices_with_mean_ci():
    x = np.random.default_rng(3).random(57)
    d, lo, hi = paired_bootstrap_diff(x, np.zeros_like(x), 500, seed=11)
    assert (lo, hi) == pytest.approx(bootstrap_mean_ci(x, 500, seed=11), abs=1e-15)
    # hand-made resampling with the documented generator gives the same interval
    idx = np.random.default_rng(11).integers(0, 57, size=(500, 57))
    assert (lo, hi) == pytest.approx(tuple(np.quantile(x[idx].mean(axis=1), [0.025, 0.975])), abs=1e-15)


def test_bootstrap_is_deterministic_given_seed():
    x = np.random.default_rng(0).random(80)
    assert bootstrap_mean_ci(x, 300, 5) == bootstrap_mean_ci(x, 300, 5)
    assert bootstrap_mean_ci(x, 300, 5) != bootstrap_mean_ci(x, 300, 6)
    assert np.array_equal(bootstrap_indices(80, 10, 1), bootstrap_indices(80, 10, 1))
    assert bootstrap_indices(80, 10, 1).shape == (10, 80)


def test_stat_versions_agree_with_mean_versions():
    rng = np.random.default_rng(2)
    a, b = rng.random(90), rng.random(90)
    mean = lambda v: float(np.mean(v))  # noqa: E731
    assert bootstrap_stat_ci(mean, (a,), 400, 9) == pytest.approx(bootstrap_mean_ci(a, 400, 9), abs=1e-12)
    assert paired_bootstrap_stat_diff(mean, (a,), (b,), 400, 9) == pytest.approx(
        paired_bootstrap_diff(a, b, 400, 9), abs=1e-12)
    assert unpaired_bootstrap_stat_diff(mean, (a,), (b,), 400, 9) == pytest.approx(
        unpaired_bootstrap_diff(a, b, 400, 9), abs=1e-12)


def test_paired_auc_difference():
    rng = np.random.default_rng(4)
    labels = np.r_[np.ones(60, int), np.zeros(60, int)]
    good = np.clip(labels * 0.6 + rng.normal(0.2, 0.15, 120), 0, 1)
    weak = np.clip(labels * 0.1 + rng.normal(0.45, 0.15, 120), 0, 1)
    d, lo, hi = paired_bootstrap_stat_diff(det_auc, (good, labels), (weak, labels), 300, 0)
    assert d == pytest.approx(det_auc(good, labels) - det_auc(weak, labels))
    assert 0 < lo <= d <= hi
    # a resample with one class only has no AUC: such resamples are dropped, not counted as 0
    tiny = np.array([1, 0])
    d, lo, hi = paired_bootstrap_stat_diff(det_auc, (np.array([0.9, 0.1]), tiny), (np.array([0.1, 0.9]), tiny), 50, 0)
    assert d == 1.0 and lo == 1.0 and hi == 1.0


def test_edge_cases():
    assert all(math.isnan(v) for v in paired_bootstrap_diff([], [], 10, 0))
    assert all(math.isnan(v) for v in unpaired_bootstrap_diff([1.0], [], 10, 0))
    with pytest.raises(ValueError):
        paired_bootstrap_diff([1.0, 2.0], [1.0], 10, 0)
    d, lo, hi = unpaired_bootstrap_diff([1.0, 1.0, 1.0], [0.5, 0.5], 10, 0)
    assert (d, lo, hi) == (0.5, 0.5, 0.5)
