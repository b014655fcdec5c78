"""The infer phase: (sample, condition) -> perturbed image -> adapter -> prediction cache.

One function, :func:`infer_shard`, does the work for a shard of samples; executors (local
process pool, in-process, Ray) only decide where shards run. Every outcome is written to the
cache as it happens, so a killed run loses at most the batch in flight.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from bench.engine.cache import PredictionCache, prediction_key
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


class Batcher:
    """Collects (cache key, model input) pairs, calls ``predict`` on full batches, checks every
    output against the contract (:meth:`Prediction.problems`) and records each outcome in the
    cache; stops the adapter (:class:`AdapterStopped`) after :data:`STOP_AFTER_FAILED_BATCHES`
    consecutive all-failed batches. The model is built and loaded on the first batch, so work
    the cache already holds needs no model at all."""

    def __init__(self, spec: AdapterSpec, device: str, cache: PredictionCache, report: ShardReport,
                 progress: Callable[[int], None] | None = None):
        self.spec, self.device, self.cache, self.report, self.progress = spec, device, cache, report, progress
        self.pending: list[tuple[str, ModelInput]] = []
        self._adapter: Adapter | None = None
        self._batch_size: int | None = None
        self._failed_batches = self._failed_run = 0

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
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        preds, batch_error = self._predict([mi for _, mi in batch])
        n_bad, last_error = 0, batch_error
        for i, (key, mi) in enumerate(batch):
            error = batch_error or self._record(key, mi, preds[i])
            if error is not None:
                self.cache.put_failure(key, error, adapter=self.spec.name, condition=mi.condition)
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
        """Cache ``pred`` if it keeps the output contract; else the reason it fails."""
        where = f"{mi.file_name} [{mi.condition}]"
        try:
            if not isinstance(pred, Prediction):
                raise SampleError(where, f"adapter returned {type(pred).__name__}, not Prediction")
            if pred.extras.get("error"):
                raise SampleError(where, str(pred.extras["error"]))
            h, w = mi.image.shape[:2]
            pred.validate(h, w, self.adapter.tasks, where)
            json.dumps(pred.extras, default=str)
            self.cache.put(key, pred, height=h, width=w, adapter=self.spec.name, condition=mi.condition)
        except SampleError as exc:
            return str(exc)
        except (TypeError, ValueError) as exc:
            return f"{where}: invalid output: {exc}"
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


def model_inputs(name: str, identity: dict[str, Any], samples: Sequence[Sample], conditions: Sequence[Condition],
                 suite_seed: int, cache: PredictionCache, report: ShardReport, retry_failed: bool = False,
                 progress: Callable[[int], None] | None = None):
    """Yield ``(cache key, ModelInput)`` for adapter ``name`` (cache ``identity``) and every (sample, condition) the cache does not hold
    (or holds as failed, with ``retry_failed``): the image decoded once per sample, perturbed
    per condition. An unreadable image or a failed perturbation is recorded in the cache here."""
    from bench.perturbations import apply_condition

    def skip(n: int) -> None:
        if progress:
            progress(n)

    for sample in samples:
        keys = plan_keys(identity, cache, sample, conditions, suite_seed)
        todo = []
        for cond, key in zip(conditions, keys):
            report.n_items += 1
            status = cache.status(key)
            if status == "ok" or (status == "failed" and not retry_failed):
                report.n_cached += 1
                skip(1)
            else:
                todo.append((cond, key))
        if not todo:
            continue
        try:
            image = sample.load_image()
        except SampleError as exc:
            for cond, key in todo:
                cache.put_failure(key, str(exc), adapter=name, condition=cond.key)
            report.n_failed += len(todo)
            skip(len(todo))
            continue
        meta = {k: sample.meta[k] for k in ADAPTER_META_KEYS if k in sample.meta}
        for cond, key in todo:
            try:
                img = apply_condition(image, cond, suite_seed=suite_seed, sample_id=sample.id)
            except Exception as exc:
                cache.put_failure(key, f"{sample.where}: perturbation {cond.key} failed: {exc}",
                                  adapter=name, condition=cond.key)
                report.n_failed += 1
                skip(1)
                continue
            yield key, ModelInput(sample.id, img, sample.file_name, cond.key, meta)


def infer_shard(spec: AdapterSpec, samples: Sequence[Sample], conditions: Sequence[Condition],
                suite_seed: int, cache_dir: str, device: str = "cpu", retry_failed: bool = False,
                progress: Callable[[int], None] | None = None) -> ShardReport:
    """Predict every (sample, condition) of the shard that the cache does not hold yet.

    Failures (unreadable image, perturbation error, adapter exception, invalid output) are
    recorded in the cache with their reason; recorded failures are retried only with
    ``retry_failed``.
    """
    t0 = time.perf_counter()
    cache = PredictionCache(cache_dir)
    report = ShardReport()
    # identity without loading weights (cheap), so cached work needs no model at all
    identity = spec.create().cache_identity()
    batcher = Batcher(spec, device, cache, report, progress)
    try:
        for key, item in model_inputs(spec.name, identity, samples, conditions, suite_seed, cache, report,
                                      retry_failed, progress):
            batcher.add(key, item)
        batcher.flush()
    except AdapterStopped as exc:
        report.stopped = str(exc)
    report.seconds = time.perf_counter() - t0
    cache.close()
    return report
