"""`bench publish`: validation, duplicates, failed samples, safe names, atomic copy."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.results import publish as P
from bench.cli import main
from results_fixtures import FP, edit_results, make_run


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path / "runs" / "alpha")


def _files(d: Path) -> set[str]:
    return {p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()}


def test_publish_copies_run_under_stable_name(run_dir: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    dest = P.publish(run_dir, results)
    assert dest == results / "demo" / "alpha__20250101T000000Z-aaaaaaaa"
    # every file of the run folder is copied byte for byte, plus publish.json
    assert _files(dest) == _files(run_dir) | {"publish.json"}
    for rel in _files(run_dir):
        assert filecmp.cmp(run_dir / rel, dest / rel, shallow=False), rel
    meta = json.loads((dest / "publish.json").read_text())
    assert meta["allow_failed"] is False and meta["n_failed"] == 0
    # no temporary folder is left behind
    assert [p.name for p in (results / "demo").iterdir()] == [dest.name]


def test_cli_publish_then_refuses_same_run_id(run_dir: Path, tmp_path: Path, capsys) -> None:
    results = tmp_path / "results"
    assert main(["publish", str(run_dir), "--results", str(results)]) == 0
    assert "alpha__20250101T000000Z-aaaaaaaa" in capsys.readouterr().out
    assert main(["publish", str(run_dir), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert "duplicate" in err and "run_id '20250101T000000Z-aaaaaaaa' is already published" in err


def test_refuses_identical_rerun_with_new_run_id(tmp_path: Path) -> None:
    results = tmp_path / "results"
    P.publish(make_run(tmp_path / "a", run_id="r1"), results)
    with pytest.raises(P.PublishError) as e:
        P.publish(make_run(tmp_path / "b", run_id="r2"), results)
    assert "identical metrics" in str(e.value) and "demo/alpha__r1" in str(e.value)


@pytest.mark.parametrize("change", [
    {"protocol": {"css_model": "other-model"}},
    {"protocol": {"mask_threshold": 0.3}},
    {"fingerprint": "b" * 64},
    {"per_sample": {"clean": {"miou": [0.2, 0.6, 0.8], "f1": [0.1, 0.5, 0.8]}}},
    {"adapter": "beta"},
])
def test_not_a_duplicate_when_anything_differs(tmp_path: Path, change: dict) -> None:
    results = tmp_path / "results"
    P.publish(make_run(tmp_path / "a", run_id="r1"), results)
    P.publish(make_run(tmp_path / "b", run_id="r2", **change), results)
    assert len(list(results.glob("demo/*/results.json"))) == 2


def test_failed_samples_need_allow_failed(tmp_path: Path) -> None:
    run = make_run(tmp_path / "a", failed={"clean": [1]})
    results = tmp_path / "results"
    with pytest.raises(P.PublishError) as e:
        P.publish(run, results)
    assert "1 failed sample(s) (clean: 1)" in str(e.value) and "--allow-failed" in str(e.value)
    assert not results.exists() or not any(results.rglob("results.json"))
    dest = P.publish(run, results, allow_failed=True)
    meta = json.loads((dest / "publish.json").read_text())
    assert meta == {**meta, "allow_failed": True, "n_failed": 1}


def _set(path: str, value):
    """Edit function setting a dotted path (list indices as ints); value P.DELETE removes it."""
    def fn(d):
        parts = path.split(".")
        for p in parts[:-1]:
            d = d[int(p)] if isinstance(d, list) else d[p]
        last = parts[-1]
        if value is _DELETE:
            del d[int(last) if isinstance(d, list) else last]
        else:
            d[int(last) if isinstance(d, list) else last] = value
    return fn


_DELETE = object()


@pytest.mark.parametrize("path,value,expect", [
    ("schema", "bench.results/0", "schema is 'bench.results/0'"),
    ("schema", _DELETE, "schema is None"),
    ("run_id", "", "run_id is empty"),
    ("created", "yesterday", "not an ISO 8601 time"),
    ("dataset.fingerprint", _DELETE, "dataset.fingerprint is missing"),
    ("dataset.fingerprint", "", "dataset.fingerprint is empty"),
    ("dataset.fingerprint", "not-a-hash", "not a sha256 hex digest"),
    ("adapter.weights_sha256", _DELETE, "adapter.weights_sha256 is missing"),
    ("adapter.weights_sha256", "xyz", "neither null nor a sha256"),
    ("adapter.name", 7, "adapter.name should be a string, got int"),
    ("protocol.css_model", _DELETE, "protocol.css_model is missing"),
    ("protocol.mask_threshold", 50, "protocol.mask_threshold 50 is not a number in [0, 1]"),
    ("command", _DELETE, "command is missing"),
    ("environment", "linux", "environment should be an object"),
    ("conditions", [], "conditions is empty"),
    ("conditions.0.n", _DELETE, "condition 'clean': n is missing"),
    ("conditions.0.n", True, "n should be an integer, not a boolean"),
    ("conditions.0.metrics", _DELETE, "condition 'clean': metrics is missing"),
    ("conditions.0.n_failed", 9, "n_failed 9 is not between 0 and n = 3"),
    ("conditions.0.metrics.miou.value", 56.1, "value 56.1 is not a fraction in [0, 1]"),
    ("conditions.0.metrics.miou.value", "0.5", "value '0.5' is not a fraction"),
    ("conditions.0.metrics.miou.value", -0.1, "is not a fraction in [0, 1]"),
    ("conditions.0.metrics.miou.ci95", [0.8, 0.2], "has lo > hi"),
    ("conditions.0.metrics.miou.ci95", [0.2, 1.5], "is not two fractions"),
    ("conditions.0.metrics.miou.ci95", _DELETE, "ci95 is missing"),
    ("conditions.0.key", "jpeg(quality=50)", "has no rows in samples.parquet"),
])
def test_schema_problems_are_refused_and_named(run_dir: Path, tmp_path: Path, path, value, expect) -> None:
    edit_results(run_dir, _set(path, value))
    with pytest.raises(P.PublishError) as e:
        P.publish(run_dir, tmp_path / "results")
    assert expect in str(e.value)
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*.json"))


def test_undefined_metric_value_is_accepted(run_dir: Path, tmp_path: Path) -> None:
    # the runner writes null for a metric it could not compute (e.g. AUC with one class)
    edit_results(run_dir, _set("conditions.0.metrics.miou", {"value": None, "ci95": [None, None], "n": 0}))
    assert P.publish(run_dir, tmp_path / "results").is_dir()


def test_every_problem_is_listed_at_once(run_dir: Path, tmp_path: Path) -> None:
    edit_results(run_dir, lambda d: (d.pop("command"), d["dataset"].pop("fingerprint")))
    with pytest.raises(P.PublishError) as e:
        P.check_run(run_dir)
    assert "command is missing" in str(e.value) and "dataset.fingerprint is missing" in str(e.value)
    assert len(e.value.problems) == 2


def test_samples_table_must_match_conditions(tmp_path: Path) -> None:
    run = make_run(tmp_path / "a", per_sample={"clean": {"miou": [0.1, 0.2]}, "jpeg(quality=50)": {"miou": [0.1, 0.1]}})
    df = pd.read_parquet(run / "samples.parquet")
    df[df["condition"] == "clean"].iloc[:1].to_parquet(run / "samples.parquet", index=False)
    with pytest.raises(P.PublishError) as e:
        P.check_run(run)
    msg = str(e.value)
    assert "condition 'jpeg(quality=50)' has no rows in samples.parquet" in msg
    assert "results.json says n = 2 but samples.parquet has 1 rows" in msg


def test_samples_table_extra_condition_and_bad_file(run_dir: Path) -> None:
    df = pd.read_parquet(run_dir / "samples.parquet")
    extra = df.assign(condition="gaussian_blur(kernel=5)")
    pd.concat([df, extra]).to_parquet(run_dir / "samples.parquet", index=False)
    with pytest.raises(P.PublishError, match=r"conditions not in results.json: \['gaussian_blur\(kernel=5\)'\]"):
        P.check_run(run_dir)
    (run_dir / "samples.parquet").write_bytes(b"PK\x03\x04 not parquet")
    with pytest.raises(P.PublishError, match="cannot be read as parquet"):
        P.check_run(run_dir)
    (run_dir / "samples.parquet").unlink()
    with pytest.raises(P.PublishError, match="samples.parquet is missing"):
        P.check_run(run_dir)


def test_not_json_and_oversized_json(run_dir: Path, monkeypatch) -> None:
    monkeypatch.setattr(P, "MAX_JSON_BYTES", 100)
    with pytest.raises(P.PublishError, match="over the 100-byte limit"):
        P.check_run(run_dir)
    monkeypatch.undo()
    (run_dir / "results.json").write_text("{not json")
    with pytest.raises(P.PublishError, match="not valid JSON"):
        P.check_run(run_dir)


def test_unsafe_gallery_is_refused(run_dir: Path, tmp_path: Path) -> None:
    idx = run_dir / "gallery" / "index.json"
    data = json.loads(idx.read_text())
    data["samples"][0]["safe_id"] = "../../etc/passwd"
    idx.write_text(json.dumps(data))
    with pytest.raises(P.PublishError, match="needs a sample_id and a safe_id"):
        P.check_run(run_dir)


def test_symlink_in_gallery_is_refused(run_dir: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"x")
    os.symlink(secret, run_dir / "gallery" / "images" / "s999.jpg")
    with pytest.raises(P.PublishError, match="is a symbolic link"):
        P.check_run(run_dir)


def test_hostile_names_stay_inside_results(tmp_path: Path) -> None:
    run = make_run(tmp_path / "a", adapter="../../evil", suite="../up", run_id="../../x")
    results = tmp_path / "results"
    dest = P.publish(run, results)
    assert dest.resolve().is_relative_to(results.resolve())
    assert dest.parent.parent == results
    assert ".." not in dest.relative_to(results).parts


def test_slug() -> None:
    assert P.slug("alpha") == "alpha"
    for bad in ("..", ".", "a/b", "../x", "", "a b"):
        s = P.slug(bad)
        assert P.is_safe_component(s), (bad, s)
        assert "/" not in s and s not in (".", "..")
    assert P.slug("a/b") != P.slug("a-b") and P.slug("a b") != P.slug("a?b")


def test_copy_failure_leaves_nothing(run_dir: Path, tmp_path: Path, monkeypatch) -> None:
    real = shutil.copyfile

    def flaky(src, dst, *a, **k):
        if str(src).endswith("samples.parquet"):
            raise OSError("disk full")
        return real(src, dst, *a, **k)

    monkeypatch.setattr(P.shutil, "copyfile", flaky)
    results = tmp_path / "results"
    with pytest.raises(OSError, match="disk full"):
        P.publish(run_dir, results)
    assert list((results / "demo").iterdir()) == []


def test_leaderboard_reads_what_publish_accepts(tmp_path: Path) -> None:
    from bench.leaderboards.data import load_runs

    results = tmp_path / "results"
    P.publish(make_run(tmp_path / "a", fingerprint=FP), results)
    (results / "demo" / "broken").mkdir()
    (results / "demo" / "broken" / "results.json").write_text('{"schema": "bench.results/1"}')
    loaded = load_runs(results)
    assert [r.adapter for r in loaded.runs] == ["alpha"]
    assert loaded.problems and loaded.problems[0][0] == "demo/broken"


def test_css_may_be_negative_but_not_below_minus_one(run_dir: Path, tmp_path: Path) -> None:
    # a cosine similarity lies in [-1, 1]; every other metric is a fraction in [0, 1]
    edit_results(run_dir, _set("conditions.0.metrics.css", {"value": -0.2, "ci95": [-0.3, -0.1], "n": 3}))
    P.publish(run_dir, tmp_path / "ok")
    edit_results(run_dir, _set("conditions.0.metrics.css", {"value": -1.2, "ci95": [-1.3, -0.1], "n": 3}))
    with pytest.raises(P.PublishError, match=r"not a fraction in \[-1, 1\]"):
        P.check_run(run_dir)


# -- metrics recorded as not computed --------------------------------------------------------

NOT_COMPUTED = {"value": None, "ci95": None, "n": 0, "status": "not_computed",
                "reason": "CSS model 'x' is not in the local Hugging Face cache", "fix": "bench data fetch models"}


def _with_css(run_dir: Path, css: dict) -> Path:
    data = json.loads((run_dir / "results.json").read_text())
    for c in data["conditions"]:
        c["metrics"]["css"] = dict(css)
    (run_dir / "results.json").write_text(json.dumps(data))
    return run_dir


def test_not_computed_metric_is_valid_but_refused_unless_allowed(run_dir: Path, tmp_path: Path, capsys) -> None:
    _with_css(run_dir, NOT_COMPUTED)
    data = json.loads((run_dir / "results.json").read_text())
    assert P.validate_results(data) == []  # the schema accepts it
    assert P.not_computed_metrics(data) == {"css": {"reason": NOT_COMPUTED["reason"], "fix": "bench data fetch models",
                                                    "conditions": ["clean"]}}
    with pytest.raises(P.PublishError) as e:
        P.check_run(run_dir)
    assert "metric css was not computed" in str(e.value) and "--allow-missing-metrics" in str(e.value)
    assert main(["publish", str(run_dir), "--results", str(tmp_path / "res")]) == 2
    assert "bench data fetch models" in capsys.readouterr().err
    dest = P.publish(run_dir, tmp_path / "res", allow_missing_metrics=True)
    assert json.loads((dest / "publish.json").read_text())["not_computed"] == ["css"]


@pytest.mark.parametrize("css, expect", [
    ({**NOT_COMPUTED, "value": 0.0}, "value and ci95 must be null"),
    ({**NOT_COMPUTED, "reason": ""}, "gives no reason"),
    ({**NOT_COMPUTED, "fix": 3}, "fix should be a string or null"),
    ({"value": 0.5, "ci95": [0.4, 0.6], "status": "skipped"}, "status 'skipped' is not one of ok, not_computed"),
])
def test_not_computed_metric_must_be_well_formed(run_dir: Path, css: dict, expect: str) -> None:
    _with_css(run_dir, css)
    problems = P.validate_results(json.loads((run_dir / "results.json").read_text()))
    assert any(expect in p for p in problems), problems
