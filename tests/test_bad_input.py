"""Bad input never yields a plausible wrong table (issue 14, "validate before any work").

Every case runs the CLI in-process and expects: exit status 2, exactly one line on stderr,
``bench: error: ...`` naming the bad name and the fix, no traceback, and no work started (no
``results.json`` written, no prediction cache created, the spy adapter never loaded or called).
The data is a tiny generated demo (3 fake + 1 real images) in a temporary folder; the cache is
a temporary ``$BENCH_CACHE``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import pytest

from bench.cli import build_parser, main
from bench.core.registry import ADAPTERS
from bench.core.types import Adapter, ModelInput, Prediction

ROOT = Path(__file__).resolve().parents[1]


class SpyAdapter(Adapter):
    """Records load/predict calls; declares its one option ``level``; checks, while it
    predicts, that the run holds the lock of its --out folder."""

    name = "spy-bad-input"
    version = "1"
    tasks = frozenset({"detect", "localize"})
    requirements: ClassVar[dict[str, Any]] = {"batch_size": 4, "num_gpus": 0, "gpu_memory_gb": 0}
    config_keys: ClassVar[frozenset[str]] = frozenset({"level"})
    events: ClassVar[list[str]] = []
    out_dir: ClassVar[Path | None] = None

    def load(self, device: str = "cpu") -> None:
        SpyAdapter.events.append("load")

    def predict(self, batch: Sequence[ModelInput]) -> list[Prediction]:
        SpyAdapter.events.append("predict")
        if SpyAdapter.out_dir is not None:
            from bench.engine.outdir import RunLock
            from bench.core.validate import InputError

            try:
                RunLock(SpyAdapter.out_dir).acquire().release()
                SpyAdapter.events.append("lock was free")
            except InputError as exc:
                SpyAdapter.events.append(f"locked: {exc}")
        return [Prediction(mask=np.zeros(b.image.shape[:2], bool), score=0.0) for b in batch]


if SpyAdapter.name not in ADAPTERS:
    ADAPTERS.add(SpyAdapter.name, SpyAdapter)


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    from bench.datasets import demo

    root = tmp_path_factory.mktemp("bad-input-demo")
    demo.generate_demo(root, seed=0, n_fake=3, n_real=1)
    return root


@pytest.fixture
def env(tmp_path, monkeypatch, demo_root):
    cache = tmp_path / "cache"
    monkeypatch.setenv("BENCH_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    SpyAdapter.events.clear()
    SpyAdapter.out_dir = None
    return {"tmp": tmp_path, "cache": cache, "data": demo_root, "out": tmp_path / "out"}


SUITE = """\
name: bad-input
version: 1
dataset: demo
split: test
needs_data_root: false
seed: 0
conditions: [clean]
metrics: [miou, f1, det_auc]
protocol:
  mask_threshold: 0.5
  bootstrap: {n: 50, seed: 0}
