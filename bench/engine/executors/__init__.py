"""Where infer shards run, behind one interface.

An executor is a function ``infer(spec, items, suite_seed, cache_dir, opts, ...)`` that runs the
inference pipeline (:func:`~bench.engine.inference.infer_items`) over the planned work items
and returns the summed :class:`~bench.engine.inference.ShardReport`:
:func:`bench.engine.executors.local.infer_local` (this machine: in this process with decode and
perturbation in worker processes, one model process per device, or shards in a process pool)
and :func:`bench.engine.executors.ray.infer_with_ray` (a Ray cluster; only the driver writes
the cache). Both split work with :func:`shards` and collect it with :func:`gather`, which stops
and cancels the rest when an adapter is stopped. Ray does its own scheduling; the harness adds
no scheduler of its own.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

from bench.engine.inference import ShardReport


def shards(items: Sequence[Any], n_workers: int, batch_size: int, max_size: int | None = None) -> list[list[Any]]:
    """Contiguous shards: several per worker for load balance, at least one batch each (and
    at most ``max_size`` items when given)."""
    n = len(items)
    if n == 0:
        return []
    per = max(batch_size, math.ceil(n / (n_workers * 4)))
    if max_size:
        per = min(per, max_size)
    return [list(items[i:i + per]) for i in range(0, n, per)]


def gather(pending: dict[Any, int], wait: Callable[[list], Iterable[Any]], result: Callable[[Any], ShardReport],
           cancel: Callable[[Any], Any], on_done: Callable[[int], None]) -> ShardReport:
    """Sum the reports of ``pending`` tasks (handle -> number of samples) as they finish.

    ``wait(handles)`` returns some finished handles, ``result(handle)`` its report, ``cancel``
    drops a task not yet run; ``on_done(n_samples)`` is called per finished task. When a report
    says its adapter was stopped, every other task is cancelled and the sum returned."""
    total = ShardReport()
    pending = dict(pending)
    while pending:
        for handle in wait(list(pending)):
            rep = result(handle)
            total.add(rep)
            on_done(pending.pop(handle))
            if rep.stopped:
                for other in pending:
                    cancel(other)
                return total
    return total
