"""Seeded, vectorised percentile bootstrap confidence intervals over images."""

from __future__ import annotations

from typing import Callable

import numpy as np


def bootstrap_indices(n_items: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_items) int array of resampled indices, from a PCG64 generator at ``seed``.
    The same (n_items, n_resamples, seed) always gives the same indices, so two runs over the
    same images are resampled identically (paired comparisons)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_items, size=(n_resamples, n_items))


def bootstrap_mean_ci(values: np.ndarray, n_resamples: int = 1000, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (1-D)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return (float("nan"), float("nan"))
    idx = bootstrap_indices(values.size, n_resamples, seed)
    means = values[idx].mean(axis=1)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [a, 1.0 - a])
    return float(lo), float(hi)


def bootstrap_stat_ci(stat: Callable[..., float], arrays: tuple[np.ndarray, ...],
                      n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of a dataset-level statistic (e.g. ROC-AUC) computed from
    aligned per-image arrays; resamples where the statistic is undefined (NaN) are dropped."""
    n = len(arrays[0])
    if n == 0:
        return (float("nan"), float("nan"))
    idx = bootstrap_indices(n, n_resamples, seed)
    vals = np.array([stat(*(a[i] for a in arrays)) for i in idx], dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return (float("nan"), float("nan"))
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(vals, [a, 1.0 - a])
    return float(lo), float(hi)
