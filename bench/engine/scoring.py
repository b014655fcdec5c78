"""Scoring: per (sample, condition) rows from predictions and ground truth, then aggregation.

Per-sample work (ground-truth rasterisation, binarisation, confusion counts) runs in worker
processes; pixel metrics are then computed vectorised from the counts, text metrics batched,
detection metrics per dataset, and every aggregate gets a seeded bootstrap 95% interval.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Protocol, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from bench.errors import SampleError
from bench.metrics import MetricSpec, get_metric
from bench.metrics.localization import confusion_counts
from bench.metrics.stats import bootstrap_mean_ci, bootstrap_stat_ci
from bench.core.types import FAKE, REAL, Prediction, Sample

ROW_COLUMNS = [
    "sample_id", "file_name", "condition", "label", "status", "error", "height", "width",
    "tp", "fp", "fn", "tn", "score", "explanation", "reference", "warning",
]


class PredictionSource(Protocol):
    """Where the score phase reads predictions from (picklable, used in worker processes)."""

    def fetch(self, sample: Sample, condition_key: str, ref: Any) -> tuple[Prediction, int, int]:
        """(prediction, height, width) or raise SampleError with the reason."""


@dataclass(frozen=True)
class CacheSource:
    """Predictions from the prediction cache; ``ref`` is the cache key."""

    cache_dir: str

    def fetch(self, sample: Sample, condition_key: str, ref: Any) -> tuple[Prediction, int, int]:

        cache = _cache_for(self.cache_dir)
        try:
            return cache.get(ref)
        except KeyError:
            reason = cache.get_failure(ref)
            if reason:
                raise SampleError("", reason) from None
            raise SampleError(sample.where, f"no prediction for condition {condition_key}"
                              " (run the infer phase first)") from None


_CACHES: dict[str, Any] = {}


def _cache_for(path: str):
    from bench.engine.cache import PredictionCache

    if path not in _CACHES:
        _CACHES[path] = PredictionCache(path)
    return _CACHES[path]


def image_hw(sample: Sample) -> tuple[int, int]:
    if sample.image_bytes is not None or sample.image_path is None:
        img = sample.load_image()
        return img.shape[0], img.shape[1]
    from bench.io.imageio import image_size

    if sample.error:
        raise SampleError(sample.where, sample.error)
    return image_size(sample.image_path)


def score_sample(sample: Sample, items: Sequence[tuple[str, Any]], source: PredictionSource,
                 threshold: float, reference_field: str | None = "caption") -> list[dict[str, Any]]:
    """Rows for one sample under each (condition key, prediction ref) in ``items``.

    The ground-truth mask is built once, at the original image size, and shared by all
    conditions. Any SampleError fails that row (or all rows, for ground-truth problems).
    """
    from bench.metrics.text_prep import reference_text

    reference = reference_text(sample, reference_field) if reference_field else None
    base = {"sample_id": sample.id, "file_name": sample.file_name, "label": int(sample.label),
            "reference": reference}
    rows: list[dict[str, Any]] = []
    gt: np.ndarray | None = None
    gt_error: str | None = f"{sample.where}: {sample.error}" if sample.error else None
    # loader notes (duplicate_record ...) and ground-truth ones (geometry_clipped): never fatal
    warnings = list(sample.warnings)
    for cond_key, ref in items:
        row = {**base, "condition": cond_key, "status": "ok", "error": None, "height": None,
               "width": None, "tp": None, "fp": None, "fn": None, "tn": None, "score": None,
               "explanation": None}
        try:
            if gt_error:
                raise SampleError("", gt_error)
            pred, h, w = source.fetch(sample, cond_key, ref)
            if "error" in pred.extras and pred.extras["error"]:
                raise SampleError(sample.where, str(pred.extras["error"]))
            if gt is None:
                try:
                    gt = sample.load_mask(h, w, warnings)
                except SampleError as exc:
                    gt_error = str(exc)
                    raise
            elif gt.shape != (h, w):
                raise SampleError(sample.where, f"prediction is {h}x{w} but the image is "
                                  f"{gt.shape[0]}x{gt.shape[1]} (H x W)")
            row.update(height=h, width=w, score=pred.score, explanation=pred.explanation)
            mask = pred.binary_mask(threshold)
            # a fake image without ground-truth geometry (manifest) has no localization score
            if mask is not None and sample.meta.get("has_mask", True) is not False:
                if mask.shape != gt.shape:
                    raise SampleError(sample.where, f"predicted mask is {mask.shape} but the "
                                      f"image is {gt.shape} (H x W)")
                row.update(zip(("tp", "fp", "fn", "tn"), confusion_counts(np.asarray(mask, bool), gt)))
        except SampleError as exc:
            row.update(status="failed", error=str(exc))
        except Exception as exc:  # a bug in one sample must not lose the others
            row.update(status="failed", error=f"{sample.where}: {type(exc).__name__}: {exc}")
        row["warning"] = "; ".join(warnings) or None
        rows.append(row)
    return rows


def score_chunk(jobs: Sequence[tuple[Sample, Sequence[tuple[str, Any]]]], source: PredictionSource,
                threshold: float, reference_field: str | None = "caption") -> list[dict[str, Any]]:
    """Worker entry point: rows for a chunk of samples."""
    out: list[dict[str, Any]] = []
    for sample, items in jobs:
        out.extend(score_sample(sample, items, source, threshold, reference_field))
    return out


# -- metrics on the table -----------------------------------------------------------------

def clean_prediction(text: str | None, protocol: dict[str, Any]) -> str:
    """The predicted explanation after the suite's named cleaning step (None -> "")."""
    from bench.metrics.text_prep import TEXT_CLEANINGS

    name = protocol.get("text_cleaning", "none")
    if name not in TEXT_CLEANINGS:
        raise ValueError(f"unknown text_cleaning {name!r}; known: {sorted(TEXT_CLEANINGS)}")
    # a missing explanation may come back from a table as NaN (pandas string columns)
    return TEXT_CLEANINGS[name](text) if isinstance(text, str) and text else ""


