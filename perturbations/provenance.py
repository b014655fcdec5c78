"""Versions of everything that decides a perturbed pixel, for the results file."""

from __future__ import annotations

import functools
import re
from typing import Any

import cv2
import numpy as np
import PIL
from PIL import features


@functools.lru_cache(maxsize=1)
def _opencv_libjpeg() -> str | None:
    """The JPEG library OpenCV was built with, from its build information."""
    m = re.search(r"^\s*JPEG:\s*(.+?)\s*$", cv2.getBuildInformation(), re.MULTILINE)
    return m.group(1) if m else None


def perturbation_provenance() -> dict[str, Any]:
    """Library versions behind the perturbations and the random streams.

    ``jpeg``, ``gaussian_blur`` and ``resize`` run in OpenCV (its bundled libjpeg for JPEG);
    ``gaussian_noise`` uses NumPy's PCG64 ``Generator.standard_normal`` (float32); images are
    decoded with Pillow (``bench.io.imageio``). Albumentations is not used.
    """
    return {
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "opencv_libjpeg": _opencv_libjpeg(),
        "pillow": PIL.__version__,
        "pillow_libjpeg": features.version("jpg"),
        "pillow_libjpeg_turbo": features.version("libjpeg_turbo"),
        "rng": "numpy PCG64 seeded by sha256(suite seed, sample id, condition key), first 8 bytes little-endian",
    }
