"""A small picture gallery per run, for the leaderboard's Samples page.

The subset is the same for every adapter of a suite (the first N sample ids in sha256 order), so
two adapters can be shown side by side. Layout under ``gallery/``: ``images/<safe_id>.jpg``
(clean image thumbnail, longest side <= 384 px), ``gt/<safe_id>.png`` (ground truth, 0/255),
``pred/<condition slug>/<safe_id>.png`` (binary prediction, 0/255, thumbnail size) and
``index.json``.
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

    cache = PredictionCache(cache_dir)
    keys_of = {sample.id: items for sample, items in jobs}
    threshold = float(suite.protocol["mask_threshold"])
    index = {"samples": [], "conditions": {c.key: safe_name(c.key) for c in conditions}}
    for sub in ("images", "gt", "pred"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for sample in gallery_subset([sample for sample, _ in jobs], n):
        sid = safe_name(sample.id)
        try:
            image = sample.load_image()
            h, w = image.shape[:2]
            th, tw = _thumb_size(h, w)
            gt = sample.load_mask(h, w)
        except SampleError:
            continue
        Image.fromarray(cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA)).save(
            out / "images" / f"{sid}.jpg", quality=90)
        _save_mask(out / "gt" / f"{sid}.png", gt, th, tw)
        for cond_key, key in keys_of[sample.id]:
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


def _save_mask(path: Path, mask: np.ndarray, th: int, tw: int) -> None:
    small = cv2.resize(mask.astype(np.uint8) * 255, (tw, th), interpolation=cv2.INTER_NEAREST)
    Image.fromarray(small).save(path)
