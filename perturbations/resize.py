"""Down-scaling and back: ``resize(scale)``, as social-media pipelines shrink images.

The image is shrunk to (round(H*scale), round(W*scale)) — rounding half up, at least 1 pixel
— with OpenCV INTER_AREA (pixel-area averaging, the anti-aliased choice for shrinking), then
enlarged back to exactly H x W with INTER_LINEAR (bilinear, half-pixel centres), so the
model sees the original size with the detail of the smaller one.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from bench.perturbations.params import Param, perturbation


def downscaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(height, width) of the intermediate image: floor(x*scale + 0.5), at least 1."""
    return max(1, math.floor(height * scale + 0.5)), max(1, math.floor(width * scale + 0.5))


@perturbation(
    "resize",
    params={"scale": Param("float", "intermediate size as a fraction of the original", low=0.0, low_open=True,
                           high=1.0)},
    stochastic=False,
    summary="shrink by scale (INTER_AREA) and enlarge back to the original size (INTER_LINEAR)",
)
def resize(image: np.ndarray, *, rng: np.random.Generator | None = None, scale: float) -> np.ndarray:
    """RGB uint8 in, RGB uint8 of the same size out."""
    h, w = image.shape[:2]
    sh, sw = downscaled_size(h, w, scale)
    small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
