"""Prediction cache, resume after SIGKILL, concurrent runs on one cache, `bench cache`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import runner_fixtures  # noqa: F401  (registers the test dataset and adapters)
from bench.engine.cache import PredictionCache, prediction_key
from bench.core.types import Prediction

TESTS = Path(__file__).resolve().parent


def suite_file(tmp: Path, n: int, perturb: bool = False) -> Path:
    conds = '["clean", "gaussian_noise(sigma=0.1)"]' if perturb else '["clean"]'
    p = tmp / "tiny.yaml"
    p.write_text(
        f"name: tiny\nversion: 1\ndataset: tiny-test\ndataset_options: {{n: {n}}}\n"
        f"conditions: {conds}\nmetrics: [miou, f1, iou_fg, fp_area, det_auc]\n"
        "protocol: {bootstrap: {n: 100, seed: 1}}\n")
    return p


def bench_cmd(tmp: Path, out: str, n: int, adapter: str = "slow-test", perturb: bool = False,
              workers: int = 1) -> list[str]:
    code = "import sys, runner_fixtures; from bench.cli import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, "run", "--suite", str(suite_file(tmp, n, perturb)),
            "--adapter", adapter, "--data-root", str(tmp / "data"), "--out", str(tmp / out),
            "--workers", str(workers), "--no-progress"]


def bench_env(tmp: Path, cache: str, log: Path, sleep: str = "0.15") -> dict[str, str]:
    env = dict(os.environ)
    env.update(BENCH_CACHE=str(tmp / cache), BENCH_TEST_CALL_LOG=str(log), BENCH_TEST_SLEEP=sleep,
               PYTHONPATH=os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]))
    return env


def test_cache_roundtrip_is_exact(tmp_path):
    cache = PredictionCache(tmp_path)
    rng = np.random.default_rng(0)
    hm = rng.random((37, 51)).astype(np.float32)
    mask = rng.random((37, 51)) > 0.7
    key = prediction_key({"name": "x"}, "abc", "clean", None)
    assert cache.status(key) is None
    cache.put(key, Prediction(heatmap=hm, mask=mask, score=0.25, explanation="é 中文",
                              extras={"k": [1, 2]}), height=37, width=51, adapter="x", condition="clean")
    pred, h, w = cache.get(key)
    assert (h, w) == (37, 51) and cache.status(key) == "ok"
    np.testing.assert_array_equal(pred.heatmap, hm)
    np.testing.assert_array_equal(pred.mask, mask)
    assert pred.score == 0.25 and pred.explanation == "é 中文" and pred.extras == {"k": [1, 2]}
    key2 = prediction_key({"name": "x"}, "abc", "clean", 1)
    assert key2 != key  # the seed is part of the key
    cache.put_failure(key2, "boom", adapter="x", condition="clean")
    assert cache.status(key2) == "failed" and cache.get_failure(key2) == "boom"
    # no temp files left behind
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_key_ignores_run_and_workers_but_not_adapter_config():
    a = prediction_key({"name": "ela", "config": {"quality": 90}}, "img", "clean", None)
    b = prediction_key({"config": {"quality": 90}, "name": "ela"}, "img", "clean", None)
    c = prediction_key({"name": "ela", "config": {"quality": 80}}, "img", "clean", None)
    assert a == b and a != c


@pytest.mark.slow
def test_killed_run_resumes_without_redoing_work(tmp_path):
    n = 40
    log = tmp_path / "calls.log"
    proc = subprocess.Popen(bench_cmd(tmp_path, "killed", n), env=bench_env(tmp_path, "cache", log),
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        if log.exists() and len(log.read_text().splitlines()) >= 12:
            break
        if proc.poll() is not None:
            pytest.fail(f"run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(log.read_text().splitlines())
    assert done_before < n, "the run finished before the kill; make the adapter slower"
    res = subprocess.run(bench_cmd(tmp_path, "resumed", n), env=bench_env(tmp_path, "cache", log),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    counts = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert set(counts) == {f"img{i}.png" for i in range(n)}
    twice = [s for s, c in counts.items() if c > 1]
    assert len(twice) <= 2, f"inferred twice beyond the batch in flight (batch size 2): {twice}"

    log2 = tmp_path / "calls2.log"
    ref = subprocess.run(bench_cmd(tmp_path, "reference", n), env=bench_env(tmp_path, "cache2", log2, "0"),
                         capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr[-3000:]
    a = json.loads((tmp_path / "resumed/slow-test/results.json").read_text())["conditions"]
    b = json.loads((tmp_path / "reference/slow-test/results.json").read_text())["conditions"]
    assert a == b
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "resumed/slow-test/samples.parquet"),
                                  pd.read_parquet(tmp_path / "reference/slow-test/samples.parquet"))


@pytest.mark.slow
def test_two_runs_at_once_share_one_cache_safely(tmp_path):
    n = 30
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [subprocess.Popen(bench_cmd(tmp_path, f"out{i}", n, perturb=True),
                              env=bench_env(tmp_path, "cache", logs[i], "0.02"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(2)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read().decode()[-3000:]
    r0 = json.loads((tmp_path / "out0/slow-test/results.json").read_text())["conditions"]
    r1 = json.loads((tmp_path / "out1/slow-test/results.json").read_text())["conditions"]
    assert r0 == r1 and all(c["n_failed"] == 0 for c in r0)
    cache = PredictionCache(tmp_path / "cache" / "predictions")
    rows = cache.summary()
    assert rows == [("slow-test", "ok", 2 * n, rows[0][3])]
    # a third run finds everything cached: no adapter call at all
    log3 = tmp_path / "c.log"
    res = subprocess.run(bench_cmd(tmp_path, "out3", n, perturb=True), env=bench_env(tmp_path, "cache", log3),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and not log3.exists()


def test_cache_command_ls_and_gc(tmp_path, capsys):
    from bench.cli import main

    root = tmp_path / "c"
    cache = PredictionCache(root)
    for i in range(3):
        cache.put(f"{i:064x}", Prediction(mask=np.zeros((4, 4), bool)), height=4, width=4,
                  adapter="ela", condition="clean")
    cache.put_failure("f" * 64, "bad", adapter="noise", condition="clean")
    assert main(["cache", "ls", "--cache-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "ela" in out and "noise" in out and "4 entries" in out
    assert main(["cache", "gc", "--cache-dir", str(root), "--failed"]) == 0
    assert "removed 1 entries" in capsys.readouterr().out
    assert cache.status("f" * 64) is None and cache.status(f"{0:064x}") == "ok"
    assert main(["cache", "gc", "--cache-dir", str(root), "--adapter", "el*", "--dry-run"]) == 0
    assert "would remove 3" in capsys.readouterr().out and cache.status(f"{0:064x}") == "ok"
    assert main(["cache", "gc", "--cache-dir", str(root)]) == 2  # refuses to guess


def test_torn_entry_counts_as_missing_and_is_dropped(tmp_path):
    cache = PredictionCache(tmp_path)
    key = prediction_key({"name": "x"}, "img", "clean", None)
    cache.put(key, Prediction(mask=np.ones((3, 3), bool)), height=3, width=3)
    path = next(tmp_path.rglob(f"{key}.npz"))
    path.write_bytes(path.read_bytes()[:20])  # as a power loss might leave it
    with pytest.raises(KeyError):
        cache.get(key)
    assert cache.status(key) is None and not path.exists()  # re-inferred by the next run
    path.write_bytes(b"")
    assert cache.status(key) is None


def test_bootstrap_blocks_are_the_one_shot_stream():
    from bench.metrics.stats import bootstrap_indices, iter_bootstrap_indices

    for n in (5, 97, 1234):
        blocks = np.concatenate(list(iter_bootstrap_indices(n, 250, seed=4, chunk=100)))
        np.testing.assert_array_equal(blocks, bootstrap_indices(n, 250, 4))
        assert blocks.shape == (250, n) and blocks.min() >= 0 and blocks.max() < n
