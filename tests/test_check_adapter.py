"""`bench check-adapter`: passes well-behaved adapters, fails broken ones with a clear report."""

from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np
import pytest
import torch

from bench.engine import adapter_check
from bench.engine.adapter_check import check_adapter, parse_config_pairs, synthetic_inputs
from bench.cli import main
from bench.errors import BenchError
from bench.core.registry import ADAPTERS
from bench.core.types import Adapter, ModelInput, Prediction

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")


class Good(Adapter):
    name = "test-good"
    tasks = frozenset({"localize", "detect"})

    def predict(self, batch: Sequence[ModelInput]) -> list[Prediction]:
        out = []
        for b in batch:
            heat = (b.image[..., 0].astype(np.float32) / 255.0)
            out.append(Prediction(heatmap=heat, score=float(heat.mean())))
        return out


class WrongSize(Good):
    name = "test-wrong-size"

    def predict(self, batch):
        return [Prediction(heatmap=np.zeros((64, 64), np.float32), score=0.5) for _ in batch]


class NaNs(Good):
    name = "test-nan"

    def predict(self, batch):
        preds = super().predict(batch)
        preds[0].heatmap[0, 0] = np.nan
        preds[-1].score = float("nan")
        return preds


class Random(Good):
    name = "test-nondeterministic"

    def predict(self, batch):
        return [Prediction(heatmap=np.random.rand(*b.image.shape[:2]).astype(np.float32), score=0.5)
                for b in batch]


class DropsOne(Good):
    name = "test-drops-one"

    def predict(self, batch):
        return super().predict(batch)[:-1]


class BatchDependent(Good):
    """Its score depends on the input's position in the batch, not only on the input."""

    name = "test-batch-dependent"

    def predict(self, batch):
        preds = super().predict(batch)
        for i, p in enumerate(preds):
            p.score = i / len(batch)
        return preds


class BadTypes(Good):
    name = "test-bad-types"
    tasks = frozenset({"localize", "explain"})

    def predict(self, batch):
        return [Prediction(mask=(b.image[..., 0] > 128).astype(np.uint8), explanation=3) for b in batch]  # type: ignore[arg-type]


class LeaksKey(Good):
    name = "test-leaks-key"

    def __init__(self, **config):
        super().__init__(**config)
        self.config["auth"] = os.environ.get("BENCH_CHECK_TEST_TOKEN")


class FailsLoad(Good):
    name = "test-fails-load"

    def load(self, device="cpu"):
        raise FileNotFoundError("weights.pth not found")


def _status(report, name):
    c = report.get(name)
    assert c is not None, f"no check {name!r} in\n{report.render()}"
    return c.status, c.detail


def test_good_adapter_passes_everything():
    r = check_adapter(Good(), inputs=synthetic_inputs(6))
    assert r.ok, r.render()
    for name in ("declared", "load", "predict", "count and order", "sizes", "dtypes", "ranges", "no NaN",
                 "task outputs", "contract", "determinism", "batch order", "identity"):
        assert _status(r, name)[0] == "PASS", r.render()
    assert _status(r, "time per image")[0] == "INFO"
    assert "RESULT: PASS" in r.render()


@pytest.mark.parametrize("cls, check, words", [
    (WrongSize, "sizes", "heatmap is (64, 64), image is (64, 96)"),
    (NaNs, "no NaN", "heatmap has 1 NaN/inf values"),
    (Random, "determinism", "two calls on the same inputs differ"),
    (DropsOne, "count and order", "gave 5 outputs"),
    (BatchDependent, "batch order", "changes when the batch is reordered"),
    (BadTypes, "dtypes", "mask dtype uint8, bool required"),
    (BadTypes, "explanation type", "explanation is int"),
    (FailsLoad, "load", "FileNotFoundError: weights.pth not found"),
])
def test_broken_adapters_fail_with_a_clear_reason(cls, check, words):
    r = check_adapter(cls(), inputs=synthetic_inputs(6))
    assert not r.ok
    status, detail = _status(r, check)
    assert status == "FAIL" and words in detail, r.render()
    assert "RESULT: FAIL" in r.render()


def test_nondeterminism_is_only_a_warning_when_declared():
    class Declared(Random):
        deterministic = False

    r = check_adapter(Declared(), inputs=synthetic_inputs(4))
    assert r.ok and _status(r, "determinism")[0] == "WARN"


def test_identity_must_not_carry_a_secret(monkeypatch):
    monkeypatch.setenv("BENCH_CHECK_TEST_TOKEN", "tok-abcdefgh12345")
    r = check_adapter(LeaksKey(), inputs=synthetic_inputs(2))
    assert _status(r, "identity") == ("FAIL", "identity contains the value of a secret environment variable (key/token)")


def test_builtin_reference_adapters_pass():
    names = [n for n in ("empty", "random", "template") if n in ADAPTERS]
    if not names:
        pytest.skip("no reference adapters (empty/random/template) are registered yet")
    for n in names:
        r = check_adapter(n, {}, inputs=synthetic_inputs(4))
        assert r.ok, r.render()


