"""The infer phase: (sample, condition) -> perturbed image -> adapter -> prediction cache.

The work is a list of :data:`WorkItem` (a sample and the (condition, cache key) pairs the cache
lacks), planned where the cache is. Three stages, each replaceable:

1. :func:`prepare` decodes a sample once and perturbs it per condition (pure: no cache, no
   model), run ahead of the model by :func:`prefetched` in worker processes with a bounded
   window, so memory stays flat;
2. :class:`Batcher` feeds full batches to the adapter in the process that holds the model and
   checks every output against the contract;
3. a sink takes each outcome: :class:`CacheSink` encodes and writes it from a writer thread
   (off the predict loop), :class:`CollectSink` encodes it for another process or machine to
   write (Ray: only the driver writes the cache and its index).

:func:`infer_items` chains them; executors (:mod:`bench.engine.executors`) decide where it
runs. Every outcome is written as it happens, so a killed run loses at most what was in flight.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

from bench.engine.cache import PredictionCache, encode_prediction, prediction_key
from bench.core.conditions import Condition
from bench.errors import BenchError, SampleError
from bench.core.registry import ADAPTERS, PERTURBATIONS
from bench.core.types import Adapter, ModelInput, Prediction, Sample

#: The only sample metadata an adapter sees: never ground truth (labels, region counts, scores).
ADAPTER_META_KEYS = ("file_name", "content_type", "source")

#: An adapter is stopped when every sample of this many consecutive batches failed, and those
#: batches held at least STOP_AFTER_FAILED_SAMPLES samples (so a batch size of 1 does not stop
#: on three unlucky images).
STOP_AFTER_FAILED_BATCHES = 3
STOP_AFTER_FAILED_SAMPLES = 12


class AdapterStopped(BenchError):
    """The adapter failed on every sample of several consecutive batches."""


@dataclass(frozen=True)
class AdapterSpec:
    """What a worker needs to build an adapter: its registry name and config."""

    name: str
    #: the adapter config as canonical JSON (hashable, so a worker can memoise its instance)
    config_json: str = "{}"
    #: ``module:qualname`` of the adapter class, imported by workers (a spawned process may not
    #: have run the code that registered it, e.g. an adapter defined in a test or a notebook).
    cls_path: str = ""

    @classmethod
    def make(cls, name: str, config: dict[str, Any] | None = None) -> "AdapterSpec":
        from bench.engine.cache import canonical_json

        adapter_cls = ADAPTERS.get(name)
        return cls(name, canonical_json(config or {}),
                   f"{adapter_cls.__module__}:{adapter_cls.__qualname__}")

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.config_json)

    def adapter_class(self) -> type[Adapter]:
        if self.name in ADAPTERS:
            return ADAPTERS.get(self.name)
        if self.cls_path:
            import importlib

            module, _, qual = self.cls_path.partition(":")
            obj: Any = importlib.import_module(module)
            for part in qual.split("."):
                obj = getattr(obj, part)
            return obj
        return ADAPTERS.get(self.name)

    def create(self) -> Adapter:
        return self.adapter_class()(**self.config)


@dataclass
class ShardReport:
    n_items: int = 0      # (sample, condition) pairs in the shard
    n_cached: int = 0     # already in the cache
    n_inferred: int = 0   # predicted now
    n_failed: int = 0     # failed now (recorded in the cache)
    n_calls: int = 0      # adapter.predict calls
    seconds: float = 0.0
    stopped: str | None = None

    def add(self, other: "ShardReport") -> None:
        for f in ("n_items", "n_cached", "n_inferred", "n_failed", "n_calls", "seconds"):
            setattr(self, f, getattr(self, f) + getattr(other, f))
        self.stopped = self.stopped or other.stopped


_ADAPTERS: dict[tuple[AdapterSpec, str], Adapter] = {}


def loaded_adapter(spec: AdapterSpec, device: str) -> Adapter:
    """One loaded adapter instance per (spec, device) per process."""
    key = (spec, device)
    if key not in _ADAPTERS:
        adapter = spec.create()
        adapter.load(device)
        _ADAPTERS[key] = adapter
    return _ADAPTERS[key]


def is_stochastic(condition: Condition) -> bool:
    return any(PERTURBATIONS.entry(s.name).info.get("stochastic", True) for s in condition.steps)


def item_key(identity: dict[str, Any], image_sha: str, condition: Condition, suite_seed: int) -> str:
    return prediction_key(identity, image_sha, condition.key,
                          suite_seed if is_stochastic(condition) else None)


def sample_image_sha(cache: PredictionCache, sample: Sample) -> str:
    if sample.error:
        raise SampleError(sample.where, sample.error)
    if sample.image_bytes is not None:
        return cache.image_sha256(None, sample.image_bytes)
    if sample.image_path is None:
        raise SampleError(sample.where, "no image file for this record")
    try:
        return cache.image_sha256(sample.image_path)
    except FileNotFoundError:
        raise SampleError(sample.where, "image file not found") from None
    except OSError as exc:
        raise SampleError(sample.where, f"cannot read image: {exc}") from None


def failure_key(identity: dict[str, Any], sample: Sample, condition: Condition) -> str:
    """Key under which a sample whose image cannot even be read records its failure."""
    return prediction_key(identity, f"unreadable:{sample.id}", condition.key, None)


def plan_keys(identity: dict[str, Any], cache: PredictionCache, sample: Sample,
              conditions: Sequence[Condition], suite_seed: int) -> list[str]:
    """The cache key of each (sample, condition); an unreadable image gets failure keys."""
    try:
        sha = sample_image_sha(cache, sample)
    except SampleError:
        return [failure_key(identity, sample, c) for c in conditions]
    return [item_key(identity, sha, c, suite_seed) for c in conditions]


class BatchTimeout(Exception):
    """predict() did not return within the adapter's ``requirements["timeout_s"]``."""


