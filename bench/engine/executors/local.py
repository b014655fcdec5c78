"""The local executor: this machine.

- An adapter that holds a GPU, runs an external command or asks to stay in process runs in the
  driver's process; decoding and perturbation run ahead in the run's worker processes
  (:func:`~bench.engine.inference.prefetched`) and writes happen in a writer thread.
- With several devices (``--device cuda:0,cuda:1`` or ``auto``), one model process per device
  takes model inputs from one shared bounded queue that the driver fills from the same
  prefetch, so each sample is predicted once, by whichever model is free.
- Any other adapter runs in shards in the process pool, one pipeline per worker.
"""

from __future__ import annotations

import queue
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from bench.engine.cache import PredictionCache
from bench.engine.executors import gather, shards
from bench.engine.inference import (AdapterSpec, AdapterStopped, Batcher, CacheSink, ShardReport, WorkItem,
                                    infer_items, infer_to_cache, prefetched)
from bench.errors import BenchError


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


def parse_devices(device: str) -> list[str]:
    """``cuda:0,cuda:1`` -> two devices; ``auto`` -> every CUDA device torch sees (else cpu)."""
    if device.strip() == "auto":
        try:
            import torch

            n = torch.cuda.device_count()
        except Exception:  # torch missing or broken: no GPU to use
            n = 0
        return [f"cuda:{i}" for i in range(n)] or ["cpu"]
    devices = [d.strip() for d in device.split(",") if d.strip()]
    if not devices:
        raise BenchError(f"--device {device!r}: name a device (cpu, cuda:0, cuda:0,cuda:1 or auto)")
    return devices


def infer_local(spec: AdapterSpec, items: Sequence[WorkItem], suite_seed: int, cache_dir: Path, opts: Any,
                pool: WorkerPool) -> ShardReport:
    """``opts``: the run's options (``n_workers``, ``device``, ``progress``)."""
    adapter_cls = spec.adapter_class()
    req = getattr(adapter_cls, "requirements", {}) or {}
    flags = getattr(adapter_cls, "flags", {}) or {}
    bar = tqdm(total=sum(len(todo) for _, todo in items), desc=f"infer {spec.name}", unit="img",
               disable=None if opts.progress else True, leave=False, file=sys.stderr)
    try:
        if not runs_in_process(adapter_cls, opts.n_workers):
            pending = {pool.get().submit(infer_to_cache, spec, shard, suite_seed, str(cache_dir), "cpu"):
                       sum(len(todo) for _, todo in shard)
                       for shard in shards(items, opts.n_workers, int(req.get("batch_size", 8)))}
            return gather(pending, lambda fs: wait(fs, return_when=FIRST_COMPLETED).done,
                          lambda f: f.result(), lambda f: f.cancel(), bar.update)
        prefetch = pool.get() if opts.n_workers > 1 else None
        devices = [opts.device] if flags.get("external") else parse_devices(opts.device)
        if len(devices) > 1:
            return infer_on_devices(spec, items, suite_seed, cache_dir, devices, prefetch, bar.update)
        cache = PredictionCache(cache_dir)
        try:
            return infer_items(spec, items, suite_seed, devices[0], CacheSink(cache, spec.name),
                               progress=bar.update, pool=prefetch, depth=2 * opts.n_workers)
        finally:
            cache.close()
    finally:
        bar.close()


# -- one model process per device ------------------------------------------------------------

_DONE, _STOP = "done", "stop"


def infer_on_devices(spec: AdapterSpec, items: Sequence[WorkItem], suite_seed: int, cache_dir: Path,
                     devices: Sequence[str], prefetch: Any, progress: Any) -> ShardReport:
    """One model process per device, all fed from one bounded queue of model inputs that this
    process fills from the prefetch; failures before the model are written here."""
    ctx = get_context("spawn")
    inputs = ctx.Queue(maxsize=8 * len(devices))
    events = ctx.Queue()
    procs = [ctx.Process(target=_model_process, args=(spec, d, str(cache_dir), inputs, events),
                         name=f"bench-model-{d}", daemon=True) for d in devices]
    for p in procs:
        p.start()
    total = ShardReport()
    reports: list[ShardReport] = []
    stopped = threading.Event()

    def drain() -> None:  # progress and final reports from the model processes
        while len(reports) < len(procs):
            kind, value = events.get()
            if kind == _DONE:
                reports.append(value)
                if value.stopped:
                    stopped.set()
            elif kind == _STOP:
                stopped.set()
            else:
                progress(value)

    reader = threading.Thread(target=drain, name="bench-model-events", daemon=True)
    reader.start()
    cache = PredictionCache(cache_dir)
    sink = CacheSink(cache, spec.name)
    failures = Batcher(spec, "cpu", sink, total, progress)  # only its fail(): never loads the model
    try:
        for outs in prefetched(items, suite_seed, prefetch, 2 * len(devices) + 2):
            if stopped.is_set():
                break
            for key, cond, item, error in outs:
                if error is not None:
                    failures.fail(key, cond, error)
                    continue
                while not _put(inputs, (key, item), stopped):
                    pass
                if stopped.is_set():
                    break
    finally:
        for _ in procs:
            inputs.put(None)
        reader.join()
        for p in procs:
            p.join()
        sink.close()
        cache.close()
    bad = [p for p in procs if p.exitcode not in (0, None)]
    for rep in reports:
        total.add(rep)
    if bad and len(reports) < len(procs):
        raise BenchError(f"model process on {bad[0].name} exited with status {bad[0].exitcode}")
    return total


def _put(q: Any, obj: Any, stopped: threading.Event) -> bool:
    """Put ``obj`` unless the adapter was stopped meanwhile; False to try again."""
    if stopped.is_set():
        return True
    try:
        q.put(obj, timeout=0.5)
        return True
    except queue.Full:
        return False


def _model_process(spec: AdapterSpec, device: str, cache_dir: str, inputs: Any, events: Any) -> None:
    """A model process: batches from the shared queue; a partial batch goes to the model as
    soon as the queue runs dry, so the device never waits for a batch to fill."""
    report = ShardReport()
    cache = PredictionCache(cache_dir)
    sink = CacheSink(cache, spec.name)
    batcher = Batcher(spec, device, sink, report, lambda n: events.put(("progress", n)))
    stopped = False
    try:
        while True:
            try:
                got = inputs.get(timeout=0.05) if batcher.pending else inputs.get()
            except queue.Empty:
                got = "flush"
            if got is None:
                break
            if stopped:
                continue  # drain: the rest is not inferred
            try:
                if got == "flush":
                    batcher.push()
                else:
                    batcher.add(*got)
            except AdapterStopped as exc:
                report.stopped, stopped = str(exc), True
                events.put((_STOP, report.stopped))  # the driver stops feeding now
        if not stopped:
            try:
                batcher.flush()
            except AdapterStopped as exc:
                report.stopped = str(exc)
    except Exception as exc:  # e.g. the model cannot load on this device: stop the run, say why
        report.stopped = _why(spec, device, exc)
        events.put((_STOP, report.stopped))
        while inputs.get() is not None:  # take the rest, so the driver never waits on a full queue
            pass
    finally:
        try:
            batcher.close()
            sink.close()
        except Exception as exc:  # a write failed: said, never a hung driver
            report.stopped = report.stopped or _why(spec, device, exc)
        finally:
            cache.close()
            events.put((_DONE, report))


def _why(spec: AdapterSpec, device: str, exc: BaseException) -> str:
    return f"adapter {spec.name!r} on {device}: {' '.join(str(exc).split()) or type(exc).__name__}"
