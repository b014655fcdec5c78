"""Image perturbations, registered by name; each is deterministic given its generator.

A perturbation is a function ``fn(image, *, rng, **params) -> image``: RGB uint8 H x W x 3 in,
RGB uint8 of the same size out. ``rng`` is a ``numpy.random.Generator`` derived from
(suite seed, sample id, condition key) only (see ``bench.core.conditions.rng_for``); deterministic
perturbations ignore it. Register with ``@register_perturbation("name", params={...})``.
``albumentations(transform=NAME,...)`` wraps any pixel-level albumentations transform
(``bench.perturbations.albumentations_family``; albumentations is imported only when used).

Also exported: ``canonical_condition`` (check a condition, canonical parameter types),
``PRESETS`` / ``preset_conditions`` / ``severity_of`` (``legion``, ``imagenet-c``),
``robustness_summary`` / ``format_robustness_table`` and ``perturbation_provenance``.
"""

from __future__ import annotations

if __name__ != "bench.perturbations":  # this folder is the sub-package bench.perturbations (pyproject package-dir)
    raise ImportError(f"{__name__!r} is not a package of its own: import bench.perturbations")

import numpy as np

from bench.core.conditions import Condition, rng_for
from bench.core.registry import PERTURBATIONS, register_perturbation  # noqa: F401


def apply_condition(image: np.ndarray, condition: Condition, *, suite_seed: int, sample_id: str) -> np.ndarray:
    """Apply every step of ``condition`` in order. The clean condition returns ``image`` itself.

    One generator per (seed, sample, condition) is shared by the chain's steps in order.
    """
    if condition.is_clean:
        return image
    rng = rng_for(suite_seed, sample_id, condition.key)
    out = image
    for step in condition.steps:
        fn = PERTURBATIONS.get(step.name)
        out = fn(out, rng=rng, **step.as_dict())
        if out.shape != image.shape or out.dtype != np.uint8:
            raise RuntimeError(f"perturbation {step.key} returned {out.dtype} {out.shape}, expected uint8 {image.shape}")
    return out


# Built-in perturbations register on import.
from bench.perturbations import builtin  # noqa: E402,F401
from bench.perturbations.params import canonical_condition  # noqa: E402,F401
from bench.perturbations.presets import PRESETS, preset_conditions, severity_of  # noqa: E402,F401
from bench.perturbations.provenance import perturbation_provenance  # noqa: E402,F401
