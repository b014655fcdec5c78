"""`bench run`: suite -> dataset -> conditions -> (infer, cached) -> (score) -> results.

Two phases. *Infer* fills the prediction cache (:mod:`bench.engine.inference`, run by an
executor: :mod:`bench.engine.executors`); *score* reads only the cache and the dataset
(:mod:`bench.engine.scoring`) and writes, per adapter, ``<out>/<adapter>/`` ``results.json``
(schema ``bench.results/1``, :mod:`bench.results.writer`), ``samples.parquet`` and a small
``gallery/``. Inputs are checked and keys planned first (:mod:`bench.engine.plan`).
"""

from __future__ import annotations

import logging
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from bench.core.conditions import Condition
from bench.core.types import Dataset, Sample
from bench.engine import run_memo
from bench.engine.cache import PredictionCache
from bench.engine.executors.local import WorkerPool, infer_local
from bench.engine.inference import AdapterSpec, ShardReport, WorkItem
from bench.engine.plan import RunOptions, check_inputs, open_samples, plan_jobs
from bench.engine.run_memo import scoring_code_sha256
from bench.io.paths import cache_root, safe_name
from bench.results.report import FailureSummary
from bench.results.writer import build_results, write_run
from bench.suites import Suite

log = logging.getLogger(__name__)

__all__ = ["AdapterRun", "RunOptions", "command_line", "run_suite"]


@dataclass
class AdapterRun:
    adapter: str
    out_dir: Path | None
    results: dict[str, Any] | None
    infer: ShardReport
    #: failures of this run (counts, top reasons, reused from the cache): bench.results.report.FailureSummary
    failures: Any = None


# -- the run ------------------------------------------------------------------------------

def run_suite(suite: Suite, adapters: Sequence[str], opts: RunOptions) -> list[AdapterRun]:
    """Run ``adapters`` on ``suite``; returns one AdapterRun per adapter (results None for
    ``--phase infer``). Every input is checked first (:func:`check_inputs`), then the output
    folder (:func:`bench.engine.outdir.check_out_dir`), which stays locked while the run lasts."""
    from bench.engine.outdir import RunLock, check_out_dir

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


def _run_locked(suite: Suite, adapters: Sequence[str], opts: RunOptions,
                conditions: list[Condition]) -> list[AdapterRun]:
    dataset, samples = open_samples(suite, opts)
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
    jobs = plan_jobs(spec, samples, conditions, suite, cache_dir)
    if opts.phase in ("all", "infer"):
        report = _infer(spec, jobs, conditions, suite, opts, cache_dir, pool)
        if report.stopped:
            print(f"bench: {report.stopped}", file=sys.stderr)
    infer_s = time.perf_counter() - t0
    if opts.phase == "infer":
        return AdapterRun(name, None, None, report, _failure_summary(name, jobs, cache_dir, report))
    out = Path(opts.out_dir) / safe_name(name)
    key = _run_key(spec, jobs, dataset, suite, opts, cache_dir)
    if report.n_inferred == 0 and report.n_failed == 0 and not report.stopped:
        hit = run_memo.recall(out, key)
        if hit is not None:  # an identical run already wrote this folder
            results, failures = hit
            summary = FailureSummary(**{**failures, "adapter": name})
            summary.n_reused = _n_failed_in_cache(jobs, cache_dir)  # all recorded before this run
            return AdapterRun(name, out, results, report, summary)
    t1 = time.perf_counter()
    # here, not at the top: an identical re-run (above) needs neither pandas nor the metrics
    from bench.engine.score_cache import ScoredTables
    from bench.engine.scoring import CacheSource, add_metric_columns, aggregate, not_computed, score_jobs

    adapter = spec.create()
    tasks = set(adapter.tasks)
    tables = ScoredTables(cache_dir)
    cache = PredictionCache(cache_dir)
    table_key = tables.key(jobs, dataset.fingerprint(), suite.protocol, suite.metrics, sorted(tasks),
                           cache.status)
    cache.close()
    df = tables.get(table_key)
    if df is None:  # score from the predictions (a metric or protocol change lands here)
        df = score_jobs(jobs, CacheSource(str(cache_dir)), suite.protocol, opts.n_workers,
                        desc=f"score {spec.name}", progress=opts.progress, pool=pool)
        add_metric_columns(df, suite.metrics, tasks, suite.protocol)
        if report.stopped:  # not inferred because the adapter was stopped: say so (not cached)
            missing = df["error"].fillna("").str.contains("no prediction for condition", regex=False)
            df.loc[missing, "error"] = "not inferred: " + report.stopped
        tables.put(table_key, df)
    from bench.metrics import get_metric

    used = [m for m in suite.metrics if get_metric(m).task in tasks]
    per_condition = aggregate(df, [c.key for c in conditions], used, suite.protocol.get("bootstrap", {}))
    score_s = time.perf_counter() - t1
    results = build_results(
        suite=suite, dataset=dataset, n_samples=len(samples), adapter=adapter, conditions=conditions,
        per_condition=per_condition, used_metrics=used,
        timing={"infer_s": round(infer_s, 3), "score_s": round(score_s, 3),
                "n_inferred": report.n_inferred, "n_cached": report.n_cached,
                "n_failed_now": report.n_failed, "n_calls": report.n_calls},
        scoring_code_sha256=scoring_code_sha256(), limit=opts.limit, command=opts.command,
    )
    out.mkdir(parents=True, exist_ok=True)
    from bench.engine.outdir import clean_previous_run

    clean_previous_run(out)  # an earlier run's results and gallery files of this adapter
    write_run(out, results, df)
    if opts.gallery_size:
        try:
            from bench.engine.gallery import write_gallery

            write_gallery(out / "gallery", jobs, conditions, suite, cache_dir, opts.gallery_size)
        except Exception as exc:  # pictures are a convenience; never lose a result for them
            log.warning("gallery not written: %s", exc)
    failures = _failure_summary(name, jobs, cache_dir, report, df)
    if not not_computed(df) and not failures.n_uninferred:  # a missing model or prediction may come
        run_memo.remember(out, key, results, failures)
    return AdapterRun(name, out, results, report, failures)


