"""Built-in weight-free adapters: reference rows (empty, full, random) and the forensic
detectors (ela, noise), plus the demo's learnability claim (forensic F1 well above empty and
random)."""

from __future__ import annotations

import hashlib
import io
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from bench.adapters import forensic
from bench.datasets import demo
from bench.errors import SampleError
from bench.metrics.detection import det_auc
from bench.metrics.localization import confusion_counts, f1, fp_area, miou
from bench.core.registry import ADAPTERS, create_adapter, create_dataset
from bench.core.types import FAKE, ModelInput

SIZES = [(37, 53), (256, 300), (301, 257)]


def _inp(img: np.ndarray, sid: str = "a.png", condition: str = "clean") -> ModelInput:
    return ModelInput(sample_id=sid, image=img, file_name=sid, condition=condition)


def _photo(rng: np.random.Generator, h: int, w: int, sigma: float = 3.0) -> np.ndarray:
    """A smooth gradient + blobs + Gaussian noise of std ``sigma``, RGB uint8."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 90 + 60 * xx / w + 40 * yy / h
    base += 30 * np.sin(xx / 23.0) * np.cos(yy / 31.0)
    img = base[..., None] + np.array([0, 10, -10], np.float32) + rng.normal(0, sigma, (h, w, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# -- registry ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["empty", "full", "random", "ela", "noise"])
def test_registered_with_tasks(name):
    assert name in ADAPTERS
    a = create_adapter(name)
    assert a.name == name and a.tasks == {"detect", "localize"}
    ident = a.identity()
    assert ident["weights_sha256"] is None and ident["name"] == name


# -- reference rows ------------------------------------------------------------------------
@pytest.mark.parametrize("h,w", SIZES)
def test_empty_and_full_exact(h, w):
    img = np.zeros((h, w, 3), np.uint8)
    (pe,) = create_adapter("empty").predict([_inp(img)])
    (pf,) = create_adapter("full").predict([_inp(img)])
    assert pe.mask.dtype == bool and pe.mask.shape == (h, w) and not pe.mask.any() and pe.score == 0.0
    assert pf.mask.dtype == bool and pf.mask.shape == (h, w) and pf.mask.all() and pf.score == 1.0
    for p in (pe, pf):
        p.validate(h, w, {"detect", "localize"}, "x")
    # scored exactly as docs/protocol.md §1's sanity values say: empty F1 = 0, full F1 = 2a/(1+a)
    gt = np.zeros((h, w), bool)
    gt[: h // 3, : w // 2] = True
    a = gt.mean()
    assert f1(*confusion_counts(pe.binary_mask(), gt)) == 0.0
    assert f1(*confusion_counts(pf.binary_mask(), gt)) == pytest.approx(2 * a / (1 + a), abs=1e-12)


def test_random_shapes_and_range(rng):
    ad = create_adapter("random")
    batch = [_inp(np.zeros((h, w, 3), np.uint8), f"s{h}x{w}") for h, w in SIZES]
    for item, p in zip(batch, ad.predict(batch)):
        h, w = item.image.shape[:2]
        assert p.heatmap.dtype == np.float32 and p.heatmap.shape == (h, w)
        assert p.heatmap.min() >= 0.0 and p.heatmap.max() < 1.0
        assert 0.0 <= p.score <= 1.0
        p.validate(h, w, ad.tasks, item.sample_id)


def test_random_is_uniform():
    (p,) = create_adapter("random").predict([_inp(np.zeros((400, 500, 3), np.uint8))])
    hist, _ = np.histogram(p.heatmap, bins=10, range=(0, 1))
    assert np.all(np.abs(hist / p.heatmap.size - 0.1) < 0.005)
    assert abs(p.binary_mask(0.5).mean() - 0.5) < 0.005


def test_random_deterministic_and_batch_independent():
    imgs = {f"img_{k}.png": np.zeros((64 + k, 80, 3), np.uint8) for k in range(5)}
    batch = [_inp(im, sid) for sid, im in imgs.items()]
    a = create_adapter("random", seed=7).predict(batch)
    b = create_adapter("random", seed=7).predict(list(reversed(batch)))[::-1]
    c = [create_adapter("random", seed=7).predict([x])[0] for x in batch]  # one at a time
    for pa, pb, pc in zip(a, b, c):
        assert np.array_equal(pa.heatmap, pb.heatmap) and np.array_equal(pa.heatmap, pc.heatmap)
        assert pa.score == pb.score == pc.score


def test_random_differs_between_images_conditions_and_seeds():
    img = np.zeros((50, 60, 3), np.uint8)
    ad = create_adapter("random")
    p1, p2 = ad.predict([_inp(img, "a.png"), _inp(img, "b.png")])
    (p3,) = ad.predict([_inp(img, "a.png", "jpeg(quality=50)")])
    (p4,) = create_adapter("random", seed=1).predict([_inp(img, "a.png")])
    for other in (p2, p3, p4):
        assert not np.array_equal(p1.heatmap, other.heatmap) and p1.score != other.score


def test_random_seeding_contract():
    """The documented seeding, the perturbations' one (docs/protocol.md §3): sha256 of
    'seed NUL sample_id NUL condition', its first 64 bits little-endian seed a PCG64."""
    img = np.zeros((20, 30, 3), np.uint8)
    (p,) = create_adapter("random", seed=3).predict([_inp(img, "x.jpg", "blur(k=5)")])
    digest = hashlib.sha256(b"3\x00x.jpg\x00blur(k=5)").digest()
    g = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    assert np.array_equal(p.heatmap, g.random((20, 30), dtype=np.float32))
    assert p.score == float(g.random())


def test_random_refuses_unknown_config():
    with pytest.raises(ValueError, match="unknown config"):
        create_adapter("random", sead=1)


# -- forensic detectors: contract ----------------------------------------------------------
@pytest.mark.parametrize("name", ["ela", "noise"])
@pytest.mark.parametrize("h,w", SIZES + [(5, 7)])
def test_forensic_outputs(name, h, w, rng):
    ad = create_adapter(name)
    img = _photo(rng, h, w)
    (p,) = ad.predict([_inp(img)])
    assert p.heatmap.dtype == np.float32 and p.heatmap.shape == (h, w)
    assert np.isfinite(p.heatmap).all() and p.heatmap.min() >= 0 and p.heatmap.max() <= 1
    assert 0.0 <= p.score <= 1.0
    assert p.score == pytest.approx(float(np.quantile(p.heatmap, 0.995)))
    p.validate(h, w, ad.tasks, "x")
    (again,) = create_adapter(name).predict([_inp(img.copy())])
    assert np.array_equal(p.heatmap, again.heatmap) and p.score == again.score


@pytest.mark.parametrize("name", ["ela", "noise"])
def test_forensic_config_recorded_and_checked(name):
    ad = create_adapter(name)
    assert ad.config == {**type(ad).defaults, "score_quantile": 0.995}
    assert create_adapter(name, score_quantile=0.9).config["score_quantile"] == 0.9
    with pytest.raises(ValueError, match="unknown config"):
        create_adapter(name, qualty=80)


@pytest.mark.parametrize("name", ["ela", "noise"])
def test_forensic_bad_image_is_sample_error(name):
    ad = create_adapter(name)
    with pytest.raises(SampleError, match="bad.png"):
        ad.predict([_inp(np.zeros((20, 20, 3), np.float32), "bad.png")])
    with pytest.raises(SampleError, match="grey.png"):
        ad.predict([_inp(np.zeros((20, 20), np.uint8), "grey.png")])


@pytest.mark.parametrize("fn", [forensic.ela_map, forensic.noise_inconsistency_map])
def test_uniform_image_has_no_heat(fn, rng):
    """A consistent image claims nothing: flat grey, and a noisy image with one noise level."""
    assert not fn(np.full((120, 150, 3), 128, np.uint8)).any()
    heat = fn(_photo(rng, 256, 320, sigma=4.0))
    assert (heat > 0.5).mean() < 0.01


@pytest.mark.parametrize("fn", [forensic.ela_map, forensic.noise_inconsistency_map])
def test_forensic_timing_1024(fn, rng):
    img = _photo(rng, 1024, 1024)
    fn(img)  # warm-up
    t = time.process_time()
    fn(img)
    assert time.process_time() - t < 0.5


# -- forensic detectors: what they measure (checked against independent constructions) ----
def test_block_noise_sigma_estimates_the_noise_std(rng):
    """On a smooth gradient + i.i.d. Gaussian noise of known std, each tile's estimate is close."""
    h, w = 256, 320
    yy, xx = np.mgrid[0:h, 0:w]
    grey = 60 + 0.3 * xx + 0.2 * yy  # linear: the kernel cancels it
    for sigma in (2.0, 5.0, 9.0):
        y = np.clip(np.rint(grey + rng.normal(0, sigma, (h, w))), 0, 255).astype(np.uint8)
        s = forensic.block_noise_sigma(np.repeat(y[..., None], 3, axis=2), block=32)
        assert s.shape == (8, 10)
        assert abs(float(np.median(s)) / sigma - 1) < 0.08
        assert np.all(np.abs(s / sigma - 1) < 0.3)


