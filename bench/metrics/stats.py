"""Seeded, vectorised percentile bootstrap confidence intervals over images."""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

#: Resamples drawn per block: memory stays ~CHUNK x n_items instead of n_resamples x n_items
#: (a 1000 x 10,000 index matrix plus gathered values is ~150 MB).
CHUNK = 100


def iter_bootstrap_indices(n_items: int, n_resamples: int, seed: int,
                           chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """Blocks of at most ``chunk`` rows of resampled indices (each row: ``n_items`` draws from
    ``0..n_items-1``), drawn in order from one PCG64 generator at ``seed``. This block order is
    the canonical stream: :func:`bootstrap_indices` concatenates the same blocks."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_resamples:
        k = min(chunk, n_resamples - done)
        yield rng.integers(0, n_items, size=(k, n_items))
        done += k


def bootstrap_indices(n_items: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_items) int array of resampled indices (see :func:`iter_bootstrap_indices`).
    The same (n_items, n_resamples, seed) always gives the same indices, so two runs over the
    same images are resampled identically (paired comparisons)."""
    if n_resamples <= 0:
        return np.empty((0, n_items), dtype=np.int64)
    return np.concatenate(list(iter_bootstrap_indices(n_items, n_resamples, seed)))


def bootstrap_mean_ci(values: np.ndarray, n_resamples: int = 1000, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (1-D)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return (float("nan"), float("nan"))
    means = np.concatenate([values[idx].mean(axis=1)
                            for idx in iter_bootstrap_indices(values.size, n_resamples, seed)])
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
    vals = np.array([stat(*(a[i] for a in arrays))
                     for block in iter_bootstrap_indices(n, n_resamples, seed) for i in block],
                    dtype=np.float64)
    return _percentiles(vals, level)


# -- differences between two runs ---------------------------------------------------------------
# A "paired" interval resamples the SAME images for both runs (one index matrix), so the
# per-image correlation between the runs cancels out of the difference; an "unpaired" interval
# resamples each run independently (what one can do with two unrelated sample sets). On the same
# images the paired interval is the right one and is much narrower when the runs are correlated.


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of the finite values (NaN, NaN when none)."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (float("nan"), float("nan"))
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(values, [a, 1.0 - a])
    return float(lo), float(hi)


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired values must be aligned: {a.size} vs {b.size} items")
    return a, b


def paired_bootstrap_diff(a: np.ndarray, b: np.ndarray, n_resamples: int = 1000, seed: int = 0,
                          level: float = 0.95) -> tuple[float, float, float]:
    """``(mean(a) - mean(b), lo, hi)``: percentile bootstrap interval of the difference of means
    of two aligned per-image arrays (item i of ``a`` and ``b`` is the same image), resampling
    the same images for both. Uses :func:`bootstrap_indices` with ``seed``, so with ``b = 0`` the
    interval equals :func:`bootstrap_mean_ci` of ``a``. Align and drop NaNs before calling."""
    a, b = _pair(a, b)
    if a.size == 0:
        return (float("nan"), float("nan"), float("nan"))
    d = a - b
    idx = bootstrap_indices(d.size, n_resamples, seed)
    lo, hi = _percentiles(d[idx].mean(axis=1), level)
    return float(d.mean()), lo, hi


def unpaired_bootstrap_diff(a: np.ndarray, b: np.ndarray, n_resamples: int = 1000, seed: int = 0,
                            level: float = 0.95) -> tuple[float, float, float]:
    """``(mean(a) - mean(b), lo, hi)`` with ``a`` and ``b`` resampled independently (they may
    differ in length): for two runs on different images."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        return (float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, a.size, size=(n_resamples, a.size))
    ib = rng.integers(0, b.size, size=(n_resamples, b.size))
    lo, hi = _percentiles(a[ia].mean(axis=1) - b[ib].mean(axis=1), level)
    return float(a.mean() - b.mean()), lo, hi


def paired_bootstrap_stat_diff(stat: Callable[..., float], arrays_a: tuple[np.ndarray, ...],
                               arrays_b: tuple[np.ndarray, ...], n_resamples: int = 1000,
                               seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """``(stat(A) - stat(B), lo, hi)`` for a dataset-level statistic (e.g. ROC-AUC) of two runs
    on the same images: ``arrays_a`` / ``arrays_b`` are aligned per-image arrays (e.g.
    ``(scores_a, labels)`` and ``(scores_b, labels)``); each resample draws one set of images
    for both. Resamples where either statistic is undefined (NaN) are dropped."""
    n = len(arrays_a[0])
    if any(len(x) != n for x in (*arrays_a, *arrays_b)):
        raise ValueError("paired arrays must all have the same length")
    if n == 0:
        return (float("nan"), float("nan"), float("nan"))
    point = float(stat(*arrays_a) - stat(*arrays_b))
    idx = bootstrap_indices(n, n_resamples, seed)
    diffs = np.array([stat(*(x[i] for x in arrays_a)) - stat(*(x[i] for x in arrays_b)) for i in idx],
                     dtype=np.float64)
    lo, hi = _percentiles(diffs, level)
    return point, lo, hi


def unpaired_bootstrap_stat_diff(stat: Callable[..., float], arrays_a: tuple[np.ndarray, ...],
                                 arrays_b: tuple[np.ndarray, ...], n_resamples: int = 1000,
                                 seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """Like :func:`paired_bootstrap_stat_diff` but each run's images are resampled independently."""
    na, nb = len(arrays_a[0]), len(arrays_b[0])
    if na == 0 or nb == 0:
        return (float("nan"), float("nan"), float("nan"))
    point = float(stat(*arrays_a) - stat(*arrays_b))
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, na, size=(n_resamples, na))
    ib = rng.integers(0, nb, size=(n_resamples, nb))
    diffs = np.array([stat(*(x[i] for x in arrays_a)) - stat(*(x[j] for x in arrays_b)) for i, j in zip(ia, ib)],
                     dtype=np.float64)
    lo, hi = _percentiles(diffs, level)
    return point, lo, hi
