"""An identical re-run reuses the finished run folder; anything that changes the output does not."""

from __future__ import annotations

import json

import pytest

import runner_fixtures  # noqa: F401  (registers the test dataset and adapters)
from bench.engine import run_memo
from bench.engine.runner import RunOptions, run_suite
from bench.suites import Suite


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))


def _suite(**protocol) -> Suite:
    return Suite.from_mapping({
        "name": "tiny", "version": 1, "dataset": "tiny-test", "dataset_options": {"n": 8},
        "conditions": ["clean", "jpeg(quality=50)"], "metrics": ["miou", "f1", "det_auc"],
        "protocol": {"bootstrap": {"n": 50, "seed": 0}, **protocol}})


def _run(tmp_path, suite, **kw):
    opts = RunOptions(out_dir=tmp_path / "out", data_root=tmp_path / "data", workers=1, progress=False,
                      gallery_size=2, command="bench run (test)", **kw)
    return run_suite(suite, ["box-test"], opts)[0]


def _spy(monkeypatch):
    import bench.engine.scoring as scoring

    calls = []
    real = scoring.score_jobs
    monkeypatch.setattr(scoring, "score_jobs", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_identical_rerun_reuses_the_folder(cache_env, tmp_path, monkeypatch):
    first = _run(tmp_path, _suite())
    calls = _spy(monkeypatch)
    mtime = (first.out_dir / "results.json").stat().st_mtime_ns
    again = _run(tmp_path, _suite())
    assert calls == [] and again.results["run_id"] == first.results["run_id"]
    assert (again.out_dir / "results.json").stat().st_mtime_ns == mtime  # not rewritten
    assert again.results["conditions"] == json.loads((first.out_dir / "results.json").read_text())["conditions"]
    assert again.infer.n_inferred == 0 and again.infer.n_cached == 16


def test_a_change_that_shows_in_the_output_runs_again(cache_env, tmp_path, monkeypatch):
    first = _run(tmp_path, _suite())
    calls = _spy(monkeypatch)
    other = _run(tmp_path, _suite(mask_threshold=0.3))  # protocol
    assert other.results["run_id"] != first.results["run_id"] and other.infer.n_inferred == 0
    gallery = _run(tmp_path, _suite(mask_threshold=0.3), limit=4)  # a run option
    assert gallery.results["run_id"] != other.results["run_id"]
    (gallery.out_dir / "samples.parquet").unlink()  # a file of the folder is gone
    again = _run(tmp_path, _suite(mask_threshold=0.3), limit=4)
    assert again.results["run_id"] != gallery.results["run_id"] and (again.out_dir / "samples.parquet").is_file()
    assert len(calls) == 2  # the last one re-aggregated its scored table (bench.engine.score_cache)


def test_key_changes_with_the_cache_state(tmp_path):
    suite = _suite()
    sample = type("S", (), {"id": "a"})()
    kw = dict(jobs=[(sample, [("clean", "k1")])], fingerprint="f", suite=suite, adapter="box-test",
              config_json="{}", scoring_code_sha256="s", options={})
    ok = run_memo.run_key(status=lambda k: "ok", **kw)
    assert ok == run_memo.run_key(status=lambda k: "ok", **kw)
    assert ok != run_memo.run_key(status=lambda k: "failed", **kw)
    assert ok != run_memo.run_key(status=lambda k: "ok", **{**kw, "fingerprint": "g"})
    assert ok != run_memo.run_key(status=lambda k: "ok", **{**kw, "config_json": '{"x":1}'})
