"""The results layer: the JSON Schema of ``bench.results/1`` (what the writer writes validates,
every field is documented), the one reader (layouts, safety) and the one comparability rule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import runner_fixtures  # noqa: F401  (registers the tiny dataset and the test adapters)
from results_fixtures import edit_results, make_run
from bench.results import protocol as R
from bench.results.reader import Run, find_runs, load_run, load_runs, run_folders
from bench.results.schema import SCHEMA_PATH
from bench.results.validation import validate_results

ROOT = Path(__file__).resolve().parents[1]
DEMO_RESULTS = sorted((ROOT / "results" / "demo").glob("*/results.json"))


def _schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def _resolve(schema: dict, node: dict) -> dict:
    """``node`` with a ``$ref`` followed (its own keys win)."""
    while "$ref" in node:
        target = _resolve(schema, schema["$defs"][node["$ref"].rsplit("/", 1)[1]])
        own = {k: v for k, v in node.items() if k != "$ref"}
        node = {**target, **own}
        if "properties" in target or "properties" in own:
            node["properties"] = {**target.get("properties", {}), **own.get("properties", {})}
    return node


def _undocumented(schema: dict, node: dict, data, path: str = "") -> list[str]:
    """Fields of ``data`` the schema does not name (open mappings excepted)."""
    node = _resolve(schema, node)
    out: list[str] = []
    if isinstance(data, dict) and "properties" in node:
        for k, v in data.items():
            sub = node["properties"].get(k, node.get("additionalProperties"))
            if not isinstance(sub, dict):
                out.append(f"{path}{k}")
            else:
                out += _undocumented(schema, sub, v, f"{path}{k}.")
    elif isinstance(data, dict) and isinstance(node.get("additionalProperties"), dict):
        for k, v in data.items():
            out += _undocumented(schema, node["additionalProperties"], v, f"{path}{k}.")
    elif isinstance(data, list) and isinstance(node.get("items"), dict):
        for i, v in enumerate(data):
            out += _undocumented(schema, node["items"], v, f"{path}{i}.")
    return out


# -- the schema -----------------------------------------------------------------------------

def test_schema_is_a_valid_draft_2020_12_schema_and_every_field_has_a_description():
    import jsonschema

    schema = _schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    missing = []

    def walk(node: dict, where: str) -> None:
        for k, v in (node.get("properties") or {}).items():
            if "description" not in _resolve(schema, v):
                missing.append(f"{where}.{k}")
            walk(v, f"{where}.{k}")
        for k in ("items", "additionalProperties"):
            if isinstance(node.get(k), dict):
                walk(node[k], f"{where}[{k}]")

    walk(schema, "")
    for name, d in schema["$defs"].items():
        walk(d, f"#{name}")
    assert not missing, missing


@pytest.mark.parametrize("path", DEMO_RESULTS, ids=lambda p: p.parent.name)
def test_every_shipped_demo_result_validates(path: Path):
    data = json.loads(path.read_text(encoding="utf-8"))
    assert validate_results(data) == []
    assert _undocumented(_schema(), _schema(), data) == []


def test_shipped_demo_results_exist():
    assert len(DEMO_RESULTS) >= 2


def test_what_the_writer_builds_validates_and_is_documented(tmp_path, monkeypatch):
    from bench.engine.runner import RunOptions, run_suite
    from bench.suites import Suite

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    suite = Suite.from_mapping({"name": "tiny", "version": 1, "dataset": "tiny-test", "dataset_options": {"n": 8},
                                "metrics": ["miou", "f1", "iou_fg", "fp_area", "det_auc", "det_acc"],
                                "conditions": ["clean", "jpeg(quality=50)"],
                                "protocol": {"bootstrap": {"n": 50, "seed": 1}}})
    opts = RunOptions(out_dir=tmp_path / "out", data_root=tmp_path / "data", workers=1, progress=False,
                      gallery_size=2, command="bench run --suite tiny --adapter box-test")
    (run,) = run_suite(suite, ["box-test"], opts)
    results = run.results  # the dict bench.results.writer.build_results made
    assert "robustness" in results and results["harness"].get("scoring_code_sha256")
    assert validate_results(results) == []
    assert _undocumented(_schema(), _schema(), results) == []
    on_disk = json.loads((run.out_dir / "results.json").read_text())
    assert validate_results(on_disk) == []


# -- what a schema cannot say ---------------------------------------------------------------

def _valid(tmp_path: Path) -> dict:
    return json.loads((make_run(tmp_path / "r") / "results.json").read_text())


def test_cross_field_rules(tmp_path):
    data = _valid(tmp_path)
    data["conditions"].append(json.loads(json.dumps(data["conditions"][0])))
    data["conditions"][0]["metrics"]["miou"]["ci95"] = [None, 0.5]
    problems = validate_results(data)
    assert "condition 'clean': appears twice" in problems
    assert "condition 'clean': metric 'miou': ci95 [None, 0.5] is not two fractions in [0, 1]" in problems


def test_nan_counts_as_null(tmp_path):
    data = _valid(tmp_path)
    data["conditions"][0]["metrics"]["miou"] = {"value": math.nan, "ci95": [math.nan, math.nan], "n": 0}
    assert validate_results(data) == []
    data["protocol"]["mask_threshold"] = math.nan
    assert validate_results(data) == ["protocol.mask_threshold nan is not a number in [0, 1]"]


def test_one_line_per_field_and_fields_named_by_condition(tmp_path):
    data = _valid(tmp_path)
    data["dataset"]["fingerprint"] = ""          # empty and not hex: said once, as empty
    data["protocol"]["bootstrap"] = {"n": "many"}  # wrong below: said of bootstrap
    data["conditions"][0]["key"] = 3
    data["conditions"][0]["metrics"]["f1"] = 0.5
    data["adapter"]["tasks"] = ["detect", 1]
    assert sorted(validate_results(data)) == sorted([
        "dataset.fingerprint is empty",
        "protocol.bootstrap should be {n: integer, seed: integer}",
        "conditions[0].key should be a string, got int",
        "conditions[0]: metric 'f1': should be an object {value, ci95, n}",
        "adapter.tasks should be a list of strings",
    ])
    assert validate_results([]) == ["results.json should hold an object, got list"]


# -- the reader -----------------------------------------------------------------------------

def test_run_folders_in_each_layout(tmp_path):
    single = make_run(tmp_path / "single", gallery=True)
    assert run_folders(single) == [single]  # its gallery/ is not searched
    flat = tmp_path / "flat"
    a, b = make_run(flat / "a", run_id="r1"), make_run(flat / "b", run_id="r2")
    assert run_folders(flat) == [a, b]
    published = tmp_path / "published"
    c = make_run(published / "demo" / "c", run_id="r3")
    make_run(published / "demo" / ".c.tmp", run_id="r4")  # publish's temporary copy: hidden
    make_run(published / "demo" / "deep" / "x" / "y", run_id="r5")
    assert run_folders(published, max_depth=2) == [c]
    assert run_folders(published) == [c, published / "demo" / "deep" / "x" / "y"]


def test_one_run_class_serves_compare_and_the_leaderboard(tmp_path):
    folder = make_run(tmp_path / "res" / "demo" / "alpha", failed={"clean": [1]})
    (folder / "publish.json").write_text(json.dumps({"allow_failed": True}))
    (board,) = load_runs(tmp_path / "res").runs
    user = load_run(folder)
    assert isinstance(board, Run) and isinstance(user, Run)
    assert board.data is board.results and board.dir == board.path and board.rel == "demo/alpha"
    assert board.published == {"allow_failed": True} and user.published == {}
    assert user.rel == "alpha" and board.n_failed == user.n_failed == 1
    assert board.by_condition()["clean"] is board.conditions[0]
    assert user.metric("none", "miou") == user.conditions[0]["metrics"]["miou"]  # any spelling of clean
    assert set(user.samples["condition"]) == {"clean"} and user.has_samples
    assert [r.path for r in find_runs([tmp_path / "res", folder / "results.json"])] == [folder.resolve()]


def test_load_runs_reports_what_it_does_not_show(tmp_path):
    root = tmp_path / "res"
    make_run(root / "demo" / "good")
    edit_results(make_run(root / "demo" / "bad", run_id="r2"), lambda d: d.pop("command"))
    loaded = load_runs(root)
    assert [r.rel for r in loaded.runs] == ["demo/good"]
    assert loaded.problems == [("demo/bad", "command is missing")]
    assert load_runs(tmp_path / "nowhere").problems == [(str(tmp_path / "nowhere"), "results folder not found")]


# -- the comparability rule -----------------------------------------------------------------

def test_flatten():
    assert R.flatten({"a": {"b": 1, "c": {}}, "d": [1]}) == {"a.b": 1, "a.c": {}, "d": [1]}
    assert R.flatten({}) == {}


PROTO = {"mask_threshold": 0.5, "rouge_impl": "x", "css_model": "m", "bootstrap": {"n": 1000, "seed": 0},
         "css_model_info": {"name": "m", "path": "/here"}, "plugin_choice": 1}


def test_run_level_rule_ignores_what_changes_no_value():
    other = {**PROTO, "bootstrap": {"n": 10, "seed": 3}, "css_model_info": {"name": "m", "path": "/there"}}
    assert R.protocol_differences(PROTO, other) == []
    # css_model_info is compared only when both runs have it (it is written with CSS only)
    assert R.protocol_differences(PROTO, {k: v for k, v in PROTO.items() if k != "css_model_info"}) == []
    assert R.protocol_differences(PROTO, {**PROTO, "rouge_impl": "y", "plugin_choice": 2}) == [
        "protocol.plugin_choice: A=1 B=2", "protocol.rouge_impl: A='x' B='y'"]


def test_metric_level_rule_keeps_only_what_the_metric_depends_on():
    assert R.metric_protocol(PROTO, "miou", "pixel") == {"mask_threshold": 0.5, "plugin_choice": 1}
    assert R.metric_protocol(PROTO, "rouge_l", "text") == {"rouge_impl": "x", "plugin_choice": 1}
    assert R.metric_protocol(PROTO, "css", "text") == {"css_model": "m", "css_model_info": {"name": "m"},
                                                       "plugin_choice": 1}
    # both grains leave out what changes no value
    assert [k for k in R.flatten(PROTO) if R.changes_no_value(k)] == ["bootstrap.n", "bootstrap.seed",
                                                                      "css_model_info.path"]
