"""`bench run`: suite -> dataset -> conditions -> (infer, cached) -> (score) -> results.

Two phases. *Infer* fills the prediction cache (:mod:`bench.inference`); *score* reads only the
cache and the dataset (:mod:`bench.scoring`) and writes, per adapter, ``<out>/<adapter>/``
``results.json`` (schema ``bench.results/1``), ``samples.parquet`` and a small ``gallery/``.
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Iterator, Sequence

from tqdm.auto import tqdm

from bench.cache import PredictionCache
from bench.conditions import Condition
from bench.errors import BenchError
from bench.inference import AdapterSpec, ShardReport, infer_shard, plan_keys
from bench.paths import cache_root, safe_name, write_atomic
from bench.metrics import get_metric
from bench.registry import ADAPTERS, create_dataset
from bench.suites import Suite
from bench.types import Dataset, Sample

log = logging.getLogger(__name__)

RESULTS_SCHEMA = "bench.results/1"


@dataclass
class RunOptions:
    """Everything about a run that is not the suite itself."""

    out_dir: Path
    data_root: Path | None = None
    split: str | None = None
    perturb: str | None = None
    extra_conditions: list[str] = field(default_factory=list)
    adapter_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    workers: int | None = None
    executor: str = "local"       # local | ray
    ray_address: str | None = None
    phase: str = "all"            # all | infer | score
    retry_failed: bool = False
    limit: int | None = None      # first N samples only (smoke runs); recorded
    device: str = "cpu"
    progress: bool = True         # bars on a terminal (tqdm hides them when stderr is not a TTY)
    cache_dir: Path | None = None
    gallery_size: int = 24
    command: str | None = None

    @property
    def n_workers(self) -> int:
        return max(1, self.workers or os.cpu_count() or 1)


class WorkerPool:
    """One spawn-context process pool per run, started on first use and shared by every
    adapter and both phases (spawn: safe with torch and threads; started once: its start-up
    cost is paid once)."""

    def __init__(self, n_workers: int):
        self.n_workers = n_workers
        self._pool: ProcessPoolExecutor | None = None

    def get(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.n_workers, mp_context=get_context("spawn"))
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


@dataclass
class AdapterRun:
    adapter: str
    out_dir: Path | None
    results: dict[str, Any] | None
    infer: ShardReport
    #: failures of this run (counts, top reasons, reused from the cache): bench.report.FailureSummary
    failures: Any = None


# -- conditions ---------------------------------------------------------------------------

def suite_conditions(suite: Suite, perturb: str | None, extra: Sequence[str]) -> list[Condition]:
    """Clean first, then the preset's conditions, then the suite's and the command line's;
    duplicates dropped, order kept. A malformed or unknown condition is an
    :class:`~bench.validate.InputError` naming where it came from (checked before any work)."""
    from bench.validate import InputError

    conds: list[tuple[str, Condition]] = [("clean", Condition.clean())]
    preset = perturb or suite.perturb
    if preset:
        from bench.perturbations.presets import preset_conditions

        conds += [(f"preset {preset!r}", c) for c in preset_conditions(preset)]
    src = f"{suite.source or f'suite {suite.name!r}'}: conditions"
    for i, spec in enumerate(suite.conditions):
        try:
            conds.append((f"{src}[{i}]", Condition.from_spec(spec)))
        except ValueError as exc:
            raise InputError(f"{src}[{i}]: {exc}") from None
    for text in extra:
        try:
            conds.append((f"--condition {text!r}", Condition.parse(text)))
        except ValueError as exc:
            raise InputError(f"--condition {text!r}: {exc}") from None
    from bench.perturbations import canonical_condition

    seen, out = set(), []
    for where, c in conds:
        try:  # bad names or parameters fail here, before any work; sigma=1 and 1.0 share a key
            c = canonical_condition(c)
        except (ValueError, BenchError) as exc:
            what = "" if where.startswith("--condition") else f" condition {c.key!r}:"
            raise InputError(f"{where}:{what} {exc}") from None
        if c.key not in seen:
            seen.add(c.key)
            out.append(c)
    return out


def check_inputs(suite: Suite, adapters: Sequence[str], opts: RunOptions) -> list[Condition]:
    """Every input of a run, before any work (no dataset opened, no model built or loaded):
    adapter names and configs, options, the suite's registry names and every condition.
    Returns the run's conditions; :class:`~bench.validate.InputError` in one line otherwise."""
    from bench.validate import InputError, check_run_configs, check_suite_names

    if not adapters:
        raise InputError("no adapter to run: pass --adapter NAME (`bench ls adapters`)")
    for name in adapters:
        ADAPTERS.entry(name)  # unknown names fail before any work, with suggestions
    if opts.limit is not None and (isinstance(opts.limit, bool) or not isinstance(opts.limit, int)
                                   or opts.limit < 1):
        raise InputError(f"--limit must be a positive integer (the first N samples), got {opts.limit!r}")
    if opts.workers is not None and (not isinstance(opts.workers, int) or opts.workers < 1):
        raise InputError(f"--workers must be a positive integer, got {opts.workers!r}")
    if opts.phase not in ("all", "infer", "score"):
        raise InputError(f"--phase must be all, infer or score, got {opts.phase!r}")
    if opts.executor not in ("local", "ray"):
        raise InputError(f"--executor must be local or ray, got {opts.executor!r}")
    check_suite_names(suite)
    conditions = suite_conditions(suite, opts.perturb, opts.extra_conditions)
    check_run_configs(opts.adapter_configs, adapters)
    return conditions


