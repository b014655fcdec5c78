"""Conformance of the ``trufor`` and ``hifinet`` adapters with the REAL upstream code.

Set ``BENCH_TRUFOR_REPO`` to a checkout of github grip-unina/TruFor and ``BENCH_HIFINET_REPO``
to a checkout of github CHELSEA234/HiFi_IFDL (no weights needed); unset, these tests skip.

Each test copies the code it needs from the checkout into a temporary folder (the checkout is
never written to), builds a randomly initialised, seeded checkpoint from the checkout's OWN model
classes and saves it in the official file layout, then runs

- the adapter, through the harness interface (``create_adapter`` -> ``load`` -> ``predict`` on
  decoded images, and ``bench check-adapter`` in-process), and
- the official inference code on the same image files: TruFor's ``test_docker/src/trufor_test.py``
  as a subprocess (``-gpu -1``, its ``.npz`` outputs), HiFi-Net's ``HiFi_Net.HiFi_Net`` API
  (``detect`` / ``localize``) in a subprocess,

and compares masks (exactly), heatmaps / distance maps (float tolerance) and scores. Nothing
expected is hard-coded: every reference number comes from the official code.

CPU bypasses, in the tests only (the adapters themselves are unchanged by them):

- HiFi-Net's ``NLCDetection.__init__`` calls ``.cuda()`` on two index tensors the forward pass
  never uses: ``torch.Tensor.cuda`` is patched to return the tensor itself (``monkeypatch`` in
  the adapter's tests, a line in the subprocess scripts);
- HiFi-Net's official ``HiFi_Net`` class and helpers hard-code ``torch.device('cuda:0')`` and
  ``map_location='cuda:0'``: the OFFICIAL side runs from a second temporary copy in which exactly
  those strings read ``cpu`` (each replacement is counted, so a changed upstream fails loudly),
  with no CUDA device visible;
- ``np.int`` (HiFi-Net's ``seg_hrnet.py``; its environment pins numpy 1.21) is aliased in the
  subprocess scripts, and ``matplotlib`` / ``kmeans_pytorch`` / ``einops``, imported at the top
  of HiFi-Net's ``utils/utils.py`` but not used by ``detect`` / ``localize``, are empty stand-in
  modules there when not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning", "ignore::UserWarning"),
]

TRUFOR_ENV = "BENCH_TRUFOR_REPO"
HIFINET_ENV = "BENCH_HIFINET_REPO"
#: (H, W) of the test images: odd, non-square, both orientations, not multiples of 32
SIZES = [(67, 91), (120, 80)]
SEED = 1234
SUBPROCESS_TIMEOUT = 900


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Weight hashes are remembered under the cache root: keep the user's cache out of tests."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path_factory.mktemp("bench-cache")))


def _checkout(var: str, probe: str, what: str) -> Path:
    value = os.environ.get(var)
    if not value:
        pytest.skip(f"set {var} to a {what} checkout to run the upstream conformance tests")
    root = Path(value).expanduser()
    if not (root / probe).is_file():
        pytest.fail(f"{var}={value}: {root / probe} not found; is it a {what} checkout?")
    return root


def _git_head(root: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=30).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **env}
    proc = subprocess.run(args, cwd=str(cwd), env=full_env, capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(args[:3])} ... exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def _copy(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pth", ".DS_Store"))


def _write_images(folder: Path, sizes, seed: int) -> list[Path]:
    """Seeded RGB PNGs: gradient + noise + a bright rectangle (a stand-in artifact)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, (h, w) in enumerate(sizes):
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([255 * xx / max(1, w - 1), 255 * yy / max(1, h - 1), 128 + 0 * xx], axis=-1)
        img = img + rng.normal(0, 25, (h, w, 3))
        y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
        img[y0:y0 + h // 3, x0:x0 + w // 3] = rng.integers(180, 256, 3)
        p = folder / f"img{i}_{h}x{w}.png"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="RGB").save(p)
        paths.append(p)
    return paths


