"""Reference rows every leaderboard needs: ``empty``, ``full`` and ``random``.

- ``empty``: predicts no artifact anywhere (all-False mask) and score 0.0. Its F1 is 0 on
  every fake image with an artifact; its LEGION mIoU is (1 - a) / 2 (a = artifact area).
- ``full``: predicts artifact everywhere (all-True mask) and score 1.0; F1 = 2a / (1 + a).
- ``random``: heatmap of independent uniform [0, 1) values and a uniform random score, from a
  generator seeded like the perturbations (:func:`bench.core.conditions.rng_for` of config seed,
  sample id and condition key): the same image gives
  the same output in any batch, order or process, and different images differ. With the
  0.5 threshold about half the pixels are marked, so F1 ~ 2a / (1 + 2a).

None of them needs weights; all are deterministic.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import numpy as np

from bench.adapters import register_adapter
from bench.adapters._util import TRAINING_FREE_CARD
from bench.core.conditions import rng_for
from bench.core.types import Adapter, ModelInput, Prediction

_TASKS = frozenset({"detect", "localize"})


@register_adapter
class Empty(Adapter):
    """All-False mask, score 0.0."""

    name = "empty"
    version = "1"
    tasks: ClassVar[frozenset[str]] = _TASKS
    summary = "reference: no artifact anywhere (all-False mask), score 0"
    requirements: ClassVar[dict[str, Any]] = {"batch_size": 64, "num_gpus": 0, "gpu_memory_gb": 0}
    card: ClassVar[dict[str, str | None]] = TRAINING_FREE_CARD
    config_keys: ClassVar[frozenset[str]] = frozenset()

    def predict(self, batch: Sequence[ModelInput]) -> list[Prediction]:
        return [Prediction(mask=np.zeros(item.image.shape[:2], dtype=bool), score=0.0) for item in batch]


@register_adapter
class Full(Adapter):
    """All-True mask, score 1.0."""

    name = "full"
    version = "1"
    tasks: ClassVar[frozenset[str]] = _TASKS
    summary = "reference: artifact everywhere (all-True mask), score 1"
    requirements: ClassVar[dict[str, Any]] = {"batch_size": 64, "num_gpus": 0, "gpu_memory_gb": 0}
    card: ClassVar[dict[str, str | None]] = TRAINING_FREE_CARD
    config_keys: ClassVar[frozenset[str]] = frozenset()

    def predict(self, batch: Sequence[ModelInput]) -> list[Prediction]:
        return [Prediction(mask=np.ones(item.image.shape[:2], dtype=bool), score=1.0) for item in batch]


@register_adapter
class Random(Adapter):
    """Uniform random heatmap and score, seeded per (seed, sample id, condition)."""

    name = "random"
    version = "1"
    tasks: ClassVar[frozenset[str]] = _TASKS
    summary = "reference: uniform random heatmap and score, seeded per image (config seed)"
    requirements: ClassVar[dict[str, Any]] = {"batch_size": 64, "num_gpus": 0, "gpu_memory_gb": 0}
    card: ClassVar[dict[str, str | None]] = TRAINING_FREE_CARD
    config_keys: ClassVar[frozenset[str]] = frozenset({"seed"})

    def __init__(self, seed: int = 0, **config: Any):
        if config:
            raise ValueError(f"adapter 'random': unknown config {', '.join(sorted(config))} (known: seed)")
        super().__init__(seed=int(seed))

    def predict(self, batch: Sequence[ModelInput]) -> list[Prediction]:
        out = []
        for item in batch:
            rng = rng_for(self.config["seed"], item.sample_id, item.condition)
            heat = rng.random(item.image.shape[:2], dtype=np.float32)
            out.append(Prediction(heatmap=heat, score=float(rng.random())))
        return out