def predict_with_timeout(adapter: Adapter, inputs: list[ModelInput], timeout_s: float | None):
    """``adapter.predict(inputs)``; with a timeout, in a daemon thread that is abandoned when
    it overruns (Python cannot kill a thread: a hung model keeps its thread, the batch fails,
    and three such batches stop the adapter). External adapters kill their own process group."""
    if not timeout_s:
        return adapter.predict(inputs)
    import threading

    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["out"] = adapter.predict(inputs)
        except BaseException as exc:  # re-raised in the caller's thread
            box["exc"] = exc

    thread = threading.Thread(target=target, daemon=True, name=f"predict-{adapter.name}")
    thread.start()
    thread.join(float(timeout_s))
    if thread.is_alive():
        raise BatchTimeout(f"predict timed out after {float(timeout_s):g} s on a batch of {len(inputs)}")
    if "exc" in box:
        raise box["exc"]
    return box["out"]


#: Niceness of prefetch workers (decode, perturb): below the model's process.
PREFETCH_NICE = 10

#: A sample and the (condition, cache key) pairs of it still to infer.
WorkItem = tuple[Sample, list[tuple[Condition, str]]]
#: What :func:`prepare` makes of one pair: (cache key, condition key, model input or None, error or None).
Prepared = tuple[str, str, "ModelInput | None", "str | None"]


def prepare(item: WorkItem, suite_seed: int) -> list[Prepared]:
    """The model inputs of one work item: the image decoded once, perturbed per condition with
    the sample's seed; an unreadable image or a failed perturbation becomes an error."""
    from bench.perturbations import apply_condition

    sample, todo = item
    try:
        image = sample.load_image()
    except SampleError as exc:
        return [(key, cond.key, None, str(exc)) for cond, key in todo]
    meta = {k: sample.meta[k] for k in ADAPTER_META_KEYS if k in sample.meta}
    out: list[Prepared] = []
    for cond, key in todo:
        try:
            img = apply_condition(image, cond, suite_seed=suite_seed, sample_id=sample.id)
        except Exception as exc:
            out.append((key, cond.key, None, f"{sample.where}: perturbation {cond.key} failed: {exc}"))
            continue
        out.append((key, cond.key, ModelInput(sample.id, img, sample.file_name, cond.key, meta), None))
    return out


