"""Training-free forensic detectors: error-level analysis (``ela``) and local noise-level
inconsistency (``noise``).

Both produce a heatmap (float32 H x W in [0, 1], at the input's size) that measures how much
a neighbourhood departs from the rest of the SAME image, on a fixed logarithmic scale::

    heat = clip(log(ratio) / log(ratio_at_one), 0, 1)

where ``ratio`` compares the local statistic with the image's typical (median) value, each
with a small additive ``floor`` so near-zero statistics cannot explode. The scale is fixed,
not stretched per image: an image whose statistic is the same everywhere gets heat ~0 (no
artifact claimed), and ``heat > 0.5`` (the harness's mask threshold) means the local value is
more than ``sqrt(ratio_at_one)`` times the typical one. Normalising by the image's own median
is deliberate: absolute error and noise levels depend on the camera, the compression history
and the content, while an artifact shows as an *inconsistency* within one image.

The image score (probability-like fakeness in [0, 1]) is a high quantile of the heatmap
(:func:`heatmap_score`, default the 99.5th percentile): an image is as suspicious as its most
suspicious half-percent of pixels.

Inputs are RGB uint8 H x W x 3. Everything is vectorised with OpenCV / numpy (a 1024 x 1024
image takes a few tens of milliseconds per detector).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Sequence

import cv2
import numpy as np

from bench.adapters import register_adapter
from bench.adapters._util import TRAINING_FREE_CARD
from bench.errors import SampleError
from bench.core.types import Adapter, ModelInput, Prediction

#: Immerkaer's noise-estimation kernel (1996), divided by 6 so that for i.i.d. noise of std s
#: the response also has std s (the kernel's L2 norm is 1). It is the outer product of
#: [1, -2, 1] with itself, so it cancels any image content that is locally linear in x or in y
#: (illumination gradients, smooth shading) and leaves mostly sensor noise and fine texture.
NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32) / 6.0
#: Median absolute deviation -> standard deviation for a Gaussian (1 / Phi^-1(3/4)).
MAD_TO_STD = 1.4826


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"expected an RGB uint8 H x W x 3 image, got {desc}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"empty image of shape {image.shape}")
    return image


def _log_ratio_heat(ratio: np.ndarray, ratio_at_one: float) -> np.ndarray:
    """``clip(log(ratio) / log(ratio_at_one), 0, 1)`` as float32."""
    if not ratio_at_one > 1.0:
        raise ValueError(f"ratio_at_one must be > 1, got {ratio_at_one}")
    heat = np.log(np.maximum(ratio, 1e-12)) / np.float32(math.log(ratio_at_one))
    return np.clip(heat, 0.0, 1.0).astype(np.float32)


def luminance(image: np.ndarray) -> np.ndarray:
    """BT.601 luma (the Y that JPEG encodes), uint8 H x W, from RGB uint8."""
    return cv2.cvtColor(_check_image(image), cv2.COLOR_RGB2GRAY)


# ----------------------------------------------------------------------------------------
# error-level analysis
# ----------------------------------------------------------------------------------------
def ela_error(image: np.ndarray, quality: int = 95) -> np.ndarray:
    """Per-pixel error level: ``|Y - JPEG_quality(Y)|`` in grey levels, float32 H x W.

    Only the luminance Y is re-saved (a greyscale baseline JPEG via OpenCV's libjpeg): colour
    ELA is dominated by chroma-subsampling errors along every colour edge, which say nothing
    about the compression history (on the demo they raised the false-positive area on real
    images from 0.15% to 4%)."""
    y = luminance(image)
    ok, buf = cv2.imencode(".jpg", y, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - libjpeg does not fail on a valid uint8 array
        raise RuntimeError("JPEG encoding failed")
    resaved = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return cv2.absdiff(y, resaved).astype(np.float32)


def ela_map(image: np.ndarray, quality: int = 95, window: int = 15, floor: float = 0.1,
            ratio_at_one: float = 3.0) -> np.ndarray:
    """Error-level-analysis heatmap, float32 H x W in [0, 1].

    1. ``e`` = :func:`ela_error` (re-save the luminance at JPEG ``quality``, absolute difference);
    2. local aggregation: mean of ``e`` over a ``window`` x ``window`` box (``cv2.blur``,
       reflected borders);
    3. ``m`` = median of the local means over the image (the error level of this image's
       consistent content; taken on every 4th row and column, which changes nothing for a
       map already averaged over 15 px);
    4. ``heat = clip(log((e_local + floor) / (m + floor)) / log(ratio_at_one), 0, 1)``.

    One-sided, as ELA is read: regions that lose MORE on re-compression than the rest of the
    image (content that did not go through the image's earlier JPEG save, or that carries
    high-frequency patterns) are hot. ``floor`` is in grey levels. Defaults: heat > 0.5 where
    the local error level exceeds sqrt(3) = 1.73 times the typical one.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    local = cv2.blur(ela_error(image, quality), (int(window), int(window)))
    typical = float(np.median(local[::4, ::4]))
    ratio = (local + np.float32(floor)) / np.float32(typical + floor)
    return _log_ratio_heat(ratio, ratio_at_one)


# ----------------------------------------------------------------------------------------
# noise-level inconsistency
# ----------------------------------------------------------------------------------------
def block_noise_sigma(image: np.ndarray, block: int = 16, clip_guard: bool = True) -> np.ndarray:
    """Robust noise std (grey levels) per ``block`` x ``block`` tile, float32 (ceil(H/b), ceil(W/b)).

    Residual ``r`` = luminance filtered by :data:`NOISE_KERNEL`; per tile
    ``sigma = 1.4826 * median(|r|)`` (a median, so edges and texture covering less than half
    a tile do not count). The image is padded by reflection to whole tiles. With
    ``clip_guard``, tiles where more than half the pixels are clipped (Y <= 2 or Y >= 253)
    get NaN: saturated areas have no noise for reasons that are not artifacts."""
    if block < 2:
        raise ValueError(f"block must be >= 2, got {block}")
    y = luminance(image)
    h, w = y.shape
    resid = np.abs(cv2.filter2D(y.astype(np.float32), -1, NOISE_KERNEL, borderType=cv2.BORDER_REFLECT_101))
    ph, pw = (-h) % block, (-w) % block
    if ph or pw:
        resid = cv2.copyMakeBorder(resid, 0, ph, 0, pw, cv2.BORDER_REFLECT_101)
    nh, nw = resid.shape[0] // block, resid.shape[1] // block
    tiles = resid.reshape(nh, block, nw, block).transpose(0, 2, 1, 3).reshape(nh, nw, block * block)
    sigma = (MAD_TO_STD * np.median(tiles, axis=2)).astype(np.float32)
    if clip_guard:
        clipped = ((y <= 2) | (y >= 253)).astype(np.float32)
        if ph or pw:
            clipped = cv2.copyMakeBorder(clipped, 0, ph, 0, pw, cv2.BORDER_REFLECT_101)
        frac = clipped.reshape(nh, block, nw, block).mean(axis=(1, 3))
        sigma[frac > 0.5] = np.nan
    return sigma


def noise_inconsistency_map(image: np.ndarray, block: int = 16, floor: float = 0.25,
                            ratio_at_one: float = 4.0, clip_guard: bool = True) -> np.ndarray:
    """Local noise-level inconsistency heatmap, float32 H x W in [0, 1].

    1. per-tile robust noise std ``s`` (:func:`block_noise_sigma`);
    2. ``g`` = median of ``s`` over the image's tiles (its global noise level);
    3. per tile ``|log((s + floor) / (g + floor))| / log(ratio_at_one)``, clipped to [0, 1]
       (two-sided: a region much cleaner than the rest - resampled, blurred, re-rendered - is
       as suspicious as a much noisier one or one with a periodic pattern);
    4. tiles resized to pixels bilinearly (tile centres keep their value).

    ``floor`` (grey levels) keeps heavily compressed images, whose residual is near zero
    everywhere, from turning rounding noise into large ratios. Defaults: heat > 0.5 where the
    local noise level is more than 2x or less than 1/2 of the global one (after the floor).
    Saturated tiles (see ``clip_guard``) get heat 0.
    """
    if not ratio_at_one > 1.0:
        raise ValueError(f"ratio_at_one must be > 1, got {ratio_at_one}")
    sigma = block_noise_sigma(image, block, clip_guard)
    h, w = image.shape[:2]
    valid = np.isfinite(sigma)
    if not valid.any():
        return np.zeros((h, w), np.float32)
    g = float(np.median(sigma[valid]))
    ratio = (np.where(valid, sigma, g) + np.float32(floor)) / np.float32(g + floor)
    dev = np.abs(np.log(ratio)) / np.float32(math.log(ratio_at_one))
    nh, nw = sigma.shape
    up = cv2.resize(dev.astype(np.float32), (nw * block, nh * block), interpolation=cv2.INTER_LINEAR)
    return np.clip(up[:h, :w], 0.0, 1.0).astype(np.float32)


def heatmap_score(heatmap: np.ndarray, quantile: float = 0.995) -> float:
    """Image-level fakeness in [0, 1]: the ``quantile`` of the heatmap's values."""
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    return float(np.clip(np.quantile(heatmap, quantile), 0.0, 1.0))


# ----------------------------------------------------------------------------------------
# adapters
# ----------------------------------------------------------------------------------------
class _HeatmapDetector(Adapter):
    """Shared adapter body: one map function + :func:`heatmap_score`.

    ``config`` = the map function's parameters (defaults filled in, so results record them)
    plus ``score_quantile``. Unknown config keys are refused."""

    tasks: ClassVar[frozenset[str]] = frozenset({"detect", "localize"})
    requirements: ClassVar[dict[str, Any]] = {"batch_size": 8, "num_gpus": 0, "gpu_memory_gb": 0}
    card: ClassVar[dict[str, str | None]] = TRAINING_FREE_CARD
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **config: Any):
        unknown = set(config) - set(self.defaults) - {"score_quantile"}
        if unknown:
            raise ValueError(
                f"adapter {self.name!r}: unknown config {', '.join(sorted(unknown))} "
                f"(known: {', '.join(sorted(self.defaults))}, score_quantile)"
            )
        super().__init__(**{**self.defaults, "score_quantile": 0.995, **config})

    @staticmethod
    def heatmap(image: np.ndarray, **params: Any) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def predict(self, batch: Sequence[ModelInput]) -> list[Prediction]:
        params = {k: v for k, v in self.config.items() if k != "score_quantile"}
        out = []
        for item in batch:
            try:
                heat = type(self).heatmap(item.image, **params)
            except ValueError as exc:
                raise SampleError(item.sample_id, f"{self.name}: {exc}") from None
            out.append(Prediction(heatmap=heat, score=heatmap_score(heat, self.config["score_quantile"])))
        return out


@register_adapter
class ELA(_HeatmapDetector):
    """Error-level analysis: luminance re-saved as JPEG, local error level vs the image's median."""

    name = "ela"
    version = "1"
    summary = "error-level analysis (JPEG re-save, local error vs image median); no weights"
    defaults = {"quality": 95, "window": 15, "floor": 0.1, "ratio_at_one": 3.0}
    config_keys = frozenset({*defaults, "score_quantile"})

    @staticmethod
    def heatmap(image: np.ndarray, **params: Any) -> np.ndarray:
        return ela_map(image, **params)


@register_adapter
class NoiseInconsistency(_HeatmapDetector):
    """Local noise level (MAD of a high-pass residual per tile) vs the image's global level."""

    name = "noise"
    version = "1"
    summary = "local noise-level inconsistency (high-pass residual, MAD per tile); no weights"
    defaults = {"block": 16, "floor": 0.25, "ratio_at_one": 4.0, "clip_guard": True}
    config_keys = frozenset({*defaults, "score_quantile"})

    @staticmethod
    def heatmap(image: np.ndarray, **params: Any) -> np.ndarray:
        return noise_inconsistency_map(image, **params)
