"""The Ray executor (a local Ray instance) gives the local executor's results, number for number."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import runner_fixtures  # noqa: F401
from bench.engine.runner import RunOptions, run_suite
from bench.suites import Suite

ray = pytest.importorskip("ray")


@pytest.mark.slow
def test_ray_matches_local(tmp_path, monkeypatch):
    suite = Suite.from_mapping({
        "name": "tiny", "version": 1, "dataset": "tiny-test", "dataset_options": {"n": 16},
        "conditions": ["clean", "gaussian_noise(sigma=0.2)", "jpeg(quality=50)"],
        "metrics": ["miou", "f1", "iou_fg", "fp_area", "det_auc"],
        "protocol": {"bootstrap": {"n": 100, "seed": 0}}})
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache-local"))
    local = run_suite(suite, ["box-test"], RunOptions(out_dir=tmp_path / "local", data_root=tmp_path / "data",
                                                     workers=1, progress=False, gallery_size=0))[0]
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache-ray"))
    try:
        remote = run_suite(suite, ["box-test"], RunOptions(out_dir=tmp_path / "ray", data_root=tmp_path / "data",
                                                          workers=2, executor="ray", progress=False,
                                                          gallery_size=0))[0]
    finally:
        ray.shutdown()
    assert remote.infer.n_inferred == 16 * 3 and remote.infer.n_cached == 0
    a = json.loads((local.out_dir / "results.json").read_text())["conditions"]
    b = json.loads((remote.out_dir / "results.json").read_text())["conditions"]
    assert a == b
    pd.testing.assert_frame_equal(pd.read_parquet(local.out_dir / "samples.parquet"),
                                  pd.read_parquet(remote.out_dir / "samples.parquet"))
