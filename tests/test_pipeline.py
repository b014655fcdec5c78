"""The infer pipeline: decode and perturbation ahead in worker processes (bounded), one model
process per device fed from one queue (each sample once), writes from a writer thread whose
errors surface, and the same numbers whichever way it ran."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

import runner_fixtures  # noqa: F401  (registers the test dataset and adapters)
from bench.core.conditions import Condition
from bench.core.types import Prediction
from bench.engine.cache import PredictionCache
from bench.engine.executors.local import parse_devices
from bench.engine.inference import CacheSink, prefetched
from bench.engine.runner import RunOptions, run_suite
from bench.suites import Suite

CONDITIONS = ["clean", "gaussian_noise(sigma=0.2)", "jpeg(quality=50)"]


def _suite(n: int = 12) -> Suite:
    return Suite.from_mapping({
        "name": "tiny", "version": 1, "dataset": "tiny-test", "dataset_options": {"n": n},
        "conditions": CONDITIONS, "metrics": ["miou", "f1", "iou_fg", "fp_area", "det_auc"],
        "protocol": {"bootstrap": {"n": 100, "seed": 0}}})


def _run(tmp_path, monkeypatch, tag: str, **opts):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / f"cache-{tag}"))
    log = tmp_path / f"calls-{tag}.log"
    monkeypatch.setenv("BENCH_TEST_CALL_LOG", str(log))
    run = run_suite(_suite(), ["device-test"], RunOptions(out_dir=tmp_path / tag, data_root=tmp_path / "data",
                                                         progress=False, gallery_size=0, **opts))[0]
    lines = [ln.split() for ln in log.read_text().splitlines()] if log.exists() else []
    return run, lines


def test_one_model_process_per_device_each_sample_once_same_numbers(tmp_path, monkeypatch):
    one, calls1 = _run(tmp_path, monkeypatch, "one", workers=2, device="cpu")
    two, calls2 = _run(tmp_path, monkeypatch, "two", workers=2, device="cpu:0,cpu:1")
    assert {c[1] for c in calls1} == {"cpu"} and len({c[0] for c in calls1}) == 1
    # two model processes (not the driver's), one per device, sharing the work
    assert {c[1] for c in calls2} == {"cpu:0", "cpu:1"}
    per_device = Counter(c[1] for c in calls2)
    assert len({c[0] for c in calls2}) == 2 and min(per_device.values()) > 0, per_device
    pairs = Counter((c[2], c[3]) for c in calls2)
    assert len(pairs) == 12 * 3 and set(pairs.values()) == {1}  # each (sample, condition) once
    assert two.infer.n_inferred == 36 and two.infer.n_failed == 0
    a = json.loads((one.out_dir / "results.json").read_text())["conditions"]
    b = json.loads((two.out_dir / "results.json").read_text())["conditions"]
    assert a == b
    pd.testing.assert_frame_equal(pd.read_parquet(one.out_dir / "samples.parquet"),
                                  pd.read_parquet(two.out_dir / "samples.parquet"))


def test_a_device_whose_model_cannot_load_stops_the_run_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_TEST_BAD_DEVICE", "cpu:1")
    run, calls = _run(tmp_path, monkeypatch, "bad", workers=2, device="cpu:0,cpu:1")
    assert run.infer.stopped and "cpu:1" in run.infer.stopped and "invalid device ordinal" in run.infer.stopped
    assert {c[1] for c in calls} <= {"cpu:0"}  # nothing ran on the broken device
    df = pd.read_parquet(run.out_dir / "samples.parquet")
    assert len(df) == 36 and run.infer.n_inferred + (df["status"] == "failed").sum() == 36  # none dropped


def test_prefetch_without_workers_gives_the_same_numbers(tmp_path, monkeypatch):
    inline, _ = _run(tmp_path, monkeypatch, "inline", workers=1)
    ahead, _ = _run(tmp_path, monkeypatch, "ahead", workers=2)
    a = json.loads((inline.out_dir / "results.json").read_text())["conditions"]
    b = json.loads((ahead.out_dir / "results.json").read_text())["conditions"]
    assert a == b and inline.infer.n_inferred == ahead.infer.n_inferred == 36


def test_parse_devices():
    assert parse_devices("cuda:0, cuda:1") == ["cuda:0", "cuda:1"]
    assert parse_devices("cpu") == ["cpu"]
    assert parse_devices("auto")  # every CUDA device torch sees, else cpu
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="name a device"):
        parse_devices(" , ")


class _CountingPool:
    """A thread pool that records how many prepares were submitted but not yet consumed."""

    def __init__(self):
        self.pool = ThreadPoolExecutor(2)
        self.submitted = 0

    def submit(self, fn, *args):
        self.submitted += 1
        return self.pool.submit(fn, *args)


def test_prefetch_window_is_bounded(tmp_path):
    ds = runner_fixtures.TinyDataset(data_root=tmp_path / "data", split="test", n=20)
    items = [(s, [(Condition.clean(), f"k{i}")]) for i, s in enumerate(ds.samples())]
    pool = _CountingPool()
    gen = prefetched(items, 0, pool, depth=3)
    first = next(gen)
    assert first[0][0] == "k0" and first[0][2] is not None
    assert pool.submitted <= 4  # the window (3) plus the one refilled when the first was taken
    rest = list(gen)
    assert [r[0][0] for r in rest] == [f"k{i}" for i in range(1, 20)]  # in order, none lost
    pool.pool.shutdown()


def test_writer_thread_error_surfaces(tmp_path):
    cache = PredictionCache(tmp_path / "c")
    sink = CacheSink(cache, "x")
    boom = RuntimeError("disk full")

    def fail(*a, **k):
        raise boom

    cache.put_encoded = fail
    sink.ok("k" * 64, Prediction(score=0.5), 2, 2, "clean")
    with pytest.raises(RuntimeError, match="disk full"):
        sink.close()


def test_writer_thread_writes_off_the_callers_thread(tmp_path):
    cache = PredictionCache(tmp_path / "c")
    seen = []
    real = cache.put_encoded

    def spy(*a, **k):
        seen.append(threading.current_thread().name)
        time.sleep(0.01)
        return real(*a, **k)

    cache.put_encoded = spy
    sink = CacheSink(cache, "x")
    t0 = time.perf_counter()
    for i in range(10):
        sink.ok(f"{i:064d}", Prediction(score=0.5), 2, 2, "clean")
    handed = time.perf_counter() - t0
    sink.close()
    assert len(seen) == 10 and all(name.startswith("cache-writer") for name in seen)
    assert handed < 0.05  # handing over did not wait for the 10 x 10 ms writes
    assert all(cache.status(f"{i:064d}") == "ok" for i in range(10))
