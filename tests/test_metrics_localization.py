"""Localization metrics (bench/metrics/localization.py) against sklearn and hand-worked cases.

docs/protocol.md §1: IoU_c = |P==c & G==c| / (|P==c | G==c| + 1e-6); miou = (IoU_0 + IoU_1) / 2;
iou_fg = IoU_1; F1 over artifact pixels, 1.0 when TP = FP = FN = 0, 0.0 when P + R = 0.
sklearn's jaccard has no 1e-6, so it is compared within the size of that term (<= 1e-6 / union),
and exactly after adding it back from sklearn's own confusion matrix.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score, jaccard_score

from bench.metrics import get_metric
from bench.metrics.localization import (
    EPS, confusion_counts, f1, fp_area, iou_bg, iou_fg, miou,
)


def random_masks(rng: np.random.Generator, n: int = 300):
    """Pairs (pred, gt) of bool masks: random sizes and densities, blobs and noise, including
    empty and full masks on either side."""
    pairs = []
    for k in range(n):
        h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        dens = rng.choice([0.0, 0.01, 0.1, 0.5, 0.9, 1.0], size=2)
        gt = rng.random((h, w)) < dens[0]
        pred = rng.random((h, w)) < dens[1]
        if k % 5 == 0:  # a prediction that overlaps the truth a lot
            pred = gt ^ (rng.random((h, w)) < 0.05)
        pairs.append((pred, gt))
    return pairs


def counts_of(pairs):
    return np.array([confusion_counts(p, g) for p, g in pairs], dtype=np.int64).T


def test_confusion_counts_match_sklearn_and_numpy(rng):
    for pred, gt in random_masks(rng, 200):
        tp, fp, fn, tn = confusion_counts(pred, gt)
        cm = confusion_matrix(gt.ravel(), pred.ravel(), labels=[False, True])
        assert (tn, fp, fn, tp) == tuple(int(v) for v in cm.ravel())
        assert tp == np.sum(pred & gt) and fp == np.sum(pred & ~gt)
        assert fn == np.sum(~pred & gt) and tn == np.sum(~pred & ~gt)
        assert all(isinstance(v, int) for v in (tp, fp, fn, tn))


@pytest.mark.parametrize("pred, gt", [
    (np.zeros((4, 4), np.uint8), np.zeros((4, 4), bool)),
    (np.zeros((4, 4), bool), np.zeros((4, 4), np.uint8)),
    (np.zeros((4, 4), bool), np.zeros((4, 4), np.float32)),
    (np.zeros((4, 4), np.int64), np.zeros((4, 4), np.int64)),
])
def test_confusion_counts_refuses_non_bool(pred, gt):
    with pytest.raises(ValueError, match="bool"):
        confusion_counts(pred, gt)


@pytest.mark.parametrize("shape_p, shape_g", [((4, 4), (4, 5)), ((4, 5), (5, 4)), ((16,), (4, 4))])
def test_confusion_counts_refuses_mismatched_shapes(shape_p, shape_g):
    with pytest.raises(ValueError, match="differ"):
        confusion_counts(np.zeros(shape_p, bool), np.zeros(shape_g, bool))


def test_iou_against_sklearn_jaccard(rng):
    pairs = random_masks(rng)
    tp, fp, fn, tn = counts_of(pairs)
    got_fg, got_bg, got_m = iou_fg(tp, fp, fn, tn), iou_bg(tp, fp, fn, tn), miou(tp, fp, fn, tn)
    assert got_fg.shape == got_bg.shape == got_m.shape == (len(pairs),)
    for i, (pred, gt) in enumerate(pairs):
        y, p = gt.ravel(), pred.ravel()
        sk_bg, sk_fg = jaccard_score(y, p, labels=[False, True], average=None, zero_division=0.0)
        union_fg, union_bg = np.sum(y | p), np.sum(~y | ~p)
        # without the eps: differs from sklearn by at most 1e-6 / union
        assert abs(got_fg[i] - sk_fg) <= EPS / max(union_fg, 1) + 1e-15
        assert abs(got_bg[i] - sk_bg) <= EPS / max(union_bg, 1) + 1e-15
        # with the eps put back into sklearn's ratio: the same to rounding
        assert got_fg[i] == pytest.approx(sk_fg * union_fg / (union_fg + EPS), rel=1e-12, abs=1e-300)
        assert got_bg[i] == pytest.approx(sk_bg * union_bg / (union_bg + EPS), rel=1e-12, abs=1e-300)
        assert got_m[i] == pytest.approx((got_fg[i] + got_bg[i]) / 2, rel=1e-15)


def test_f1_against_sklearn(rng):
    pairs = random_masks(rng)
    tp, fp, fn, tn = counts_of(pairs)
    got = f1(tp, fp, fn, tn)
    n_both_empty = 0
    for i, (pred, gt) in enumerate(pairs):
        # zero_division=1.0: sklearn returns 1 exactly when TP = FP = FN = 0 (F1 = 2TP/(2TP+FP+FN))
        want = f1_score(gt.ravel(), pred.ravel(), zero_division=1.0)
        assert got[i] == pytest.approx(want, rel=1e-12, abs=1e-15)
        n_both_empty += not gt.any() and not pred.any()
    assert n_both_empty > 0  # the special case was exercised


def per_image(pred, gt):
    c = confusion_counts(pred, gt)
    return {name: float(fn(*c)) for name, fn in
            (("miou", miou), ("iou_fg", iou_fg), ("iou_bg", iou_bg), ("f1", f1))}


def test_empty_prediction_on_empty_truth():
    # IoU_1 = 0 / (0 + 1e-6) = 0; IoU_0 = N / (N + 1e-6); F1 = 1 (TP = FP = FN = 0)
    z = np.zeros((10, 10), bool)
    r = per_image(z, z)
    assert r["iou_fg"] == 0.0
    assert r["iou_bg"] == 100 / (100 + 1e-6)
    assert r["miou"] == (100 / (100 + 1e-6)) / 2
    assert r["f1"] == 1.0


def test_full_prediction_on_full_truth():
    # IoU_1 = N / (N + 1e-6); IoU_0 = 0 / (0 + 1e-6) = 0; F1 = 1
    o = np.ones((10, 10), bool)
    r = per_image(o, o)
    assert r["iou_fg"] == 100 / (100 + 1e-6) and r["iou_bg"] == 0.0
    assert r["miou"] == (100 / (100 + 1e-6)) / 2
    assert r["f1"] == 1.0


def test_all_artifact_truth():
    # background IoU is 0 whatever the prediction: TN = 0
    gt = np.ones((4, 5), bool)
    pred = np.zeros((4, 5), bool)
    pred[:2] = True  # 10 of 20 pixels
    r = per_image(pred, gt)
    assert r["iou_bg"] == 0.0
    assert r["iou_fg"] == 10 / (20 + 1e-6)
    assert r["miou"] == (10 / (20 + 1e-6)) / 2
    assert r["f1"] == pytest.approx(2 * 1.0 * 0.5 / 1.5, rel=1e-15)  # P = 1, R = 0.5
    r0 = per_image(np.zeros_like(gt), gt)  # nothing predicted: all zero, F1 = 0 (P + R = 0)
    assert r0 == {"miou": 0.0, "iou_fg": 0.0, "iou_bg": 0.0, "f1": 0.0}


def test_hand_worked_partial_overlap():
    # 6 x 6 image; truth = 3 x 3 square (9 px); prediction = 2 x 4 box overlapping it in 6 px
    gt = np.zeros((6, 6), bool)
    gt[0:3, 0:3] = True
    pred = np.zeros((6, 6), bool)
    pred[1:3, 0:4] = True
    assert confusion_counts(pred, gt) == (6, 2, 3, 25)
    r = per_image(pred, gt)
    assert r["iou_fg"] == 6 / (11 + 1e-6)
    assert r["iou_bg"] == 25 / (30 + 1e-6)
    assert r["miou"] == (6 / (11 + 1e-6) + 25 / (30 + 1e-6)) / 2
    p, rc = 6 / 8, 6 / 9
    assert r["f1"] == pytest.approx(2 * p * rc / (p + rc), rel=1e-15)


def test_prediction_on_empty_truth_scores_zero_f1():
    gt = np.zeros((5, 5), bool)
    pred = gt.copy()
    pred[2, 2] = True
    r = per_image(pred, gt)
    assert r["f1"] == 0.0 and r["iou_fg"] == 0.0
    assert r["iou_bg"] == 24 / (25 + 1e-6)


@pytest.mark.parametrize("area", [1, 16, 400, 4999, 9999])
def test_sanity_values_from_protocol(area):
    # docs/protocol.md §1: empty prediction -> mIoU = (1 - a)/2, F1 = 0;
    # all-artifact prediction -> mIoU about a/2 and F1 = 2a/(1 + a)
    n = 100 * 100
    gt = np.zeros(n, bool)
    gt[np.random.default_rng(area).choice(n, area, replace=False)] = True
    gt = gt.reshape(100, 100)
    a = area / n
    empty = per_image(np.zeros_like(gt), gt)
    assert abs(empty["miou"] - (1 - a) / 2) <= 1e-6
    assert empty["f1"] == 0.0
    full = per_image(np.ones_like(gt), gt)
    assert abs(full["miou"] - a / 2) <= 1e-6
    assert full["f1"] == pytest.approx(2 * a / (1 + a), rel=1e-12)


def test_vectorised_equals_per_image(rng):
    pairs = random_masks(rng, 50)
    tp, fp, fn, tn = counts_of(pairs)
    for name, fn_ in (("miou", miou), ("iou_fg", iou_fg), ("f1", f1)):
        vec = fn_(tp, fp, fn, tn)
        one = [float(fn_(*confusion_counts(p, g))) for p, g in pairs]
        assert vec.tolist() == one, name


def test_fp_area():
    # fraction of pixels predicted as artifact (on real images GT is empty: TP = FN = 0)
    pred = np.zeros((4, 5), bool)
    pred[0, :3] = True
    c = confusion_counts(pred, np.zeros_like(pred))
    assert float(fp_area(*c)) == 3 / 20
    assert float(fp_area(0, 0, 0, 0)) == 0.0
    assert fp_area([0, 5], [3, 0], [0, 5], [17, 10]).tolist() == [3 / 20, 5 / 20]


def test_registered_specs():
    for name in ("miou", "f1", "iou_fg"):
        spec = get_metric(name)
        assert spec.kind == "pixel" and spec.task == "localize"
        assert spec.applies_to == "fake" and spec.higher_is_better
    spec = get_metric("fp_area")
    assert spec.applies_to == "real" and not spec.higher_is_better
    assert get_metric("miou").fn is miou and get_metric("f1").fn is f1