def _inputs(paths: list[Path]):
    from bench.io.imageio import decode_image
    from bench.core.types import ModelInput

    return [ModelInput(sample_id=p.stem, image=decode_image(p), file_name=p.name) for p in paths]


def _report(name: str, **figures) -> None:
    print(f"FIGURES {name}: " + json.dumps(figures, default=str))


def _check_adapter_cli(capsys, name: str, repo: Path, n: int) -> dict:
    """``bench check-adapter NAME --synthetic --n N --config repo=... --json``, in-process."""
    from bench.cli import main

    rc = main(["check-adapter", name, "--synthetic", "--n", str(n), "--config", f"repo={repo}", "--json"])
    out = capsys.readouterr().out
    report = json.loads(out)
    status = {c["name"]: c["status"] for c in report["checks"]}
    print(f"check-adapter {name}: " + ", ".join(f"{k}={v}" for k, v in status.items()))
    assert rc == 0 and report["ok"], out
    for check in ("construct", "declared", "load", "predict", "count and order", "failed samples", "sizes",
                  "dtypes", "ranges", "no NaN", "task outputs", "contract", "determinism", "batch order",
                  "identity"):
        assert status.get(check) == "PASS", f"check {check!r}: {status.get(check)}\n{out}"
    return report


#: numpy < 1.24 still has np.int itself; newer ones must not have it after the adapters ran
NUMPY_HAS_INT = "int" in vars(np)


def _no_np_int_left() -> None:
    assert ("int" in vars(np)) == NUMPY_HAS_INT, "np.int alias left behind"


def _no_checkout_modules(*roots: Path) -> None:
    """No module loaded from a checkout copy stays in sys.modules outside the adapters' calls."""
    prefixes = [os.path.join(str(r.resolve()), "") for r in roots]
    leaked = [n for n, m in list(sys.modules.items())
              if any(str(getattr(m, "__file__", "") or "").startswith(p) for p in prefixes)]
    assert not leaked, f"checkout modules left in sys.modules: {leaked[:5]}"
    assert all(not any(str(Path(e).resolve()) == str(r.resolve()) for r in roots) for e in sys.path if e)


# ==========================================================================================
# TruFor
# ==========================================================================================
TRUFOR_MAKE_CKPT = textwrap.dedent('''
    # run in a copy of test_docker/src: a seeded, randomly initialised TruFor in the official layout
    import sys
    import torch
    sys.path.insert(0, ".")
    from config import _C as config
    cfg = config.clone()
    cfg.defrost()
    cfg.merge_from_file("trufor.yaml")
    cfg.freeze()
    from models.cmx.builder_np_conf import myEncoderDecoder
    torch.manual_seed(int(sys.argv[2]))
    model = myEncoderDecoder(cfg=cfg)
    torch.save({"epoch": 0, "state_dict": model.state_dict()}, sys.argv[1])
''')


@pytest.fixture(scope="module")
def trufor_case(tmp_path_factory):
    up = _checkout(TRUFOR_ENV, "test_docker/src/trufor_test.py", "grip-unina/TruFor")
    root = tmp_path_factory.mktemp("trufor")
    repo = root / "TruFor"
    src = repo / "test_docker" / "src"
    _copy(up / "test_docker" / "src", src)
    weights = repo / "test_docker" / "weights" / "trufor.pth.tar"
    weights.parent.mkdir(parents=True)
    _run([sys.executable, "-c", TRUFOR_MAKE_CKPT, str(weights), str(SEED)], cwd=src)
    images = _write_images(root / "images", SIZES, SEED)
    out = root / "official_out"
    t0 = time.perf_counter()
    # the official script, unchanged: -gpu -1 = CPU; it reads trufor.yaml and ../weights from its cwd
    proc = _run([sys.executable, "trufor_test.py", "-gpu", "-1", "-in", str(root / "images"), "-out", str(out)],
                cwd=src, CUDA_VISIBLE_DEVICES="")
    official_s = time.perf_counter() - t0
    official = {}
    for p in images:
        f = out / (p.name + ".npz")
        assert f.is_file(), f"the official script wrote no {f} (it prints errors and goes on):\n{proc.stderr[-4000:]}"
        with np.load(f) as z:
            official[p.stem] = {k: z[k] for k in z.files}
    return {"upstream": up, "repo": repo, "images": images, "official": official, "official_s": official_s}


