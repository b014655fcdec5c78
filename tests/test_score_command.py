"""`bench score` on prediction folders in LEGION's and the native layout: numbers equal the
docs/protocol.md formulas computed independently here, to 1e-9; missing or bad predictions fail
the sample with a message naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.cli import main


def write_synthscars(root: Path, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A SynthScars test split of n images with random polygons; returns GT masks by file name
    (rasterised here with cv2.fillPoly on truncated coordinates, independently of bench)."""
    img_dir = root / "SynthScars" / "test" / "images"
    ann_dir = root / "SynthScars" / "test" / "annotations"
    img_dir.mkdir(parents=True)
    ann_dir.mkdir(parents=True)
    records, gts = [], {}
    for i in range(n):
        h, w = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        name = f"{i}.png" if i % 2 else f"{i}.jpg"
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(arr).save(img_dir / name)
        refs, gt = [], np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(0 if i == 3 else 1, 3))):
            cx, cy = rng.uniform(5, w - 5), rng.uniform(5, h - 5)
            pts = [(cx + rng.uniform(-12, 12), cy + rng.uniform(-12, 12)) for _ in range(5)]
            pts = [(min(max(x, 0), w - 1), min(max(y, 0), h - 1)) for x, y in pts]
            flat = [float(v) for p in pts for v in p]
            refs.append({"sentence": "here", "explanation": "odd", "bbox": None, "segmentation": [flat]})
            cv2.fillPoly(gt, [np.array(pts, np.float32).astype(np.int32).reshape(-1, 1, 2)], 1)
        records.append({str(100 + i): {"img_file_name": name, "caption": f"caption number {i}", "refs": refs}})
        gts[name] = gt.astype(bool)
    (ann_dir / "test.json").write_text(json.dumps(records))
    return gts


def protocol_metrics(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float, float]:
    """docs/protocol.md §1 written out directly: (miou, f1, iou_fg)."""
    ious = []
    for c in (False, True):
        inter = np.logical_and(pred == c, gt == c).sum()
        union = np.logical_or(pred == c, gt == c).sum()
        ious.append(inter / (union + 1e-6))
    tp = np.sum(pred & gt)
    fp = np.sum(pred & ~gt)
    fn = np.sum(~pred & gt)
    if tp == fp == fn == 0:
        f1 = 1.0
    else:
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f1 = 0.0 if p + r == 0 else 2 * p * r / (p + r)
    return (ious[0] + ious[1]) / 2, f1, ious[1]


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(7)
    gts = write_synthscars(tmp_path / "data", 12, rng)
    return tmp_path, gts, rng


def test_legion_layout_scores_exactly(data, capsys):
    tmp, gts, rng = data
    pred_dir = tmp / "legion_out"
    preds = {}
    for k, (name, gt) in enumerate(sorted(gts.items())):
        if k == 0:
            continue  # no prediction: must be counted as failed, not skipped
        d = pred_dir / name
        d.mkdir(parents=True)
        pred = gt.copy() if k == 1 else rng.random(gt.shape) > 0.8
        if k == 2:
            pred = np.zeros_like(gt)
        Image.fromarray(pred.astype(np.uint8) * 255).save(d / "mask.png")
        (d / "explanation.json").write_text(json.dumps({f"/some/where/{name}": f"caption number {k}"}))
        preds[name] = pred
    rc = main(["score", "--dataset", "synthscars", "--data-root", str(tmp / "data"), "--predictions",
               str(pred_dir), "--format", "legion", "--out", str(tmp / "res"), "--no-progress",
               "--css-model", "all-MiniLM-L6-v2"])
    assert rc == 0
    res = json.loads((tmp / "res" / "results.json").read_text())
    (clean,) = res["conditions"]
    assert clean["n"] == 12 and clean["n_failed"] == 1
    want = np.array([protocol_metrics(preds[n], gts[n]) for n in sorted(preds)])
    m = clean["metrics"]
    assert abs(m["miou"]["value"] - want[:, 0].mean()) < 1e-9
    assert abs(m["f1"]["value"] - want[:, 1].mean()) < 1e-9
    assert abs(m["iou_fg"]["value"] - want[:, 2].mean()) < 1e-9
    assert m["miou"]["n"] == 11
    df = pd.read_parquet(tmp / "res" / "samples.parquet").set_index("sample_id")
    missing = sorted(gts)[0]
    assert df.loc[missing, "status"] == "failed" and missing in df.loc[missing, "error"]
    exact = sorted(gts)[1]
    assert df.loc[exact, "f1"] == 1.0
    assert "rouge_l" in m and res["protocol"]["css_model"] == "all-MiniLM-L6-v2"


