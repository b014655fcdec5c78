"""PAL4VST, HiFi-Net and TruFor adapters.

No real weights here: PAL4VST is driven by a TorchScript model built with the official export's
exact input/output contract; HiFi-Net and TruFor by stand-in checkouts with the official module
paths, class names, checkpoint formats and output tuples. Expected outputs are computed
independently (PIL resizes, numpy maths). The real models run when their env vars are set.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.adapters._util import AdapterLoadError
from bench.adapters.hifinet import HifiNetAdapter, hifinet_preprocess
from bench.adapters.pal4vst import Pal4vstAdapter, pal4vst_preprocess
from bench.adapters.trufor import TruForAdapter, decode_unit_map_png, trufor_preprocess
from bench.core.types import ModelInput

@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Weight hashes are remembered under the cache root: keep the user's cache out of tests."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path_factory.mktemp("bench-cache")))


MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)


def _img(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[: h // 2, : w // 3, 0] = 250  # a block of strong red
    return img


def _pil_nearest(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)) > 0


# ==========================================================================================
# PAL4VST
# ==========================================================================================
class _PalContract(torch.nn.Module):
    """Same contract as end2end.pt: 1 x 3 x 512 x 512 float -> 1 x 1 x 512 x 512 int64 argmax.
    Artifact (label 1) where the normalised red channel is > 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch._assert(x.shape == (1, 3, 512, 512), "end2end.pt expects 1x3x512x512")
        torch._assert(x.dtype == torch.float32, "end2end.pt expects float32")
        logits = torch.stack([-x[:, 0], x[:, 0]], dim=1)
        return logits.argmax(dim=1, keepdim=True)


@pytest.fixture(scope="module")
def pal_weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pal") / "end2end.pt"
    torch.jit.script(_PalContract()).save(str(path))
    return path


def test_pal4vst_preprocess_matches_official_recipe():
    img = _img(37, 91)
    x = pal4vst_preprocess(img)
    # official: np.array(Image.open(f).resize((512, 512))) -> default filter; then (x - mean) / std
    ref = np.asarray(Image.fromarray(img).resize((512, 512)), dtype=np.float32)
    ref = ((ref - MEAN) / STD).transpose(2, 0, 1)
    assert x.shape == (3, 512, 512) and x.dtype == np.float32
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-5)
    # and it is not the bilinear resize (the interpolation matters)
    bil = np.asarray(Image.fromarray(img).resize((512, 512), Image.BILINEAR), dtype=np.float32)
    assert np.abs(((bil - MEAN) / STD).transpose(2, 0, 1) - x).max() > 0.05


def test_pal4vst_runs_torchscript_and_resizes_hard_mask_back(pal_weights):
    a = Pal4vstAdapter(weights=str(pal_weights))
    a.load("cpu")
    items = [ModelInput("a", _img(37, 91), "a.png"), ModelInput("b", _img(300, 120, 1), "b.png")]
    preds = a.predict(items)
    for item, p in zip(items, preds):
        h, w = item.image.shape[:2]
        small = np.asarray(Image.fromarray(item.image).resize((512, 512)), dtype=np.float32)
        expected = _pil_nearest(small[..., 0] > MEAN[0], h, w)
        assert p.mask.dtype == bool and p.heatmap is None
        np.testing.assert_array_equal(p.mask, expected)
        p.validate(h, w, a.tasks, item.sample_id)
    assert Pal4vstAdapter.flags["hard_mask"] is True
    assert a.weights_sha256() == hashlib.sha256(pal_weights.read_bytes()).hexdigest()


def test_pal4vst_refuses_a_file_that_is_not_torchscript(tmp_path):
    bad = tmp_path / "iter_40000.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, bad)
    with pytest.raises(AdapterLoadError, match="not a loadable TorchScript file"):
        Pal4vstAdapter(weights=str(bad)).load("cpu")
    junk = tmp_path / "end2end.pt"
    junk.write_bytes(b"\0" * 100)
    with pytest.raises(AdapterLoadError, match="not a loadable TorchScript file"):
        Pal4vstAdapter(weights=str(junk)).load("cpu")
    with pytest.raises(AdapterLoadError, match="does not exist"):
        Pal4vstAdapter(weights=str(tmp_path / "absent.pt")).load("cpu")