@pytest.fixture(scope="module")
def trufor_adapter(trufor_case):
    """The adapter through the harness interface: registry name + config, ``load("cpu")``."""
    from bench.core.registry import create_adapter

    a = create_adapter("trufor", repo=str(trufor_case["repo"]))
    a.load("cpu")
    return a


def test_trufor_adapter_matches_official_trufor_test_py(trufor_case, trufor_adapter):
    a = trufor_adapter
    items = _inputs(trufor_case["images"])
    t0 = time.perf_counter()
    preds = a.predict(items)
    adapter_s = time.perf_counter() - t0
    _no_checkout_modules(trufor_case["repo"])
    assert len(preds) == len(items)
    figures = {}
    scores_official = []
    for item, pred in zip(items, preds):
        ref = trufor_case["official"][item.sample_id]
        h, w = item.image.shape[:2]
        assert not pred.extras.get("error"), pred.extras["error"]
        assert tuple(ref["imgsize"]) == (h, w) and ref["map"].shape == (h, w)
        # the official output is informative: a spread map with both classes, so equality means something
        frac = float((ref["map"] > 0.5).mean())
        assert 0.0 < frac < 1.0 and float(ref["map"].std()) > 1e-3, "degenerate random model; change SEED"
        heat_diff = float(np.abs(pred.heatmap.astype(np.float64) - ref["map"]).max())
        assert pred.heatmap.dtype == np.float32 and pred.heatmap.shape == (h, w)
        assert heat_diff <= 1e-5, f"{item.sample_id}: heatmap differs from trufor_test.py by {heat_diff}"
        mask_equal = bool(np.array_equal(pred.binary_mask(0.5), ref["map"] > 0.5))
        assert mask_equal, f"{item.sample_id}: mask (heatmap > 0.5) differs in " \
                           f"{int((pred.binary_mask(0.5) != (ref['map'] > 0.5)).sum())} pixels"
        score_diff = abs(pred.score - float(ref["score"]))
        assert score_diff <= 1e-6, f"{item.sample_id}: score {pred.score} vs official {float(ref['score'])}"
        conf_diff = abs(pred.extras["conf_mean"] - float(ref["conf"].mean()))
        assert conf_diff <= 1e-6
        from bench.adapters.trufor import decode_unit_map_png

        conf_png_diff = float(np.abs(decode_unit_map_png(pred.extras["conf_png"]) - ref["conf"]).max())
        assert conf_png_diff <= 1 / 510 + 1e-6
        scores_official.append(float(ref["score"]))
        figures[f"{item.sample_id} ({h}x{w})"] = {
            "max_abs_heatmap_diff": heat_diff, "mask_equal": mask_equal, "mask_fraction": round(frac, 4),
            "score_adapter": pred.score, "score_official": float(ref["score"]), "score_abs_diff": score_diff,
            "conf_mean_abs_diff": conf_diff, "conf_png_max_abs_diff": conf_png_diff,
        }
    # the model reacts to its input: the images' scores differ by far more than the tolerance
    assert abs(scores_official[0] - scores_official[1]) > 1e-4
    _report("trufor", upstream_commit=_git_head(trufor_case["upstream"]), per_image=figures,
            adapter_predict_s=round(adapter_s, 2), official_script_s=round(trufor_case["official_s"], 2))


def test_trufor_bad_input_fails_only_its_sample(trufor_case, trufor_adapter):
    from bench.core.types import ModelInput

    a = trufor_adapter
    good = _inputs(trufor_case["images"][:1])[0]
    bad = ModelInput("grey", np.zeros((20, 30), np.uint8), "grey.png")
    p_bad, p_good = a.predict([bad, good])
    err = p_bad.extras.get("error")
    assert err and "grey" in err and "\n" not in err
    ref = trufor_case["official"][good.sample_id]
    assert float(np.abs(p_good.heatmap - ref["map"]).max()) <= 1e-5


