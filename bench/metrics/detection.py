"""Image-level detection metrics over (score, label) pairs; label 1 = fake, score = P(fake).

Computed only where the split holds both labels; otherwise the metric is absent (not 0).
"""

from __future__ import annotations

import numpy as np

from bench.metrics import metric


def has_both_labels(labels: np.ndarray) -> bool:
    labels = np.asarray(labels)
    return bool(np.any(labels == 1) and np.any(labels == 0))


@metric("det_auc", kind="detection", task="detect",
        description="ROC-AUC of image scores (fake = positive); ties count 1/2")
def det_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC-AUC via the Mann-Whitney U statistic with average ranks for ties (equals
    ``sklearn.metrics.roc_auc_score``)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # average ranks of tied groups (1-based)
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


@metric("det_acc", kind="detection", task="detect",
        description="accuracy of (score > 0.5) as fake")
def det_acc(scores: np.ndarray, labels: np.ndarray) -> float:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if len(scores) == 0:
        return float("nan")
    return float(np.mean((scores > 0.5) == labels))
