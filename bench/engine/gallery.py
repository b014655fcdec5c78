"""A small picture gallery per run, for the leaderboard's Samples page.

The subset is the same for every adapter of a suite (the first N sample ids in sha256 order), so
two adapters can be shown side by side. Layout under ``gallery/``: ``images/<safe_id>.jpg``
(clean image thumbnail, longest side <= 384 px), ``images/<condition slug>/<safe_id>.jpg`` (the
image each perturbed condition fed the model, thumbnail size), ``gt/<safe_id>.png`` (ground
truth, 0/255), ``pred/<condition slug>/<safe_id>.png`` (binary prediction, 0/255, thumbnail
size) and ``index.json``.

The perturbed thumbnail re-applies the condition with
:func:`bench.perturbations.apply_condition` to the full-resolution image, seeded by (suite
seed, sample id, condition) exactly as inference does, and only then shrinks it: it is the image
the model was fed, not a perturbation of the thumbnail. Only the first :data:`PERTURBED_N`
gallery samples get them (a run of the ``legion`` grid would otherwise publish 9 extra JPEGs per
sample).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image

from bench.engine.cache import PredictionCache
from bench.core.conditions import Condition
from bench.errors import SampleError
from bench.io.paths import write_json_atomic
from bench.results.schema import GALLERY_INDEX
from bench.suites import Suite
from bench.core.types import Sample

THUMB = 384
#: How many gallery samples also get a thumbnail of each perturbed condition's image.
PERTURBED_N = 8


def gallery_subset(samples: Sequence[Sample], n: int) -> list[Sample]:
    ranked = sorted(samples, key=lambda s: hashlib.sha256(s.id.encode("utf-8")).hexdigest())
    return [s for s in ranked if not s.error][:n]


def _thumb_size(h: int, w: int) -> tuple[int, int]:
    scale = min(1.0, THUMB / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def write_gallery(out: Path, jobs: Sequence[tuple[Sample, Sequence[tuple[str, str]]]],
                  conditions: Sequence[Condition], suite: Suite, cache_dir: Path, n: int) -> None:
    """``jobs``: (sample, [(condition key, prediction cache key)]) as the runner planned them."""
    from bench.io.paths import safe_name
    from bench.perturbations import apply_condition

    cache = PredictionCache(cache_dir)
    by_key = {c.key: c for c in conditions}
    keys_of = {sample.id: items for sample, items in jobs}
    threshold = float(suite.protocol["mask_threshold"])
    index = {"samples": [], "conditions": {c.key: safe_name(c.key) for c in conditions}}
    for sub in ("images", "gt", "pred"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for i, sample in enumerate(gallery_subset([sample for sample, _ in jobs], n)):
        sid = safe_name(sample.id)
        try:
            image = sample.load_image()
            h, w = image.shape[:2]
            th, tw = _thumb_size(h, w)
            gt = sample.load_mask(h, w)
        except SampleError:
            continue
        _save_thumb(out / "images" / f"{sid}.jpg", image, th, tw)
        _save_mask(out / "gt" / f"{sid}.png", gt, th, tw)
        for cond_key, key in keys_of[sample.id]:
            cond = by_key.get(cond_key)
            if i < PERTURBED_N and cond is not None and not cond.is_clean:
                try:  # the image this condition fed the model (same function and seed as inference)
                    seen = apply_condition(image, cond, suite_seed=suite.seed, sample_id=sample.id)
                except Exception:  # a perturbation that fails here failed the sample in inference too
                    seen = None
                if seen is not None:
                    d = out / "images" / index["conditions"][cond_key]
                    d.mkdir(exist_ok=True)
                    _save_thumb(d / f"{sid}.jpg", seen, th, tw)
            try:
                pred, ph, pw = cache.get(key)
            except KeyError:
                continue
            mask = pred.binary_mask(threshold)
            if mask is None:
                continue
            d = out / "pred" / index["conditions"][cond_key]
            d.mkdir(exist_ok=True)
            _save_mask(d / f"{sid}.png", mask, th, tw)
        index["samples"].append({"sample_id": sample.id, "safe_id": sid})
    cache.close()
    write_json_atomic(out / GALLERY_INDEX, index)


def _save_thumb(path: Path, image: np.ndarray, th: int, tw: int) -> None:
    Image.fromarray(cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA)).save(path, quality=90)


def _save_mask(path: Path, mask: np.ndarray, th: int, tw: int) -> None:
    small = cv2.resize(mask.astype(np.uint8) * 255, (tw, th), interpolation=cv2.INTER_NEAREST)
    Image.fromarray(small).save(path)
