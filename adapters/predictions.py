"""The ``predictions`` adapter: reads a folder of predictions made elsewhere (e.g. LEGION run on
another machine), so they go through the same runner, metrics and results as any model.

Config: ``dir`` (the folder), ``format`` (``legion`` or ``native``; layouts in
:mod:`bench.prediction_folders`), ``tasks`` (default: ``localize,explain`` for legion,
``localize`` for native).

Conditions: predictions for the ``clean`` condition are read from ``dir`` itself (or
``dir/clean`` if it exists); predictions for a perturbed condition from ``dir/<condition key>``
(e.g. ``dir/jpeg(quality=50)``). A condition without its folder fails its samples with a message
saying where it looked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

from adapters import register_adapter
from adapters._util import failed_prediction
from bench.errors import BenchError, SampleError
from bench.types import Adapter, ModelInput, Prediction


@register_adapter("predictions")
class PredictionsAdapter(Adapter):
    """Precomputed predictions from a folder (``legion`` or ``native`` layout)."""

    name = "predictions"
    version = "1"
    tasks = frozenset({"detect", "localize", "explain"})
    requirements: ClassVar[dict[str, Any]] = {
        "batch_size": 64, "num_gpus": 0, "gpu_memory_gb": 0, "needs_setup": True,
    }
    flags: ClassVar[dict[str, Any]] = {"precomputed": True}
    summary = "reads a folder of precomputed predictions (LEGION's layout or the native one)"
    #: the folder's content may change between runs under the same config: never reuse the cache
    deterministic = False

    def __init__(self, **config: Any):
        super().__init__(**config)
        fmt = config.get("format", "native")
        if fmt not in ("legion", "native"):
            raise BenchError(f"adapter 'predictions': format must be 'legion' or 'native', not {fmt!r}")
        if not config.get("dir"):
            raise BenchError("adapter 'predictions': config 'dir' (the prediction folder) is required")
        default = ["localize", "explain"] if fmt == "legion" else ["localize"]
        tasks = config.get("tasks", default)
        if isinstance(tasks, str):
            tasks = [t.strip() for t in tasks.split(",") if t.strip()]
        bad = set(tasks) - {"detect", "localize", "explain"}
        if bad or not tasks:
            raise BenchError(f"adapter 'predictions': tasks must be a subset of detect, localize, explain (got {tasks})")
        self.tasks = frozenset(tasks)

    def load(self, device: str = "cpu") -> None:
        root = Path(str(self.config["dir"])).expanduser()
        if not root.is_dir():
            raise BenchError(f"adapter 'predictions': folder {root} does not exist")

    def folder_for(self, condition: str) -> Path:
        root = Path(str(self.config["dir"])).expanduser()
        sub = root / condition
        if sub.is_dir():
            return sub
        if condition == "clean":
            return root
        raise SampleError(str(sub), f"no prediction folder for condition {condition!r}")

    def predict(self, batch: Sequence[ModelInput]) -> list[Prediction]:
        from bench.prediction_folders import read_legion_prediction, read_native_prediction

        out: list[Prediction] = []
        for item in batch:
            hw = tuple(item.image.shape[:2])
            try:
                folder = self.folder_for(item.condition)
                if self.config.get("format", "native") == "legion":
                    pred = read_legion_prediction(folder, item.file_name, hw,
                                                  require_explanation="explain" in self.tasks)
                else:
                    pred = read_native_prediction(folder, item.sample_id, item.file_name, hw)
            except SampleError as exc:
                pred = failed_prediction(f"{item.sample_id}: {exc.problem} ({exc.where})")
            out.append(pred)
        return out