def test_noise_map_finds_clean_and_noisy_patches(rng):
    h, w = 320, 384
    y = np.full((h, w), 120.0) + rng.normal(0, 4.0, (h, w))
    y[32:128, 32:160] = 120 + rng.normal(0, 0.8, (96, 128))  # denoised / resampled patch
    y[192:288, 224:352] = 120 + rng.normal(0, 12.0, (96, 128))  # much noisier patch
    img = np.repeat(np.clip(np.rint(y), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    heat = forensic.noise_inconsistency_map(img)
    gt = np.zeros((h, w), bool)
    gt[32:128, 32:160] = gt[192:288, 224:352] = True
    pred = heat > 0.5
    assert pred[gt].mean() > 0.85 and pred[~gt].mean() < 0.05
    assert f1(*confusion_counts(pred, gt)) > 0.85


def test_noise_map_clip_guard(rng):
    """A saturated (clipped) area has no noise; the guard keeps it from being flagged."""
    img = _photo(rng, 256, 256, sigma=4.0)
    img[:128, :128] = 255
    assert (forensic.noise_inconsistency_map(img)[:128, :128] > 0.5).mean() == 0.0
    assert (forensic.noise_inconsistency_map(img, clip_guard=False)[16:112, 16:112] > 0.5).all()


def test_ela_error_matches_pil(rng):
    """ELA's error equals |Y - JPEG(Y)| computed with PIL (BT.601 luma, libjpeg greyscale)."""
    img = _photo(rng, 200, 240, sigma=5.0)
    y = np.asarray(Image.fromarray(img).convert("L"), dtype=np.float32)
    buf = io.BytesIO()
    Image.fromarray(y.astype(np.uint8)).save(buf, format="JPEG", quality=95)
    ref = np.abs(y - np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.float32))
    ours = forensic.ela_error(img, 95)
    assert ours.shape == ref.shape
    assert np.mean(ours != ref) < 0.02 and np.abs(ours - ref).mean() < 0.02
    assert ours.mean() > 0.5  # a noisy image does lose something at quality 95


def test_ela_map_finds_content_without_the_jpeg_history(rng):
    """Background saved as JPEG (q75), then a fresh noisy patch pasted: ELA flags the patch."""
    h, w = 320, 384
    img = _photo(rng, h, w, sigma=4.0)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=75)
    jpeg = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).copy()
    jpeg[96:192, 128:256] = img[96:192, 128:256]
    gt = np.zeros((h, w), bool)
    gt[96:192, 128:256] = True
    pred = forensic.ela_map(jpeg) > 0.5
    assert pred[gt].mean() > 0.7 and pred[~gt].mean() < 0.03
    # and the documented formula, recomputed from ela_error with plain numpy
    e = cv2.blur(forensic.ela_error(jpeg, 95), (15, 15))
    m = np.median(e[::4, ::4])
    expect = np.clip(np.log((e + 0.1) / (m + 0.1)) / np.log(3.0), 0, 1)
    assert np.allclose(forensic.ela_map(jpeg), expect, atol=1e-5)


