"""Perturbations, presets, robustness summaries and `bench perturb`.

Every perturbation is checked against an independent computation: PIL's libjpeg and the IJG
table formula for JPEG, scipy / skimage / hand-written kernels for blur, the exact
distribution of the clipped, rounded normal for noise, a numpy bilinear for resize.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

import bench.perturbations as P
from bench.results.robustness import format_robustness_table, robustness_summary
from bench.cli import main as bench_main
from bench.core.conditions import Condition
from bench.errors import UnknownNameError
from bench.io.imageio import decode_image
from bench.core.registry import PERTURBATIONS
from bench.perturbations.blur import kernel_for_sigma, opencv_sigma_for_kernel
from bench.perturbations.jpeg import encode_jpeg
from bench.perturbations.resize import downscaled_size

REPO = Path(__file__).resolve().parents[1]


def colourful(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """Saturated colour ramps, hard edges and texture: where JPEG channel order matters."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 / (w - 1), yy * 255 / (h - 1), ((xx // 16 + yy // 16) % 2) * 255], -1)
    img[h // 4: h // 2, w // 4: w // 2] = (255, 0, 0)  # pure red block
    img[h // 2: 3 * h // 4, w // 2: 3 * w // 4] = (0, 0, 255)  # pure blue block
    img = img + rng.integers(-25, 26, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def pil_jpeg_roundtrip(img: np.ndarray, q: int) -> np.ndarray:
    """A correct RGB JPEG encode/decode with PIL (independent of OpenCV)."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=q, subsampling=2)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


# ---------------------------------------------------------------------------------- JPEG
# ITU-T T.81 Annex K tables K.1 (luminance) and K.2 (chrominance), natural (row-major) order.
ANNEX_K_LUMA = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]
ANNEX_K_CHROMA = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
] + [99] * 32


def ijg_table(base: list[int], q: int) -> list[int]:
    """libjpeg's jpeg_quality_scaling + jpeg_add_quant_table(force_baseline=TRUE)."""
    scale = 5000 // q if q < 50 else 200 - 2 * q
    return [min(255, max(1, (b * scale + 50) // 100)) for b in base]


@pytest.mark.parametrize("q", [20, 35, 50, 75, 95])
def test_jpeg_uses_standard_libjpeg_tables_and_420(q):
    img = colourful()
    im = Image.open(io.BytesIO(encode_jpeg(img, q)))
    tables = {k: list(v) for k, v in im.quantization.items()}
    assert tables == {0: ijg_table(ANNEX_K_LUMA, q), 1: ijg_table(ANNEX_K_CHROMA, q)}
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=q)  # PIL's own libjpeg at the same quality
    assert {k: list(v) for k, v in Image.open(buf).quantization.items()} == tables
    assert JpegImagePlugin.get_sampling(im) == 2  # 2 = 4:2:0
    assert im.mode == "RGB" and "progressive" not in im.info


@pytest.mark.parametrize("q", [20, 35, 50, 75, 95])
def test_jpeg_matches_a_correct_rgb_encode_pixel_for_pixel(q):
    img = colourful()
    ours = PERTURBATIONS.get("jpeg")(img, rng=None, quality=q)
    assert ours.dtype == np.uint8 and ours.shape == img.shape
    np.testing.assert_array_equal(ours, pil_jpeg_roundtrip(img, q))


def test_bgr_swap_variant_reproduces_the_pitfall_and_jpeg_does_not():
    img = colourful()
    ref = pil_jpeg_roundtrip(img, 50)
    ours = P.apply_condition(img, Condition.parse("jpeg(quality=50)"), suite_seed=0, sample_id="s")
    swapped = P.apply_condition(img, Condition.parse("jpeg_bgr_swap(quality=50)"), suite_seed=0, sample_id="s")
    assert np.abs(ours.astype(int) - ref).max() == 0
    assert np.abs(swapped.astype(int) - ref).max() > 20  # tens of grey levels on the red/blue blocks
    # It is the swap: a correct encode of the channel-reversed image, reversed back.
    np.testing.assert_array_equal(swapped, pil_jpeg_roundtrip(img[..., ::-1].copy(), 50)[..., ::-1])


def test_bgr_swap_variant_equals_albumentations_image_compression():
    A = pytest.importorskip("albumentations")
    img = colourful()
    alb = A.ImageCompression(quality_range=(35, 35), compression_type="jpeg", p=1.0)(image=img)["image"]
    np.testing.assert_array_equal(alb, PERTURBATIONS.get("jpeg_bgr_swap")(img, rng=None, quality=35))
    assert np.abs(alb.astype(int) - pil_jpeg_roundtrip(img, 35)).max() > 20


# ---------------------------------------------------------------------------------- blur
def _separable(img: np.ndarray, k1d: np.ndarray, mode: str) -> np.ndarray:
    import scipy.ndimage as ndi

    x = ndi.correlate1d(img.astype(np.float64), k1d, axis=0, mode=mode)
    return ndi.correlate1d(x, k1d, axis=1, mode=mode)


@pytest.mark.parametrize("k", [5, 9, 15])
def test_blur_kernel_matches_opencv_sigma_zero(k):
    img = colourful()
    ours = P.apply_condition(img, Condition.parse(f"gaussian_blur(kernel={k})"), suite_seed=0, sample_id="s")
    assert np.abs(ours.astype(int) - cv2.GaussianBlur(img, (k, k), 0)).max() <= 1
    # Independently: OpenCV's rule, with reflect-101 borders (scipy 'mirror'), float arithmetic.
    r = (k - 1) // 2
    if k <= 7:  # OpenCV's fixed small kernel, not the formula's sigma (1.1 for k=5)
        k1d = np.array([1, 4, 6, 4, 1]) / 16.0
    else:
        k1d = np.exp(-0.5 * (np.arange(-r, r + 1) / opencv_sigma_for_kernel(k)) ** 2)
        k1d /= k1d.sum()
    # OpenCV's uint8 path is fixed-point: within 1 grey level of the rounded float result
    # (about 8% of values are off by one at k=9, 15; the formula's sigma at k=5 is off by 4).
    off = ours.astype(int) - np.rint(_separable(img, k1d, "mirror")).astype(int)
    assert np.abs(off).max() <= 1 and (off != 0).mean() < 0.15


def test_opencv_sigma_rule_values():
    assert [round(opencv_sigma_for_kernel(k), 6) for k in (5, 9, 15)] == [1.1, 1.7, 2.6]
    assert [kernel_for_sigma(s) for s in (1, 2, 3, 4, 6)] == [9, 17, 25, 33, 49]


def test_albumentations_blur_pitfall_documented():
    """Why we call OpenCV: A.GaussianBlur with sigma 0 is wrong; explicit sigma fixes k >= 9."""
    A = pytest.importorskip("albumentations")
    img = colourful()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # albumentations divides by sigma = 0
        bad = A.GaussianBlur(blur_limit=(9, 9), sigma_limit=(0, 0), p=1)(image=img)["image"]
    assert np.abs(bad.astype(int) - cv2.GaussianBlur(img, (9, 9), 0)).max() > 10
    for k in (9, 15):
        s = opencv_sigma_for_kernel(k)
        good = A.GaussianBlur(blur_limit=(k, k), sigma_limit=(s, s), p=1)(image=img)["image"]
        assert np.abs(good.astype(int) - cv2.GaussianBlur(img, (k, k), 0)).max() <= 1


@pytest.mark.parametrize("s", [1.0, 2.0, 6.0])
def test_blur_sigma_matches_imagenet_c(s):
    from skimage.filters import gaussian

    img = colourful()
    ours = PERTURBATIONS.get("gaussian_blur")(img, rng=None, sigma=s)
    k = kernel_for_sigma(s)
    cv_u8 = cv2.GaussianBlur(img, (k, k), sigmaX=s, sigmaY=s, borderType=cv2.BORDER_REPLICATE)
    assert np.abs(ours.astype(int) - cv_u8).max() <= 1
    # imagecorruptions: skimage.filters.gaussian(x/255, sigma) * 255 (then np.uint8 truncation)
    exact = gaussian(img / 255.0, sigma=s, channel_axis=-1) * 255
    assert np.abs(ours - exact).max() <= 0.5 + 1e-3  # rounded to nearest
    trunc = np.uint8(np.clip(exact, 0, 255))
    assert ((ours.astype(int) - trunc) >= 0).all() and ((ours.astype(int) - trunc) <= 1).all()


# ---------------------------------------------------------------------------------- noise
def _noise(img: np.ndarray, sigma: float, sample_id: str = "grey", seed: int = 0) -> np.ndarray:
    return P.apply_condition(img, Condition.parse(f"gaussian_noise(sigma={sigma})"), suite_seed=seed,
                             sample_id=sample_id)


def test_noise_std_and_mean_on_mid_grey():
    grey = np.full((512, 512, 3), 128, np.uint8)
    diff = _noise(grey, 0.1).astype(np.float64) - 128
    n = diff.size
    # Unclipped at sigma 0.1 (128 is 5 sigma from 0 and 255); rounding adds variance 1/12.
    expected = math.sqrt(25.5 ** 2 + 1 / 12)
    se_std = expected / math.sqrt(2 * n)  # ~0.020 for n = 786432
    assert abs(diff.std() - expected) < 7 * se_std
    # Round-half-to-even keeps the mean; truncation would give -0.5 (25 standard errors away).
    assert abs(diff.mean()) < 5 * expected / math.sqrt(n)


def _clipped_rounded_std(x0: float, sd: float) -> float:
    """Exact std of rint(clip(x0 + sd*Z, 0, 255)) - x0 over the 256 output values."""
    phi = lambda t: 0.5 * (1 + math.erf((t - x0) / (sd * math.sqrt(2))))  # noqa: E731
    probs = [phi(0.5)] + [phi(v + 0.5) - phi(v - 0.5) for v in range(1, 255)] + [1 - phi(254.5)]
    mean = sum(p * v for v, p in enumerate(probs))
    return math.sqrt(sum(p * (v - mean) ** 2 for v, p in enumerate(probs)))


def test_noise_is_clipped_at_sigma_0_3():
    grey = np.full((512, 512, 3), 128, np.uint8)
    diff = _noise(grey, 0.3).astype(np.float64) - 128
    expected = _clipped_rounded_std(128, 0.3 * 255)
    assert 69 < expected < 71  # docs/protocol.md §3: about 70, not 76.5
    assert abs(diff.std() - expected) < 0.4  # se of the std ~0.06 here
    assert diff.std() < 0.3 * 255 - 5


class _FixedNormal:
    """A stand-in generator returning chosen 'normal draws', to pin the rounding rule."""

    def __init__(self, z):
        self.z = np.asarray(z, np.float32)

    def standard_normal(self, size, dtype=np.float64):
        return np.broadcast_to(self.z, size).astype(dtype)


def test_noise_rounds_half_to_even_and_clips():
    img = np.full((1, 8, 3), 128, np.uint8)
    z = np.array([0.3, 0.7, -0.3, -0.7, 0.5, 1.5, -300, 300], np.float32)[None, :, None]
    out = PERTURBATIONS.get("gaussian_noise")(img, rng=_FixedNormal(z), sigma=1 / 255)
    assert out[0, :, 0].tolist() == [128, 129, 128, 127, 128, 130, 0, 255]


def test_noise_zero_sigma_is_identity():
    img = colourful()
    np.testing.assert_array_equal(_noise(img, 0.0), img)


_CHILD = textwrap.dedent(
    """
    import hashlib, json, sys
    import numpy as np
    from bench.core.conditions import Condition
    from bench.perturbations import apply_condition
    img = np.full((64, 48, 3), 128, np.uint8); img[:, ::2] = 60
    out = {}
    for seed, sid, key in json.loads(sys.argv[1]):
        arr = apply_condition(img, Condition.parse(key), suite_seed=seed, sample_id=sid)
        out[f"{seed}|{sid}|{key}"] = hashlib.sha256(arr.tobytes()).hexdigest()
    print(json.dumps(out))
    """
)


def test_noise_identical_across_processes_and_orders():
    triples = [
        (0, "a.png", "gaussian_noise(sigma=0.1)"),
        (0, "b.png", "gaussian_noise(sigma=0.1)"),
        (1, "a.png", "gaussian_noise(sigma=0.1)"),
        (0, "a.png", "gaussian_noise(sigma=0.2)"),
        (0, "a.png", "resize(scale=0.5)+gaussian_noise(sigma=0.1)"),
    ]
    procs = [
        subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(order)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=REPO)
        for order in (triples, triples[::-1])
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    assert results[0] == results[1]
    img = np.full((64, 48, 3), 128, np.uint8)
    img[:, ::2] = 60
    for seed, sid, key in triples:  # and equal to this process
        arr = P.apply_condition(img, Condition.parse(key), suite_seed=seed, sample_id=sid)
        assert hashlib.sha256(arr.tobytes()).hexdigest() == results[0][f"{seed}|{sid}|{key}"]
    hashes = list(results[0].values())
    assert len(set(hashes)) == len(hashes)  # other sample, other seed, other condition: other noise


# ---------------------------------------------------------------------------------- resize
def test_downscaled_size_rounds_half_up():
    assert downscaled_size(768, 1024, 0.5) == (384, 512)
    assert downscaled_size(101, 75, 0.5) == (51, 38)  # 50.5 -> 51, 37.5 -> 38
    assert downscaled_size(3, 3, 0.1) == (1, 1)


def _bilinear(a: np.ndarray, H: int, W: int) -> np.ndarray:
    """Bilinear enlargement with half-pixel centres and edge clamping, in float."""
    h, w = a.shape[:2]
    ys = np.clip((np.arange(H) + 0.5) * h / H - 0.5, 0, h - 1)
    xs = np.clip((np.arange(W) + 0.5) * w / W - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    a = a.astype(np.float64)
    top = a[y0][:, x0] * (1 - fx) + a[y0][:, x1] * fx
    bottom = a[y1][:, x0] * (1 - fx) + a[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def test_resize_area_down_bilinear_up():
    blocks = np.random.default_rng(3).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    img = np.repeat(np.repeat(blocks, 2, 0), 2, 1)  # 2x2-constant: area-averaging gives blocks back
    out = PERTURBATIONS.get("resize")(img, rng=None, scale=0.5)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.abs(out - _bilinear(blocks, 48, 64)).max() <= 1.0
    odd = colourful(101, 75)
    assert PERTURBATIONS.get("resize")(odd, rng=None, scale=0.3).shape == odd.shape


def test_chain_through_apply_condition():
    img = colourful()
    cond = Condition.parse("resize(scale=0.5)+jpeg(quality=75)")
    out = P.apply_condition(img, cond, suite_seed=0, sample_id="s")
    manual = pil_jpeg_roundtrip(PERTURBATIONS.get("resize")(img, rng=None, scale=0.5), 75)
    np.testing.assert_array_equal(out, manual)
    assert P.apply_condition(img, Condition.clean(), suite_seed=0, sample_id="s") is img


# ---------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "name, params, words",
    [
        ("jpeg", {"quality": 0}, ["quality"]),
        ("jpeg", {"quality": 101}, ["quality"]),
        ("jpeg", {"quality": 50.5}, ["quality", "integer"]),
        ("jpeg", {"quality": "high"}, ["quality", "number"]),
        ("jpeg", {"quality": True}, ["quality"]),
        ("jpeg", {}, ["quality", "missing"]),
        ("jpeg", {"quality": 50, "qualty": 3}, ["qualty", "unknown"]),
        ("jpeg_bgr_swap", {"quality": -5}, ["quality"]),
        ("gaussian_noise", {"sigma": -0.1}, ["sigma"]),
        ("gaussian_noise", {"sigma": float("nan")}, ["sigma", "finite"]),
        ("gaussian_blur", {"kernel": 4}, ["kernel", "odd"]),
        ("gaussian_blur", {"kernel": 1}, ["kernel"]),
        ("gaussian_blur", {"kernel": -3}, ["kernel"]),
        ("gaussian_blur", {"sigma": 0.0}, ["sigma"]),
        ("gaussian_blur", {"kernel": 5, "sigma": 1.0}, ["kernel", "sigma"]),
        ("gaussian_blur", {}, ["kernel", "sigma"]),
        ("resize", {"scale": 0}, ["scale"]),
        ("resize", {"scale": 1.5}, ["scale"]),
    ],
)
def test_bad_parameters_raise_value_error_naming_both(name, params, words):
    with pytest.raises(ValueError) as exc:
        PERTURBATIONS.get(name)(colourful(16, 16), rng=np.random.default_rng(0), **params)
    msg = str(exc.value)
    assert repr(name) in msg
    for w in words:
        assert w in msg


def test_bad_images_are_refused():
    fn = PERTURBATIONS.get("jpeg")
    for bad in (np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8)):
        with pytest.raises(ValueError, match="RGB uint8"):
            fn(bad, rng=None, quality=50)


def test_registry_info_and_canonical_condition():
    for name in ("jpeg", "jpeg_bgr_swap", "gaussian_noise", "gaussian_blur", "resize"):
        info = PERTURBATIONS.entry(name).info
        assert info["summary"] and isinstance(info["params"], dict) and info["params"]
        assert info["stochastic"] is (name == "gaussian_noise")
    assert P.canonical_condition("gaussian_blur(sigma=1)").key == "gaussian_blur(sigma=1.0)"
    assert P.canonical_condition("jpeg(quality=50.0)").key == "jpeg(quality=50)"
    with pytest.raises(UnknownNameError, match="gaussian_noise"):
        P.canonical_condition("gausian_noise(sigma=0.1)")
    with pytest.raises(ValueError, match="quality"):
        P.canonical_condition("resize(scale=0.5)+jpeg(quality=0)")


# ---------------------------------------------------------------------------------- presets
def test_legion_preset_exact():
    assert [c.key for c in P.preset_conditions("legion")] == [
        "clean",
        "jpeg(quality=50)", "jpeg(quality=35)", "jpeg(quality=20)",
        "gaussian_noise(sigma=0.1)", "gaussian_noise(sigma=0.2)", "gaussian_noise(sigma=0.3)",
        "gaussian_blur(kernel=5)", "gaussian_blur(kernel=9)", "gaussian_blur(kernel=15)",
    ]


def test_imagenet_c_preset_exact():
    keys = [c.key for c in P.preset_conditions("imagenet-c")]
    assert len(keys) == 16 and keys[0] == "clean"
    assert keys[1:] == (
        [f"gaussian_noise(sigma={s})" for s in ("0.08", "0.12", "0.18", "0.26", "0.38")]
        + [f"gaussian_blur(sigma={s})" for s in ("1.0", "2.0", "3.0", "4.0", "6.0")]
        + [f"jpeg(quality={q})" for q in (25, 18, 15, 10, 7)]
    )


def test_presets_are_canonical_and_named_leniently():
    for name, conds in P.PRESETS.items():
        assert [P.canonical_condition(c).key for c in conds] == [c.key for c in conds]
    assert P.preset_conditions("ImageNet_C") == P.preset_conditions("imagenet-c")
    with pytest.raises(UnknownNameError, match="did you mean 'legion'"):
        P.preset_conditions("legoin")


def test_severity_of():
    assert P.severity_of("clean") == ("clean", 0, None)
    assert P.severity_of("jpeg(quality=35)") == ("jpeg", 2, 35)
    assert P.severity_of("jpeg(quality=7)") == ("jpeg", 5, 7)
    assert P.severity_of("gaussian_blur(kernel=15)") == ("gaussian_blur", 3, 15)
    assert P.severity_of("gaussian_blur(sigma=2)", preset="imagenet-c") == ("gaussian_blur", 2, 2.0)
    assert P.severity_of("gaussian_noise(sigma=0.1)", preset="imagenet-c") == ("gaussian_noise", None, 0.1)
    assert P.severity_of("resize(scale=0.5)+jpeg(quality=75)") == ("resize+jpeg", None, None)


# ---------------------------------------------------------------------------------- robustness
def test_robustness_summary_hand_worked():
    s = robustness_summary({
        "clean": {"miou": 0.50, "f1": 0.40, "fp_area": 0.10},
        "jpeg(quality=50)": {"miou": 0.45, "f1": 0.40, "fp_area": 0.15},
        "jpeg(quality=35)": {"miou": 0.40, "f1": 0.30, "fp_area": 0.20},
        "gaussian_blur(kernel=5)": {"miou": 0.55, "f1": float("nan")},
        "gaussian_blur(sigma=1.0)": {"miou": 0.25, "f1": 0.20},
    }, higher_is_better={"fp_area": False})
    assert s["higher_is_better"] == {"miou": True, "f1": True, "fp_area": False}
    c = s["conditions"]
    assert c["clean"]["miou"] == {"value": 0.5, "drop_abs": 0.0, "drop_rel": 0.0}
    assert c["jpeg(quality=50)"]["miou"]["drop_abs"] == pytest.approx(0.05)
    assert c["jpeg(quality=50)"]["miou"]["drop_rel"] == pytest.approx(0.10)
    assert c["jpeg(quality=35)"]["f1"]["drop_abs"] == pytest.approx(0.10)
    assert c["jpeg(quality=35)"]["f1"]["drop_rel"] == pytest.approx(0.25)
    # lower is better: a rise from 0.10 to 0.20 is a drop of 0.10, i.e. 100 %
    assert c["jpeg(quality=35)"]["fp_area"]["drop_abs"] == pytest.approx(0.10)
    assert c["jpeg(quality=35)"]["fp_area"]["drop_rel"] == pytest.approx(1.0)
    assert c["gaussian_blur(kernel=5)"]["miou"]["drop_abs"] == pytest.approx(-0.05)  # improved
    assert c["gaussian_blur(kernel=5)"]["f1"] == {"value": None, "drop_abs": None, "drop_rel": None}
    fam = s["perturbations"]
    assert set(fam) == {"jpeg(quality)", "gaussian_blur(kernel)", "gaussian_blur(sigma)"}
    j = fam["jpeg(quality)"]
    assert j["perturbation"] == "jpeg" and j["levels"] == ["jpeg(quality=50)", "jpeg(quality=35)"]
    assert j["metrics"]["miou"]["value"] == pytest.approx(0.425)
    assert j["metrics"]["miou"]["drop_abs"] == pytest.approx(0.075)
    assert j["metrics"]["miou"]["drop_rel"] == pytest.approx(0.15)
    assert j["metrics"]["f1"]["drop_rel"] == pytest.approx(0.125)
    assert j["metrics"]["fp_area"]["drop_rel"] == pytest.approx(0.75)
    assert fam["gaussian_blur(kernel)"]["metrics"]["f1"] == {"value": None, "drop_abs": None, "drop_rel": None, "n": 0}
    assert fam["gaussian_blur(sigma)"]["metrics"]["miou"]["drop_rel"] == pytest.approx(0.5)

    table = format_robustness_table(s)
    line = next(ln for ln in table.splitlines() if ln.startswith("jpeg(quality=35)"))
    assert line.split()[1:] == ["40.00", "+10.00", "+20.0%", "30.00", "+10.00", "+25.0%", "20.00", "+10.00", "+100.0%"]
    fam_line = next(ln for ln in table.splitlines() if ln.startswith("jpeg(quality) mean of 2"))
    assert fam_line.split()[4:7] == ["42.50", "+7.50", "+15.0%"]


def test_robustness_direction_from_metric_registry():
    s = robustness_summary({"clean": {"fp_area": 0.1, "miou": 0.5}, "jpeg(quality=50)": {"fp_area": 0.3, "miou": 0.4}})
    assert s["higher_is_better"] == {"fp_area": False, "miou": True}
    assert s["conditions"]["jpeg(quality=50)"]["fp_area"]["drop_abs"] == pytest.approx(0.2)


def test_robustness_summary_without_clean():
    s = robustness_summary({"jpeg(quality=50)": {"miou": 0.4}}, higher_is_better={})
    assert s["clean"] is None
    assert s["conditions"]["jpeg(quality=50)"]["miou"] == {"value": 0.4, "drop_abs": None, "drop_rel": None}


# ---------------------------------------------------------------------------------- provenance
def test_provenance_names_the_libraries():
    prov = P.perturbation_provenance()
    assert prov["opencv"] == cv2.__version__ and prov["numpy"] == np.__version__
    assert prov["opencv_libjpeg"] and "jpeg" in prov["opencv_libjpeg"].lower()
    assert prov["pillow"] and prov["pillow_libjpeg"]
    json.dumps(prov)


# ---------------------------------------------------------------------------------- CLI
def test_cli_perturb_writes_what_apply_condition_gives(tmp_path):
    src = tmp_path / "pic.png"
    Image.fromarray(colourful()).save(src)
    out = tmp_path / "out.png"
    assert bench_main(["perturb", str(src), "--perturbation", "gaussian_noise", "--param", "sigma=0.2",
                       "--out", str(out)]) == 0
    expected = P.apply_condition(decode_image(src), Condition.parse("gaussian_noise(sigma=0.2)"),
                                 suite_seed=0, sample_id="pic.png")
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)

    assert bench_main(["perturb", str(src), "-p", "gaussian_noise", "--param", "sigma=0.2", "--seed", "7",
                       "--sample-id", "train/0001", "-o", str(out)]) == 0
    expected = P.apply_condition(decode_image(src), Condition.parse("gaussian_noise(sigma=0.2)"),
                                 suite_seed=7, sample_id="train/0001")
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)

    assert bench_main(["perturb", str(src), "--condition", "resize(scale=0.5)+jpeg(quality=75)", "-o", str(out)]) == 0
    expected = P.apply_condition(decode_image(src), Condition.parse("resize(scale=0.5)+jpeg(quality=75)"),
                                 suite_seed=0, sample_id="pic.png")
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)


def test_cli_perturb_errors_exit_2(tmp_path, capsys):
    src = tmp_path / "pic.png"
    Image.fromarray(colourful(16, 16)).save(src)
    garbage = tmp_path / "broken.png"
    garbage.write_bytes(b"not an image")
    out = str(tmp_path / "o.png")
    cases = [
        (["perturb", str(garbage), "-p", "jpeg", "--param", "quality=50", "-o", out], "broken.png"),
        (["perturb", str(src), "-p", "jpge", "--param", "quality=50", "-o", out], "did you mean 'jpeg'"),
        (["perturb", str(src), "-p", "jpeg", "--param", "quality=500", "-o", out], "quality"),
        (["perturb", str(src), "-p", "jpeg", "--param", "quality=50", "-o", str(tmp_path / "o.jpg")], ".png"),
    ]
    for argv, needle in cases:
        assert bench_main(argv) == 2
        assert needle in capsys.readouterr().err
    assert not Path(out).exists()


def test_robustness_families_keep_albumentations_transforms_apart():
    """Levels of one family differ in strength only: two albumentations transforms are two families."""
    from bench.results.robustness import family_of

    blur = family_of("albumentations(blur_limit=[3;3],transform=Blur)")[1]
    assert blur == family_of("albumentations(blur_limit=[7;7],transform=Blur)")[1]
    assert blur != family_of("albumentations(std_range=[0.1;0.1],transform=GaussNoise)")[1]
    assert family_of("jpeg(quality=50)")[1] == family_of("jpeg(quality=20)")[1] == "jpeg(quality)"
