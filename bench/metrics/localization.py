"""Localization metrics, exactly LEGION's protocol (docs/protocol.md §1).

Per image, P = predicted binary mask, G = ground truth, same H x W at the original resolution:

- ``IoU_c = |P==c & G==c| / (|P==c | G==c| + 1e-6)`` for c in {0 background, 1 artifact};
- ``miou = (IoU_0 + IoU_1) / 2`` (the paper's "mIoU" averages background and artifact);
- ``iou_fg = IoU_1`` (what other papers call "mIoU");
- ``f1`` over artifact pixels: 1.0 when TP = FP = FN = 0; 0.0 when precision + recall = 0;
  else 2PR / (P + R);
- ``fp_area``: fraction of pixels predicted as artifact, on real images (lower is better).

All functions take arrays of per-image counts and return per-image values (vectorised).
"""

from __future__ import annotations

import numpy as np

from bench.metrics import metric

EPS = 1e-6


def confusion_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) pixel counts of bool masks ``pred`` and ``gt`` of the same H x W."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    if pred.dtype != bool or gt.dtype != bool:
        raise ValueError("masks must be bool (strictly binary)")
    n = pred.size
    tp = int(np.count_nonzero(pred & gt))
    p = int(np.count_nonzero(pred))
    g = int(np.count_nonzero(gt))
    fp, fn = p - tp, g - tp
    return tp, fp, fn, n - tp - fp - fn


def _arrays(*xs):
    return [np.asarray(x, dtype=np.float64) for x in xs]


@metric("iou_fg", kind="pixel", task="localize", applies_to="fake",
        description="artifact-class IoU |P&G|/(|P|G|+1e-6), mean over fake images")
def iou_fg(tp, fp, fn, tn) -> np.ndarray:
    tp, fp, fn = _arrays(tp, fp, fn)
    return tp / (tp + fp + fn + EPS)


def iou_bg(tp, fp, fn, tn) -> np.ndarray:
    """Background-class IoU: TN / (TN + FP + FN + 1e-6)."""
    fp, fn, tn = _arrays(fp, fn, tn)
    return tn / (tn + fp + fn + EPS)


@metric("miou", kind="pixel", task="localize", applies_to="fake",
        description="LEGION mIoU: (background IoU + artifact IoU) / 2 per image, mean over fake images")
def miou(tp, fp, fn, tn) -> np.ndarray:
    return (iou_bg(tp, fp, fn, tn) + iou_fg(tp, fp, fn, tn)) / 2.0


@metric("f1", kind="pixel", task="localize", applies_to="fake",
        description="artifact-pixel F1 per image (1 when TP=FP=FN=0), mean over fake images")
def f1(tp, fp, fn, tn) -> np.ndarray:
    tp, fp, fn = _arrays(tp, fp, fn)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return np.where((tp + fp + fn) == 0, 1.0, f)


@metric("fp_area", kind="pixel", task="localize", applies_to="real", higher_is_better=False,
        description="fraction of pixels predicted as artifact on real images (lower is better)")
def fp_area(tp, fp, fn, tn) -> np.ndarray:
    tp, fp, fn, tn = _arrays(tp, fp, fn, tn)
    total = tp + fp + fn + tn
    return np.where(total > 0, (tp + fp) / np.maximum(total, 1), 0.0)