def test_heatmap_score():
    heat = np.linspace(0, 1, 1001, dtype=np.float32).reshape(7, 143)
    assert forensic.heatmap_score(heat, 0.5) == pytest.approx(0.5, abs=1e-6)
    assert forensic.heatmap_score(np.zeros((4, 4), np.float32)) == 0.0
    with pytest.raises(ValueError):
        forensic.heatmap_score(heat, 1.5)


# -- learnability of the demo --------------------------------------------------------------
def _score_adapters(samples, names):
    """Per adapter: mean F1 and mIoU on fakes (LEGION protocol, heatmap > 0.5), FP area on
    reals, detection AUC."""
    ads = {n: create_adapter(n) for n in names}
    rows = {n: {"f1": [], "miou": [], "fp": [], "scores": [], "labels": []} for n in names}
    for s in samples:
        img = s.load_image()
        gt = s.load_mask(*img.shape[:2])
        for n, ad in ads.items():
            (p,) = ad.predict([_inp(img, s.id)])
            cc = confusion_counts(p.binary_mask(0.5), gt)
            r = rows[n]
            if s.label == FAKE:
                r["f1"].append(f1(*cc))
                r["miou"].append(miou(*cc))
            else:
                r["fp"].append(fp_area(*cc))
            r["scores"].append(p.score)
            r["labels"].append(s.label)
    return {
        n: {"f1": float(np.mean(r["f1"])), "miou": float(np.mean(r["miou"])),
            "fp_area": float(np.mean(r["fp"])),
            "auc": det_auc(np.array(r["scores"]), np.array(r["labels"]))}
        for n, r in rows.items()
    }