# -- dataset ------------------------------------------------------------------------------

def open_dataset(suite: Suite, opts: RunOptions) -> Dataset:
    if suite.needs_data_root and opts.data_root is None:
        raise BenchError(
            f"suite {suite.name!r} needs its data: pass --data-root DIR "
            f"(get it with `bench data fetch {suite.dataset}`)"
        )
    options = dict(suite.dataset_options)
    ds = create_dataset(suite.dataset, data_root=opts.data_root, split=opts.split or suite.split, **options)
    from bench.datasets.verify import check_data_available

    if opts.data_root is not None:
        check_data_available(suite.dataset, opts.data_root, opts.split or suite.split, dataset=ds, **options)
    return ds


# -- executors ----------------------------------------------------------------------------

def _shards(samples: Sequence[Sample], n_workers: int, batch_size: int) -> list[list[Sample]]:
    """Contiguous shards: several per worker for load balance, at least one batch each."""
    n = len(samples)
    if n == 0:
        return []
    per = max(batch_size, math.ceil(n / (n_workers * 4)))
    return [list(samples[i:i + per]) for i in range(0, n, per)]


def _infer_local(spec: AdapterSpec, samples: Sequence[Sample], conditions: Sequence[Condition],
                 suite: Suite, opts: RunOptions, cache_dir: Path, pool: WorkerPool) -> ShardReport:
    adapter_cls = spec.adapter_class()
    req = getattr(adapter_cls, "requirements", {}) or {}
    flags = getattr(adapter_cls, "flags", {}) or {}
    bs = int(req.get("batch_size", 8))
    total = ShardReport()
    bar = tqdm(total=len(samples) * len(conditions), desc=f"infer {spec.name}", unit="img",
               disable=None if opts.progress else True, leave=False, file=sys.stderr)
    in_process = opts.n_workers == 1 or req.get("num_gpus", 0) or flags.get("external") \
        or req.get("in_process")
    try:
        if in_process:
            rep = infer_shard(spec, samples, conditions, suite.seed, str(cache_dir), opts.device,
                              opts.retry_failed, progress=bar.update)
            total.add(rep)
        else:
            shards = _shards(samples, opts.n_workers, bs)
            ex = pool.get()
            futures = {ex.submit(infer_shard, spec, shard, conditions, suite.seed, str(cache_dir),
                                 "cpu", opts.retry_failed): len(shard) for shard in shards}
            for fut in as_completed(futures):
                rep = fut.result()
                total.add(rep)
                bar.update(futures[fut] * len(conditions))
                if rep.stopped:
                    for other in futures:
                        other.cancel()
                    break
    finally:
        bar.close()
    return total


def _needs_work(jobs: list, cache_dir: Path, retry_failed: bool) -> tuple[list[Sample], int]:
    """Samples with at least one (condition) the cache does not hold, and the count of cached
    items: checked here, so a fully cached run starts no worker and loads no model."""
    cache = PredictionCache(cache_dir)
    todo, n_cached = [], 0
    for sample, items in jobs:
        states = [cache.status(k) for _, k in items]
        done = sum(st == "ok" or (st == "failed" and not retry_failed) for st in states)
        if done < len(states):
            todo.append(sample)  # the shard counts this sample's cached items itself
        else:
            n_cached += done
    cache.close()
    return todo, n_cached