def test_legion_layout_bad_masks_fail_with_file_named(data):
    tmp, gts, _ = data
    pred_dir = tmp / "legion_out"
    names = sorted(gts)
    for k, name in enumerate(names):
        d = pred_dir / name
        d.mkdir(parents=True)
        h, w = gts[name].shape
        if k == 0:
            arr = np.zeros((h + 3, w), np.uint8)  # wrong size
        elif k == 1:
            arr = np.full((h, w), 128, np.uint8)  # not binary
        else:
            arr = np.zeros((h, w), np.uint8)
        Image.fromarray(arr).save(d / "mask.png")
    assert main(["score", "--dataset", "synthscars", "--data-root", str(tmp / "data"), "--predictions",
                 str(pred_dir), "--format", "legion", "--out", str(tmp / "res"), "--no-progress"]) == 0
    df = pd.read_parquet(tmp / "res" / "samples.parquet").set_index("sample_id")
    assert df.loc[names[0], "status"] == "failed"
    assert f"{names[0]}/mask.png" in df.loc[names[0], "error"] and "image is" in df.loc[names[0], "error"]
    assert "not binary" in df.loc[names[1], "error"] and f"{names[1]}/mask.png" in df.loc[names[1], "error"]
    assert (df.drop(names[:2])["status"] == "ok").all()


def test_native_layout_heatmaps_scores_and_threshold(data):
    tmp, gts, rng = data
    pred_dir = tmp / "native"
    (pred_dir / "heatmaps").mkdir(parents=True)
    heat = {}
    lines = []
    for name, gt in gts.items():
        hm = rng.integers(0, 256, gt.shape, dtype=np.uint8)
        Image.fromarray(hm).save(pred_dir / "heatmaps" / f"{Path(name).stem}.png")
        heat[name] = hm
        lines.append(json.dumps({"id": name, "score": float(rng.random()), "explanation": "x"}))
    (pred_dir / "predictions.jsonl").write_text("\n".join(lines))
    assert main(["score", "--dataset", "synthscars", "--data-root", str(tmp / "data"), "--predictions",
                 str(pred_dir), "--format", "native", "--out", str(tmp / "res"), "--no-progress",
                 "--threshold", "0.6", "--css-model", "all-MiniLM-L6-v2"]) == 0
    res = json.loads((tmp / "res" / "results.json").read_text())
    assert res["protocol"]["mask_threshold"] == 0.6
    want = np.array([protocol_metrics(heat[n].astype(np.float32) / 255 > 0.6, gts[n]) for n in sorted(gts)])
    m = res["conditions"][0]["metrics"]
    assert abs(m["miou"]["value"] - want[:, 0].mean()) < 1e-9
    assert abs(m["f1"]["value"] - want[:, 1].mean()) < 1e-9
    assert res["conditions"][0]["n_failed"] == 0


def test_legion_layout_without_any_explanation_records_text_metrics_as_not_computed(data, capsys):
    tmp, gts, _ = data
    pred_dir = tmp / "legion_out"
    for name, gt in gts.items():
        (pred_dir / name).mkdir(parents=True)
        Image.fromarray(gt.astype(np.uint8) * 255).save(pred_dir / name / "mask.png")
    assert main(["score", "--dataset", "synthscars", "--data-root", str(tmp / "data"), "--predictions",
                 str(pred_dir), "--format", "legion", "--out", str(tmp / "res"), "--no-progress",
                 "--css-model", "all-MiniLM-L6-v2"]) == 0
    m = json.loads((tmp / "res" / "results.json").read_text())["conditions"][0]["metrics"]
    assert m["f1"]["value"] == 1.0
    for name in ("rouge_l", "css"):
        assert m[name]["status"] == "not_computed" and "explanation.json" in m[name]["reason"]
    err = capsys.readouterr().err
    assert "metric rouge_l not computed" in err and "metric css not computed" in err
