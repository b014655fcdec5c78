"""``template``: a training-free explainer that puts its own forensic heatmap into words.

It is the honest floor for explanation metrics, as ``empty`` is for masks: no language model,
only a template filled from measurements. Per image:

1. heatmaps from :mod:`bench.adapters.forensic` (float32 H x W in [0, 1]):
   ``noise_inconsistency_map`` (local noise level unlike the rest of the image) and/or
   ``ela_map`` (error level after JPEG re-compression unlike the rest of the image); config
   ``signal`` = ``both`` (default; the heatmap is their per-pixel maximum), ``noise`` or ``ela``;
2. regions: ``heatmap > threshold`` (default 0.5, strict, as the harness binarises heatmaps),
   8-connected components (``cv2.connectedComponentsWithStats``); components smaller than
   ``min_area`` (fraction of the image, default 0.001) are not described; the ``max_regions``
   largest (default 3) are;
3. words, in SynthScars' caption layout ("Upon examining the image. I have found: ...
   To elaborate, I have found the following artifacts. <phrase>:<explanation>..."): where
   (the 3 x 3 grid cell of the region's centroid: ``upper-left`` ... ``centre`` ...
   ``lower-right``), how large (percent of the image), and which signal dominates inside the
   region (noise inconsistency or compression inconsistency). No region -> a sentence saying
   no artifact was found.

Outputs: ``heatmap`` (the combined map; the harness thresholds it with the protocol's
``mask_threshold``), ``score`` = the heatmap's ``score_quantile`` quantile (default 0.995, as
:func:`bench.adapters.forensic.heatmap_score`), ``explanation``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from bench.adapters import register_adapter
from bench.adapters._util import TRAINING_FREE_CARD
from bench.errors import SampleError
from bench.core.types import Adapter, ModelInput, Prediction

SIGNALS = ("both", "noise", "ela")
#: Signal name -> (function name in bench.adapters.forensic, noun, why it matters) for the words.
SIGNAL_INFO: dict[str, tuple[str, str, str]] = {
    "noise": ("noise_inconsistency_map", "noise inconsistency",
              "its local noise level differs from the rest of the image"),
    "ela": ("ela_map", "compression inconsistency",
            "its error level after JPEG re-compression differs from the rest of the image"),
}
GRID = (("upper-left", "upper-centre", "upper-right"),
        ("centre-left", "centre", "centre-right"),
        ("lower-left", "lower-centre", "lower-right"))
NO_ARTIFACT = ("Upon examining the image. I have found: no artifact; the noise and compression "
               "statistics are consistent across the image.")


@dataclass(frozen=True)
class FoundRegion:
    """One described region: grid position, area fraction in [0, 1], dominant signal."""

    where: str
    area: float
    signal: str
    bbox: tuple[int, int, int, int]  # x, y, w, h in pixels


def compute_maps(image: np.ndarray, signals: Sequence[str]) -> dict[str, np.ndarray]:
    """Forensic maps of an RGB uint8 H x W x 3 image: {signal: float32 H x W in [0, 1]}."""
    from bench.adapters import forensic  # imported here: tests replace this function

    return {s: np.asarray(getattr(forensic, SIGNAL_INFO[s][0])(image), dtype=np.float32) for s in signals}


def grid_cell(cx: float, cy: float, width: int, height: int) -> str:
    """The 3 x 3 grid phrase of point (cx, cy) in pixels (x right, y down)."""
    col = min(2, max(0, int(3 * cx / width)))
    row = min(2, max(0, int(3 * cy / height)))
    return GRID[row][col]


def find_regions(maps: Mapping[str, np.ndarray], threshold: float = 0.5, min_area: float = 0.001,
                 max_regions: int = 3) -> tuple[np.ndarray, list[FoundRegion]]:
    """(combined heatmap, the largest regions of ``heatmap > threshold``, largest first)."""
    import cv2

    heat = np.maximum.reduce([np.asarray(m, dtype=np.float32) for m in maps.values()])
    h, w = heat.shape
    mask = (heat > threshold).astype(np.uint8)
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    regions: list[FoundRegion] = []
    order = sorted(range(1, n), key=lambda i: -int(stats[i, cv2.CC_STAT_AREA]))
    for i in order[:max(0, max_regions)]:
        area = float(stats[i, cv2.CC_STAT_AREA]) / float(h * w)
        if area < min_area:
            break
        inside = labels == i
        signal = max(maps, key=lambda s: float(np.mean(maps[s][inside])))
        x, y, bw, bh = (int(stats[i, k]) for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP,
                                                    cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
        regions.append(FoundRegion(grid_cell(*centroids[i], w, h), area, signal, (x, y, bw, bh)))
    return heat, regions


def _pct(area: float) -> str:
    p = 100.0 * area
    return f"{p:.1f}%" if p >= 0.1 else "less than 0.1%"


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def describe(regions: Sequence[FoundRegion]) -> str:
    """The SynthScars-style explanation of ``regions`` (or :data:`NO_ARTIFACT`)."""
    if not regions:
        return NO_ARTIFACT
    places = list(dict.fromkeys(r.where for r in regions))
    kinds = list(dict.fromkeys(SIGNAL_INFO[r.signal][1] for r in regions))
    n = len(regions)
    summary = (f"{n} region{'s' if n > 1 else ''} with {_join(kinds)}, in the {_join(places)} "
               f"of the image, which suggest{'s' if n == 1 else ''} local synthesis or editing.")
    parts = []
    for r in regions:
        _, kind, why = SIGNAL_INFO[r.signal]
        phrase = f"The {r.where} region"
        parts.append(f"{phrase}:{phrase}, covering about {_pct(r.area)} of the image, shows a {kind}: {why}.")
    return (f"Upon examining the image. I have found: {summary}\n"
            f"To elaborate, I have found the following artifacts. " + "".join(parts))


@register_adapter
class TemplateExplainer(Adapter):
    """Forensic heatmap (noise / ELA) turned into a templated explanation: the explanation floor."""

    name: ClassVar[str] = "template"
    version: ClassVar[str] = "1"
    tasks: ClassVar[frozenset[str]] = frozenset({"detect", "localize", "explain"})
    requirements: ClassVar[dict[str, Any]] = {"batch_size": 8, "num_gpus": 0, "gpu_memory_gb": 0}
    summary: ClassVar[str] = "training-free: noise/ELA heatmap described in words (explanation floor)"
    card: ClassVar[dict[str, str | None]] = TRAINING_FREE_CARD

    DEFAULTS: ClassVar[dict[str, Any]] = {"signal": "both", "threshold": 0.5, "min_area": 0.001, "max_regions": 3,
                                          "score_quantile": 0.995}
    config_keys: ClassVar[frozenset[str]] = frozenset(DEFAULTS)

    def __init__(self, **config: Any):
        unknown = set(config) - set(self.DEFAULTS)
        if unknown:
            raise ValueError(f"template: unknown option(s) {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(self.DEFAULTS)})")
        cfg = {**self.DEFAULTS, **config}
        if cfg["signal"] not in SIGNALS:
            raise ValueError(f"template: signal must be one of {', '.join(SIGNALS)}, got {cfg['signal']!r}")
        cfg["threshold"] = float(cfg["threshold"])
        cfg["min_area"] = float(cfg["min_area"])
        cfg["max_regions"] = int(cfg["max_regions"])
        cfg["score_quantile"] = float(cfg["score_quantile"])
        super().__init__(**cfg)

    @property
    def signals(self) -> tuple[str, ...]:
        s = self.config["signal"]
        return ("noise", "ela") if s == "both" else (s,)

    def predict_one(self, item: ModelInput) -> Prediction:
        image = item.image
        where = f"sample {item.sample_id} ({item.file_name})"
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise SampleError(where, f"expected an RGB uint8 H x W x 3 image, got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        maps = compute_maps(image, self.signals)
        for s, m in maps.items():
            if m.shape != (h, w):
                raise SampleError(where, f"{s} map is {m.shape}, image is {(h, w)} (H x W)")
            if m.size and not (np.all(np.isfinite(m)) and m.min() >= 0.0 and m.max() <= 1.0):
                raise SampleError(where, f"{s} map has values outside [0, 1]")
        heat, regions = find_regions(maps, self.config["threshold"], self.config["min_area"],
                                     self.config["max_regions"])
        # image score as bench.adapters.forensic scores its heatmaps: a high quantile, not the max pixel
        score = float(np.clip(np.quantile(heat, self.config["score_quantile"]), 0.0, 1.0)) if heat.size else 0.0
        return Prediction(heatmap=heat.astype(np.float32), score=score,
                          explanation=describe(regions),
                          extras={"regions": [asdict(r) for r in regions]})

    def predict(self, batch: Sequence[ModelInput]) -> list[Prediction]:
        """One Prediction per image; a bad image or map fails only that image."""
        from bench.adapters._util import failed_prediction

        out = []
        for item in batch:
            try:
                out.append(self.predict_one(item))
            except SampleError as exc:
                out.append(failed_prediction(str(exc)))
        return out