def _infer(spec: AdapterSpec, jobs: list, conditions, suite, opts, cache_dir, pool: WorkerPool) -> ShardReport:
    samples, n_cached = _needs_work(jobs, cache_dir, opts.retry_failed)
    skipped = ShardReport(n_items=n_cached, n_cached=n_cached)
    if not samples:
        return skipped
    if opts.executor == "ray":
        from bench.executors.ray_executor import infer_with_ray

        report = infer_with_ray(spec, samples, conditions, suite, opts, cache_dir)
    elif opts.executor == "local":
        report = _infer_local(spec, samples, conditions, suite, opts, cache_dir, pool)
    else:
        raise BenchError(f"unknown executor {opts.executor!r} (local or ray)")
    report.add(skipped)
    return report


# -- scoring ------------------------------------------------------------------------------

def _plan_jobs(spec: AdapterSpec, samples: Sequence[Sample], conditions: Sequence[Condition],
               suite: Suite, cache_dir: Path) -> list:
    """(sample, [(condition key, prediction key)]) per sample; marks the entries as used."""
    identity = spec.create().cache_identity()
    cache = PredictionCache(cache_dir)
    jobs = []
    for sample in samples:
        keys = plan_keys(identity, cache, sample, conditions, suite.seed)
        jobs.append((sample, [(c.key, k) for c, k in zip(conditions, keys)]))
    cache.touch([k for _, items in jobs for _, k in items])  # for `bench cache gc --older-than`
    cache.close()
    return jobs


def _score(jobs: list, suite: Suite, opts: RunOptions, cache_dir: Path, desc: str,
           pool: "WorkerPool | None" = None):
    from bench.scoring import CacheSource, rows_to_frame

    source = CacheSource(str(cache_dir))
    threshold = float(suite.protocol["mask_threshold"])
    return rows_to_frame(list(_map_chunks(jobs, source, threshold, opts, desc=desc,
                                          pool=pool, reference_field=suite.protocol.get("reference_field"))))


def _map_chunks(jobs, source, threshold, opts: RunOptions, desc: str,
                pool: "WorkerPool | None" = None, reference_field: str | None = "caption") -> Iterator[dict]:
    from bench.scoring import score_chunk

    bar = tqdm(total=len(jobs), desc=desc, unit="img", disable=None if opts.progress else True, leave=False,
               file=sys.stderr)
    try:
        if opts.n_workers == 1 or len(jobs) < 16:
            for job in jobs:
                yield from score_chunk([job], source, threshold, reference_field)
                bar.update(1)
            return
        per = max(4, math.ceil(len(jobs) / (opts.n_workers * 8)))
        chunks = [jobs[i:i + per] for i in range(0, len(jobs), per)]
        own = pool is None
        pool = pool or WorkerPool(opts.n_workers)
        try:
            ex = pool.get()
            futures = [ex.submit(score_chunk, ch, source, threshold, reference_field) for ch in chunks]
            for fut, ch in zip(futures, chunks):  # in submission order: rows stay in dataset order
                yield from fut.result()
                bar.update(len(ch))
        finally:
            if own:
                pool.close()
    finally:
        bar.close()


def score_frame(df, suite: Suite, tasks: set[str], condition_keys: Sequence[str]):
    """Metric columns + per-condition aggregates for a table of rows."""
    from bench.scoring import add_metric_columns, aggregate

    used = add_metric_columns(df, suite.metrics, tasks, suite.protocol)
    per_condition = aggregate(df, condition_keys, used, suite.protocol.get("bootstrap", {}))
    return used, per_condition


# -- results ------------------------------------------------------------------------------

