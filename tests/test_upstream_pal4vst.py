"""PAL4VST: the device a TorchScript file was traced on, and preprocessing against the official
``utils.prepare_input`` of a real checkout of github owenzlz/PAL4VST ($BENCH_PAL4VST_REPO).

The published ``end2end.pt`` was exported with ``deployment/convert.sh --device cuda``; tracing
bakes ``torch.device("cuda:0")`` into its code. Without that file (and without a GPU) the tests
build TorchScript files that carry device constants the same way: a traced module whose
``torch.zeros(..., device=...)`` records the tracing device (cpu here), and a scripted one
with a ``torch.device("cuda:0")`` on a branch never taken on the CPU (so it compiles and even
runs here, but names cuda:0 in its code like the real export). The real file is tried when
$BENCH_PAL4VST_WEIGHTS names it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.adapters._util import AdapterLoadError, torchscript_devices
from bench.adapters.pal4vst import Pal4vstAdapter, check_traced_device, pal4vst_preprocess
from bench.core.types import ModelInput

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path_factory.mktemp("bench-cache")))


class _TracedWithFactory(torch.nn.Module):
    """end2end.pt's contract (1x3x512x512 -> 1x1x512x512 argmax), creating a tensor inside
    forward as mmseg's Swin does (attention masks, position indices): tracing records the device."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = torch.zeros(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device)
        logits = torch.cat([-x[:, :1] + bias, x[:, :1] + bias], dim=1)
        return logits.argmax(dim=1, keepdim=True)


