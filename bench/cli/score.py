"""`bench score --dataset NAME --data-root DIR --predictions DIR --format legion|native --out DIR`

Scores a folder of precomputed predictions without running any model. A sample with no
prediction is counted as failed, never skipped; a metric that cannot be computed (its model is
not in the local cache, the folder holds no explanations) is recorded as not computed and
named at the end; every other metric is scored. Exit status: README "Exit codes".
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from bench.errors import BenchError, SampleError
from bench.core.types import Prediction, Sample

FORMATS = ("legion", "native")


@dataclass(frozen=True)
class FolderSource:
    """Predictions read from a folder in LEGION's or the native layout (README: formats).

    ``tasks``: what every sample must have (what the folder holds; native layout).
    ``verify_images``: decode every image fully first, so a truncated file fails its sample
    (``truncated or unreadable image <file>: <reason>``) instead of being scored from its header.
    """

    folder: str
    format: str
    tasks: frozenset = frozenset()
    verify_images: bool = True

    def fetch(self, sample: Sample, condition_key: str, ref: Any) -> tuple[Prediction, int, int]:
        h, w = self._image_hw(sample)
        return self.reader().read(sample.id, sample.file_name, (h, w), condition_key), h, w

    def reader(self) -> Any:
        """The ``predictions`` adapter on this folder: one reader for ``bench run --adapter
        predictions`` and ``bench score``. A LEGION folder's missing explanation.json scores 0
        on the text metrics rather than losing the sample's mask."""
        return _folder_reader(self.folder, self.format, ",".join(sorted(self.tasks)) or "localize")

    def _image_hw(self, sample: Sample) -> tuple[int, int]:
        from bench.engine.scoring import image_hw
        from bench.io.imageio import verify_image

        if not self.verify_images or sample.image_path is None or sample.image_bytes is not None:
            return image_hw(sample)  # header only (bytes-backed samples are decoded there)
        if sample.error:
            raise SampleError(sample.where, sample.error)
        return verify_image(sample.image_path)


@functools.lru_cache(maxsize=4)
def _folder_reader(folder: str, fmt: str, tasks: str) -> Any:
    """One ``predictions`` adapter per folder and process (not one per sample)."""
    from bench.core.registry import create_adapter

    return create_adapter("predictions", dir=folder, format=fmt, tasks=tasks, require_explanation=fmt != "legion")


class FolderAdapterInfo:
    """Stands in for an adapter in results: identifies the scored folder."""

    version: ClassVar[str] = "1"
    flags: ClassVar[dict[str, Any]] = {"precomputed": True}

    def __init__(self, folder: Path, fmt: str, tasks: set[str], name: str | None):
        self.folder, self.fmt, self.tasks = folder, fmt, frozenset(tasks)
        self.name = name or f"predictions-{fmt}"

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version,
                "config": {"predictions": str(self.folder.resolve()), "format": self.fmt},
                "weights_sha256": None}


def suite_for_dataset(dataset: str):
    """The registered suite of this dataset (its protocol and metrics), else a default one."""
    from bench.core.registry import SUITES
    from bench.suites import Suite

    for entry in SUITES.entries():
        if entry.obj.dataset == dataset and entry.name == dataset:
            return entry.obj
    for entry in SUITES.entries():
        if entry.obj.dataset == dataset:
            return entry.obj
    return Suite.from_mapping({"name": f"score-{dataset}", "version": 1, "dataset": dataset,
                               "metrics": ["miou", "f1", "iou_fg", "fp_area", "det_auc", "det_acc",
                                           "rouge_l", "css"]})


