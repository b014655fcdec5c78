"""A training-free example adapter: high-frequency energy as an artifact heatmap.

Everything an adapter needs:
- subclass ``bench.core.types.Adapter``; set ``name``, ``version``, ``tasks``, ``requirements``;
- keep every option that changes outputs in ``self.config`` (it is recorded with the results
  and is part of the prediction cache key);
- load weights in ``load(device)`` (import heavy libraries there, not at module import);
- ``predict(batch)`` returns one ``Prediction`` per ``ModelInput``, in order, at the input
  image's size: ``heatmap`` float32 H x W in [0, 1] and/or ``mask`` bool H x W, ``score`` in
  [0, 1] for detection, ``explanation`` str for explanation;
- a sample that fails returns ``Prediction(extras={"error": "what went wrong"})`` and the run
  goes on;
- ``weights_sha256()`` returns the sha256 of the weight file (None when there is none).
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import numpy as np

from bench.core.types import Adapter, ModelInput, Prediction


class HighPassAdapter(Adapter):
    """Heatmap = |image - GaussianBlur(image)| averaged over RGB, divided by its per-image
    maximum (all zeros for a flat image); score = mean of the heatmap.

    Config: ``radius`` (Gaussian blur radius in pixels, default 2.0).
    """

    name = "example-highpass"
    version = "0.1.0"
    tasks = frozenset({"detect", "localize"})
    requirements: ClassVar[dict[str, Any]] = {"batch_size": 16, "num_gpus": 0, "gpu_memory_gb": 0}
    summary = "example plugin: high-frequency energy heatmap (training-free)"
    config_keys: ClassVar[frozenset[str]] = frozenset({"radius"})

    def __init__(self, **config: Any):
        config.setdefault("radius", 2.0)
        super().__init__(**config)

    def load(self, device: str = "cpu") -> None:
        radius = float(self.config["radius"])
        if radius <= 0:
            raise ValueError(f"radius must be positive, got {radius}")

    def predict(self, batch: Sequence[ModelInput]) -> list[Prediction]:
        from PIL import Image, ImageFilter

        out = []
        for item in batch:
            img = np.asarray(item.image, dtype=np.uint8)
            blurred = Image.fromarray(img).filter(ImageFilter.GaussianBlur(float(self.config["radius"])))
            energy = np.abs(img.astype(np.float32) - np.asarray(blurred, dtype=np.float32)).mean(axis=2)
            top = float(energy.max())
            heat = (energy / top if top > 0 else np.zeros_like(energy)).astype(np.float32)
            out.append(Prediction(heatmap=heat, score=float(heat.mean())))
        return out