class _NamesCuda0(torch.nn.Module):
    """Scripted, with ``torch.device("cuda:0")`` in its code on a branch a CPU input never takes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda:
            x = x + torch.zeros(x.shape, device=torch.device("cuda:0"))
        logits = torch.cat([-x[:, :1], x[:, :1]], dim=1)
        return logits.argmax(dim=1, keepdim=True)


class _NoDevice(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([-x[:, :1], x[:, :1]], dim=1).argmax(dim=1, keepdim=True)


def _save(module: torch.nn.Module, path: Path, trace: bool) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ts = torch.jit.trace(module, torch.zeros(1, 3, 512, 512)) if trace else torch.jit.script(module)
    ts.save(str(path))
    return path


def _img(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_device_constants_are_found(tmp_path):
    traced = _save(_TracedWithFactory(), tmp_path / "traced_cpu.pt", trace=True)
    named = _save(_NamesCuda0(), tmp_path / "names_cuda0.pt", trace=False)
    plain = _save(_NoDevice(), tmp_path / "plain.pt", trace=False)
    load = lambda p: torch.jit.load(str(p), map_location="cpu")  # noqa: E731
    assert torchscript_devices(load(traced)) == {"cpu"}
    assert torchscript_devices(load(named)) == {"cuda:0"}  # map_location moves weights, not code
    assert torchscript_devices(load(plain)) == set()
    # nested in a submodule, reached only through forward: still found
    outer = torch.nn.Sequential(torch.nn.Identity(), _TracedWithFactory())
    assert torchscript_devices(load(_save(outer, tmp_path / "nested.pt", trace=True))) == {"cpu"}


def test_a_file_traced_on_cuda0_is_refused_on_another_device(tmp_path):
    named = _save(_NamesCuda0(), tmp_path / "end2end.pt", trace=False)
    for asked in ("cpu", "cuda:1"):
        if asked == "cuda:1" and torch.cuda.device_count() < 2:
            model = torch.jit.load(str(named), map_location="cpu")
            with pytest.raises(AdapterLoadError) as e:
                check_traced_device(model, asked, named)
        else:
            with pytest.raises(AdapterLoadError) as e:
                Pal4vstAdapter(weights=str(named)).load(asked)
        msg = str(e.value)
        assert "\n" not in msg and "traced on cuda:0" in msg and f"cannot run on {asked}" in msg
        assert "--device cuda:0" in msg and "convert.sh --device cpu" in msg
    if not torch.cuda.is_available():  # asked for CUDA, there is none: the message says so
        with pytest.raises(AdapterLoadError, match="'cuda' was asked but CUDA is not available"):
            Pal4vstAdapter(weights=str(named)).load("cuda")
    else:
        Pal4vstAdapter(weights=str(named)).load("cuda:0")
    # a file traced on the CPU is refused on CUDA, runs on the CPU
    traced = _save(_TracedWithFactory(), tmp_path / "cpu_export.pt", trace=True)
    with pytest.raises(AdapterLoadError, match="traced on cpu .* cannot run on cuda:0; run with --device cpu"):
        check_traced_device(torch.jit.load(str(traced), map_location="cpu"), "cuda:0", traced)
    a = Pal4vstAdapter(weights=str(traced))
    a.load("cpu")
    img = _img(70, 45, 3)
    pred = a.predict([ModelInput("x", img, "x.png")])[0]
    small = np.asarray(Image.fromarray(img).resize((512, 512)), dtype=np.float32)
    expected = np.asarray(Image.fromarray(((small[..., 0] > 123.675) * 255).astype(np.uint8))
                          .resize((45, 70), Image.NEAREST)) > 0
    np.testing.assert_array_equal(pred.mask, expected)
    # no device constants: runs anywhere
    Pal4vstAdapter(weights=str(_save(_NoDevice(), tmp_path / "plain.pt", trace=False))).load("cpu")


def test_pal4vst_declares_its_gpu():
    assert Pal4vstAdapter.requirements["num_gpus"] == 1
    assert "cuda:0" in Pal4vstAdapter.summary


# -- the official checkout ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def official_utils():
    repo = os.environ.get("BENCH_PAL4VST_REPO")
    if not repo:
        pytest.skip("set BENCH_PAL4VST_REPO to a checkout of github owenzlz/PAL4VST to compare with its utils.py")
    path = Path(repo).expanduser() / "utils.py"
    if not path.is_file():
        pytest.fail(f"BENCH_PAL4VST_REPO={repo}: no utils.py (not a PAL4VST checkout)")
    spec = importlib.util.spec_from_file_location("_pal4vst_official_utils", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports PIL, numpy, torch, cv2 only
    sys.modules.pop("_pal4vst_official_utils", None)
    return module


def test_preprocess_matches_official_prepare_input(official_utils, tmp_path):
    rng = np.random.default_rng()
    for k in range(4):
        h, w = int(rng.integers(20, 700)), int(rng.integers(20, 700))
        img = _img(h, w, int(rng.integers(1 << 30)))
        f = tmp_path / f"{k}.png"
        Image.fromarray(img).save(f)
        # the official demo (test_torchscript_all.py): PIL resize to 512 x 512, RGB, prepare_input
        official_in = np.array(Image.open(f).resize((512, 512)).convert("RGB"))
        ref = official_utils.prepare_input(official_in, "cpu")
        assert tuple(ref.shape) == (1, 3, 512, 512) and ref.dtype == torch.float32
        ours = pal4vst_preprocess(img)
        np.testing.assert_array_equal(ours, ref[0].numpy())  # bit for bit


@pytest.mark.weights
def test_real_end2end_file_when_configured():
    w = os.environ.get("BENCH_PAL4VST_WEIGHTS")
    if not w:
        pytest.skip("set BENCH_PAL4VST_WEIGHTS to the official end2end.pt to check its traced device")
    baked = torchscript_devices(torch.jit.load(w, map_location="cpu"))
    if not torch.cuda.is_available():
        if any(d.startswith("cuda") for d in baked):
            with pytest.raises(AdapterLoadError, match="traced on cuda"):
                Pal4vstAdapter(weights=w).load("cpu")
            pytest.skip(f"{w} is bound to {sorted(baked)}; no GPU here to run it")
        a = Pal4vstAdapter(weights=w)
        a.load("cpu")
    else:
        a = Pal4vstAdapter(weights=w)
        a.load("cuda:0")
    p = a.predict([ModelInput("x", _img(300, 400, 0), "x.png")])[0]
    assert not p.extras.get("error"), p.extras.get("error")
    assert p.mask.shape == (300, 400) and p.mask.dtype == bool
