"""Generic adapters with tiny models made in the test: a randomly initialised SegFormer saved
with ``save_pretrained``, a timm ``test_resnet`` checkpoint, a TorchScript and an ONNX 1x1-conv
segmenter. Expected outputs are computed independently (PIL / cv2 resizes, numpy maths)."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from bench.adapters._util import AdapterLoadError
from bench.adapters.generic import (
    HFSegmentationAdapter, OnnxSegAdapter, SegSpec, TimmClassifierAdapter, TorchScriptSegAdapter,
    seg_preprocess,
)
from bench.errors import BenchError
from bench.core.types import ModelInput

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Weight hashes are remembered under the cache root: keep the user's cache out of tests."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path_factory.mktemp("bench-cache")))


def _items() -> list[ModelInput]:
    rng = np.random.default_rng(3)
    out = []
    for i, (h, w) in enumerate([(40, 60), (57, 23), (32, 32)]):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        img[: h // 2, : w // 2] = (240, 30, 30)
        out.append(ModelInput(f"g{i}", img, f"g{i}.png"))
    return out


def _softmax(z: np.ndarray, axis: int = 0) -> np.ndarray:
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# ==========================================================================================
# hf-segmentation
# ==========================================================================================
@pytest.fixture(scope="module")
def tiny_segformer(tmp_path_factory) -> Path:
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    torch.manual_seed(0)
    cfg = SegformerConfig(
        num_channels=3, num_encoder_blocks=1, depths=[1], sr_ratios=[1], hidden_sizes=[8],
        patch_sizes=[3], strides=[2], num_attention_heads=[1], mlp_ratios=[1], decoder_hidden_size=8,
        num_labels=2, id2label={0: "clean", 1: "artifact"}, label2id={"clean": 0, "artifact": 1},
    )
    model = SegformerForSemanticSegmentation(cfg).eval()
    with torch.no_grad():  # make the artifact channel clearly depend on the input
        model.decode_head.classifier.weight.normal_(0.0, 3.0)
        model.decode_head.classifier.bias.copy_(torch.tensor([0.0, 0.3]))
    path = tmp_path_factory.mktemp("segformer")
    model.save_pretrained(path)
    SegformerImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def test_hf_segmentation_softmax_then_bilinear_to_image_size(tiny_segformer):
    from transformers import AutoImageProcessor, SegformerForSemanticSegmentation

    a = HFSegmentationAdapter(path=str(tiny_segformer))
    a.load("cpu")
    items = _items()
    preds = a.predict(items)
    proc = AutoImageProcessor.from_pretrained(tiny_segformer)
    model = SegformerForSemanticSegmentation.from_pretrained(tiny_segformer).eval()
    for item, p in zip(items, preds):
        h, w = item.image.shape[:2]
        with torch.no_grad():
            logits = model(**proc(images=item.image, return_tensors="pt")).logits[0].numpy()
        prob = _softmax(logits.astype(np.float64))[1].astype(np.float32)
        expected = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
        assert p.heatmap.shape == (h, w) and p.heatmap.dtype == np.float32
        np.testing.assert_allclose(p.heatmap, expected, rtol=0, atol=1e-5)
        assert p.heatmap.std() > 1e-4  # not a constant map
        p.validate(h, w, a.tasks, item.sample_id)
    # artifact_index picks the class: with 2 classes index 0 is the complement
    b = HFSegmentationAdapter(path=str(tiny_segformer), artifact_index=0, score="max")
    b.load("cpu")
    assert b.tasks == {"localize", "detect"}
    q = b.predict(items[:1])[0]
    np.testing.assert_allclose(q.heatmap, 1 - preds[0].heatmap, atol=1e-5)
    assert q.score == pytest.approx(float(q.heatmap.max()))
    assert len(a.weights_sha256()) == 64
    with pytest.raises(AdapterLoadError, match="artifact_index 5 but the model has 2 classes"):
        HFSegmentationAdapter(path=str(tiny_segformer), artifact_index=5).load("cpu")


# ==========================================================================================
# timm-classifier
# ==========================================================================================
@pytest.fixture(scope="module")
def tiny_timm(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    import timm

    torch.manual_seed(1)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=2).eval()
    path = tmp_path_factory.mktemp("timm") / "detector.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 3}, path)
    return path, model


def _timm_eval_input(img: np.ndarray, size: int = 160, crop_pct: float = 0.95) -> np.ndarray:
    """timm's eval transform written out: shorter side -> floor(size / crop_pct) (bilinear, PIL),
    centre crop, /255, mean/std 0.5."""
    scale = math.floor(size / crop_pct)
    h, w = img.shape[:2]
    if h <= w:
        nh, nw = scale, int(scale * w / h)
    else:
        nh, nw = int(scale * h / w), scale
    r = np.asarray(Image.fromarray(img).resize((nw, nh), Image.BILINEAR), dtype=np.float32)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    r = r[top:top + size, left:left + size] / 255.0
    return ((r - 0.5) / 0.5).transpose(2, 0, 1)


def test_timm_classifier_score_is_softmax_fake_index(tiny_timm):
    path, ref_model = tiny_timm
    a = TimmClassifierAdapter(model="test_resnet", checkpoint=str(path))
    a.load("cpu")
    assert a.data_config["input_size"] == (3, 160, 160) and a.data_config["crop_pct"] == 0.95
    items = _items()
    preds = a.predict(items)
    x = torch.from_numpy(np.stack([_timm_eval_input(i.image) for i in items]))
    with torch.no_grad():
        probs = _softmax(ref_model(x).numpy().astype(np.float64), axis=1)
    for p, pr in zip(preds, probs):
        assert p.score == pytest.approx(pr[1], abs=1e-4)
        assert p.mask is None and p.heatmap is None
    assert a.weights_sha256() == hashlib.sha256(path.read_bytes()).hexdigest()


def test_timm_classifier_refuses_a_checkpoint_of_another_model(tiny_timm, tmp_path):
    import timm

    other = tmp_path / "other.pth"
    torch.save(timm.create_model("test_resnet", num_classes=3).state_dict(), other)
    with pytest.raises(AdapterLoadError, match="do not fit the model"):
        TimmClassifierAdapter(model="test_resnet", checkpoint=str(other)).load("cpu")
    with pytest.raises(AdapterLoadError, match="cannot create 'no_such_net'"):
        TimmClassifierAdapter(model="no_such_net", checkpoint=str(other)).load("cpu")


# ==========================================================================================
# torchscript-seg / onnx-seg
# ==========================================================================================
W = np.array([[0.02, -0.01, 0.0], [-0.03, 0.01, 0.02]], np.float32)
B = np.array([0.1, -0.2], np.float32)


class _Conv(torch.nn.Module):
    def __init__(self, argmax: bool = False, batch1: bool = False):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.from_numpy(W)[:, :, None, None])
            self.conv.bias.copy_(torch.from_numpy(B))
        self.argmax, self.batch1 = argmax, batch1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch1:
            torch._assert(x.shape[0] == 1, "exported for batch 1")
        y = self.conv(x)
        return y.argmax(dim=1) if self.argmax else y


SPEC = dict(input_size=[24, 36], resize="bilinear", scale=1.0, mean=[120, 110, 100], std=[60, 50, 40])


def _expected_logits(img: np.ndarray, bgr: bool = False) -> np.ndarray:
    r = np.asarray(Image.fromarray(img).resize((36, 24), Image.BILINEAR), dtype=np.float64)
    if bgr:
        r = r[..., ::-1]
    x = (r - np.array([120, 110, 100])) / np.array([60, 50, 40])
    return np.einsum("oc,hwc->ohw", W.astype(np.float64), x) + B[:, None, None]


@pytest.fixture(scope="module")
def scripted(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ts")
    paths = {}
    for name, mod in (("logits", _Conv()), ("argmax", _Conv(argmax=True)), ("batch1", _Conv(batch1=True))):
        paths[name] = d / f"{name}.pt"
        torch.jit.script(mod).save(str(paths[name]))
    paths["onnx"] = d / "seg.onnx"
    torch.onnx.export(_Conv(), torch.zeros(1, 3, 24, 36), str(paths["onnx"]), dynamo=False,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    paths["onnx1"] = d / "seg1.onnx"
    torch.onnx.export(_Conv(), torch.zeros(1, 3, 24, 36), str(paths["onnx1"]), dynamo=False,
                      input_names=["x"], output_names=["y"])
    return paths


def test_seg_preprocess_declared_recipe():
    img = _items()[0].image
    spec = SegSpec.from_config(dict(SPEC, channel_order="BGR"), "t")
    r = np.asarray(Image.fromarray(img).resize((36, 24), Image.BILINEAR), dtype=np.float32)[..., ::-1]
    ref = ((r - np.array([120, 110, 100], np.float32)) / np.array([60, 50, 40], np.float32)).transpose(2, 0, 1)
    np.testing.assert_allclose(seg_preprocess(img, spec), ref, atol=1e-6)
    with pytest.raises(BenchError, match="output must be"):
        SegSpec.from_config({"output": "softmax"}, "t")


@pytest.mark.parametrize("kind", ["torchscript", "onnx", "onnx1", "batch1"])
def test_seg_file_logits_to_heatmap(scripted, kind):
    if kind.startswith("onnx"):
        a = OnnxSegAdapter(model=str(scripted[kind]), output="logits", **SPEC)
    else:
        a = TorchScriptSegAdapter(model=str(scripted["logits" if kind == "torchscript" else "batch1"]),
                                  output="logits", **SPEC)
    a.load("cpu")
    items = _items()
    preds = a.predict(items)
    for item, p in zip(items, preds):
        h, w = item.image.shape[:2]
        assert not p.extras.get("error"), p.extras.get("error")
        prob = _softmax(_expected_logits(item.image))[1].astype(np.float32)
        expected = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(p.heatmap, expected, rtol=0, atol=1e-5)
        p.validate(h, w, a.tasks, item.sample_id)
    if kind in ("onnx1", "batch1"):
        assert a._can_batch is False  # a batch-1 export runs one image at a time


def test_torchscript_argmax_to_mask_and_bgr(scripted):
    a = TorchScriptSegAdapter(model=str(scripted["argmax"]), output="argmax", artifact_channel=1,
                              channel_order="BGR", score="mean", **SPEC)
    a.load("cpu")
    assert a.flags.get("hard_mask") and a.tasks == {"localize", "detect"}
    items = _items()
    for item, p in zip(items, a.predict(items)):
        h, w = item.image.shape[:2]
        labels = _expected_logits(item.image, bgr=True).argmax(axis=0).astype(np.uint8)
        expected = np.asarray(Image.fromarray(labels * 255).resize((w, h), Image.NEAREST)) > 0
        assert p.mask.dtype == bool and p.heatmap is None
        np.testing.assert_array_equal(p.mask, expected)
        assert p.score == pytest.approx(expected.mean())


def test_seg_file_bad_model_is_a_load_error(tmp_path):
    bad = tmp_path / "m.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(AdapterLoadError, match="cannot load"):
        OnnxSegAdapter(model=str(bad)).load("cpu")
    with pytest.raises(AdapterLoadError, match="not a loadable TorchScript"):
        TorchScriptSegAdapter(model=str(bad)).load("cpu")


# ==========================================================================================
# through the runner (`bench run --adapter <generic> --config ...`)
# ==========================================================================================
def test_each_generic_adapter_runs_through_bench_run(tiny_segformer, tiny_timm, scripted, tmp_path, capsys):
    import json
    import sys

    import runner_fixtures  # noqa: F401  (registers the tiny-test dataset)
    from bench.cli import main

    suite = tmp_path / "tiny.yaml"
    suite.write_text("name: tiny\nversion: 1\ndataset: tiny-test\ndataset_options: {n: 8}\n"
                     "metrics: [miou, f1, iou_fg, fp_area, det_auc]\nprotocol: {bootstrap: {n: 50}}\n")
    spec = ["input_size=[24,36]", "scale=1.0", "mean=[120,110,100]", "std=[60,50,40]", "output=logits"]
    configs = {
        "hf-segmentation": [f"path={tiny_segformer}"],
        "timm-classifier": ["model=test_resnet", f"checkpoint={tiny_timm[0]}"],
        "torchscript-seg": [f"model={scripted['logits']}", *spec],
        "onnx-seg": [f"model={scripted['onnx']}", *spec],
    }
    args = ["run", "--suite", str(suite), "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
            "--adapter", ",".join(configs), "--workers", "1", "--no-progress"]
    for name, items in configs.items():
        args += [x for item in items for x in ("--config", f"{name}.{item}")]
    assert main(args) == 0, capsys.readouterr().err
    for name in configs:
        res = json.loads((tmp_path / "out" / name / "results.json").read_text())
        clean = res["conditions"][0]
        assert clean["n"] == 8 and clean["n_failed"] == 0, (name, clean)
        expected = {"det_auc"} if name == "timm-classifier" else {"miou", "f1", "iou_fg", "fp_area"}
        assert set(clean["metrics"]) == expected, name
