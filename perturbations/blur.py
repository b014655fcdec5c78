"""Gaussian blur, in the two conventions benchmarks use.

``gaussian_blur(kernel=k)`` — LEGION's convention: exactly ``cv2.GaussianBlur(img, (k, k),
sigmaX=0)`` on the uint8 image (OpenCV's bit-exact fixed-point path, border
BORDER_REFLECT_101). With sigma 0 OpenCV derives sigma = 0.3*((k-1)/2 - 1) + 0.8
(k=9 -> 1.7, k=15 -> 2.6), EXCEPT for k = 3, 5, 7, where it uses fixed binomial kernels
(k=5: [1 4 6 4 1]/16, i.e. sigma 1.0, not the 1.1 of the formula). So passing the formula's
sigma explicitly (as one must with albumentations, whose sigma=0 is broken) reproduces k=9
and k=15 within 1 grey level but differs by up to ~3 grey levels at k=5. Calling OpenCV with
sigma 0, as here, is exact for every k.

``gaussian_blur(sigma=s)`` — ImageNet-C's convention (``imagecorruptions`` calls
``skimage.filters.gaussian(x/255, sigma=s)``, i.e. ``scipy.ndimage.gaussian_filter`` with
truncate=4.0 and mode 'nearest'): kernel size 2*int(4*s + 0.5) + 1 (s=1 -> 9, s=6 -> 49),
border replicated (BORDER_REPLICATE = scipy 'nearest'), computed in float32 with OpenCV and
rounded half-to-even to uint8. imagecorruptions truncates with ``np.uint8`` instead, so it
can be 1 grey level lower.
"""

from __future__ import annotations

import cv2
import numpy as np

from bench.perturbations.params import Param, perturbation


def opencv_sigma_for_kernel(kernel: int) -> float:
    """The sigma OpenCV derives from an odd kernel size when sigma <= 0 (used for k >= 9)."""
    return 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8


def kernel_for_sigma(sigma: float, truncate: float = 4.0) -> int:
    """Kernel size scipy/skimage use for ``sigma``: radius int(truncate*sigma + 0.5)."""
    return 2 * int(truncate * sigma + 0.5) + 1


@perturbation(
    "gaussian_blur",
    params={
        "kernel": Param("int", "odd kernel size; sigma derived by OpenCV (LEGION)", low=3, odd=True, required=False),
        "sigma": Param("float", "std in pixels; kernel 2*int(4*sigma+0.5)+1 (ImageNet-C)", low=0.0,
                       low_open=True, required=False),
    },
    exactly_one_of=("kernel", "sigma"),
    stochastic=False,
    summary="Gaussian blur: kernel=k as cv2.GaussianBlur(img,(k,k),0); sigma=s as ImageNet-C/skimage",
)
def gaussian_blur(
    image: np.ndarray, *, rng: np.random.Generator | None = None, kernel: int | None = None,
    sigma: float | None = None,
) -> np.ndarray:
    """RGB uint8 in, RGB uint8 out; give exactly one of ``kernel`` or ``sigma``."""
    if kernel is not None:
        return cv2.GaussianBlur(image, (kernel, kernel), sigmaX=0, sigmaY=0)
    assert sigma is not None
    k = kernel_for_sigma(sigma)
    out = cv2.GaussianBlur(image.astype(np.float32), (k, k), sigmaX=sigma, sigmaY=sigma,
                           borderType=cv2.BORDER_REPLICATE)
    np.rint(out, out=out)
    np.clip(out, 0, 255, out=out)  # a weighted mean of 0..255 stays in range; guards float error
    return out.astype(np.uint8)