def _n_failed_in_cache(jobs: list, cache_dir: Path) -> int:
    cache = PredictionCache(cache_dir)
    try:
        return sum(cache.status(k) == "failed" for _, items in jobs for _, k in items)
    finally:
        cache.close()


def _run_key(spec: AdapterSpec, jobs: list, dataset: Dataset, suite: Suite, opts: RunOptions, cache_dir: Path) -> str:
    cache = PredictionCache(cache_dir)
    try:
        return run_memo.run_key(jobs=jobs, status=cache.status, fingerprint=dataset.fingerprint(), suite=suite,
                                adapter=spec.name, config_json=spec.config_json,
                                scoring_code_sha256=scoring_code_sha256(),
                                options={"gallery_size": opts.gallery_size, "limit": opts.limit,
                                         "command": opts.command, "n_samples": len(jobs)})
    finally:
        cache.close()



# -- infer ------------------------------------------------------------------------------

def _pending(jobs: list, conditions: Sequence[Condition], cache_dir: Path,
             retry_failed: bool) -> tuple[list[WorkItem], ShardReport]:
    """The work items the cache lacks (recorded failures count as done unless
    ``retry_failed``), and a report counting every pair and the cached ones: checked here, so
    a fully cached run starts no worker and loads no model."""
    by_key = {c.key: c for c in conditions}
    cache = PredictionCache(cache_dir)
    items: list[WorkItem] = []
    report = ShardReport()
    try:
        for sample, pairs in jobs:
            todo = []
            for cond_key, key in pairs:
                report.n_items += 1
                st = cache.status(key)
                if st == "ok" or (st == "failed" and not retry_failed):
                    report.n_cached += 1
                else:
                    todo.append((by_key[cond_key], key))
            if todo:
                items.append((sample, todo))
    finally:
        cache.close()
    return items, report


def _infer(spec: AdapterSpec, jobs: list, conditions, suite, opts, cache_dir, pool: WorkerPool) -> ShardReport:
    items, report = _pending(jobs, conditions, cache_dir, opts.retry_failed)
    if not items:
        return report
    if opts.executor == "ray":
        from bench.engine.executors.ray import infer_with_ray  # Ray is an optional dependency

        report.add(infer_with_ray(spec, items, suite.seed, cache_dir, opts))
    else:
        report.add(infer_local(spec, items, suite.seed, cache_dir, opts, pool))
    return report


def _failure_summary(name: str, jobs: list, cache_dir: Path, report: ShardReport, df=None):
    """What failed in this adapter's run (bench.results.report.FailureSummary): from the scored table,
    or (``--phase infer``) from the failures recorded in the cache; failures recorded by an
    earlier run and not retried now are counted as reused."""
    import pandas as pd

    from bench.results.report import summarize_failures

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