def prepare_ahead(item: WorkItem, suite_seed: int) -> list[Prepared]:
    """:func:`prepare` in a prefetch worker, at a lower CPU priority than the model's process,
    so that on a busy machine the process feeding the accelerator is scheduled first."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, PREFETCH_NICE)
    except (AttributeError, OSError):  # not on this platform, or not permitted: run as is
        pass
    return prepare(item, suite_seed)


def prefetched(items: Sequence[WorkItem], suite_seed: int, pool: Any = None, depth: int = 4) -> Iterator[list[Prepared]]:
    """:func:`prepare` of each item, in order. With ``pool`` (a ``concurrent.futures``
    executor), items are prepared ahead in its worker processes, at most ``depth`` at a time,
    so at most ``depth`` samples' perturbed images wait in memory; the first item is prepared
    here, so the model starts while the workers start."""
    if pool is None:
        for item in items:
            yield prepare(item, suite_seed)
        return
    window: deque = deque()
    it = iter(items)
    first = next(it, None)
    if first is None:
        return
    try:
        for item in it:
            window.append(pool.submit(prepare_ahead, item, suite_seed))
            if len(window) >= depth:
                break
        yield prepare(first, suite_seed)
        while window:
            fut = window.popleft()
            nxt = next(it, None)
            if nxt is not None:
                window.append(pool.submit(prepare_ahead, nxt, suite_seed))
            yield fut.result()
    finally:
        for fut in window:  # stopped early: drop what was not started
            fut.cancel()


class CacheSink:
    """Writes outcomes into a prediction cache from one writer thread, so encoding and disk
    writes overlap the next ``predict``. At most ``max_pending`` outcomes wait (memory stays
    flat); :meth:`close` waits for the rest and re-raises a write error (so does the next call
    after one). ``threaded=False`` writes in the caller's thread."""

    _STOP = object()

    def __init__(self, cache: PredictionCache, adapter: str, max_pending: int = 32, threaded: bool = True):
        self.cache, self.adapter = cache, adapter
        self._error: BaseException | None = None
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        if threaded:
            self._queue = queue.Queue(maxsize=max_pending)
            self._thread = threading.Thread(target=self._loop, name=f"cache-writer-{adapter}", daemon=True)
            self._thread.start()

    def ok(self, key: str, pred: Prediction, height: int, width: int, condition: str) -> None:
        self._submit(("ok", key, pred, height, width, condition))

    def failed(self, key: str, error: str, condition: str) -> None:
        self._submit(("failed", key, error, condition))

    def _submit(self, job: tuple) -> None:
        if self._error is not None:
            raise self._error
        if self._queue is None:
            self._write(job)
        else:
            self._queue.put(job)

    def _write(self, job: tuple) -> None:
        if job[0] == "ok":
            _, key, pred, h, w, cond = job
            self.cache.put_encoded(key, encode_prediction(pred, h, w), adapter=self.adapter, condition=cond)
        else:
            _, key, error, cond = job
            self.cache.put_failure(key, error, adapter=self.adapter, condition=cond)

    def _loop(self) -> None:
        assert self._queue is not None
        while True:
            job = self._queue.get()
            if job is self._STOP:
                self.cache.close_thread()
                return
            if self._error is None:
                try:
                    self._write(job)
                except BaseException as exc:  # surfaced by the next submit or close
                    self._error = exc

    def close(self) -> None:
        if self._thread is not None and self._queue is not None:
            self._queue.put(self._STOP)
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise self._error


