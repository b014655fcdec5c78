"""Test helper: write run folders exactly in the runner's format (results.json schema
bench.results/1, samples.parquet, gallery/), without running any model.

Per-sample metric values are given by the caller; the aggregate ``value`` written to
results.json is their mean and the interval is [min, max] of the per-sample values (a
stand-in: the leaderboard only displays what the file says)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

FP = "a" * 64
THUMB_H, THUMB_W = 24, 32

BASE_PROTOCOL = {
    "mask_threshold": 0.5, "localization_images": "fake", "reference_field": "caption",
    "text_cleaning": "legion", "rouge_impl": "rouge-score", "css_model": "all-MiniLM-L6-v2",
    "bootstrap": {"n": 1000, "seed": 0},
}


def condition_entry(key: str) -> dict[str, Any]:
    from bench.core.conditions import Condition

    c = Condition.parse(key)
    return {"key": c.key, "perturbation": c.perturbation, "params": c.params}


def make_run(
    out: Path,
    *,
    adapter: str = "alpha",
    suite: str = "demo",
    run_id: str = "20250101T000000Z-aaaaaaaa",
    per_sample: dict[str, dict[str, list[float]]] | None = None,
    labels: list[int] | None = None,
    explanations: list[str] | None = None,
    references: list[str] | None = None,
    protocol: dict[str, Any] | None = None,
    flags: dict[str, Any] | None = None,
    failed: dict[str, list[int]] | None = None,
    fingerprint: str = FP,
    dataset: str = "demo",
    gallery: bool = True,
    sample_ids: list[str] | None = None,
    pred_boxes: dict[str, list[tuple[int, int, int, int]]] | None = None,
    card: dict[str, Any] | None = None,
    command: str | None = None,
    git_commit: str | None = "c299292",
) -> Path:
    """Write a run folder at ``out`` and return it.

    ``per_sample``: {condition key: {metric: [value per sample]}} (fractions). ``failed``:
    {condition: [sample indices]} marked failed (their metric values become NaN).
    ``pred_boxes``: {condition: [(y0, y1, x0, x1) per sample]} predicted mask rectangle on the
    thumbnail; the ground truth is rows 4..12, columns 8..20 for every fake sample. The gallery
    holds, for every perturbed condition, a thumbnail of the perturbed image (another random
    picture: what the condition fed the model). ``card``: the adapter's recorded card (left out
    when None, as in results written before adapters recorded it); ``command``: the stored
    free-text command.
    """
    per_sample = per_sample or {"clean": {"miou": [0.2, 0.6, 0.9], "f1": [0.1, 0.5, 0.8]}}
    n = len(next(iter(next(iter(per_sample.values())).values())))
    labels = labels if labels is not None else [1] * n
    sample_ids = sample_ids or [f"img_{i:03d}" for i in range(n)]
    explanations = explanations or [f"explanation {i} by {adapter}" for i in range(n)]
    references = references or [f"reference {i}" for i in range(n)]
    failed = failed or {}
    out.mkdir(parents=True, exist_ok=True)

    rows = []
    conds = []
    for key, metrics in per_sample.items():
        bad = set(failed.get(key, []))
        for i in range(n):
            row = {"sample_id": sample_ids[i], "file_name": f"{sample_ids[i]}.png", "condition": key,
                   "label": labels[i], "status": "failed" if i in bad else "ok",
                   "error": "boom: cannot decode" if i in bad else None, "height": 240, "width": 320,
                   "tp": 10, "fp": 5, "fn": 3, "tn": 100, "score": 0.5 + 0.1 * (i % 3),
                   "explanation": explanations[i], "reference": references[i]}
            for m, vals in metrics.items():
                row[m] = float("nan") if i in bad else float(vals[i])
            rows.append(row)
        agg = {}
        for m, vals in metrics.items():
            v = np.array([x for i, x in enumerate(vals) if i not in bad], dtype=float)
            agg[m] = {"value": float(v.mean()), "ci95": [float(v.min()), float(v.max())], "n": int(v.size)}
        conds.append({**condition_entry(key), "n": n, "n_failed": len(bad), "metrics": agg})
    df = pd.DataFrame(rows)
    df.to_parquet(out / "samples.parquet", index=False)

    proto = copy.deepcopy(BASE_PROTOCOL)
    proto.update(protocol or {})
    results = {
        "schema": "bench.results/1", "run_id": run_id, "created": "2025-01-01T00:00:00+00:00",
        "harness": {"version": "0.1.0", "git_commit": git_commit},
        "suite": {"name": suite, "version": 1},
        "dataset": {"name": dataset, "split": "test", "fingerprint": fingerprint, "n_samples": n, "limit": None},
        "adapter": {"name": adapter, "version": "1", "config": {"seed": 0}, "weights_sha256": None,
                    "tasks": ["detect", "explain", "localize"], "flags": flags or {}},
        "protocol": proto,
        "metrics_used": sorted({m for ms in per_sample.values() for m in ms}),
        "perturbation_provenance": {"seed": 0, "albumentations": "2.0.8"},
        "conditions": conds,
        "environment": {"python": "3.11.9", "platform": "Linux-x86_64", "packages": {"numpy": "2.1.0"}},
        "timing": {"infer_s": 1.0, "score_s": 0.5},
        "command": command if command is not None else f"bench run --suite {suite} --adapter {adapter}",
    }
    if card is not None:
        results["adapter"]["card"] = card
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")

    if gallery:
        g = out / "gallery"
        for sub in ("images", "gt"):
            (g / sub).mkdir(parents=True, exist_ok=True)
        index = {"samples": [], "conditions": {}}
        for i, sid in enumerate(sample_ids):
            safe = f"s{i:03d}"
            index["samples"].append({"sample_id": sid, "safe_id": safe})
            rng = np.random.default_rng(i)
            img = rng.integers(0, 256, size=(THUMB_H, THUMB_W, 3), dtype=np.uint8)
            Image.fromarray(img).save(g / "images" / f"{safe}.jpg", quality=90)
            gt = np.zeros((THUMB_H, THUMB_W), np.uint8)
            if labels[i] == 1:
                gt[4:12, 8:20] = 255
            Image.fromarray(gt).save(g / "gt" / f"{safe}.png")
        for k, key in enumerate(per_sample):
            cslug = f"c{k}"
            index["conditions"][key] = cslug
            (g / "pred" / cslug).mkdir(parents=True, exist_ok=True)
            if key != "clean":
                (g / "images" / cslug).mkdir(parents=True, exist_ok=True)
                for i in range(n):
                    seen = np.random.default_rng(1000 * (k + 1) + i).integers(0, 256, size=(THUMB_H, THUMB_W, 3),
                                                                               dtype=np.uint8)
                    Image.fromarray(seen).save(g / "images" / cslug / f"s{i:03d}.jpg", quality=90)
            for i in range(n):
                pm = np.zeros((THUMB_H, THUMB_W), np.uint8)
                y0, y1, x0, x1 = (pred_boxes or {}).get(key, [(6, 14, 10, 24)] * n)[i]
                pm[y0:y1, x0:x1] = 255
                Image.fromarray(pm).save(g / "pred" / cslug / f"s{i:03d}.png")
        (g / "index.json").write_text(json.dumps(index), encoding="utf-8")
    return out


def edit_results(run_dir: Path, fn) -> None:
    """Apply ``fn(dict)`` (mutating) to a run's results.json."""
    p = run_dir / "results.json"
    data = json.loads(p.read_text())
    fn(data)
    p.write_text(json.dumps(data), encoding="utf-8")
