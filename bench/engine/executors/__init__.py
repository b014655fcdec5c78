"""Where infer shards run, behind one interface.

An executor is a function ``infer(spec, samples, conditions, suite_seed, cache_dir, opts, ...)``
that returns the summed :class:`~bench.engine.inference.ShardReport` of running
:func:`~bench.engine.inference.infer_shard` over shards of ``samples``:
:func:`bench.engine.executors.local.infer_local` (in this process, or a process pool) and
:func:`bench.engine.executors.ray.infer_with_ray` (a Ray cluster). Both split work with
:func:`shards` and collect it with :func:`gather`, which stops and cancels the rest when an
adapter is stopped. Ray does its own scheduling; the harness adds no scheduler of its own.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

from bench.core.types import Sample
from bench.engine.inference import ShardReport


def shards(samples: Sequence[Sample], n_workers: int, batch_size: int) -> list[list[Sample]]:
    """Contiguous shards: several per worker for load balance, at least one batch each."""
    n = len(samples)
    if n == 0:
        return []
    per = max(batch_size, math.ceil(n / (n_workers * 4)))
    return [list(samples[i:i + per]) for i in range(0, n, per)]


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