def test_trufor_cudnn_switches_are_set_only_around_the_forward_pass(trufor_case, trufor_adapter, monkeypatch):
    """The yaml's cuDNN switches (all off) hold during TruFor's forward pass only; the process's
    own values come back afterwards (on CPU the adapter sets none: force them to check)."""
    import torch.backends.cudnn as cudnn

    a = trufor_adapter
    assert a._cudnn is None  # CPU: the official script sets no cuDNN switch either
    monkeypatch.setattr(a, "_cudnn", (False, False, False))  # what load() reads from trufor.yaml on a GPU
    seen = []
    hook = a._model.register_forward_pre_hook(
        lambda *_: seen.append((cudnn.benchmark, cudnn.deterministic, cudnn.enabled)))
    before = (cudnn.benchmark, cudnn.deterministic, cudnn.enabled)
    try:
        cudnn.benchmark, cudnn.enabled = True, True
        a.predict(_inputs(trufor_case["images"][:1]))
        assert seen == [(False, False, False)]
        assert (cudnn.benchmark, cudnn.enabled) == (True, True)
    finally:
        hook.remove()
        cudnn.benchmark, cudnn.deterministic, cudnn.enabled = before


def test_trufor_check_adapter_cli_passes(trufor_case, capsys):
    _check_adapter_cli(capsys, "trufor", trufor_case["repo"], n=4)
    _no_checkout_modules(trufor_case["repo"])


# ==========================================================================================
# HiFi-Net
# ==========================================================================================
HIFI_CPU_PRELUDE = textwrap.dedent('''
    import importlib.util, sys, types
    import numpy as np
    import torch
    # test-only CPU bypasses (see the test module's docstring)
    if "int" not in vars(np):
        np.int = int  # models/seg_hrnet.py uses np.int (the official env pins numpy 1.21)
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # NLCDetection.__init__ calls .cuda()
    # imported at the top of utils/utils.py, unused by detect/localize: empty stand-ins if missing
    for _top, _subs, _attrs in (("matplotlib", ["pyplot"], {}), ("kmeans_pytorch", [], {"kmeans": None}),
                                ("einops", [], {"rearrange": None})):
        if importlib.util.find_spec(_top) is None:
            _m = sys.modules[_top] = types.ModuleType(_top)
            _m.__dict__.update(_attrs)
            for _s in _subs:
                setattr(_m, _s, types.ModuleType(f"{_top}.{_s}"))
                sys.modules[f"{_top}.{_s}"] = getattr(_m, _s)
    sys.path.insert(0, ".")
''')