#: Forensic F1 must beat the best of empty / random by at least this much (absolute).
#: Measured on the 40 + 10 subset (seed 0): ela 0.25, noise 0.49, random 0.08, empty 0.
MARGIN_SMALL = 0.10
#: On the full default demo (200 + 60), measured: ela 0.31, noise 0.43, random 0.086, full 0.091.
MARGIN_FULL = 0.15


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("learn")
    demo.generate_demo(root, seed=0, n_fake=40, n_real=10)
    return create_dataset("synthscars", data_root=root).samples()


def test_demo_is_learnable_small(small_demo):
    res = _score_adapters(small_demo, ["empty", "random", "ela", "noise"])
    floor = max(res["empty"]["f1"], res["random"]["f1"])
    assert res["empty"]["f1"] == 0.0
    for name in ("ela", "noise"):
        assert res[name]["f1"] > floor + MARGIN_SMALL, res
        assert res[name]["miou"] > res["empty"]["miou"], res
        assert res[name]["fp_area"] < 0.05, res  # few false alarms on real images
    assert res["noise"]["auc"] > 0.7, res


@pytest.mark.slow
def test_demo_is_learnable_full():
    """Full default demo (from the default cache, generated if absent)."""
    samples = create_dataset("demo").samples()
    res = _score_adapters(samples, ["empty", "full", "random", "ela", "noise"])
    floor = max(res["empty"]["f1"], res["random"]["f1"], res["full"]["f1"])
    for name in ("ela", "noise"):
        assert res[name]["f1"] > floor + MARGIN_FULL, res
        assert res[name]["auc"] > 0.6, res