def build_results(*, suite: Suite, dataset: Dataset, n_samples: int, adapter, conditions: Sequence[Condition],
                  per_condition: dict[str, Any], used_metrics: Sequence[str], timing: dict[str, float],
                  opts: RunOptions | None, extra_protocol: dict[str, Any] | None = None) -> dict[str, Any]:
    from bench.environment import environment, harness

    protocol = dict(suite.protocol)
    protocol.update(extra_protocol or {})
    if any(m in used_metrics for m in ("css",)):
        try:
            from bench.metrics.explanation import css_model_info

            info = dict(css_model_info(protocol["css_model"]))
            info.pop("path", None)  # where the files sit on this machine: not a protocol fact
            protocol["css_model_info"] = info
        except Exception:  # recorded as unknown rather than failing the write
            protocol["css_model_info"] = None
    provenance: dict[str, Any] = {"seed": suite.seed}
    from bench.perturbations import perturbation_provenance

    provenance.update(perturbation_provenance())
    conds_out = []
    for c in conditions:
        agg = per_condition.get(c.key, {"n": 0, "n_failed": 0, "metrics": {}})
        conds_out.append({"key": c.key, "perturbation": c.perturbation, "params": c.params, **agg})
    identity = adapter.identity()
    result: dict[str, Any] = {
        "schema": RESULTS_SCHEMA,
        "run_id": f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "harness": harness(),
        "suite": {"name": suite.name, "version": suite.version},
        "dataset": {"name": dataset.name, "split": dataset.split, "fingerprint": dataset.fingerprint(),
                    "n_samples": n_samples,
                    "limit": opts.limit if opts else None},
        "adapter": {**identity, "code_sha256": _code_sha(adapter), "tasks": sorted(adapter.tasks),
                    "flags": dict(adapter.flags)},
        "protocol": protocol,
        "metrics_used": list(used_metrics),
        "perturbation_provenance": provenance,
        "conditions": conds_out,
        "environment": environment(),
        "timing": timing,
        "command": opts.command if opts else None,
    }
    from bench.perturbations.robustness import robustness_summary

    if len(conditions) > 1:
        result["robustness"] = robustness_summary(
            {c["key"]: {m: v["value"] for m, v in c["metrics"].items()} for c in conds_out})
    return result


def _code_sha(adapter: Any) -> str | None:
    from bench.types import Adapter, adapter_code_sha256

    return adapter_code_sha256(type(adapter)) if isinstance(adapter, Adapter) else None


def write_json_atomic(path: Path, obj: Any) -> None:
    import json

    write_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default))


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    return str(o)


