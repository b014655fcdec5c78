"""Run inference on a Ray cluster (``bench run --executor ray [--address ADDR]``).

One task per shard of work items, asking Ray for the resources the adapter declares
(``num_gpus``, one CPU). A task prepares, predicts and encodes its items where it runs, and
returns the encoded entries; the driver alone writes them into the prediction cache and its
index. So no node needs the driver's cache folder (no shared filesystem), and the SQLite index
is never opened over a network filesystem. Scoring runs once at the end, on the driver. With no
``--address`` a local Ray instance is started on this machine. Ray does the scheduling, retries
of lost nodes and resource accounting: the harness adds no scheduler of its own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from bench.engine.cache import PredictionCache
from bench.engine.executors import gather, shards
from bench.engine.inference import AdapterSpec, ShardReport, WorkItem, infer_remote, write_outcomes
from bench.errors import BenchError

#: Samples per task at most: a task's encoded predictions travel back whole.
MAX_SHARD = 16


def ensure_ray(address: str | None, num_cpus: int | None):
    """The ``ray`` module, connected to ``address`` or to a local instance started here."""
    try:
        import ray
    except ImportError:
        raise BenchError("--executor ray needs Ray, an optional dependency: "
                         "pip install 'synth-artifact-bench[ray]' (or 'ray[default]')") from None
    if not ray.is_initialized():
        # Workers see the driver's import path (adapters defined in the user's own modules).
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}}
        if address:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, runtime_env=env)
        else:
            # A new local instance (address="local": never a cluster some `ray start` left
            # running on this machine), with no dashboard or usage reporting.
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, ignore_reinit_error=True,
                     log_to_driver=False, runtime_env=env)
    return ray


def infer_with_ray(spec: AdapterSpec, items: Sequence[WorkItem], suite_seed: int, cache_dir: Path,
                   opts: Any) -> ShardReport:
    """``opts``: the run's options (``ray_address``, ``workers``, ``device``, ``progress``)."""
    ray = ensure_ray(opts.ray_address, opts.workers)
    req = getattr(spec.adapter_class(), "requirements", {}) or {}
    num_gpus = float(req.get("num_gpus", 0) or 0)
    device = opts.device if num_gpus == 0 else (opts.device if opts.device.startswith("cuda") else "cuda")
    n_workers = max(1, int(ray.cluster_resources().get("CPU", opts.n_workers)))
    task = ray.remote(num_cpus=1, num_gpus=num_gpus, max_retries=2)(infer_remote)
    pending = {task.remote(spec, shard, suite_seed, device): sum(len(todo) for _, todo in shard)
               for shard in shards(items, n_workers, int(req.get("batch_size", 8)), MAX_SHARD)}
    bar = tqdm(total=sum(pending.values()), desc=f"infer {spec.name} (ray)", unit="img",
               disable=None if opts.progress else True, leave=False, file=sys.stderr)
    cache = PredictionCache(cache_dir)

    def result(ref: Any) -> ShardReport:
        report, outcomes = ray.get(ref)
        write_outcomes(cache, spec.name, outcomes)  # the driver alone writes the cache
        return report

    try:
        return gather(pending, lambda refs: ray.wait(refs, num_returns=1)[0], result, ray.cancel, bar.update)
    finally:
        bar.close()
        cache.close()
