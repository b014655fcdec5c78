"""The ``predictions`` adapter: reads a folder of predictions made elsewhere (e.g. LEGION run on
another machine), so they go through the same runner, metrics and results as any model.

Config: ``dir`` (the folder), ``format`` (``legion`` or ``native``; layouts in
:mod:`bench.core.prediction_folders`), ``tasks`` (default: what the folder holds —
``localize,explain`` for legion; for native, ``localize`` when there are ``masks/`` or
``heatmaps/``, ``explain`` / ``detect`` when ``predictions.jsonl`` has explanations / scores,
looked up in ``dir`` and its condition sub-folders), ``require_explanation`` (legion: default
true when the adapter explains; false scores a missing explanation.json as an empty text, as
``bench score`` does). Every sample must then have every task's
output: a missing mask or ``predictions.jsonl`` line, or a bad line (``file:line``), fails that
sample. The tasks the folder lacks are logged as a warning when the adapter loads (their
metrics are not scored); name them in ``tasks`` to fail every sample that lacks them instead.

Conditions: predictions for the ``clean`` condition are read from ``dir`` itself (or
``dir/clean`` if it exists); predictions for a perturbed condition from ``dir/<condition key>``
(e.g. ``dir/jpeg(quality=50)``). A condition without its folder fails its samples with a message
saying where it looked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

from bench.adapters import register_adapter
from bench.adapters._util import failed_prediction
from bench.errors import BenchError, SampleError
from bench.core.types import Adapter, ModelInput, Prediction


@register_adapter
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
    config_keys: ClassVar[frozenset[str]] = frozenset({"dir", "format", "tasks", "require_explanation"})

    def __init__(self, **config: Any):
        super().__init__(**config)
        fmt = config.get("format", "native")
        if fmt not in ("legion", "native"):
            raise BenchError(f"adapter 'predictions': format must be 'legion' or 'native', not {fmt!r}")
        if not config.get("dir"):
            raise BenchError("adapter 'predictions': config 'dir' (the prediction folder) is required")
        self.missing_tasks: dict[str, tuple[str, str | None]] = {}
        if "tasks" in config:
            tasks = config["tasks"]
        else:
            tasks, self.missing_tasks = self._held_tasks(Path(str(config["dir"])).expanduser(), fmt)
        if isinstance(tasks, str):
            tasks = [t.strip() for t in tasks.split(",") if t.strip()]
        bad = set(tasks) - {"detect", "localize", "explain"}
        if bad or not tasks:
            raise BenchError(f"adapter 'predictions': tasks must be a subset of detect, localize, explain (got {tasks})")
        self.tasks = frozenset(tasks)

    @staticmethod
    def _held_tasks(root: Path, fmt: str) -> tuple[list[str], dict[str, tuple[str, str | None]]]:
        """What ``root`` (and its condition sub-folders) holds predictions for, in TASKS order,
        and why the other tasks are missing."""
        from bench.core.prediction_folders import TASKS, folder_tasks

        if not root.is_dir():  # load() says so; until then the format's usual tasks
            return (["localize", "explain"] if fmt == "legion" else ["localize"]), {}
        held: set[str] = set()
        missing: dict[str, tuple[str, str | None]] = {}
        folders = [root] + sorted(p for p in root.iterdir() if p.is_dir() and ("(" in p.name or p.name == "clean"))
        for folder in folders:
            tasks, why = folder_tasks(folder, fmt)
            held |= tasks
            for t, reason in why.items():
                missing.setdefault(t, reason)
        return [t for t in TASKS if t in held] or ["localize"], {t: r for t, r in missing.items() if t not in held}

    def load(self, device: str = "cpu") -> None:
        root = Path(str(self.config["dir"])).expanduser()
        if not root.is_dir():
            raise BenchError(f"adapter 'predictions': folder {root} does not exist")
        import logging

        for task, (reason, _fix) in sorted(self.missing_tasks.items()):
            logging.getLogger(__name__).warning(
                "adapter 'predictions': no %s predictions: %s; metrics of that task are not scored "
                "(config tasks=... to require them)", task, reason)

    def folder_for(self, condition: str) -> Path:
        root = Path(str(self.config["dir"])).expanduser()
        sub = root / condition
        if sub.is_dir():
            return sub
        if condition == "clean":
            return root
        raise SampleError(str(sub), f"no prediction folder for condition {condition!r}")

    def read(self, sample_id: str, file_name: str, hw: tuple[int, int], condition: str = "clean") -> Prediction:
        """One sample's prediction under ``condition`` at size ``hw``; SampleError naming the
        file (and line) when it is missing or bad. A LEGION folder requires explanation.json
        when the adapter explains, unless config ``require_explanation`` says otherwise."""
        from bench.core.prediction_folders import read_legion_prediction, read_native_prediction

        folder = self.folder_for(condition)
        if self.config.get("format", "native") == "legion":
            need = self.config.get("require_explanation", "explain" in self.tasks)
            return read_legion_prediction(folder, file_name, hw, require_explanation=bool(need))
        return read_native_prediction(folder, sample_id, file_name, hw, tasks=self.tasks)

    def predict(self, batch: Sequence[ModelInput]) -> list[Prediction]:
        out: list[Prediction] = []
        for item in batch:
            try:
                pred = self.read(item.sample_id, item.file_name, tuple(item.image.shape[:2]), item.condition)
            except SampleError as exc:  # names the file (and line): "<file>[:<line>]: <problem>"
                pred = failed_prediction(str(exc))
            out.append(pred)
        return out