# ==========================================================================================
# HiFi-Net (stand-in checkout with the official module layout)
# ==========================================================================================
HIFI_HRNET = '''
import torch, torch.nn as nn
class FENet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 18, 1)
    def forward(self, x):
        s1 = self.conv(x)
        return [s1, s1[:, :, ::2, ::2], s1[:, :, ::4, ::4], s1[:, :, ::8, ::8]]
def get_seg_model(cfg, **kwargs):
    assert cfg["STAGE4"]["NUM_CHANNELS"][0] == 18
    return FENet()
'''
HIFI_CFG = 'def get_cfg_defaults():\n    return {"STAGE4": {"NUM_CHANNELS": [18, 36, 72, 144]}}\n'
HIFI_NLC = '''
import torch, torch.nn as nn
from models.seg_hrnet_config import get_cfg_defaults
class NLCDetection(nn.Module):
    def __init__(self):
        super().__init__()
        {cuda}
        self.head = nn.Linear(3, 14)
    def forward(self, feat, img):
        s1 = feat[0]
        assert img.shape[1:] == (3, 256, 256)
        cls_1 = self.head(img.mean(dim=(2, 3)))
        return s1, torch.sigmoid(s1[:, 0]), None, None, None, cls_1
'''


def _hifi_repo(root: Path, cuda: bool = False) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "models" / "__init__.py").write_text("")
    (root / "models" / "seg_hrnet.py").write_text(HIFI_HRNET)
    (root / "models" / "seg_hrnet_config.py").write_text(HIFI_CFG)
    (root / "models" / "NLCDetection_api.py").write_text(
        HIFI_NLC.replace("{cuda}", "self.split = torch.tensor([1, 3]).cuda()" if cuda else "pass"))
    return root


