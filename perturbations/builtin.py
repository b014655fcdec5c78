"""Built-in perturbations; importing this module registers them.

==================  =========================================  ==========
name                parameters                                 stochastic
==================  =========================================  ==========
``jpeg``            quality (int 1..100)                       no
``jpeg_bgr_swap``   quality (int 1..100) — compatibility only  no
``gaussian_noise``  sigma (float >= 0, [0,1] scale)            yes
``gaussian_blur``   kernel (odd int >= 3) or sigma (float > 0) no
``resize``          scale (float in (0, 1])                    no
``albumentations``  transform (a pixel-level albumentations    yes
                    class) and that class's parameters
==================  =========================================  ==========

Each lives in its own module (``bench.perturbations.jpeg``, ``.noise``, ``.blur``, ``.resize``,
``.albumentations_family``), which documents its exact conventions. Registering
``albumentations`` does not import albumentations: a condition that uses it does.
"""

from bench.perturbations.albumentations_family import albumentations  # noqa: F401
from bench.perturbations.blur import gaussian_blur  # noqa: F401
from bench.perturbations.jpeg import jpeg, jpeg_bgr_swap  # noqa: F401
from bench.perturbations.noise import gaussian_noise  # noqa: F401
from bench.perturbations.resize import resize  # noqa: F401
