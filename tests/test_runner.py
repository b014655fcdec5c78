"""The runner end to end on a tiny generated dataset: results schema, exact numbers, failures,
caching and worker-count independence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import runner_fixtures as rf
from bench.engine.runner import RunOptions, run_suite
from bench.suites import Suite

METRICS = ["miou", "f1", "iou_fg", "fp_area", "det_auc", "det_acc"]


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    log = tmp_path / "calls.log"
    monkeypatch.setenv("BENCH_TEST_CALL_LOG", str(log))
    return tmp_path, log


def make_suite(**options) -> Suite:
    return Suite.from_mapping({"name": "tiny", "version": 1, "dataset": "tiny-test",
                               "dataset_options": options, "metrics": METRICS,
                               "protocol": {"bootstrap": {"n": 200, "seed": 3}}})


def run(tmp: Path, adapter: str, workers: int = 1, out: str = "out", **options):
    suite = make_suite(**options)
    opts = RunOptions(out_dir=tmp / out, data_root=tmp / "data", workers=workers, progress=False,
                      gallery_size=4)
    return run_suite(suite, [adapter], opts)[0]


def expected_counts(label: int) -> tuple[int, int, int, int]:
    """Hand-worked: GT = cv2.fillPoly of x 10..40, y 8..28 (31 x 21 px, boundary included);
    prediction = x 20..50, y 8..28 (31 x 21). Overlap x 20..40 -> 21 x 21."""
    gt = 31 * 21 if label else 0
    pred = 31 * 21
    tp = 21 * 21 if label else 0
    return tp, pred - tp, gt - tp, 64 * 80 - gt - pred + tp


def test_results_schema_and_exact_values(env):
    tmp, _ = env
    r = run(tmp, "box-test")
    res = json.loads((r.out_dir / "results.json").read_text())
    for key in ("schema", "run_id", "created", "harness", "suite", "dataset", "adapter", "protocol",
                "conditions", "environment", "timing"):
        assert key in res, key
    assert res["schema"] == "bench.results/1"
    assert len(res["dataset"]["fingerprint"]) == 64 and res["dataset"]["n_samples"] == 24
    assert res["protocol"]["mask_threshold"] == 0.5 and res["protocol"]["localization_images"] == "fake"
    assert res["environment"]["packages"]["numpy"] == np.__version__
    (clean,) = res["conditions"]
    assert clean["key"] == "clean" and clean["n"] == 24 and clean["n_failed"] == 0

    tp, fp, fn, tn = expected_counts(1)
    iou1 = tp / (tp + fp + fn + 1e-6)
    iou0 = tn / (tn + fp + fn + 1e-6)
    f1 = 2 * tp / (2 * tp + fp + fn)
    m = clean["metrics"]
    assert m["miou"]["value"] == pytest.approx((iou0 + iou1) / 2, abs=1e-12)
    assert m["iou_fg"]["value"] == pytest.approx(iou1, abs=1e-12)
    assert m["f1"]["value"] == pytest.approx(f1, abs=1e-12)
    assert m["miou"]["n"] == 18  # localization on the 18 fake images only
    assert m["fp_area"]["value"] == pytest.approx(31 * 21 / (64 * 80), abs=1e-12)
    assert m["fp_area"]["n"] == 6

    df = pd.read_parquet(r.out_dir / "samples.parquet")
    assert len(df) == 24 and set(df["status"]) == {"ok"}
    fake = df[df.label == 1].iloc[0]
    assert (fake.tp, fake.fp, fake.fn, fake.tn) == expected_counts(1)
    from sklearn.metrics import roc_auc_score

    assert m["det_auc"]["value"] == pytest.approx(roc_auc_score(df.label, df.score), abs=1e-12)
    lo, hi = m["det_auc"]["ci95"]
    assert lo <= m["det_auc"]["value"] <= hi
    # gallery written for a fixed subset
    index = json.loads((r.out_dir / "gallery" / "index.json").read_text())
    assert len(index["samples"]) == 4
    sid = index["samples"][0]["safe_id"]
    assert (r.out_dir / "gallery" / "pred" / "clean" / f"{sid}.png").exists()


def test_failures_are_counted_with_reasons_and_run_goes_on(env):
    tmp, _ = env
    r = run(tmp, "box-test", broken=True)
    df = pd.read_parquet(r.out_dir / "samples.parquet").set_index("sample_id")
    assert len(df) == 27
    assert df.loc["missing.png", "status"] == "failed"
    assert "missing.png" in df.loc["missing.png", "error"] and "not found" in df.loc["missing.png", "error"]
    assert "truncated.png" in df.loc["truncated.png", "error"] and "decode" in df.loc["truncated.png", "error"]
    assert "outside" in df.loc["outside.png", "error"]
    res = json.loads((r.out_dir / "results.json").read_text())
    assert res["conditions"][0]["n"] == 27 and res["conditions"][0]["n_failed"] == 3
    assert (df.drop(["missing.png", "truncated.png", "outside.png"])["status"] == "ok").all()


def test_invalid_outputs_fail_with_reason(env):
    tmp, _ = env
    r = run(tmp, "bad-test", n=10)
    df = pd.read_parquet(r.out_dir / "samples.parquet").set_index("sample_id")
    errors = {sid: (row.status, row.error or "") for sid, row in df.iterrows()}
    assert errors["img0.png"][0] == "failed" and "heatmap is (65, 80)" in errors["img0.png"][1]
    assert "NaN" in errors["img1.png"][1]
    assert "score 1.5" in errors["img2.png"][1]
    assert "model exploded" in errors["img3.png"][1]
    assert errors["img4.png"][0] == "ok"
    # heatmap 0.75 > 0.5 -> full mask
    assert df.loc["img4.png", "fp"] + df.loc["img4.png", "tp"] == 64 * 80


def test_second_run_calls_no_adapter_and_gives_same_numbers(env):
    tmp, log = env
    first = run(tmp, "box-test")
    n_calls = len(log.read_text().splitlines())
    assert n_calls == 6  # 24 images, batch size 4
    second = run(tmp, "box-test", out="out2")
    assert len(log.read_text().splitlines()) == n_calls
    assert second.infer.n_cached == 24 and second.infer.n_inferred == 0
    a = json.loads((first.out_dir / "results.json").read_text())["conditions"]
    b = json.loads((second.out_dir / "results.json").read_text())["conditions"]
    assert a == b


def test_worker_count_does_not_change_results(env):
    tmp, _ = env
    one = run(tmp, "box-test", workers=1, out="w1")
    import shutil

    shutil.rmtree(tmp / "cache")
    two = run(tmp, "box-test", workers=2, out="w2")
    assert two.infer.n_inferred == 24
    a = json.loads((one.out_dir / "results.json").read_text())["conditions"]
    b = json.loads((two.out_dir / "results.json").read_text())["conditions"]
    assert a == b
    pa = pd.read_parquet(one.out_dir / "samples.parquet")
    pb = pd.read_parquet(two.out_dir / "samples.parquet")
    pd.testing.assert_frame_equal(pa, pb)


def test_adapter_failing_every_batch_is_stopped_early(env):
    tmp, log = env
    r = run(tmp, "fails-test", n=40)
    assert r.infer.stopped and "fails-test" in r.infer.stopped and "CUDA out of memory" in r.infer.stopped
    # batches of 2: stopped once 3 batches and 12 samples failed in a row -> 6 calls
    assert len(log.read_text().splitlines()) == 6
    df = pd.read_parquet(r.out_dir / "samples.parquet")
    assert len(df) == 40 and (df["status"] == "failed").all()  # nothing silently dropped
    assert df["error"].str.contains("CUDA out of memory").all()
    assert df["error"].str.startswith("not inferred").sum() == 40 - 12


def test_unknown_adapter_suggests_names(env):
    from bench.errors import UnknownNameError

    tmp, _ = env
    with pytest.raises(UnknownNameError, match="box-test"):
        run(tmp, "box-tset")


def test_reference_field_of_the_protocol_is_applied(env):
    tmp, _ = env
    suite = Suite.from_mapping({"name": "tiny", "version": 1, "dataset": "tiny-test", "metrics": METRICS,
                                "protocol": {"reference_field": "regions", "bootstrap": {"n": 10}}})
    r = run_suite(suite, ["box-test"], RunOptions(out_dir=tmp / "o", data_root=tmp / "data", workers=1,
                                                  progress=False, gallery_size=0))[0]
    df = pd.read_parquet(r.out_dir / "samples.parquet")
    assert set(df.loc[df.label == 1, "reference"]) == {"it is odd"}  # the region text, not the caption
    assert df.loc[df.label == 0, "reference"].isna().all()
    assert r.results["protocol"]["reference_field"] == "regions"


def test_retry_failed_retries_only_the_failures(env, monkeypatch):
    tmp, log = env
    suite = make_suite(n=12)
    opts = dict(out_dir=tmp / "o", data_root=tmp / "data", workers=1, progress=False, gallery_size=0)
    monkeypatch.setenv("BENCH_TEST_FAIL_IDS", "img1.png,img5.png")
    first = run_suite(suite, ["flaky-test"], RunOptions(**opts))[0]
    assert first.infer.n_failed == 2
    df = pd.read_parquet(first.out_dir / "samples.parquet").set_index("sample_id")
    assert df.loc["img1.png", "error"].endswith("flaky failure") and df.loc["img2.png", "status"] == "ok"
    monkeypatch.delenv("BENCH_TEST_FAIL_IDS")
    log.write_text("")
    again = run_suite(suite, ["flaky-test"], RunOptions(**opts))[0]  # recorded failures stay failed
    assert log.read_text() == "" and again.results["conditions"][0]["n_failed"] == 2
    retried = run_suite(suite, ["flaky-test"], RunOptions(**opts, retry_failed=True))[0]
    assert sorted(log.read_text().split()) == ["img1.png", "img5.png"]
    assert retried.results["conditions"][0]["n_failed"] == 0


def test_a_hanging_batch_times_out_and_the_run_goes_on(env):
    import time

    tmp, _ = env
    t0 = time.perf_counter()
    r = run(tmp, "hangs-test", n=6)
    assert time.perf_counter() - t0 < 25  # did not wait for the 30 s hang
    df = pd.read_parquet(r.out_dir / "samples.parquet").set_index("sample_id")
    assert df.loc["img2.png", "status"] == "failed" and "timed out after 1 s" in df.loc["img2.png", "error"]
    assert (df.drop("img2.png")["status"] == "ok").all()


def test_cache_key_changes_when_adapter_code_changes(tmp_path, monkeypatch):
    import importlib
    import sys

    from bench.core import types as T

    mod = tmp_path / "my_adapter_mod.py"
    src = ("import numpy as np\nfrom bench.core.types import Adapter, Prediction\n"
           "class A(Adapter):\n    name = 'code-test'\n    tasks = frozenset({'localize'})\n"
           "    def predict(self, batch):\n        return [Prediction(mask=np.zeros(b.image.shape[:2], bool)) for b in batch]\n")
    mod.write_text(src)
    monkeypatch.syspath_prepend(str(tmp_path))
    m = importlib.import_module("my_adapter_mod")
    first = m.A().cache_identity()
    assert first["code_sha256"] and first["version"] == "0"
    mod.write_text(src.replace("np.zeros", "np.ones"))  # same name and version, other outputs
    sys.modules.pop("my_adapter_mod")
    T._CODE_SHA.clear()
    m2 = importlib.import_module("my_adapter_mod")
    assert m2.A().cache_identity()["code_sha256"] != first["code_sha256"]
    assert m2.A().identity() == m.A().identity()  # results identity is unchanged


def test_identical_rerun_reuses_the_scored_table_and_a_protocol_change_rescores_only(env, monkeypatch):
    import bench.engine.scoring as scoring

    tmp, log = env
    opts = dict(data_root=tmp / "data", workers=1, progress=False, gallery_size=0)
    first = run_suite(make_suite(n=8), ["box-test"], RunOptions(out_dir=tmp / "a", **opts))[0]
    calls = log.read_text()
    real = scoring.score_chunk
    scored = []
    monkeypatch.setattr(scoring, "score_chunk", lambda *a, **k: scored.append(1) or real(*a, **k))
    again = run_suite(make_suite(n=8), ["box-test"], RunOptions(out_dir=tmp / "b", **opts))[0]
    assert scored == [] and log.read_text() == calls  # neither inferred nor scored
    assert again.results["conditions"] == first.results["conditions"]
    pd.testing.assert_frame_equal(pd.read_parquet(first.out_dir / "samples.parquet"),
                                  pd.read_parquet(again.out_dir / "samples.parquet"))
    suite = make_suite(n=8)
    suite.protocol = {**suite.protocol, "mask_threshold": 0.3}
    changed = run_suite(suite, ["box-test"], RunOptions(out_dir=tmp / "c", **opts))[0]
    assert scored and log.read_text() == calls  # re-scored, not re-inferred
    assert changed.results["protocol"]["mask_threshold"] == 0.3