def _hifi_weights(root: Path, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Official format: {'model': DataParallel state dict} at weights/<net>/750001.pth and the
    centre file. FENet's channel 0 = 10 * red, others 0; centre = 0."""
    g = torch.Generator().manual_seed(seed)
    conv_w = torch.zeros(18, 3, 1, 1)
    conv_w[0, 0] = 10.0
    fe = {"module.conv.weight": conv_w, "module.conv.bias": torch.zeros(18)}
    head_w, head_b = torch.randn(14, 3, generator=g), torch.randn(14, generator=g)
    seg = {"module.head.weight": head_w, "module.head.bias": head_b}
    for net, sd in (("HRNet", fe), ("NLCDetection", seg)):
        (root / "weights" / net).mkdir(parents=True, exist_ok=True)
        torch.save({"model": sd, "epoch": 750001}, root / "weights" / net / "750001.pth")
    (root / "center").mkdir(exist_ok=True)
    torch.save({"center": torch.zeros(18), "radius": torch.tensor(1.0)}, root / "center" / "radius_center.pth")
    return head_w.numpy(), head_b.numpy()


def test_hifinet_preprocess_matches_official_recipe():
    img = _img(45, 70)
    ref = np.asarray(Image.fromarray(img).resize((256, 256), resample=Image.BICUBIC)).astype(np.float32) / 255.0
    np.testing.assert_array_equal(hifinet_preprocess(img), ref.transpose(2, 0, 1))


def test_hifinet_standin_outputs_follow_the_official_rules(tmp_path):
    repo = _hifi_repo(tmp_path / "HiFi_IFDL")
    head_w, head_b = _hifi_weights(repo)
    a = HifiNetAdapter(repo=str(repo))
    a.load("cpu")
    assert "models" not in sys.modules or not str(getattr(sys.modules["models"], "__file__", "")).startswith(str(repo))
    items = [ModelInput("a", _img(45, 70), "a.png"), ModelInput("b", _img(130, 61, 2), "b.png")]
    preds = a.predict(items)
    for item, p in zip(items, preds):
        h, w = item.image.shape[:2]
        x = np.asarray(Image.fromarray(item.image).resize((256, 256), Image.BICUBIC)).astype(np.float64) / 255.0
        dist = np.sqrt((10 * x[..., 0] + 1e-6) ** 2 + 17 * 1e-12)  # ||f - c + eps||, c = 0
        np.testing.assert_array_equal(p.mask, _pil_nearest(dist >= 2.3, h, w))
        logits = head_w @ x.mean(axis=(0, 1)) + head_b
        prob = np.exp(logits - logits.max())
        prob /= prob.sum()
        assert p.score == pytest.approx(1 - prob[0], abs=1e-6)
        p.validate(h, w, a.tasks, item.sample_id)
    assert len(a.weights_sha256()) == 64


def test_hifinet_refuses_weights_that_do_not_load(tmp_path):
    repo = _hifi_repo(tmp_path / "HiFi_IFDL")
    _hifi_weights(repo)
    seg = repo / "weights" / "NLCDetection" / "750001.pth"
    seg.write_bytes(b"PK\3\4 truncated download")
    with pytest.raises(AdapterLoadError, match="cannot load"):
        HifiNetAdapter(repo=str(repo)).load("cpu")
    # a checkpoint of another model: keys do not fit -> refused, never random weights
    torch.save({"model": {"module.other.weight": torch.zeros(3)}}, seg)
    with pytest.raises(AdapterLoadError, match="do not fit the model.*refusing"):
        HifiNetAdapter(repo=str(repo)).load("cpu")
    torch.save({"state_dict": {}}, seg)
    with pytest.raises(AdapterLoadError, match="key 'model'"):
        HifiNetAdapter(repo=str(repo)).load("cpu")
    seg.unlink()
    with pytest.raises(AdapterLoadError, match="NLCDetection weights .* not found"):
        HifiNetAdapter(repo=str(repo)).load("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_hifinet_cuda_only_code_gives_a_clear_error(tmp_path):
    repo = _hifi_repo(tmp_path / "HiFi_IFDL", cuda=True)
    _hifi_weights(repo)
    with pytest.raises(AdapterLoadError, match="needs a CUDA GPU"):
        HifiNetAdapter(repo=str(repo)).load("cpu")


@pytest.mark.weights
def test_real_hifinet_when_configured():
    """The released HiFi-Net weights (the random-init conformance test against the official
    code is tests/test_upstream_trufor_hifinet.py)."""
    repo, weights = os.environ.get("BENCH_HIFINET_REPO"), os.environ.get("BENCH_HIFINET_WEIGHTS")
    if not repo or not weights:
        pytest.skip("set BENCH_HIFINET_REPO (a HiFi_IFDL checkout) and BENCH_HIFINET_WEIGHTS (the folder "
                    "holding the released HRNet/ and NLCDetection/ weights) to run the real HiFi-Net")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("the official HiFi-Net code needs a CUDA GPU (NLCDetection.__init__ calls .cuda())")
    a = HifiNetAdapter(repo=repo, weights=weights)
    a.load("cuda")
    p = a.predict([ModelInput("x", _img(300, 400), "x.png")])[0]
    assert p.mask.shape == (300, 400) and 0 <= p.score <= 1


# ==========================================================================================
# TruFor (stand-in test_docker/src with the official layout)
# ==========================================================================================
TRUFOR_CONFIG = '''
import yaml
class CN(dict):
    """Enough of yacs.CfgNode for the adapter (yacs is not installed here)."""
    def __getattr__(self, k):
        return self[k]
    def clone(self):
        return CN({k: CN(v) if isinstance(v, dict) else v for k, v in self.items()})
    def defrost(self):
        pass
    def freeze(self):
        pass
    def merge_from_file(self, path):
        def merge(dst, src):
            for k, v in src.items():
                if isinstance(v, dict):
                    merge(dst.setdefault(k, CN()), v)
                else:
                    dst[k] = v
        merge(self, yaml.safe_load(open(path)))
_C = CN(CUDNN=CN(BENCHMARK=True, DETERMINISTIC=False, ENABLED=True), MODEL=CN(NAME="", EXTRA=CN()))
'''
TRUFOR_YAML = '''
CUDNN: {BENCHMARK: false, DETERMINISTIC: false, ENABLED: false}
MODEL: {NAME: detconfcmx, EXTRA: {DETECTION: confpool, CONF: true}}
'''
TRUFOR_MODEL = '''
import torch, torch.nn as nn
class myEncoderDecoder(nn.Module):
    def __init__(self, cfg=None):
        super().__init__()
        assert cfg.MODEL.EXTRA.CONF
        self.k = nn.Parameter(torch.zeros(1))
        self.c = nn.Parameter(torch.zeros(1))
    def forward(self, rgb):
        assert rgb.shape[0] == 1
        logit = self.k * (rgb[:, 0] - 0.5)
        pred = torch.stack([torch.zeros_like(logit), logit], dim=1)
        conf = self.c * rgb[:, 1:2]
        det = (rgb.mean() * 4 - 2).reshape(1, 1)
        return pred, conf, det, rgb[:, :1]
'''


def _trufor_repo(root: Path) -> Path:
    src = root / "test_docker" / "src"
    (src / "models" / "cmx").mkdir(parents=True)
    (src / "config.py").write_text(TRUFOR_CONFIG)
    (src / "trufor.yaml").write_text(TRUFOR_YAML)
    (src / "models" / "__init__.py").write_text("")
    (src / "models" / "cmx" / "__init__.py").write_text("")
    (src / "models" / "cmx" / "builder_np_conf.py").write_text(TRUFOR_MODEL)
    (root / "test_docker" / "weights").mkdir()
    torch.save({"state_dict": {"k": torch.tensor([50.0]), "c": torch.tensor([3.0])}, "epoch": 1},
               root / "test_docker" / "weights" / "trufor.pth.tar")
    return root


def test_trufor_preprocess_divides_by_256():
    img = _img(5, 6)
    np.testing.assert_array_equal(trufor_preprocess(img), img.transpose(2, 0, 1).astype(np.float32) / 256.0)


def test_trufor_standin_outputs_follow_the_official_rules(tmp_path):
    repo = _trufor_repo(tmp_path / "TruFor")
    a = TruForAdapter(repo=str(repo))
    a.load("cpu")
    assert a.weights_sha256() == hashlib.sha256(
        (repo / "test_docker" / "weights" / "trufor.pth.tar").read_bytes()).hexdigest()
    items = [ModelInput("a", _img(21, 34), "a.png"), ModelInput("b", _img(40, 17, 3), "b.png")]
    for item, p in zip(items, a.predict(items)):
        x = item.image.astype(np.float64) / 256.0
        # softmax([0, z])[1] = sigmoid(z); /256 not /255 (k = 50 makes the difference visible)
        expected = 1 / (1 + np.exp(-(50 * (x[..., 0] - 0.5))))
        assert p.heatmap.dtype == np.float32
        np.testing.assert_allclose(p.heatmap, expected, rtol=0, atol=2e-6)
        wrong = 1 / (1 + np.exp(-(50 * (item.image[..., 0] / 255.0 - 0.5))))
        assert np.abs(wrong - p.heatmap).max() > 1e-3
        assert p.score == pytest.approx(1 / (1 + np.exp(-(x.mean() * 4 - 2))), abs=1e-6)
        conf = 1 / (1 + np.exp(-3 * x[..., 1]))
        assert p.extras["conf_mean"] == pytest.approx(conf.mean(), abs=1e-6)
        np.testing.assert_allclose(decode_unit_map_png(p.extras["conf_png"]), conf, atol=1 / 510 + 1e-6)
        json.dumps(p.extras)  # the runner stores extras as JSON
        p.validate(*item.image.shape[:2], a.tasks, item.sample_id)


def test_trufor_refuses_weights_that_do_not_fit(tmp_path):
    repo = _trufor_repo(tmp_path / "TruFor")
    w = repo / "test_docker" / "weights" / "trufor.pth.tar"
    torch.save({"state_dict": {"k": torch.tensor([1.0])}}, w)  # 'c' missing
    with pytest.raises(AdapterLoadError, match="do not fit the model"):
        TruForAdapter(repo=str(repo)).load("cpu")
    torch.save({"k": torch.tensor([1.0])}, w)
    with pytest.raises(AdapterLoadError, match="key 'state_dict'"):
        TruForAdapter(repo=str(repo)).load("cpu")
    with pytest.raises(AdapterLoadError, match="trufor.yaml"):
        TruForAdapter(repo=str(tmp_path)).load("cpu")


@pytest.mark.weights
def test_real_trufor_when_configured():
    """The released TruFor weights (the random-init conformance test against the official
    code is tests/test_upstream_trufor_hifinet.py)."""
    repo, weights = os.environ.get("BENCH_TRUFOR_REPO"), os.environ.get("BENCH_TRUFOR_WEIGHTS")
    if not repo or not weights:
        pytest.skip("set BENCH_TRUFOR_REPO (a TruFor checkout) and BENCH_TRUFOR_WEIGHTS (the released "
                    "trufor.pth.tar) to run the real TruFor")
    a = TruForAdapter(repo=repo, weights=weights)
    a.load("auto")
    p = a.predict([ModelInput("x", _img(200, 300), "x.png")])[0]
    assert p.heatmap.shape == (200, 300) and 0 <= p.score <= 1


def test_resize_mask_nearest_is_pils_nearest():
    """The official demos resize masks with PIL's NEAREST; ours must pick the same pixels on
    every size pair (down- and up-scaling, odd ratios), for bool and integer label maps."""
    from bench.adapters._util import resize_mask_nearest

    rng = np.random.default_rng(7)
    for _ in range(300):
        (h0, w0), (h1, w1) = rng.integers(1, 700, 2), rng.integers(1, 700, 2)
        labels = rng.integers(0, 5, (h0, w0)).astype(np.int64)
        ref = np.asarray(Image.fromarray(labels.astype(np.int32)).resize((int(w1), int(h1)), Image.NEAREST))
        out = resize_mask_nearest(labels, int(h1), int(w1))
        assert out.dtype == labels.dtype
        np.testing.assert_array_equal(out, ref)
        np.testing.assert_array_equal(resize_mask_nearest(labels == 1, int(h1), int(w1)), ref == 1)
