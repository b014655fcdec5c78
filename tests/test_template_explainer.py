"""The ``template`` explainer: regions from a heatmap, words from regions, the explanation floor."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from bench.adapters import template_explainer as te
from bench.core.registry import ADAPTERS
from bench.core.types import ModelInput

H, W = 90, 120


def _maps(noise_boxes=(), ela_boxes=()):
    noise = np.zeros((H, W), np.float32)
    ela = np.zeros((H, W), np.float32)
    for (y0, y1, x0, x1, v) in noise_boxes:
        noise[y0:y1, x0:x1] = v
    for (y0, y1, x0, x1, v) in ela_boxes:
        ela[y0:y1, x0:x1] = v
    return {"noise": noise, "ela": ela}


def test_registered_with_three_tasks():
    cls = ADAPTERS.get("template")
    assert cls is te.TemplateExplainer
    assert cls.tasks == {"detect", "localize", "explain"}
    with pytest.raises(ValueError, match="unknown option"):
        cls(colour="red")
    with pytest.raises(ValueError, match="signal"):
        cls(signal="dct")


@pytest.mark.parametrize("cx,cy,want", [
    (0, 0, "upper-left"), (59.9, 10, "upper-centre"), (119, 0, "upper-right"),
    (10, 45, "centre-left"), (60, 45, "centre"), (100, 45, "centre-right"),
    (0, 89, "lower-left"), (60, 60, "lower-centre"), (80, 60, "lower-right"),
    (39.9, 29.9, "upper-left"), (40.0, 30.0, "centre"),
])
def test_grid_cell(cx, cy, want):
    assert te.grid_cell(cx, cy, W, H) == want  # thirds: x < 40 | < 80 | rest; y < 30 | < 60 | rest


def test_regions_where_how_large_which_signal():
    maps = _maps(noise_boxes=[(5, 25, 5, 30, 0.9)], ela_boxes=[(5, 25, 5, 30, 0.3), (40, 50, 50, 70, 0.8),
                                                                  (80, 81, 110, 111, 0.99)])
    heat, regions = te.find_regions(maps, threshold=0.5, min_area=0.001, max_regions=3)
    np.testing.assert_array_equal(heat, np.maximum(maps["noise"], maps["ela"]))
    assert [r.where for r in regions] == ["upper-left", "centre"]  # the 1-pixel blob is below min_area
    assert regions[0].area == pytest.approx(20 * 25 / (H * W)) and regions[0].signal == "noise"
    assert regions[1].area == pytest.approx(10 * 20 / (H * W)) and regions[1].signal == "ela"
    assert regions[0].bbox == (5, 5, 25, 20)
    _, top1 = te.find_regions(maps, max_regions=1)
    assert [r.where for r in top1] == ["upper-left"]
    _, none = te.find_regions(maps, threshold=0.95)  # strict: 0.99 blob is tiny, others below
    assert none == []


def test_threshold_is_strict():
    maps = _maps(noise_boxes=[(0, 30, 0, 40, 0.5)])
    assert te.find_regions(maps, threshold=0.5)[1] == []
    assert len(te.find_regions(maps, threshold=0.49)[1]) == 1


def test_explanation_text():
    maps = _maps(noise_boxes=[(5, 25, 5, 30, 0.9)], ela_boxes=[(40, 50, 50, 70, 0.8)])
    text = te.describe(te.find_regions(maps)[1])
    assert text.startswith("Upon examining the image. I have found: 2 regions with noise inconsistency "
                           "and compression inconsistency, in the upper-left and centre of the image")
    assert "\nTo elaborate, I have found the following artifacts. The upper-left region:" in text
    assert "covering about 4.6% of the image, shows a noise inconsistency" in text  # 500 / 10800 px
    assert "The centre region:The centre region, covering about 1.9% of the image, shows a compression" in text
    assert te.describe([]) == te.NO_ARTIFACT and "no artifact" in te.NO_ARTIFACT


def test_predict_with_monkeypatched_maps(monkeypatch):
    maps = _maps(noise_boxes=[(60, 90, 80, 120, 0.7)])
    calls = []

    def fake_maps(image, signals):
        calls.append(signals)
        return {s: maps[s] for s in signals}

    monkeypatch.setattr(te, "compute_maps", fake_maps)
    img = np.zeros((H, W, 3), np.uint8)
    preds = te.TemplateExplainer(signal="noise").predict([ModelInput("a", img, "a.png")])
    assert calls == [("noise",)]
    (p,) = preds
    p.validate(H, W, te.TemplateExplainer.tasks, "a.png")
    assert p.heatmap.dtype == np.float32 and p.score == pytest.approx(0.7)
    assert "lower-right" in p.explanation and "11.1%" in p.explanation  # 30*40 / 10800
    assert p.binary_mask(0.5).sum() == 30 * 40
    empty = {s: np.zeros((H, W), np.float32) for s in ("noise", "ela")}
    monkeypatch.setattr(te, "compute_maps", lambda image, signals: empty)
    (q,) = te.TemplateExplainer().predict([ModelInput("b", img, "b.png")])
    assert q.explanation == te.NO_ARTIFACT and q.score == 0.0


def test_bad_map_fails_only_that_image(monkeypatch):
    monkeypatch.setattr(te, "compute_maps", lambda image, signals: {s: np.zeros((5, 5), np.float32) for s in signals})
    img = np.zeros((H, W, 3), np.uint8)
    (p,) = te.TemplateExplainer().predict([ModelInput("a", img, "a.png")])
    assert "map is (5, 5)" in p.extras["error"]


def _floor_scores(samples, adapter):
    """(template, empty) mean ROUGE-L on the fake samples, plus the template texts."""
    from bench.metrics.explanation import rouge_l

    fakes = [s for s in samples if s.label == 1]
    preds = adapter.predict([ModelInput(s.id, s.load_image(), s.file_name) for s in fakes])
    texts = [p.explanation for p in preds]
    refs = [s.reference for s in fakes]
    return float(np.mean(rouge_l(texts, refs, {}))), float(np.mean(rouge_l([""] * len(refs), refs, {}))), texts


def test_floor_above_empty_with_oracle_maps(tmp_path, monkeypatch):
    """With a heatmap that marks the planted regions, the template's words score clearly above an
    empty answer on generated demo images (their references are SynthScars-style captions)."""
    from bench.datasets.demo import DemoDataset

    samples = DemoDataset(tmp_path, n_fake=6, n_real=2).samples()
    masks = {}
    for s in samples:
        img = s.load_image()
        masks[img.tobytes()[:4096] + bytes(str(img.shape), "ascii")] = s.load_mask(*img.shape[:2])

    def oracle(image, signals):
        m = masks[image.tobytes()[:4096] + bytes(str(image.shape), "ascii")].astype(np.float32)
        return {s: m * (0.9 if s == "noise" else 0.6) for s in signals}

    monkeypatch.setattr(te, "compute_maps", oracle)
    tmpl, empty, texts = _floor_scores(samples, te.TemplateExplainer())
    assert empty == 0.0
    # the where / how-large words add overlap beyond the fixed caption boilerplate alone
    from bench.metrics.explanation import rouge_l

    refs = [s.reference for s in samples if s.label == 1]
    boilerplate = float(np.mean(rouge_l([te.NO_ARTIFACT] * len(refs), refs, {})))
    assert tmpl > boilerplate + 0.05 > 0.05, (tmpl, boilerplate, texts[:2])


@pytest.mark.skipif(importlib.util.find_spec("bench.adapters.forensic") is None, reason="bench.adapters.forensic not written yet")
def test_floor_above_empty_with_real_forensic_maps(tmp_path):
    from bench.datasets.demo import DemoDataset

    samples = DemoDataset(tmp_path, n_fake=6, n_real=2).samples()
    tmpl, empty, texts = _floor_scores(samples, te.TemplateExplainer())
    assert tmpl > empty + 0.05, (tmpl, texts[:2])
