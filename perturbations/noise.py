"""Additive Gaussian noise: ``gaussian_noise(sigma)``, sigma on the [0,1] intensity scale.

Definition (docs/protocol.md §3, LEGION and ImageNet-C alike): y = clip(x/255 + N(0, sigma), 0, 1),
then back to uint8. Choices pinned here:

- Noise is drawn independently per pixel and channel, as ``rng.standard_normal((H, W, 3),
  dtype=float32)`` in C order (row by row, R G B within a pixel), from the generator the
  runner derives from (suite seed, sample id, condition key). NumPy documents that a
  Generator's stream may change between NumPy versions, so results record NumPy's version.
- Rounding back to uint8 is round-half-to-even (``np.rint``) of 255*y. Truncation — what
  ``np.uint8(...)`` in imagecorruptions and ``tensor.byte()`` in torch pipelines do — would
  darken every image by half a grey level on average; rounding keeps the noise zero-mean.
  This can differ from a truncating implementation by 1 grey level per value.
- Clipping is the protocol: at sigma 0.3 on mid-grey the measured std of the change is ~70,
  not 76.5.

Arithmetic is done on the 0..255 scale, y255 = clip(x + 255*sigma*z, 0, 255), which is the
same formula multiplied through by 255; float32 keeps it fast (the normal draws dominate).
"""

from __future__ import annotations

import numpy as np

from bench.perturbations.params import Param, perturbation


@perturbation(
    "gaussian_noise",
    params={"sigma": Param("float", "noise std on the [0,1] intensity scale (0.1 = 25.5 grey levels)", low=0.0)},
    stochastic=True,
    summary="additive Gaussian noise, sigma on [0,1], clipped, rounded half-to-even to uint8",
)
def gaussian_noise(image: np.ndarray, *, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """RGB uint8 in, RGB uint8 out: x + N(0, (255*sigma)^2) per value, clipped to 0..255, rounded."""
    y = rng.standard_normal(image.shape, dtype=np.float32)
    y *= np.float32(255.0 * sigma)
    y += image
    np.clip(y, 0.0, 255.0, out=y)
    np.rint(y, out=y)
    return y.astype(np.uint8)