def run(args: argparse.Namespace) -> int:
    from bench.core.conditions import Condition
    from bench.metrics import select_metrics
    from bench.core.prediction_folders import folder_tasks
    from bench.core.registry import create_dataset
    from bench.engine.runner import command_line
    from bench.engine.run_memo import scoring_code_sha256
    from bench.engine.scoring import add_metric_columns, aggregate, score_jobs
    from bench.results.report import finish, print_summary, summarize_failures
    from bench.results.writer import build_results, write_run

    if args.format not in FORMATS:
        raise BenchError(f"--format must be one of {', '.join(FORMATS)}")
    folder = Path(args.predictions)
    if not folder.is_dir():
        raise BenchError(f"--predictions {folder}: not a folder")
    # a copy: the registered suite object must not keep this command's options
    suite = copy.deepcopy(suite_for_dataset(args.dataset))
    if args.threshold is not None:
        suite.protocol = {**suite.protocol, "mask_threshold": args.threshold}
    if args.css_model:
        suite.protocol = {**suite.protocol, "css_model": args.css_model}
    if args.metrics:
        suite.metrics = select_metrics(args.metrics, suite.metrics)
    data_root = Path(args.data_root) if args.data_root else None
    from bench.core.config_args import parse_pairs

    # values stay text as given (the dataset reads them, e.g. strict=true, ids=PATH)
    options = {**suite.dataset_options, **parse_pairs(args.dataset_option, "--dataset-option", value=str)}
    ds = create_dataset(args.dataset, data_root=data_root, split=args.split or suite.split, **options)
    samples = ds.samples()
    if not samples:
        raise BenchError(f"dataset {args.dataset!r} has no samples")
    clean = Condition.clean()
    # the tasks the folder holds; the suite's metrics of the others are recorded as not computed
    tasks, missing_tasks = folder_tasks(folder, args.format)
    source = FolderSource(str(folder), args.format, frozenset(tasks), not args.no_verify_images)
    t0 = time.perf_counter()
    jobs = [(s, [(clean.key, None)]) for s in samples]
    n_workers = max(1, args.workers or os.cpu_count() or 1)
    df = score_jobs(jobs, source, suite.protocol, n_workers, progress=not args.no_progress)
    info = FolderAdapterInfo(folder, args.format, tasks, args.name)
    used = add_metric_columns(df, suite.metrics, tasks, suite.protocol, missing_tasks)
    per_condition = aggregate(df, [clean.key], used, suite.protocol.get("bootstrap", {}))
    results = build_results(suite=suite, dataset=ds, n_samples=len(samples), adapter=info,
                            conditions=[clean], per_condition=per_condition, used_metrics=used,
                            timing={"infer_s": 0.0, "score_s": round(time.perf_counter() - t0, 3)},
                            scoring_code_sha256=scoring_code_sha256(), command=command_line())
    out = Path(args.out)
    write_run(out, results, df)
    print_summary([results])
    print(f"\nresults in {out}/results.json and samples.parquet")
    return finish([summarize_failures(info.name, df)], [results], strict=args.strict)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from bench.core.validate import positive_int

    p = sub.add_parser("score", help="score a folder of precomputed predictions (no model run)")
    p.add_argument("--dataset", required=True, help="dataset name (`bench ls datasets`)")
    p.add_argument("--data-root", help="dataset folder")
    p.add_argument("--split", help="dataset split (default: the dataset suite's)")
    p.add_argument("--dataset-option", action="append", metavar="KEY=VALUE",
                   help="dataset loader option, e.g. annotations=/path/test.json")
    p.add_argument("--predictions", required=True, help="prediction folder")
    p.add_argument("--format", required=True, choices=FORMATS, help="folder layout")
    p.add_argument("--out", required=True, help="output folder for results.json + samples.parquet")
    p.add_argument("--name", help="name for this entry in results (default predictions-<format>)")
    p.add_argument("--threshold", type=float, help="heatmap threshold (native heatmaps); default 0.5")
    p.add_argument("--css-model", help="sentence-embedding model for CSS (default: the suite's)")
    p.add_argument("--metrics", metavar="M1,M2",
                   help="metrics to compute, comma-separated (default: the dataset suite's; `bench ls metrics`)")
    p.add_argument("--no-verify-images", action="store_true",
                   help="read only image headers (faster); by default every image is decoded fully, so "
                   "a truncated file fails its sample instead of being scored as if whole")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 3 when any sample failed (default: only when all did)")
    p.add_argument("--workers", type=positive_int, help="CPU worker processes for scoring (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (they show only on a terminal anyway)")
    p.set_defaults(func=run)
