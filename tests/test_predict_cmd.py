"""`bench predict` and the mask overlays (bench/io/overlay.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import f1_score, jaccard_score

from bench.io import overlay as O
from bench.cli import main
from bench.core.registry import ADAPTERS
from bench.core.types import Adapter, ModelInput, Prediction

H, W = 40, 60
GT_BOX = (slice(10, 30), slice(10, 40))      # rows, cols of the ground truth
PRED_BOX = (slice(20, 35), slice(25, 50))    # rows, cols where the heatmap is 0.9


class BoxAdapter(Adapter):
    """Heatmap 0.9 in PRED_BOX, exactly 0.5 elsewhere (so the strict > threshold matters)."""

    name = "test-predict-box"
    tasks = frozenset({"detect", "localize", "explain"})
    seen_configs: list[dict] = []

    def __init__(self, **config):
        super().__init__(**config)
        BoxAdapter.seen_configs.append(dict(config))

    def predict(self, batch: Sequence[ModelInput]) -> list[Prediction]:
        out = []
        for inp in batch:
            h, w = inp.image.shape[:2]
            hm = np.full((h, w), 0.5, np.float32)
            hm[PRED_BOX] = 0.9
            out.append(Prediction(heatmap=hm, score=0.73, explanation="the <b>hand</b> has [six](http://x) fingers"))
        return out


class TalkerAdapter(Adapter):
    name = "test-predict-talker"
    tasks = frozenset({"explain"})

    def predict(self, batch):
        return [Prediction(explanation="looks real") for _ in batch]


class WrongSizeAdapter(Adapter):
    name = "test-predict-wrongsize"
    tasks = frozenset({"localize"})

    def predict(self, batch):
        return [Prediction(mask=np.zeros((5, 5), bool)) for _ in batch]


for cls in (BoxAdapter, TalkerAdapter, WrongSizeAdapter):
    if cls.name not in ADAPTERS:
        ADAPTERS.add(cls.name, cls)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    arr = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    p = tmp_path / "photo.png"
    Image.fromarray(arr).save(p)
    return p


@pytest.fixture
def gt_mask(tmp_path: Path) -> Path:
    m = np.zeros((H, W), np.uint8)
    m[GT_BOX] = 255
    p = tmp_path / "gt.png"
    Image.fromarray(m).save(p)
    return p


def _blend_cv2(img: np.ndarray, color, alpha: float) -> np.ndarray:
    """Independent reference: OpenCV's addWeighted of the image and a solid colour image."""
    solid = np.empty_like(img)
    solid[:] = color
    return cv2.addWeighted(img, 1 - alpha, solid, alpha, 0)


# -- overlays -------------------------------------------------------------------------------

def test_tint_hand_worked() -> None:
    img = np.array([[[100, 200, 0], [10, 20, 30]]], np.uint8)  # 1 x 2
    mask = np.array([[True, False]])
    out = O.tint(img, mask, (0, 0, 255), alpha=0.25)
    # 0.75 * (100, 200, 0) + 0.25 * (0, 0, 255) = (75, 150, 63.75 -> 64)
    assert out[0, 0].tolist() == [75, 150, 64]
    assert out[0, 1].tolist() == [10, 20, 30]          # untouched
    assert img[0, 0].tolist() == [100, 200, 0]         # input not modified


@pytest.mark.parametrize("alpha", [0.3, 0.5, 0.8])
def test_overlay_matches_opencv_blend(rng, alpha: float) -> None:
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    gt = np.zeros((H, W), bool)
    gt[GT_BOX] = True
    pred = np.zeros((H, W), bool)
    pred[PRED_BOX] = True
    out = O.overlay_prediction(img, pred, gt, alpha)
    for region, color in ((pred & gt, O.TP_COLOR), (pred & ~gt, O.FP_COLOR), (gt & ~pred, O.FN_COLOR)):
        want = _blend_cv2(img, color, alpha)[region].astype(int)
        # within one grey level: the two round exact .5 ties differently
        assert np.abs(out[region].astype(int) - want).max() <= 1
    neither = ~(pred | gt)
    assert np.array_equal(out[neither], img[neither])
    g = O.overlay_gt(img, gt, alpha)
    assert np.abs(g[gt].astype(int) - _blend_cv2(img, O.GT_COLOR, alpha)[gt].astype(int)).max() <= 1
    assert np.array_equal(g[~gt], img[~gt])
    # no ground truth: the prediction is drawn in the false-positive colour
    p = O.overlay_prediction(img, pred, None, alpha)
    assert np.abs(p[pred].astype(int) - _blend_cv2(img, O.FP_COLOR, alpha)[pred].astype(int)).max() <= 1


def test_overlay_refuses_bad_inputs() -> None:
    img = np.zeros((4, 5, 3), np.uint8)
    with pytest.raises(ValueError, match="bool masks"):
        O.overlay_gt(img, np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match=r"mask is \(5, 4\) but the image is \(4, 5\)"):
        O.overlay_gt(img, np.zeros((5, 4), bool))
    with pytest.raises(ValueError, match="RGB uint8"):
        O.overlay_gt(img.astype(np.float32), np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="alpha"):
        O.tint(img, np.zeros((4, 5), bool), (1, 2, 3), alpha=1.5)


