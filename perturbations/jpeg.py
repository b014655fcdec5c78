"""JPEG re-encoding: ``jpeg(quality)`` and the compatibility variant ``jpeg_bgr_swap(quality)``.

Encoding goes through OpenCV's bundled libjpeg-turbo with every choice pinned: quality q
(the IJG scaling of the standard Annex K tables, baseline, clamped to 1..255 — what
``jpeg_set_quality(q, force_baseline=TRUE)`` produces and what PIL's ``save(quality=q)``
produces), 4:2:0 chroma subsampling, no Huffman optimisation, not progressive. Decoding
uses libjpeg's defaults (integer IDCT, fancy upsampling). The result is pixel-identical to
``PIL.Image.save(quality=q, subsampling=2)`` + ``Image.open`` (tested); OpenCV is used
because it is faster here (~6 ms vs ~10 ms for 1024x768).

Channel order: ``cv2.imencode`` reads its input as BGR, so the RGB image is converted to
BGR first — otherwise the RGB->YCbCr conversion weights red as blue and vice versa.
"""

from __future__ import annotations

import cv2
import numpy as np

from bench.perturbations.params import Param, perturbation

_QUALITY = {"quality": Param("int", "JPEG quality on libjpeg's 1..100 scale", low=1, high=100)}

# OpenCV 5 names the BGR read mode IMREAD_COLOR_BGR; 4.x only has IMREAD_COLOR (also BGR).
_IMREAD_BGR = getattr(cv2, "IMREAD_COLOR_BGR", cv2.IMREAD_COLOR)


def encode_jpeg(image: np.ndarray, quality: int, *, swap_channels: bool = False) -> bytes:
    """JPEG bytes of an RGB uint8 image at ``quality``, standard tables, 4:2:0, baseline.

    ``swap_channels=True`` hands the RGB array to OpenCV unconverted (the bug reproduced by
    ``jpeg_bgr_swap``): the encoder then takes red for blue.
    """
    src = image if swap_channels else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    flags = [
        cv2.IMWRITE_JPEG_QUALITY, int(quality),
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
        cv2.IMWRITE_JPEG_OPTIMIZE, 0,
        cv2.IMWRITE_JPEG_PROGRESSIVE, 0,
    ]
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(src), flags)
    if not ok:  # pragma: no cover - OpenCV fails only on unusable input, refused before
        raise RuntimeError(f"OpenCV could not JPEG-encode an image of shape {image.shape}")
    return buf.tobytes()


def decode_jpeg(data: bytes, *, swap_channels: bool = False) -> np.ndarray:
    """Decode JPEG bytes made by :func:`encode_jpeg` back to the caller's channel order."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), _IMREAD_BGR)
    if bgr is None:  # pragma: no cover
        raise RuntimeError("OpenCV could not decode its own JPEG")
    return bgr if swap_channels else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@perturbation(
    "jpeg",
    params=_QUALITY,
    stochastic=False,
    summary="JPEG encode/decode at exactly this quality (libjpeg standard tables, 4:2:0, RGB-correct)",
)
def jpeg(image: np.ndarray, *, rng: np.random.Generator | None = None, quality: int) -> np.ndarray:
    """Re-encode the RGB uint8 image as JPEG at ``quality`` and decode it (RGB uint8 out)."""
    return decode_jpeg(encode_jpeg(image, quality))


@perturbation(
    "jpeg_bgr_swap",
    params=_QUALITY,
    stochastic=False,
    summary="COMPATIBILITY ONLY: JPEG with red/blue swapped in the colour transform "
    "(albumentations ImageCompression, LEGION's kornia run)",
)
def jpeg_bgr_swap(image: np.ndarray, *, rng: np.random.Generator | None = None, quality: int) -> np.ndarray:
    """JPEG as albumentations 2.0.8 ``A.ImageCompression`` does it: the RGB array goes to
    ``cv2.imencode`` unconverted, so the encoder's RGB->YCbCr step treats R as B.

    The output keeps the input's channel order, but luma and chroma were computed from
    swapped channels, so colour errors differ from a correct encode (by tens of grey levels
    on saturated colours). LEGION's robustness run had the same swap (a BGR image fed to
    kornia's RGB JPEG); kornia's differentiable JPEG is itself not libjpeg, so this variant
    reproduces the swap, not kornia's codec. Use only to reproduce such published numbers;
    ``jpeg`` is the faithful perturbation.
    """
    return decode_jpeg(encode_jpeg(image, quality, swap_channels=True), swap_channels=True)
