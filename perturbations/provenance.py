"""Versions of everything that decides a perturbed pixel, for the results file."""

from __future__ import annotations

import functools
import re
from typing import Any

import cv2
import numpy as np
import PIL
from PIL import features

from bench.perturbations.albumentations_family import albumentations_version


@functools.lru_cache(maxsize=1)
def _opencv_libjpeg() -> str | None:
    """The JPEG library OpenCV was built with, from its build information."""
    m = re.search(r"^\s*JPEG:\s*(.+?)\s*$", cv2.getBuildInformation(), re.MULTILINE)
    return m.group(1) if m else None


def perturbation_provenance() -> dict[str, Any]:
    """Library versions behind the perturbations and the random streams.

    ``jpeg``, ``gaussian_blur`` and ``resize`` run in OpenCV (its bundled libjpeg for JPEG);
    ``gaussian_noise`` uses NumPy's PCG64 ``Generator.standard_normal`` (float32); images are
    decoded with Pillow (``bench.io.imageio``). Albumentations decides pixels only in
    ``albumentations(transform=...)`` conditions; its version (from package metadata, without
    importing it; None when not installed) is recorded in every result all the same, so the
    block has the same keys in every run and the writer needs no list of conditions.
    """
    return {
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "opencv_libjpeg": _opencv_libjpeg(),
        "pillow": PIL.__version__,
        "pillow_libjpeg": features.version("jpg"),
        "pillow_libjpeg_turbo": features.version("libjpeg_turbo"),
        "rng": "numpy PCG64 seeded by sha256(suite seed, sample id, condition key), first 8 bytes little-endian",
        "albumentations": albumentations_version(),
        "albumentations_seed": "albumentations(...) steps: transform.set_random_seed(int(rng.integers(2**63))), "
                               "one draw from that generator per step",
    }
