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
from typing import Sequence

from tqdm.auto import tqdm

from bench.conditions import Condition
from bench.errors import BenchError
from bench.inference import AdapterSpec, ShardReport, infer_shard
from bench.types import Sample


def _ensure_ray(address: str | None, num_cpus: int | None):
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


def infer_with_ray(spec: AdapterSpec, samples: Sequence[Sample], conditions: Sequence[Condition],
                   suite, opts, cache_dir: Path) -> ShardReport:
    from bench.runner import _shards

    ray = _ensure_ray(opts.ray_address, opts.workers)
    adapter_cls = spec.adapter_class()
    req = getattr(adapter_cls, "requirements", {}) or {}
    num_gpus = float(req.get("num_gpus", 0) or 0)
    device = opts.device if num_gpus == 0 else (opts.device if opts.device.startswith("cuda") else "cuda")
    n_workers = max(1, int(ray.available_resources().get("CPU", opts.n_workers)))
    shards = _shards(samples, n_workers, int(req.get("batch_size", 8)))
    task = ray.remote(num_cpus=1, num_gpus=num_gpus, max_retries=2)(infer_shard)
    pending = {task.remote(spec, shard, list(conditions), suite.seed, str(cache_dir), device,
                           opts.retry_failed): len(shard) for shard in shards}
    total = ShardReport()
    bar = tqdm(total=len(samples) * len(conditions), desc=f"infer {spec.name} (ray)", unit="img",
               disable=None if opts.progress else True, leave=False, file=sys.stderr)
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                rep = ray.get(ref)
                total.add(rep)
                bar.update(pending.pop(ref) * len(conditions))
                if rep.stopped:
                    for other in pending:
                        ray.cancel(other)
                    pending.clear()
                    break
    finally:
        bar.close()
    return total
