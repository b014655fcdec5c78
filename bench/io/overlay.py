"""Mask overlays for looking at predictions: ground truth vs prediction on the image.

Everything here is RGB uint8 H x W x 3 in and out; masks are bool H x W at the image's size.
Colours are from the Okabe-Ito palette (distinguishable with the common colour-vision
deficiencies):

- ground truth alone (``overlay_gt``): yellow;
- prediction vs ground truth (``overlay_prediction``): true positive pixels green, false
  positive vermillion, false negative (missed artifact) blue;
- prediction without a ground truth: vermillion.

A tinted pixel is ``round((1 - alpha) * pixel + alpha * colour)`` per channel; untinted pixels
are unchanged.
"""

from __future__ import annotations

import numpy as np

RGB = tuple[int, int, int]

GT_COLOR: RGB = (240, 228, 66)     # yellow
TP_COLOR: RGB = (0, 158, 115)      # bluish green
FP_COLOR: RGB = (213, 94, 0)       # vermillion
FN_COLOR: RGB = (0, 114, 178)      # blue
DEFAULT_ALPHA = 0.5

def _check(image: np.ndarray, *masks: np.ndarray | None) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"overlay expects an RGB uint8 H x W x 3 image, got {img.dtype} {img.shape}")
    for m in masks:
        if m is None:
            continue
        m = np.asarray(m)
        if m.dtype != bool:
            raise ValueError(f"overlay expects bool masks, got {m.dtype}")
        if m.shape != img.shape[:2]:
            raise ValueError(f"mask is {m.shape} but the image is {img.shape[:2]} (H x W)")
    return img


def tint(image: np.ndarray, mask: np.ndarray, color: RGB, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """A copy of ``image`` with the ``mask`` pixels blended towards ``color`` by ``alpha``."""
    img = _check(image, mask)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = img.copy()
    m = np.asarray(mask)
    if m.any():
        px = img[m].astype(np.float64)
        blended = (1.0 - alpha) * px + alpha * np.asarray(color, dtype=np.float64)
        out[m] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def overlay_gt(image: np.ndarray, gt: np.ndarray, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """The ground-truth artifact mask tinted yellow on the image."""
    return tint(image, gt, GT_COLOR, alpha)


def overlay_prediction(image: np.ndarray, pred: np.ndarray, gt: np.ndarray | None = None,
                       alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """The predicted mask on the image; with ``gt``, coloured by agreement (TP/FP/FN)."""
    img = _check(image, pred, gt)
    pred = np.asarray(pred)
    if gt is None:
        return tint(img, pred, FP_COLOR, alpha)
    gt = np.asarray(gt)
    out = tint(img, pred & gt, TP_COLOR, alpha)
    out = tint(out, pred & ~gt, FP_COLOR, alpha)
    return tint(out, gt & ~pred, FN_COLOR, alpha)


def side_by_side(*images: np.ndarray, gap: int = 4) -> np.ndarray:
    """Images of the same height next to each other, separated by ``gap`` white columns."""
    if not images:
        raise ValueError("side_by_side needs at least one image")
    h = images[0].shape[0]
    for im in images:
        _check(im)
        if im.shape[0] != h:
            raise ValueError(f"side_by_side needs equal heights, got {[i.shape[0] for i in images]}")
    parts: list[np.ndarray] = []
    for k, im in enumerate(images):
        if k:
            parts.append(np.full((h, gap, 3), 255, dtype=np.uint8))
        parts.append(np.asarray(im))
    return np.concatenate(parts, axis=1)