"""


def suite_file(tmp: Path, old: str | None = None, new: str = "") -> Path:
    text = SUITE if old is None else SUITE.replace(old, new)
    assert old is None or text != SUITE, old
    p = tmp / "suite.yaml"
    p.write_text(text)
    return p


def run_argv(env, *extra: str, suite: str = "demo", adapters: str = "spy-bad-input,empty") -> list[str]:
    return ["run", "--suite", suite, "--data-root", str(env["data"]), "--adapter", adapters,
            "--out", str(env["out"]), "--limit", "2", "--workers", "1", "--no-progress", *extra]


def assert_refused(rc: int, capsys, env, *words: str) -> str:
    """Exit 2, one `bench: error:` line holding every word, no traceback, no work done."""
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in out + err
    assert len(lines) == 1 and lines[0].startswith("bench: error: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert not list(Path(env["tmp"]).rglob("results.json")), "a result was written"
    assert not (env["cache"] / "predictions").exists(), "inference started"
    assert "load" not in SpyAdapter.events and "predict" not in SpyAdapter.events
    return lines[0]


# -- bench run: one case per bad input ------------------------------------------------------------

def _suite(old: str | None = None, new: str = ""):
    return ("suite", old, new)


RUN_CASES = {
    # --config names an adapter: misspelt, or not in the run
    "config-misspelt-adapter": ([ "--config", "emtpy.level=1"], None,
                                ["unknown adapter 'emtpy'", "did you mean 'empty'", "adapters in the run"]),
    "config-adapter-not-in-run": (["--config", "noise.block=8"], None,
                                  ["'noise' is not in this run", "add --adapter noise"]),
    # unknown config keys: a declared adapter (suggestion), and one that checks in __init__
    "config-unknown-key-declared": (["--config", "spy-bad-input.levle=2"], None,
                                    ["'levle'", "did you mean 'level'", "options: level"]),
    "config-unknown-key-undeclared": (["--config", "noise.blokc=8"], "spy-bad-input,noise",
                                      ["noise", "blokc", "block"]),
    "config-key-twice": (["--config", "spy-bad-input.level=1", "--config", "spy-bad-input.level=2"], None,
                         ["spy-bad-input.level", "twice"]),
    "config-malformed": (["--config", "level=1"], None, ["'level=1'", "ADAPTER.KEY=VALUE"]),
    # --limit and --workers must be positive
    "limit-zero": (["--limit", "0"], None, ["--limit", "positive integer", "got 0"]),
    "limit-negative": (["--limit", "-1"], None, ["--limit", "positive integer", "got -1"]),
    "workers-zero": (["--workers", "0"], None, ["--workers", "positive integer"]),
    # --condition syntax and parameters
    "condition-duplicate-param": (["--condition", "jpeg(quality=50,quality=60)"], None,
                                  ["'quality' given twice", "give it once"]),
    "condition-unbalanced": (["--condition", "jpeg(quality=50"], None,
                             ["--condition 'jpeg(quality=50'", "cannot parse", "NAME(PARAM=VALUE"]),
    "condition-not-name-value": (["--condition", "jpeg(quality)"], None, ["'quality'", "NAME=VALUE"]),
    "condition-unknown-perturbation": (["--condition", "jepg(quality=50)"], None,
                                       ["unknown perturbation 'jepg'", "did you mean 'jpeg'"]),
    "condition-unknown-param": (["--condition", "jpeg(qualty=50)"], None,
                                ["'qualty'", "did you mean 'quality'"]),
    "condition-out-of-range": (["--condition", "jpeg(quality=500)"], None, ["quality", "<= 100"]),
    "perturb-unknown-preset": (["--perturb", "legoin"], None, ["legoin", "did you mean 'legion'"]),
    # suite files: values, unknown keys, types, strings for lists, YAML syntax, misspelt keys
    "suite-mask-threshold": ([], _suite("mask_threshold: 0.5", "mask_threshold: 1.5"),
                             ["suite.yaml:10", "protocol.mask_threshold", "< 1", "got 1.5"]),
    "suite-unknown-protocol-key": ([], _suite("bootstrap: {n: 50, seed: 0}", "bootstrp: {n: 50, seed: 0}"),
                                   ["suite.yaml:11", "unknown key 'bootstrp'", "did you mean 'bootstrap'"]),
    "suite-seed-text": ([], _suite("\nseed: 0\n", '\nseed: "abc"\n'), ["suite.yaml:6", "seed must be an integer", "'abc'"]),
    "suite-conditions-string": ([], _suite("conditions: [clean]", "conditions: clean"),
                                ["suite.yaml:7", "conditions must be a list", "write [clean]"]),
    "suite-metrics-string": ([], _suite("metrics: [miou, f1, det_auc]", "metrics: miou"),
                             ["suite.yaml:8", "metrics must be a list", "write [miou]"]),
    "suite-yaml-syntax": ([], _suite("metrics: [miou, f1, det_auc]", "metrics: [miou, f1\nprotocol2: {"),
                          ["suite.yaml:", "not valid YAML"]),
    "suite-misspelt-key": ([], _suite("metrics:", "metircs:"), ["suite.yaml:8", "unknown key 'metircs'",
                                                              "did you mean 'metrics'"]),
    "suite-key-twice": ([], _suite("\nseed: 0\n", "\nseed: 0\nseed: 1\n"), ["suite.yaml:7", "'seed' appears twice"]),
    "suite-unknown-metric": ([], _suite("[miou, f1, det_auc]", "[miou, f1, det_acu]"),
                             ["unknown metric 'det_acu'", "did you mean 'det_auc'"]),
    "suite-missing-key": ([], _suite("dataset: demo\n", ""), ["missing required key 'dataset'"]),
    "suite-bad-bootstrap": ([], _suite("{n: 50, seed: 0}", "{n: 0, seed: 0}"),
                            ["protocol.bootstrap.n", ">= 1"]),
    "suite-bad-condition": ([], _suite("conditions: [clean]", "conditions: [clean, 'jpeg(quality=50,quality=5)']"),
                            ["suite.yaml: conditions[1]", "given twice"]),
    "suite-unknown-reference-field": ([], _suite("  mask_threshold: 0.5", "  mask_threshold: 0.5\n  reference_field: captoin"),
                                      ["reference field 'captoin'", "did you mean 'caption'"]),
    "suite-file-missing": (["--suite", "nowhere/suite.yaml"], None, ["nowhere/suite.yaml", "no such suite file"]),
    "suite-unknown-name": (["--suite", "demoo"], None, ["unknown suite 'demoo'", "did you mean 'demo'"]),
}


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_bad_run_input_is_refused_before_any_work(case, env, capsys):
    extra, adapters_or_suite, words = RUN_CASES[case]
    kwargs: dict[str, Any] = {}
    if isinstance(adapters_or_suite, tuple):
        kwargs["suite"] = str(suite_file(env["tmp"], adapters_or_suite[1], adapters_or_suite[2]))
    elif isinstance(adapters_or_suite, str):
        kwargs["adapters"] = adapters_or_suite
    argv = run_argv(env, **kwargs)
    if "--suite" in extra:  # the case replaces the suite
        i = argv.index("--suite")
        del argv[i:i + 2]
    assert_refused(main(argv + extra), capsys, env, *words)


def test_data_root_that_is_a_file(env, capsys):
    f = env["tmp"] / "data.txt"
    f.write_text("not a folder")
    argv = run_argv(env)
    argv[argv.index("--data-root") + 1] = str(f)
    assert_refused(main(argv), capsys, env, "--data-root", "is a file", "needs a folder")


def test_out_that_is_a_file(env, capsys):
    env["out"].write_text("a file")
    assert_refused(main(run_argv(env)), capsys, env, f"--out {env['out']}", "is a file", "give a folder")


def test_out_whose_adapter_folder_is_a_file(env, capsys):
    env["out"].mkdir()
    (env["out"] / "empty").write_text("a file")
    assert_refused(main(run_argv(env)), capsys, env, "empty is a file", "another --out")


def test_out_held_by_another_run(env, capsys):
    """A second run on an --out that another process has locked stops at once, naming it."""
    env["out"].mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from bench.engine.outdir import RunLock
            lock = RunLock({str(env['out'])!r}, "bench run --suite demo (the first one)").acquire()
            print("locked", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert_refused(main(run_argv(env)), capsys, env, "another `bench run` is writing here",
                       f"pid {holder.pid}", "the first one", "give another --out")
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    # released: the same command now runs
    assert main(run_argv(env)) == 0


def test_a_run_holds_its_lock_and_cleans_only_its_own_old_files(env, capsys):
    out = env["out"]
    SpyAdapter.out_dir = out
    assert main(run_argv(env, "--limit", "3")) == 0
    assert any(e.startswith("locked: ") for e in SpyAdapter.events), SpyAdapter.events
    assert not (out / ".bench-run.lock").exists()
    spy = out / "spy-bad-input"
    old_pictures = sorted(p.relative_to(spy) for p in (spy / "gallery").rglob("*.png"))
    assert len(old_pictures) > 2
    # what a user (or another tool) put there, and a stale picture of an old condition
    (spy / "notes.txt").write_text("mine")
    (spy / "gallery" / "pred" / "jpeg_quality_50_").mkdir()
    stale = spy / "gallery" / "pred" / "jpeg_quality_50_" / "old.png"
    stale.write_bytes(b"png")
    sibling = out / "noise-from-before"
    sibling.mkdir()
    (sibling / "results.json").write_text("{}")
    capsys.readouterr()

    SpyAdapter.out_dir = None
    assert main(run_argv(env, "--limit", "1", adapters="spy-bad-input")) == 0
    assert not stale.exists() and not stale.parent.exists()
    assert (spy / "notes.txt").read_text() == "mine"
    assert (sibling / "results.json").read_text() == "{}"  # other adapters' folders are left alone
    res = json.loads((spy / "results.json").read_text())
    assert res["dataset"]["n_samples"] == 1
    index = json.loads((spy / "gallery" / "index.json").read_text())
    now = sorted(p.relative_to(spy) for p in (spy / "gallery").rglob("*.png"))
    assert len(index["samples"]) == 1 and len(now) == 2  # gt + clean prediction of one sample


def test_api_limit_zero_is_refused(env):
    from bench.engine.runner import RunOptions, run_suite
    from bench.suites import get_suite
    from bench.core.validate import InputError

    opts = RunOptions(out_dir=env["out"], data_root=env["data"], limit=0, workers=1, progress=False)
    with pytest.raises(InputError, match="--limit must be a positive integer"):
        run_suite(get_suite("demo"), ["empty"], opts)
    assert not env["out"].exists()


# -- other commands ---------------------------------------------------------------------------------

def _image(env) -> Path:
    return sorted((env["data"] / "SynthScars" / "test" / "images").iterdir())[0]


def test_predict_out_folder(env, capsys):
    folder = env["tmp"] / "somewhere"
    folder.mkdir()
    before = set(os.listdir(env["tmp"]))
    rc = main(["predict", str(_image(env)), "--adapter", "spy-bad-input", "--out", str(folder)])
    assert_refused(rc, capsys, env, f"--out {folder}", "is a folder", "overlay.png")
    assert set(os.listdir(env["tmp"])) == before and not os.listdir(folder)  # no temp file left


@pytest.mark.parametrize("argv,words", [
    (["--config", "levle=1"], ["'levle'", "did you mean 'level'"]),
    (["--out", "overlay.jpg"], ["overlay.jpg", ".png"]),
])
def test_predict_bad_options(env, capsys, argv, words):
    rc = main(["predict", str(_image(env)), "--adapter", "spy-bad-input", *argv])
    assert_refused(rc, capsys, env, *words)


def test_check_adapter_unknown_key(env, capsys):
    assert_refused(main(["check-adapter", "spy-bad-input", "--config", "levle=1"]), capsys, env,
                   "'levle'", "did you mean 'level'")


@pytest.mark.parametrize("argv,words", [
    (["--condition", "jpeg(quality=50,quality=60)"], ["--condition", "'quality' given twice"]),
    (["--condition", "jpeg(quality=50"], ["--condition", "cannot parse"]),
    (["--perturbation", "jpeg", "--param", "quality=50", "--param", "quality=60"], ["--param quality", "twice"]),
])
def test_perturb_bad_condition(env, capsys, argv, words):
    rc = main(["perturb", str(_image(env)), *argv, "--out", str(env["tmp"] / "seen.png")])
    assert_refused(rc, capsys, env, *words)
    assert not (env["tmp"] / "seen.png").exists()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, demo_root) -> Path:
    """Real run folders of `empty` and `full` on the tiny demo."""
    tmp = tmp_path_factory.mktemp("bad-input-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCH_CACHE", str(tmp / "cache"))
        assert main(["run", "--suite", "demo", "--data-root", str(demo_root), "--adapter", "empty,full",
                     "--out", str(tmp / "runs"), "--workers", "1", "--no-progress"]) == 0
    return tmp / "runs"


@pytest.mark.parametrize("metric,words", [
    ("mioo", ["--metric 'mioo'", "unknown metric", "did you mean 'miou'"]),
    ("css", ["--metric 'css'", "not measured in these runs", "miou"]),
])
def test_compare_unknown_metric(env, capsys, two_runs, metric, words):
    capsys.readouterr()
    rc = main(["compare", str(two_runs / "empty"), str(two_runs / "full"), "--metric", metric, "--plain"])
    out, err = capsys.readouterr()
    assert rc == 2 and "Traceback" not in out + err and out == ""
    assert len(err.strip().splitlines()) == 1
    for w in words:
        assert w in err


def test_compare_known_metric_still_works(two_runs, capsys):
    assert main(["compare", str(two_runs / "empty"), str(two_runs / "full"), "--metric", "miou", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["metric"] for r in rows] == ["miou"]


def _claims(tmp: Path, text: str) -> Path:
    p = tmp / "claims.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text,words", [
    ("claims:\n  - {method: empty, dataset: demo, metric: mioo, value: 47}\n",
     ["claims.yaml:2: claim 1", "unknown metric 'mioo'", "did you mean 'miou'"]),
    ("claims:\n  - {method: empty, metric: miou, condition: 'jepg(quality=50)', value: 47}\n",
     ["claim 1", "unknown perturbation 'jepg'", "did you mean 'jpeg'"]),
    ("claims:\n  - {method: empty, metric: miou, value: 47, tolerence: 1}\n",
     ["claim 1", "unknown field 'tolerence'", "did you mean 'tolerance'"]),
    ("claims:\n  - {method: empty, metric: miou, value: 47\n", ["claims.yaml:", "not valid YAML"]),
])
def test_claims_file_mistakes(env, capsys, two_runs, text, words):
    rc = main(["verify-claims", str(_claims(env["tmp"], text)), "--runs", str(two_runs)])
    assert_refused(rc, capsys, env, *words)


def test_verify_claims_by_builtin_name(env, capsys, two_runs):
    """A claims file under results/<suite>/claims/ is found by its name."""
    assert main(["verify-claims", "legion_table10_robustness", "--runs", str(two_runs), "--plain"]) == 0
    out = capsys.readouterr().out
    assert "LEGION robustness on SynthScars (Table 10)" in out and "40 without a run" in out
    assert_refused(main(["verify-claims", "legion_table10_robustnes"]), capsys, env,
                   "did you mean 'legion_table10_robustness'", "results/<suite>/claims/",
                   "synthscars/legion_table2_localization")
    # a name in several suites: say which to choose
    assert_refused(main(["verify-claims", "legion_table2_localization"]), capsys, env,
                   "in several suites", "loki/legion_table2_localization")
    assert main(["verify-claims", "loki/legion_table2_localization", "--runs", str(two_runs), "--plain"]) == 0
    assert "LEGION localization on LOKI (Table 2)" in capsys.readouterr().out
    assert "bench verify-claims legion_table10_robustness" in (ROOT / "README.md").read_text()


# -- help texts -------------------------------------------------------------------------------------

def _parsers() -> dict[str, argparse.ArgumentParser]:
    out = {"bench": build_parser()}
    for name, parser in list(out.items()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, sp in action.choices.items():
                    out[f"{name} {sub}"] = sp
                    for a in sp._actions:  # nested sub-commands (bench data fetch ...)
                        if isinstance(a, argparse._SubParsersAction):
                            for sub2, sp2 in a.choices.items():
                                out[f"{name} {sub} {sub2}"] = sp2
    return out


@pytest.mark.parametrize("command", sorted(_parsers()))
def test_every_option_has_help_and_no_literal_percent(command):
    parser = _parsers()[command]
    missing = [a.option_strings[0] if a.option_strings else a.dest for a in parser._actions
               if not a.help and not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]
    assert not missing, f"`{command} --help`: no help text for {missing}"
    text = parser.format_help()
    assert "%%" not in text, f"`{command} --help` shows a literal %%"