def test_side_by_side() -> None:
    a = np.zeros((3, 2, 3), np.uint8)
    b = np.full((3, 4, 3), 7, np.uint8)
    out = O.side_by_side(a, b, gap=1)
    assert out.shape == (3, 7, 3)
    assert (out[:, 2] == 255).all() and (out[:, 3:] == 7).all()
    with pytest.raises(ValueError, match="equal heights"):
        O.side_by_side(a, np.zeros((2, 2, 3), np.uint8))


# -- bench predict ----------------------------------------------------------------------------

def test_predict_writes_overlay_and_prints(image: Path, gt_mask: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "o" / "overlay.png"
    BoxAdapter.seen_configs.clear()
    rc = main(["predict", str(image), "--adapter", "test-predict-box", "--config", "margin=5",
               "--config", "name=abc", "--config", "flag=true", "--config", "ratio=0.25",
               "--mask", str(gt_mask), "--out", str(out)])
    assert rc == 0
    assert BoxAdapter.seen_configs == [{"margin": 5, "name": "abc", "flag": True, "ratio": 0.25}]
    text = capsys.readouterr().out
    assert "score:       0.7300" in text
    assert "explanation: the <b>hand</b> has [six](http://x) fingers" in text  # verbatim
    # mask = heatmap > 0.5 strictly: only PRED_BOX (the 0.5 background is not artifact)
    pred = np.zeros((H, W), bool)
    pred[PRED_BOX] = True
    gt = np.zeros((H, W), bool)
    gt[GT_BOX] = True
    assert f"mask:        {100 * pred.mean():.2f}% of pixels (heatmap > 0.5)" in text
    ious = jaccard_score(gt.ravel(), pred.ravel(), average=None)  # [background, artifact]
    f1 = f1_score(gt.ravel(), pred.ravel())
    assert f"mIoU {100 * ious.mean():.2f}  F1 {100 * f1:.2f}" in text
    # the picture: the image with TP / FP / FN colours, everything else untouched
    img = np.asarray(Image.open(image).convert("RGB"))
    got = np.asarray(Image.open(out).convert("RGB"))
    assert got.shape == img.shape
    for region, color in ((pred & gt, O.TP_COLOR), (pred & ~gt, O.FP_COLOR), (gt & ~pred, O.FN_COLOR)):
        assert region.any()
        want = _blend_cv2(img, color, O.DEFAULT_ALPHA)[region].astype(int)
        assert np.abs(got[region].astype(int) - want).max() <= 1
    assert np.array_equal(got[~(pred | gt)], img[~(pred | gt)])


def test_predict_default_out_and_threshold(image: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(image), "--adapter", "test-predict-box", "--threshold", "0.4"]) == 0
    out = tmp_path / "photo_test-predict-box_overlay.png"
    assert out.is_file()
    got = np.asarray(Image.open(out).convert("RGB"))
    img = np.asarray(Image.open(image).convert("RGB"))
    # threshold 0.4 < 0.5: every pixel is predicted artifact (no ground truth: one colour)
    assert np.abs(got.astype(int) - _blend_cv2(img, O.FP_COLOR, O.DEFAULT_ALPHA).astype(int)).max() <= 1
    assert "100.00% of pixels" in capsys.readouterr().out


def test_predict_without_localization(image: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "o.png"
    assert main(["predict", str(image), "--adapter", "test-predict-talker", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "does not localize" in text and "explanation: looks real" in text and "score:       -" in text
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), np.asarray(Image.open(image).convert("RGB")))


@pytest.mark.parametrize("argv,expect", [
    (["--adapter", "test-predict-bx"], "unknown adapter 'test-predict-bx'; did you mean 'test-predict-box'"),
    (["--adapter", "test-predict-wrongsize"], "prediction mask is (5, 5) but the image is (40, 60)"),
    (["--adapter", "test-predict-box", "--config", "novalue"], "--config 'novalue' is not KEY=VALUE"),
    (["--adapter", "test-predict-box", "--threshold", "2"], "--threshold 2.0 is not in [0, 1]"),
])
def test_predict_errors(image: Path, tmp_path: Path, capsys, argv, expect) -> None:
    assert main(["predict", str(image), "--out", str(tmp_path / "o.png"), *argv]) == 2
    assert expect in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_predict_missing_image_and_bad_mask(tmp_path: Path, image: Path, capsys) -> None:
    assert main(["predict", str(tmp_path / "nope.png"), "--adapter", "test-predict-box"]) == 2
    assert f"{tmp_path / 'nope.png'}: image file not found" in capsys.readouterr().err
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(small)
    assert main(["predict", str(image), "--adapter", "test-predict-box", "--mask", str(small),
                 "--out", str(tmp_path / "o.png")]) == 2
    assert "mask is 4x4 (W x H) but the image is 60x40" in capsys.readouterr().err