HIFI_MAKE_CKPT = HIFI_CPU_PRELUDE + textwrap.dedent('''
    # run in the copy of the checkout: seeded random HiFi-Net in the official file layout
    import os
    import torch.nn as nn
    from PIL import Image
    from models.seg_hrnet import get_seg_model
    from models.seg_hrnet_config import get_cfg_defaults
    from models.NLCDetection_api import NLCDetection

    seed, calib = int(sys.argv[1]), sys.argv[2:]
    torch.manual_seed(seed)
    fenet = get_seg_model(get_cfg_defaults())
    segnet = NLCDetection()
    # The official init (conv std 0.001, identity batch norm) makes every output independent of
    # the image. Random batch-norm scales and shifts, and batch-norm statistics measured on
    # calibration images (as a trained model has), give image-dependent features and scores.
    g = torch.Generator().manual_seed(seed + 1)
    bns = [m for net in (fenet, segnet) for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in bns:
            m.weight.copy_(torch.empty(m.weight.shape).uniform_(0.2, 0.5, generator=g))
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration pass
    def load(p):  # the official HiFi_Net._transform_image recipe
        img = Image.open(p).convert("RGB").resize((256, 256), resample=Image.BICUBIC)
        return torch.from_numpy(np.asarray(img).astype(np.float32) / 255.).permute(2, 0, 1)
    x = torch.stack([load(p) for p in calib])
    fenet.train(); segnet.train()
    with torch.no_grad():
        segnet(fenet(x), x)
    fenet.eval(); segnet.eval()
    # centre and radius as the official center_radius_init computes them (mean feature of
    # "real" images; largest distance to it), here over the calibration images
    with torch.no_grad():
        feat = segnet(fenet(x), x)[0]
    center = feat.mean(dim=(0, 2, 3))
    radius = torch.nn.PairwiseDistance(2)(feat.permute(0, 2, 3, 1).reshape(-1, feat.shape[1]), center).max()
    for net, name in ((fenet, "HRNet"), (segnet, "NLCDetection")):
        os.makedirs(f"weights/{name}", exist_ok=True)
        sd = nn.DataParallel(net).state_dict()  # keys "module.<name>", as the official files
        assert all(k.startswith("module.") for k in sd)
        torch.save({"model": sd}, f"weights/{name}/750001.pth")
    os.makedirs("center", exist_ok=True)
    torch.save({"center": center, "radius": radius}, "center/radius_center.pth")
''')

HIFI_OFFICIAL = HIFI_CPU_PRELUDE + textwrap.dedent('''
    # run in the CPU copy of the checkout: the official general API on each image
    from HiFi_Net import HiFi_Net

    HiFi = HiFi_Net()  # prints "... weight-loading succeeds" / "fails" per network
    # localize() thresholds its distance map in place: keep a copy of what inference() returns
    _inference, seen = HiFi.LOSS_MAP.inference, {}
    def inference(mask_feat):
        pred_mask, dist = _inference(mask_feat)
        seen["dist"] = dist.detach().clone()
        return pred_mask, dist
    HiFi.LOSS_MAP.inference = inference
    for src, dst in zip(sys.argv[1::2], sys.argv[2::2]):
        res, prob = HiFi.detect(src)
        mask = HiFi.localize(src)
        np.savez(dst, mask=np.asarray(mask), prob=np.float64(prob), res=np.int64(res),
                 dist=seen.pop("dist").cpu().numpy()[0].astype(np.float32))
''')

#: strings of the official HiFi-Net code that pin cuda:0, and their CPU spelling (official side only)
HIFI_CPU_EDITS = {
    "HiFi_Net.py": [("torch.device('cuda:0')", "torch.device('cpu')")],
    "utils/utils.py": [("torch.device('cuda:0')", "torch.device('cpu')"), ("map_location='cuda:0'", "map_location='cpu'")],
    "utils/custom_loss.py": [("torch.device('cuda:0')", "torch.device('cpu')")],
}


@pytest.fixture(scope="module")
def hifinet_case(tmp_path_factory):
    up = _checkout(HIFINET_ENV, "HiFi_Net.py", "CHELSEA234/HiFi_IFDL")
    root = tmp_path_factory.mktemp("hifinet")
    repo = root / "HiFi_IFDL"  # what the adapter gets: the checkout's code, unchanged, + weights
    for name in ("models", "utils"):
        _copy(up / name, repo / name)
    shutil.copy2(up / "HiFi_Net.py", repo / "HiFi_Net.py")
    calib = _write_images(root / "calib", [(90, 110), (100, 70)], SEED + 7)
    _run([sys.executable, "-c", HIFI_MAKE_CKPT, str(SEED), *map(str, calib)], cwd=repo, CUDA_VISIBLE_DEVICES="")
    for p in ("weights/HRNet/750001.pth", "weights/NLCDetection/750001.pth", "center/radius_center.pth"):
        assert (repo / p).is_file()
    # the official side: a second copy whose cuda:0 strings read cpu
    cpu = root / "HiFi_IFDL_cpu"
    shutil.copytree(repo, cpu)
    for rel, edits in HIFI_CPU_EDITS.items():
        text = (cpu / rel).read_text()
        for old, new in edits:
            assert old in text, f"{rel}: {old!r} not found; the upstream code changed, update HIFI_CPU_EDITS"
            text = text.replace(old, new)
        (cpu / rel).write_text(text)
    images = _write_images(root / "images", SIZES, SEED)
    outs = [root / "official" / f"{p.stem}.npz" for p in images]
    outs[0].parent.mkdir()
    t0 = time.perf_counter()
    proc = _run([sys.executable, "-c", HIFI_OFFICIAL, *[str(x) for pair in zip(images, outs) for x in pair]],
                cwd=cpu, CUDA_VISIBLE_DEVICES="")
    official_s = time.perf_counter() - t0
    # the official loader falls back to RANDOM weights silently: make sure it loaded ours
    assert proc.stdout.count("weight-loading succeeds") == 2, proc.stdout[-3000:]
    official = {}
    for p, f in zip(images, outs):
        with np.load(f) as z:
            official[p.stem] = {k: z[k] for k in z.files}
    return {"upstream": up, "repo": repo, "images": images, "official": official, "official_s": official_s}