def _sanitize(obj: Any) -> Any:
    """NaN/inf -> None so results.json is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_sanitize(v) for v in obj]
    return obj


# -- the run ------------------------------------------------------------------------------

def run_suite(suite: Suite, adapters: Sequence[str], opts: RunOptions) -> list[AdapterRun]:
    """Run ``adapters`` on ``suite``; returns one AdapterRun per adapter (results None for
    ``--phase infer``). Every input is checked first (:func:`check_inputs`), then the output
    folder (:func:`bench.outdir.check_out_dir`), which stays locked while the run lasts."""
    from bench.outdir import RunLock, check_out_dir

    conditions = check_inputs(suite, adapters, opts)
    lock = None
    if opts.phase != "infer":  # the infer phase writes only the cache
        check_out_dir(Path(opts.out_dir), [safe_name(a) for a in adapters])
        lock = RunLock(Path(opts.out_dir), opts.command).acquire()
    try:
        return _run_locked(suite, adapters, opts, conditions)
    finally:
        if lock is not None:
            lock.release()


def _open_samples(suite: Suite, opts: RunOptions) -> tuple[Dataset, list[Sample]]:
    try:
        dataset = open_dataset(suite, opts)
        samples = dataset.samples()
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
        root = opts.data_root
        if root is not None and Path(root).is_file():
            raise BenchError(f"--data-root {root}: is a file, but dataset {suite.dataset!r} needs a folder "
                             "(see README: Datasets)") from None
        raise BenchError(f"--data-root {root}: {exc.strerror or exc}: {exc.filename}") from None
    except PermissionError as exc:
        raise BenchError(f"dataset {suite.dataset!r}: cannot read {exc.filename}: permission denied") from None
    if opts.limit is not None:
        samples = samples[: opts.limit]
    if not samples:
        raise BenchError(f"dataset {dataset.name!r} split {dataset.split!r} has no samples")
    return dataset, samples


def _run_locked(suite: Suite, adapters: Sequence[str], opts: RunOptions,
                conditions: list[Condition]) -> list[AdapterRun]:
    dataset, samples = _open_samples(suite, opts)
    cache_dir = Path(opts.cache_dir) if opts.cache_dir else cache_root() / "predictions"
    runs: list[AdapterRun] = []
    pool = WorkerPool(opts.n_workers)
    try:
        for name in adapters:
            runs.append(_run_one(name, suite, dataset, samples, conditions, opts, cache_dir, pool))
    finally:
        pool.close()
    return runs


def _run_one(name: str, suite: Suite, dataset: Dataset, samples: Sequence[Sample],
             conditions: Sequence[Condition], opts: RunOptions, cache_dir: Path,
             pool: WorkerPool) -> AdapterRun:
    spec = AdapterSpec.make(name, opts.adapter_configs.get(name))
    t0 = time.perf_counter()
    report = ShardReport()
    # the cache keys of every (sample, condition), computed once for infer, score and gallery
    jobs = _plan_jobs(spec, samples, conditions, suite, cache_dir)
    if opts.phase in ("all", "infer"):
        report = _infer(spec, jobs, conditions, suite, opts, cache_dir, pool)
        if report.stopped:
            print(f"bench: {report.stopped}", file=sys.stderr)
    infer_s = time.perf_counter() - t0
    if opts.phase == "infer":
        return AdapterRun(name, None, None, report, _failure_summary(name, jobs, cache_dir, report))
    t1 = time.perf_counter()
    from bench.score_cache import ScoredTables
    from bench.scoring import add_metric_columns, aggregate

    adapter = spec.create()
    tasks = set(adapter.tasks)
    tables = ScoredTables(cache_dir)
    cache = PredictionCache(cache_dir)
    table_key = tables.key(jobs, dataset.fingerprint(), suite.protocol, suite.metrics, sorted(tasks),
                           cache.status)
    cache.close()
    df = tables.get(table_key)
    if df is None:  # score from the predictions (a metric or protocol change lands here)
        df = _score(jobs, suite, opts, cache_dir, desc=f"score {spec.name}", pool=pool)
        add_metric_columns(df, suite.metrics, tasks, suite.protocol)
        if report.stopped:  # not inferred because the adapter was stopped: say so (not cached)
            missing = df["error"].fillna("").str.contains("no prediction for condition", regex=False)
            df.loc[missing, "error"] = "not inferred: " + report.stopped
        tables.put(table_key, df)
    used = [m for m in suite.metrics if get_metric(m).task in tasks]
    per_condition = aggregate(df, [c.key for c in conditions], used, suite.protocol.get("bootstrap", {}))
    score_s = time.perf_counter() - t1
    results = build_results(
        suite=suite, dataset=dataset, n_samples=len(samples), adapter=adapter, conditions=conditions,
        per_condition=per_condition, used_metrics=used,
        timing={"infer_s": round(infer_s, 3), "score_s": round(score_s, 3),
                "n_inferred": report.n_inferred, "n_cached": report.n_cached,
                "n_failed_now": report.n_failed, "n_calls": report.n_calls},
        opts=opts,
    )
    out = Path(opts.out_dir) / safe_name(name)
    out.mkdir(parents=True, exist_ok=True)
    from bench.outdir import clean_previous_run
    from bench.scoring import write_parquet

    clean_previous_run(out)  # an earlier run's results and gallery files of this adapter

    write_parquet(df, out / "samples.parquet")
    write_json_atomic(out / "results.json", _sanitize(results))
    if opts.gallery_size:
        try:
            from bench.gallery import write_gallery

            write_gallery(out / "gallery", jobs, conditions, suite, cache_dir, opts.gallery_size)
        except Exception as exc:  # pictures are a convenience; never lose a result for them
            log.warning("gallery not written: %s", exc)
    return AdapterRun(name, out, results, report, _failure_summary(name, jobs, cache_dir, report, df))


def _failure_summary(name: str, jobs: list, cache_dir: Path, report: ShardReport, df=None):
    """What failed in this adapter's run (bench.report.FailureSummary): from the scored table,
    or (``--phase infer``) from the failures recorded in the cache; failures recorded by an
    earlier run and not retried now are counted as reused."""
    import pandas as pd

    from bench.report import summarize_failures

    cache = PredictionCache(cache_dir)
    try:
        failed = [(sample, cond, key) for sample, items in jobs for cond, key in items
                  if cache.status(key) == "failed"]
        if df is None:
            df = pd.DataFrame(
                [{"sample_id": s.id, "file_name": s.file_name, "condition": c, "status": "failed",
                  "error": cache.get_failure(k)} for s, c, k in failed],
                columns=["sample_id", "file_name", "condition", "status", "error"])
            n_rows = sum(len(items) for _, items in jobs)
        else:
            n_rows = None
    finally:
        cache.close()
    summary = summarize_failures(name, df, stopped=report.stopped,
                                 n_reused=max(0, len(failed) - report.n_failed))
    if n_rows is not None:
        summary.n_rows = n_rows
    return summary


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command that reproduces this run, as the user typed it (prog name normalised)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return "bench " + " ".join(shlex.quote(a) for a in argv)
