"""Detection metrics (bench/metrics/detection.py) against sklearn and hand-worked cases.

Label 1 = fake (positive), score = P(fake); det_acc predicts fake when score > 0.5 (strict).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from bench.metrics import get_metric
from bench.metrics.detection import det_acc, det_auc, has_both_labels


@pytest.mark.parametrize("trial", range(40))
def test_auc_matches_sklearn(trial):
    rng = np.random.default_rng(trial)
    n = int(rng.integers(2, 200))
    labels = rng.integers(0, 2, n)
    labels[0], labels[1] = 0, 1  # both classes present
    if trial % 3 == 0:  # many ties: few distinct score values
        scores = rng.integers(0, 4, n) / 3.0
    elif trial % 3 == 1:  # informative continuous scores
        scores = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1)
    else:
        scores = rng.random(n)
    assert det_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auc_hand_worked():
    # positives {0.8, 0.4}, negatives {0.4, 0.1}: pairs (0.8>0.4)=1, (0.8>0.1)=1,
    # (0.4=0.4)=1/2, (0.4>0.1)=1  ->  3.5 / 4
    assert det_auc([0.8, 0.4, 0.4, 0.1], [1, 1, 0, 0]) == 0.875
    assert det_auc([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 1.0
    assert det_auc([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 0.0
    assert det_auc([0.5] * 6, [1, 0, 1, 0, 1, 1]) == 0.5  # all tied
    assert det_auc(np.array([0.3, 0.7]), np.array([False, True])) == 1.0  # bool labels


def test_auc_is_rank_based_and_order_free(rng):
    scores = rng.random(50)
    labels = rng.integers(0, 2, 50)
    labels[:2] = [0, 1]
    base = det_auc(scores, labels)
    assert det_auc(scores ** 3, labels) == pytest.approx(base, abs=1e-15)  # monotone transform
    perm = rng.permutation(50)
    assert det_auc(scores[perm], labels[perm]) == pytest.approx(base, abs=1e-15)


@pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0], []])
def test_auc_single_class_is_nan(labels):
    assert math.isnan(det_auc(np.linspace(0, 1, len(labels)), labels))


def test_acc_matches_sklearn(rng):
    for _ in range(20):
        n = int(rng.integers(1, 100))
        labels = rng.integers(0, 2, n)
        scores = rng.integers(0, 5, n) / 4.0  # includes exactly 0.5
        want = accuracy_score(labels, (scores > 0.5).astype(int))
        assert det_acc(scores, labels) == pytest.approx(want, abs=1e-15)


def test_acc_threshold_is_strict():
    # 0.5 counts as "real": the fake image at 0.5 is wrong, the real image at 0.5 is right
    assert det_acc([0.5, 0.5, 0.51, 0.49], [1, 0, 1, 0]) == 0.75
    assert det_acc([1.0, 0.0], [1, 0]) == 1.0
    assert det_acc([0.0, 1.0], [1, 0]) == 0.0
    assert math.isnan(det_acc([], []))


def test_has_both_labels():
    assert has_both_labels(np.array([0, 1, 1]))
    assert not has_both_labels(np.array([1, 1]))
    assert not has_both_labels(np.array([0]))
    assert not has_both_labels(np.array([], dtype=int))


def test_registered_specs():
    for name, fn in (("det_auc", det_auc), ("det_acc", det_acc)):
        spec = get_metric(name)
        assert spec.kind == "detection" and spec.task == "detect" and spec.fn is fn
        assert spec.higher_is_better