@pytest.fixture
def cuda_bypass(monkeypatch):
    """Test-only: NLCDetection.__init__'s ``.cuda()`` returns the tensor itself (CPU machine)."""
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *args, **kwargs: self)


def _pil_nearest(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)) > 0


@pytest.fixture(scope="module")
def hifinet_adapter(hifinet_case):
    """The adapter through the harness interface, loaded with the test-only ``.cuda()`` bypass
    (needed while building only)."""
    from bench.core.registry import create_adapter

    a = create_adapter("hifinet", repo=str(hifinet_case["repo"]))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.Tensor, "cuda", lambda self, *args, **kwargs: self)
        a.load("cpu")
    _no_np_int_left()
    return a


def test_hifinet_adapter_matches_official_hifi_net_api(hifinet_case, hifinet_adapter):
    from bench.adapters.hifinet import hifinet_preprocess

    a = hifinet_adapter
    items = _inputs(hifinet_case["images"])
    t0 = time.perf_counter()
    preds = a.predict(items)  # one batch, as the runner sends them
    adapter_s = time.perf_counter() - t0
    _no_np_int_left()
    _no_checkout_modules(hifinet_case["repo"])
    # the distance maps behind the masks, through the adapter's own forward pass
    dist, _ = a._forward(torch.from_numpy(np.stack([hifinet_preprocess(i.image) for i in items])))
    figures = {}
    probs = []
    for k, (item, pred) in enumerate(zip(items, preds)):
        ref = hifinet_case["official"][item.sample_id]
        h, w = item.image.shape[:2]
        assert not pred.extras.get("error"), pred.extras["error"]
        official_mask = ref["mask"] >= 0.5  # localize returns 0./1. floats, 256 x 256
        assert official_mask.shape == (256, 256)
        frac = float(official_mask.mean())
        assert 0.0 < frac < 1.0, "degenerate random model (mask all one class); change SEED"
        dist_diff = float(np.abs(dist[k].astype(np.float64) - ref["dist"]).max())
        assert dist_diff <= 1e-4, f"{item.sample_id}: distance map differs from the official by {dist_diff}"
        assert np.array_equal(dist[k] >= 2.3, official_mask)
        expected = _pil_nearest(official_mask, h, w)  # the 256 x 256 mask back at the image size
        assert pred.mask.dtype == bool and pred.mask.shape == (h, w)
        mask_equal = bool(np.array_equal(pred.mask, expected))
        assert mask_equal, f"{item.sample_id}: mask differs in {int((pred.mask != expected).sum())} pixels"
        score_diff = abs(pred.score - float(ref["prob"]))
        assert score_diff <= 1e-6, f"{item.sample_id}: score {pred.score} vs official detect() prob {float(ref['prob'])}"
        probs.append(float(ref["prob"]))
        figures[f"{item.sample_id} ({h}x{w})"] = {
            "max_abs_distance_map_diff": dist_diff, "mask_equal": mask_equal, "mask_fraction_256": round(frac, 4),
            "score_adapter": pred.score, "score_official": float(ref["prob"]), "score_abs_diff": score_diff,
            "official_decision": int(ref["res"]),
        }
    assert abs(probs[0] - probs[1]) > 1e-4  # the model reacts to its input
    _report("hifinet", upstream_commit=_git_head(hifinet_case["upstream"]), per_image=figures,
            adapter_predict_s=round(adapter_s, 2), official_api_s=round(hifinet_case["official_s"], 2))