def test_generic_adapters_pass_with_test_models(tmp_path):
    conv = torch.nn.Conv2d(3, 2, 1)
    ts = tmp_path / "seg.pt"
    torch.jit.script(conv).save(str(ts))
    onnx = tmp_path / "seg.onnx"
    torch.onnx.export(conv, torch.zeros(1, 3, 32, 32), str(onnx), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "n"}})
    spec = {"input_size": [32, 32], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    for name, cfg in (("torchscript-seg", {"model": str(ts), **spec}),
                      ("torchscript-seg", {"model": str(ts), "output": "argmax", "score": "mean", **spec}),
                      ("onnx-seg", {"model": str(onnx), **spec})):
        r = check_adapter(name, cfg, inputs=synthetic_inputs(5))
        assert r.ok, r.render()


def test_missing_config_fails_at_load_with_the_option_named():
    r = check_adapter("pal4vst", {}, inputs=synthetic_inputs(2))
    assert _status(r, "load")[0] == "FAIL" and "option 'weights' is required" in _status(r, "load")[1]


def test_cli_pass_and_fail(tmp_path, capsys):
    ts = tmp_path / "seg.pt"
    torch.jit.script(torch.nn.Conv2d(3, 2, 1)).save(str(ts))
    rc = main(["check-adapter", "torchscript-seg", "--config", f"model={ts}", "--config", "input_size=[16, 16]",
               "--synthetic", "--n", "3"])
    out = capsys.readouterr().out
    assert rc == 0 and "RESULT: PASS" in out and "PASS  sizes" in out
    if "test-wrong-size" not in ADAPTERS:
        ADAPTERS.add("test-wrong-size", WrongSize)
    rc = main(["check-adapter", "test-wrong-size", "--synthetic", "--n", "3", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 1 and report["ok"] is False
    assert {c["name"]: c["status"] for c in report["checks"]}["sizes"] == "FAIL"


def test_parse_config_pairs():
    assert parse_config_pairs(["a=3", "b=true", "c=[1, 2]", "d=null", "e=x=y", "f=", "g=/p/a b"]) == {
        "a": 3, "b": True, "c": [1, 2], "d": None, "e": "x=y", "f": "", "g": "/p/a b"}
    with pytest.raises(BenchError, match="KEY=VALUE"):
        parse_config_pairs(["novalue"])


def test_demo_inputs_fall_back_to_synthetic(monkeypatch):
    def boom(n):
        raise RuntimeError("demo not generated")

    monkeypatch.setattr(adapter_check, "demo_inputs", boom)
    items, label = adapter_check.default_inputs(3)
    assert len(items) == 3 and "synthetic" in label and "demo not generated" in label
    shapes = {i.image.shape for i in synthetic_inputs(8)}
    assert len(shapes) == 8  # all different sizes: misrouted outputs show up as size errors


# -- the contract, written once: Prediction.problems -------------------------------------------
H, W = 4, 6


def _ok(**kw):
    """A Prediction keeping the contract for an H x W image and every task, with ``kw`` replaced."""
    fields = {"heatmap": np.zeros((H, W), np.float32), "mask": np.zeros((H, W), bool), "score": 0.5,
              "explanation": "a seam at the edge"}
    fields.update(kw)
    return Prediction(**fields)


ALL_TASKS = {"detect", "localize", "explain"}


@pytest.mark.parametrize("pred, tasks, rule, message", [
    (_ok(mask=np.zeros((H, W), np.uint8)), ALL_TASKS, "mask_dtype", "prediction mask has dtype uint8; bool required"),
    (_ok(mask=np.zeros((W, H), bool)), ALL_TASKS, "mask_size", "prediction mask is (6, 4) but the image is (4, 6) (H x W)"),
    (_ok(heatmap=np.zeros((H, H), np.float32)), ALL_TASKS, "heatmap_size",
     "prediction heatmap is (4, 4) but the image is (4, 6) (H x W)"),
    (_ok(heatmap=np.zeros((H, W), np.uint8)), ALL_TASKS, "heatmap_dtype", "prediction heatmap has dtype uint8; float required"),
    (_ok(heatmap=np.full((H, W), np.inf, np.float32)), ALL_TASKS, "heatmap_finite", "prediction heatmap contains NaN or infinity"),
    (_ok(heatmap=np.full((H, W), 1.5, np.float32)), ALL_TASKS, "heatmap_range",
     "prediction heatmap has values in [1.5, 1.5], outside [0, 1]"),
    (_ok(heatmap=None, mask=None), {"localize"}, "localize_output", "adapter localizes but returned neither mask nor heatmap"),
    (_ok(score="0.5"), ALL_TASKS, "score_type", "prediction score '0.5' is not a number in [0, 1]"),
    (_ok(score=True), ALL_TASKS, "score_type", "prediction score True is not a number in [0, 1]"),
    (_ok(score=float("nan")), ALL_TASKS, "score_finite", "prediction score nan is not a number in [0, 1]"),
    (_ok(score=1.5), ALL_TASKS, "score_range", "prediction score 1.5 is not a number in [0, 1]"),
    (_ok(score=None), {"detect"}, "detect_output", "adapter detects but returned no score"),
    (_ok(explanation=["text"]), ALL_TASKS, "explanation_type", "prediction explanation is list, not str"),
    (_ok(explanation=None), {"explain"}, "explain_output", "adapter explains but returned no explanation"),
])
def test_each_contract_rule_is_one_problem_and_validate_raises_it(pred, tasks, rule, message):
    from bench.errors import SampleError

    problems = pred.problems(H, W, tasks)
    assert [(p.rule, str(p)) for p in problems] == [(rule, message)]
    assert problems[0].brief  # the short form check-adapter lists
    with pytest.raises(SampleError) as e:
        pred.validate(H, W, tasks, "img.png")
    assert str(e.value) == f"img.png: {message}"
    assert _ok().problems(H, W, ALL_TASKS) == [] and _ok().advisories() == []
    _ok().validate(H, W, ALL_TASKS, "img.png")  # keeps the contract: no exception


def test_undeclared_tasks_need_no_output():
    assert Prediction().problems(H, W, ()) == []
    assert Prediction(heatmap=np.zeros((H, W), np.float32)).problems(H, W, {"localize"}) == []


class ManyProblems(Good):
    """Every output breaks five rules at once."""

    name = "test-many-problems"
    tasks = frozenset({"localize", "detect", "explain"})

    def predict(self, batch):
        return [_many(*b.image.shape[:2]) for b in batch]


def _many(h, w):
    heat = np.full((h + 1, w), 2.0, np.float32)
    heat[0, 0] = np.nan
    return Prediction(heatmap=heat, mask=np.zeros((h, w), np.uint8), score=7)


MANY_RULES = ["mask_dtype", "heatmap_size", "heatmap_finite", "heatmap_range", "score_range", "explain_output"]


def test_problems_lists_every_problem_and_check_adapter_shows_them_all():
    from bench.errors import SampleError

    problems = _many(H, W).problems(H, W, ManyProblems.tasks)
    assert [p.rule for p in problems] == MANY_RULES
    with pytest.raises(SampleError, match="prediction mask has dtype uint8; bool required"):
        _many(H, W).validate(H, W, ManyProblems.tasks, "x")  # the first one
    r = check_adapter(ManyProblems(), inputs=synthetic_inputs(2))
    assert not r.ok
    first = "synthetic-00: "
    for check, words in (("dtypes", "mask dtype uint8, bool required"),
                         ("sizes", "heatmap is (65, 96), image is (64, 96) (H x W)"),
                         ("no NaN", "heatmap has 1 NaN/inf values"),
                         ("ranges", "heatmap spans [2, 2]"),
                         ("ranges", "score 7 outside [0, 1]"),
                         ("task outputs", "explain declared but no explanation"),
                         ("contract", "prediction mask has dtype uint8; bool required")):
        status, detail = _status(r, check)
        assert status == "FAIL" and first + words in detail, r.render()


def test_advisories_are_warnings_not_failures():
    p = _ok(heatmap=np.zeros((H, W), np.float64), explanation="  ")
    assert p.problems(H, W, ALL_TASKS) == []
    assert [a.rule for a in p.advisories()] == ["heatmap_float32", "explanation_empty"]

    class Advised(Good):
        tasks = frozenset({"localize", "explain"})

        def predict(self, batch):
            return [Prediction(heatmap=np.zeros(b.image.shape[:2]), explanation="") for b in batch]

    r = check_adapter(Advised(), inputs=synthetic_inputs(2))
    assert r.ok, r.render()
    assert _status(r, "dtypes") == ("WARN", "synthetic-00: heatmap dtype float64 (float32 expected); "
                                             "synthetic-01: heatmap dtype float64 (float32 expected)")
    assert _status(r, "explanation type")[0] == "WARN" and "explanation is empty" in _status(r, "explanation type")[1]


def test_unreadable_output_is_a_contract_failure_not_a_crash():
    class Unreadable(Good):
        def predict(self, batch):
            return [Prediction(heatmap=np.zeros((2, 2)), mask=[[1, 2], [3]], score=0.5) for _ in batch]

    r = check_adapter(Unreadable(), inputs=synthetic_inputs(2))
    status, detail = _status(r, "contract")
    assert status == "FAIL" and "invalid output: ValueError" in detail, r.render()


def test_cli_lists_every_problem(capsys):
    if "test-many-problems" not in ADAPTERS:
        ADAPTERS.add("test-many-problems", ManyProblems)
    rc = main(["check-adapter", "test-many-problems", "--synthetic", "--n", "2", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 1 and report["ok"] is False
    status = {c["name"]: c["status"] for c in report["checks"]}
    for check in ("dtypes", "sizes", "no NaN", "ranges", "task outputs", "contract"):
        assert status[check] == "FAIL", report
    detail = {c["name"]: c["detail"] for c in report["checks"]}
    assert "heatmap spans" in detail["ranges"] and "score 7 outside [0, 1]" in detail["ranges"]
