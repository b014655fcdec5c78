"""The local executor: shards run in this process (a GPU, an external command, or one
worker) or in one spawn-context process pool shared by every adapter and both phases."""

from __future__ import annotations

import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from bench.core.conditions import Condition
from bench.core.types import Sample
from bench.engine.executors import gather, shards
from bench.engine.inference import AdapterSpec, ShardReport, infer_shard


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


def runs_in_process(adapter_cls: type, n_workers: int) -> bool:
    """An adapter that holds a GPU, runs an external command or asks for it runs in the
    driver's process; so does everything with one worker."""
    req = getattr(adapter_cls, "requirements", {}) or {}
    flags = getattr(adapter_cls, "flags", {}) or {}
    return bool(n_workers == 1 or req.get("num_gpus", 0) or flags.get("external") or req.get("in_process"))


def infer_local(spec: AdapterSpec, samples: Sequence[Sample], conditions: Sequence[Condition], suite_seed: int,
                cache_dir: Path, opts: Any, pool: WorkerPool) -> ShardReport:
    """``opts``: the run's options (``n_workers``, ``device``, ``retry_failed``, ``progress``)."""
    adapter_cls = spec.adapter_class()
    req = getattr(adapter_cls, "requirements", {}) or {}
    n_conditions = len(conditions)
    bar = tqdm(total=len(samples) * n_conditions, desc=f"infer {spec.name}", unit="img",
               disable=None if opts.progress else True, leave=False, file=sys.stderr)
    try:
        if runs_in_process(adapter_cls, opts.n_workers):
            return infer_shard(spec, samples, conditions, suite_seed, str(cache_dir), opts.device,
                               opts.retry_failed, progress=bar.update)
        ex = pool.get()
        pending = {ex.submit(infer_shard, spec, shard, conditions, suite_seed, str(cache_dir), "cpu",
                             opts.retry_failed): len(shard)
                   for shard in shards(samples, opts.n_workers, int(req.get("batch_size", 8)))}
        return gather(pending, lambda fs: wait(fs, return_when=FIRST_COMPLETED).done,
                      lambda f: f.result(), lambda f: f.cancel(),
                      lambda n: bar.update(n * n_conditions))
    finally:
        bar.close()