class CollectSink:
    """Keeps outcomes, encoded, for the process that owns the cache to write
    (:meth:`PredictionCache.put_encoded` / ``put_failure``): ``outcomes`` is a list of
    (key, condition, entry bytes or None, error or None)."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[str, str, bytes | None, str | None]] = []

    def ok(self, key: str, pred: Prediction, height: int, width: int, condition: str) -> None:
        self.outcomes.append((key, condition, encode_prediction(pred, height, width), None))

    def failed(self, key: str, error: str, condition: str) -> None:
        self.outcomes.append((key, condition, None, error))

    def close(self) -> None:
        pass


#: What the model thread hands back for a batch it did not predict because the adapter stopped.
_SKIPPED = "skipped: the adapter was stopped"


class Batcher:
    """Collects (cache key, model input) pairs, calls ``predict`` on full batches, checks every
    output against the contract (:meth:`Prediction.problems`) and hands each outcome to
    ``sink`` (:class:`CacheSink`, :class:`CollectSink`); stops the adapter
    (:class:`AdapterStopped`) after :data:`STOP_AFTER_FAILED_BATCHES` consecutive all-failed
    batches. The model is built and loaded on the first batch, so work the cache already holds
    needs no model at all.

    ``pipelined``: ``predict`` runs in a model thread that always has the next batch waiting
    (at most ``depth`` in flight), while the caller's thread assembles batches and checks and
    hands on the outputs of earlier ones, so the model never waits for that bookkeeping (a GPU
    kernel, like a sleep, releases the GIL). Outputs are handled in batch order either way.
    :meth:`close` ends the model thread; :meth:`flush` waits for every batch in flight.
    """

    _STOP = object()

    def __init__(self, spec: AdapterSpec, device: str, sink: Any, report: ShardReport,
                 progress: Callable[[int], None] | None = None, pipelined: bool = True, depth: int = 2):
        self.spec, self.device, self.sink, self.report, self.progress = spec, device, sink, report, progress
        self.pending: list[tuple[str, ModelInput]] = []
        self._adapter: Adapter | None = None
        self._batch_size: int | None = None
        self._failed_batches = self._failed_run = 0
        self._pipelined, self._depth = pipelined, depth
        self._to_model: queue.Queue | None = None
        self._from_model: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._in_flight = 0

    @property
    def adapter(self) -> Adapter:
        if self._adapter is None:
            self._adapter = loaded_adapter(self.spec, self.device)
        return self._adapter

    @property
    def batch_size(self) -> int:
        if self._batch_size is None:
            self._batch_size = max(1, int(self.adapter.requirements.get("batch_size", 8)))
        return self._batch_size

    def add(self, key: str, item: ModelInput) -> None:
        self.pending.append((key, item))
        if len(self.pending) >= self.batch_size:
            self._submit()

    def fail(self, key: str, condition: str, error: str) -> None:
        """An item that failed before reaching the model (unreadable image, perturbation)."""
        self.sink.failed(key, error, condition)
        self.report.n_failed += 1
        if self.progress:
            self.progress(1)

    def push(self) -> None:
        """Send the partial batch to the model now (the input ran dry), without waiting."""
        if self.pending:
            self._submit()

    def flush(self) -> None:
        """Predict the partial batch, and wait until every batch in flight is handled."""
        if self.pending:
            self._submit()
        while self._in_flight:
            self._finish(*self._from_model.get())

    def close(self) -> None:
        """End the model thread (batches not yet predicted are dropped)."""
        if self._thread is not None and self._to_model is not None:
            while True:  # drop what waits, so the stop mark fits
                try:
                    self._to_model.get_nowait()
                except queue.Empty:
                    break
            self._to_model.put(self._STOP)
            self._thread.join()
            self._thread = None

    def _submit(self) -> None:
        batch, self.pending = self.pending, []
        if not self._pipelined:
            self._finish(batch, *self._predict([mi for _, mi in batch]))
            return
        if self._thread is None:
            _ = self.adapter  # load here: a load error is the caller's, not the thread's
            self._to_model = queue.Queue(maxsize=self._depth)
            self._thread = threading.Thread(target=self._model_loop, name=f"model-{self.spec.name}", daemon=True)
            self._thread.start()
        assert self._to_model is not None
        self._to_model.put(batch)
        self._in_flight += 1
        while True:  # hand on what the model finished meanwhile
            try:
                done = self._from_model.get_nowait()
            except queue.Empty:
                break
            self._finish(*done)

    def _model_loop(self) -> None:
        """Predict batches as they come. Batches whose ``predict`` raised are counted here too,
        with the stop rule's thresholds, so a failing model is not called for the batches
        already queued behind the one that stops it (the caller raises AdapterStopped there)."""
        assert self._to_model is not None
        failed_batches = failed_run = 0
        while True:
            batch = self._to_model.get()
            if batch is self._STOP:
                return
            if failed_batches >= STOP_AFTER_FAILED_BATCHES and failed_run >= STOP_AFTER_FAILED_SAMPLES:
                self._from_model.put((batch, None, _SKIPPED))  # stopped: never predicted
                continue
            out = self._predict([mi for _, mi in batch])
            if out[1] is not None:
                failed_batches, failed_run = failed_batches + 1, failed_run + len(batch)
            else:
                failed_batches = failed_run = 0
            self._from_model.put((batch, *out))

    def _finish(self, batch: list[tuple[str, ModelInput]], preds: list | None, batch_error: str | None) -> None:
        if self._pipelined:
            self._in_flight -= 1
        if batch_error is _SKIPPED:  # left uninferred: the adapter is being stopped
            return
        n_bad, last_error = 0, batch_error
        for i, (key, mi) in enumerate(batch):
            error = batch_error or self._record(key, mi, preds[i])
            if error is not None:
                self.sink.failed(key, error, mi.condition)
                n_bad, last_error = n_bad + 1, error
        self.report.n_failed += n_bad
        if self.progress:
            self.progress(len(batch))
        self._track(n_bad, len(batch), last_error)

    def _predict(self, inputs: list[ModelInput]) -> tuple[list | None, str | None]:
        """(predictions, None), or (None, the reason the whole batch failed)."""
        name, ad = self.spec.name, self.adapter
        self.report.n_calls += 1
        try:
            preds = predict_with_timeout(ad, inputs, ad.requirements.get("timeout_s"))
        except BatchTimeout as exc:
            return None, f"adapter {name}: {exc}"
        except Exception as exc:  # the adapter's own failure: fail the batch, keep going
            return None, f"adapter {name} raised {type(exc).__name__}: {exc}"
        if not isinstance(preds, list) or len(preds) != len(inputs):
            n = len(preds) if hasattr(preds, "__len__") else type(preds).__name__
            err = SampleError(name, f"predict returned {n} outputs for {len(inputs)} inputs")
            return None, f"adapter {name} raised SampleError: {err}"
        return preds, None

    def _record(self, key: str, mi: ModelInput, pred: Any) -> str | None:
        """Hand ``pred`` to the sink if it keeps the output contract; else the reason it fails."""
        where = f"{mi.file_name} [{mi.condition}]"
        try:
            if not isinstance(pred, Prediction):
                raise SampleError(where, f"adapter returned {type(pred).__name__}, not Prediction")
            if pred.extras.get("error"):
                raise SampleError(where, str(pred.extras["error"]))
            h, w = mi.image.shape[:2]
            pred.validate(h, w, self.adapter.tasks, where)
            json.dumps(pred.extras, default=str)
        except SampleError as exc:
            return str(exc)
        except (TypeError, ValueError) as exc:
            return f"{where}: invalid output: {exc}"
        self.sink.ok(key, pred, h, w, mi.condition)
        self.report.n_inferred += 1
        return None

    def _track(self, n_bad: int, n: int, last_error: str | None) -> None:
        if n_bad == n:
            self._failed_batches, self._failed_run = self._failed_batches + 1, self._failed_run + n_bad
        else:
            self._failed_batches = self._failed_run = 0
        if self._failed_batches >= STOP_AFTER_FAILED_BATCHES and self._failed_run >= STOP_AFTER_FAILED_SAMPLES:
            raise AdapterStopped(
                f"adapter {self.spec.name!r} failed on every sample of {self._failed_batches} consecutive "
                f"batches ({self._failed_run} samples); stopped early. Last error: {last_error}")


def feed(batcher: Batcher, prepared: Iterable[list[Prepared]]) -> None:
    """Every prepared item to ``batcher`` (errors straight to its sink), then the last batch;
    an :class:`AdapterStopped` is recorded in the batcher's report."""
    try:
        for outs in prepared:
            for key, cond, item, error in outs:
                if error is not None:
                    batcher.fail(key, cond, error)
                else:
                    batcher.add(key, item)
        batcher.flush()
    except AdapterStopped as exc:
        batcher.report.stopped = str(exc)
    finally:
        batcher.close()


