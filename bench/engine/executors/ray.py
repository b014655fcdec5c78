"""Run infer shards as Ray tasks (``bench run --executor ray [--address ADDR]``).

One task per (adapter, shard of samples), each asking Ray for the resources the adapter
declares (``num_gpus``, one CPU). Every task writes into the shared prediction cache, so the
cache folder must be on storage all nodes see (NFS, a mounted bucket ...); scoring runs once at
the end, on the driver, from the cache. With no ``--address`` a local Ray instance is started
on this machine. Ray does the scheduling, retries of lost nodes and resource accounting: the
harness adds no scheduler of its own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from bench.core.conditions import Condition
from bench.core.types import Sample
from bench.engine.executors import gather, shards
from bench.engine.inference import AdapterSpec, ShardReport, infer_shard
from bench.errors import BenchError


def ensure_ray(address: str | None, num_cpus: int | None):
    """The ``ray`` module, connected to ``address`` or to a local instance started here."""
    try:
        import ray
    except ImportError:
        raise BenchError("--executor ray needs Ray, an optional dependency: "
                         "pip install 'synth-artifact-bench[ray]' (or 'ray[default]')") from None
    if not ray.is_initialized():
        if address:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        else:
            # A local instance: workers see the driver's import path (adapters defined in
            # the user's own modules), and no dashboard or usage reporting is started.
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            ray.init(num_cpus=num_cpus, include_dashboard=False, ignore_reinit_error=True,
                     log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}})
    return ray


def infer_with_ray(spec: AdapterSpec, samples: Sequence[Sample], conditions: Sequence[Condition], suite_seed: int,
                   cache_dir: Path, opts: Any) -> ShardReport:
    """``opts``: the run's options (``ray_address``, ``workers``, ``device``, ``retry_failed``)."""
    ray = ensure_ray(opts.ray_address, opts.workers)
    req = getattr(spec.adapter_class(), "requirements", {}) or {}
    num_gpus = float(req.get("num_gpus", 0) or 0)
    device = opts.device if num_gpus == 0 else (opts.device if opts.device.startswith("cuda") else "cuda")
    n_workers = max(1, int(ray.available_resources().get("CPU", opts.n_workers)))
    task = ray.remote(num_cpus=1, num_gpus=num_gpus, max_retries=2)(infer_shard)
    pending = {task.remote(spec, shard, list(conditions), suite_seed, str(cache_dir), device,
                           opts.retry_failed): len(shard)
               for shard in shards(samples, n_workers, int(req.get("batch_size", 8)))}
    n_conditions = len(conditions)
    bar = tqdm(total=len(samples) * n_conditions, desc=f"infer {spec.name} (ray)", unit="img",
               disable=None if opts.progress else True, leave=False, file=sys.stderr)
    try:
        return gather(pending, lambda refs: ray.wait(refs, num_returns=1)[0], ray.get, ray.cancel,
                      lambda n: bar.update(n * n_conditions))
    finally:
        bar.close()