def _applies(spec: MetricSpec, labels: pd.Series) -> pd.Series:
    if spec.applies_to == "fake":
        return labels == FAKE
    if spec.applies_to == "real":
        return labels == REAL
    return pd.Series(True, index=labels.index)


#: ``df.attrs`` key: {metric: {reason, fix, retry[, protocol]}} for metrics that could not be
#: computed (kept with the table, also through parquet); :func:`aggregate` reports them as
#: ``status: not_computed`` with a null value, never as 0.
NOT_COMPUTED = "not_computed"


def not_computed(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The table's not-computed metrics: {metric: {reason, fix}}."""
    return dict(df.attrs.get(NOT_COMPUTED) or {})


def mark_not_computed(df: pd.DataFrame, name: str, reason: str, fix: str | None = None,
                      protocol: dict[str, Any] | None = None) -> None:
    """Record that metric ``name`` could not be computed for this table. With ``protocol`` the
    cause is the environment (e.g. a model absent from the local cache): :func:`aggregate`
    tries again, so a table cached before the model was fetched is completed later."""
    entry: dict[str, Any] = {"reason": reason, "fix": fix, "retry": protocol is not None}
    if protocol is not None:
        entry["protocol"] = protocol
    df.attrs[NOT_COMPUTED] = {**(df.attrs.get(NOT_COMPUTED) or {}), name: entry}
    df[name] = np.full(len(df), np.nan)


def add_metric_columns(df: pd.DataFrame, metric_names: Iterable[str], tasks: set[str],
                       protocol: dict[str, Any],
                       missing_tasks: dict[str, tuple[str, str | None]] | None = None) -> list[str]:
    """Add one float column per pixel/text metric (NaN where it does not apply). Returns the
    names of the metrics that apply to this adapter (by task).

    A metric that cannot be computed here (:class:`~bench.metrics.MetricUnavailable`, e.g. the
    CSS model is not in the local cache) gets an all-NaN column and is recorded in
    ``df.attrs["not_computed"]``; every other metric is still computed. ``missing_tasks``
    ({task: (reason, fix)}): tasks the predictions should have covered but do not (a
    prediction folder without explanations): their metrics are recorded as not computed too.
    """
    from bench.metrics import MetricUnavailable

    used: list[str] = []
    ok = df["status"] == "ok"
    for name in metric_names:
        spec = get_metric(name)
        if spec.task not in tasks:
            if missing_tasks and spec.task in missing_tasks:
                used.append(name)
                mark_not_computed(df, name, *missing_tasks[spec.task])
            continue
        used.append(name)
        if spec.kind == "detection":
            continue
        col = np.full(len(df), np.nan)
        mask = (ok & _applies(spec, df["label"])).to_numpy().copy()
        try:
            if spec.kind == "pixel":
                mask &= df["tp"].notna().to_numpy()
                if mask.any():
                    sub = df.loc[mask, ["tp", "fp", "fn", "tn"]].astype("float64").to_numpy().T
                    col[mask] = spec.fn(*sub)
            elif spec.kind == "text":
                mask &= df["reference"].notna().to_numpy()
                if mask.any():
                    preds = [clean_prediction(t, protocol) for t in df.loc[mask, "explanation"]]
                    refs = [str(r) for r in df.loc[mask, "reference"]]
                    col[mask] = np.asarray(spec.fn(preds, refs, protocol=protocol), dtype=np.float64)
        except MetricUnavailable as exc:
            mark_not_computed(df, name, exc.reason, exc.fix, protocol=dict(protocol))
            continue
        df[name] = col
        if name in (df.attrs.get(NOT_COMPUTED) or {}):  # computed now (a retry)
            df.attrs[NOT_COMPUTED] = {k: v for k, v in df.attrs[NOT_COMPUTED].items() if k != name}
    return used


def _retry_not_computed(df: pd.DataFrame, metric_names: Sequence[str]) -> None:
    """Compute again the metrics that were not computed for an environment reason (the model
    may have been fetched since the table was cached)."""
    for name, entry in not_computed(df).items():
        if name in metric_names and entry.get("retry") and isinstance(entry.get("protocol"), dict):
            spec = get_metric(name)
            add_metric_columns(df, [name], {spec.task}, entry["protocol"])


def aggregate(df: pd.DataFrame, condition_keys: Sequence[str], metric_names: Sequence[str],
              bootstrap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per condition: n, n_failed and {metric: {value, ci95, n}} (means over images); a metric
    the table could not compute: {value: None, ci95: None, n: 0, status: "not_computed",
    reason, fix}."""
    n_boot, seed = int(bootstrap.get("n", 1000)), int(bootstrap.get("seed", 0))
    _retry_not_computed(df, metric_names)
    missing = not_computed(df)
    out: dict[str, dict[str, Any]] = {}
    for key in condition_keys:
        sub = df[df["condition"] == key]
        ok = sub[sub["status"] == "ok"]
        metrics: dict[str, Any] = {}
        for name in metric_names:
            spec = get_metric(name)
            if name in missing:  # recorded as missing, never as 0
                metrics[name] = {"value": None, "ci95": None, "n": 0, "status": "not_computed",
                                 "reason": missing[name].get("reason") or "not computed",
                                 "fix": missing[name].get("fix")}
                continue
            if spec.kind == "detection":
                has = ok["score"].notna()
                scores = ok.loc[has, "score"].astype("float64").to_numpy()
                labels = ok.loc[has, "label"].astype("int64").to_numpy()
                if len(labels) == 0 or not (np.any(labels == 1) and np.any(labels == 0)):
                    continue  # needs both labels: absent, not 0
                value = float(spec.fn(scores, labels))
                lo, hi = bootstrap_stat_ci(spec.fn, (scores, labels), n_boot, seed)
                metrics[name] = {"value": value, "ci95": [lo, hi], "n": int(len(labels))}
            else:
                vals = ok[name].astype("float64").to_numpy() if name in ok else np.array([])
                vals = vals[~np.isnan(vals)]
                if vals.size == 0:
                    continue
                lo, hi = bootstrap_mean_ci(vals, n_boot, seed)
                metrics[name] = {"value": float(vals.mean()), "ci95": [lo, hi], "n": int(vals.size)}
        out[key] = {"n": int(len(sub)), "n_failed": int((sub["status"] == "failed").sum()),
                    "metrics": metrics}
    return out


def rows_to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=ROW_COLUMNS)
    for c in ("tp", "fp", "fn", "tn", "height", "width"):
        df[c] = pd.array(df[c], dtype="Int64")
    df["score"] = pd.to_numeric(df["score"], errors="coerce").astype("float64")
    df["label"] = df["label"].astype("int64")
    return df


def score_jobs(jobs: Sequence[tuple[Sample, Sequence[tuple[str, Any]]]], source: PredictionSource,
               protocol: dict[str, Any], n_workers: int, desc: str = "score", progress: bool = True,
               pool: Any = None) -> pd.DataFrame:
    """The rows of every (sample, [(condition key, prediction ref)]) job, in job order, as a
    table (:data:`ROW_COLUMNS`): in this process for one worker or a few jobs, else in chunks on
    ``pool`` (a :class:`~bench.engine.executors.local.WorkerPool`; one is made if None)."""
    threshold = float(protocol["mask_threshold"])
    ref_field = protocol.get("reference_field")
    return rows_to_frame(list(_rows(list(jobs), source, threshold, ref_field, n_workers, desc, progress, pool)))


def _rows(jobs, source, threshold, ref_field, n_workers, desc, progress, pool) -> Iterator[dict[str, Any]]:
    from bench.engine.executors.local import WorkerPool

    bar = tqdm(total=len(jobs), desc=desc, unit="img", disable=None if progress else True, leave=False,
               file=sys.stderr)
    try:
        if n_workers == 1 or len(jobs) < 16:
            for job in jobs:
                yield from score_chunk([job], source, threshold, ref_field)
                bar.update(1)
            return
        per = max(4, math.ceil(len(jobs) / (n_workers * 8)))
        chunks = [jobs[i:i + per] for i in range(0, len(jobs), per)]
        own = pool is None
        pool = pool or WorkerPool(n_workers)
        try:
            ex = pool.get()
            futures = [ex.submit(score_chunk, ch, source, threshold, ref_field) for ch in chunks]
            for fut, ch in zip(futures, chunks):  # in submission order: rows stay in dataset order
                yield from fut.result()
                bar.update(len(ch))
        finally:
            if own:
                pool.close()
    finally:
        bar.close()