def infer_items(spec: AdapterSpec, items: Sequence[WorkItem], suite_seed: int, device: str, sink: Any,
                report: ShardReport | None = None, progress: Callable[[int], None] | None = None,
                pool: Any = None, depth: int = 4) -> ShardReport:
    """The pipeline in this process: ``items`` prepared (ahead, on ``pool`` when given), fed to
    the adapter on ``device``, outcomes to ``sink`` (closed at the end); at most ``depth``
    samples are prepared ahead."""
    t0 = time.perf_counter()
    report = report or ShardReport()
    batcher = Batcher(spec, device, sink, report, progress)
    try:
        feed(batcher, prefetched(items, suite_seed, pool, depth))
    finally:
        sink.close()
    report.seconds += time.perf_counter() - t0
    return report


def infer_to_cache(spec: AdapterSpec, items: Sequence[WorkItem], suite_seed: int, cache_dir: str,
                   device: str = "cpu") -> ShardReport:
    """:func:`infer_items` writing into the cache at ``cache_dir`` (a worker process's job)."""
    cache = PredictionCache(cache_dir)
    try:
        return infer_items(spec, items, suite_seed, device, CacheSink(cache, spec.name))
    finally:
        cache.close()


def infer_remote(spec: AdapterSpec, items: Sequence[WorkItem], suite_seed: int,
                 device: str) -> tuple[ShardReport, list[tuple[str, str, bytes | None, str | None]]]:
    """:func:`infer_items` for a process that cannot see the cache (a Ray worker on another
    node): the outcomes come back encoded, for the caller to write."""
    sink = CollectSink()
    report = infer_items(spec, items, suite_seed, device, sink)
    return report, sink.outcomes


def write_outcomes(cache: PredictionCache, adapter: str, outcomes: Iterable[tuple[str, str, bytes | None, str | None]]) -> None:
    """Store what :func:`infer_remote` returned."""
    for key, condition, data, error in outcomes:
        if data is not None:
            cache.put_encoded(key, data, adapter=adapter, condition=condition)
        else:
            cache.put_failure(key, str(error), adapter=adapter, condition=condition)