def test_hifinet_bad_input_fails_only_its_sample(hifinet_case, hifinet_adapter):
    from bench.core.types import ModelInput

    a = hifinet_adapter
    good = _inputs(hifinet_case["images"][:1])[0]
    bad = ModelInput("grey", np.zeros((20, 30), np.uint8), "grey.png")
    p_good, p_bad = a.predict([good, bad])
    err = p_bad.extras.get("error")
    assert err and "grey" in err and "\n" not in err
    assert abs(p_good.score - float(hifinet_case["official"][good.sample_id]["prob"])) <= 1e-6


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_hifinet_without_cuda_is_a_one_line_load_error(hifinet_case):
    from bench.adapters._util import AdapterLoadError
    from bench.core.registry import create_adapter

    a = create_adapter("hifinet", repo=str(hifinet_case["repo"]))
    with pytest.raises(AdapterLoadError, match="needs a CUDA GPU") as info:
        a.load("cpu")
    assert "\n" not in str(info.value) and ".cuda()" in str(info.value)
    _no_np_int_left()
    _no_checkout_modules(hifinet_case["repo"])


def test_hifinet_check_adapter_cli_passes(hifinet_case, cuda_bypass, capsys):
    _check_adapter_cli(capsys, "hifinet", hifinet_case["repo"], n=3)
    _no_checkout_modules(hifinet_case["repo"])


# ==========================================================================================
# Both in one process
# ==========================================================================================
def test_trufor_and_hifinet_one_after_another_in_one_process(trufor_case, hifinet_case, cuda_bypass,
                                                             monkeypatch):
    """Both checkouts have a top-level ``models`` package: each adapter sees its own, during its
    calls only, and a ``models`` module that was there before is back afterwards."""
    import types

    from bench.core.registry import create_adapter

    sentinel = types.ModuleType("models")
    monkeypatch.setitem(sys.modules, "models", sentinel)
    tru = create_adapter("trufor", repo=str(trufor_case["repo"]))
    hifi = create_adapter("hifinet", repo=str(hifinet_case["repo"]))
    tru.load("cpu")
    assert sys.modules["models"] is sentinel
    t_items = _inputs(trufor_case["images"])
    h_items = _inputs(hifinet_case["images"])
    t1 = tru.predict(t_items)
    hifi.load("cpu")
    h1 = hifi.predict(h_items)
    t2 = tru.predict(t_items)  # TruFor imports models.cmx.layer_utils again inside its forward pass
    h2 = hifi.predict(h_items)
    assert sys.modules["models"] is sentinel
    _no_checkout_modules(trufor_case["repo"], hifinet_case["repo"])
    for item, a, b in zip(t_items, t1, t2):
        ref = trufor_case["official"][item.sample_id]
        assert not a.extras.get("error") and not b.extras.get("error"), (a.extras, b.extras)
        assert np.array_equal(a.heatmap, b.heatmap) and a.score == b.score
        assert float(np.abs(b.heatmap - ref["map"]).max()) <= 1e-5
    for item, a, b in zip(h_items, h1, h2):
        ref = hifinet_case["official"][item.sample_id]
        assert not a.extras.get("error") and not b.extras.get("error"), (a.extras, b.extras)
        assert np.array_equal(a.mask, b.mask) and a.score == b.score
        assert abs(b.score - float(ref["prob"])) <= 1e-6
