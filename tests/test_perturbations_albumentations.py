"""The ``albumentations(transform=NAME,...)`` perturbation family (issue 12, item 6).

Checked against albumentations called directly (``A.Compose([...], seed=s)``, a different
code path from the family's ``set_random_seed``), across processes, and for every pixel-level
transform albumentations 2.0.8 ships; refusals and errors are one line, also through the CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import bench.perturbations as P
from bench.cli import main as bench_main
from bench.core.conditions import Condition, rng_for
from bench.core.registry import PERTURBATIONS
from bench.errors import BenchError, UnknownNameError
from bench.io.imageio import decode_image
from bench.perturbations import albumentations_family as fam

NOISE = "albumentations(transform=GaussNoise,std_range=[0.1;0.1])"
NOISE_KEY = "albumentations(std_range=[0.1;0.1],transform=GaussNoise)"
JPEG = "albumentations(transform=ImageCompression,quality_range=[50;50])"


@pytest.fixture(scope="module")
def A():
    return pytest.importorskip("albumentations")


def picture(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 / (w - 1), yy * 255 / (h - 1), ((xx // 8 + yy // 8) % 2) * 255], -1)
    return np.clip(img + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)


def apply(key: str, img: np.ndarray, sample: str = "s1", seed: int = 0) -> np.ndarray:
    return P.apply_condition(img, P.canonical_condition(key), suite_seed=seed, sample_id=sample)


def sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def reference(A, transform, key: str, img: np.ndarray, sample: str, seed: int = 0) -> np.ndarray:
    """albumentations itself, seeded the documented way: one rng.integers(2**63) draw."""
    s = int(rng_for(seed, sample, P.canonical_condition(key).key).integers(2**63))
    return A.Compose([transform], seed=s)(image=img)["image"]


def one_line_error(capsys) -> str:
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bench: error: ")
    return lines[0]


# ---------------------------------------------------------------------------------- keys
def test_key_is_canonical_and_reparses(A):
    c = P.canonical_condition(NOISE)
    assert c.key == NOISE_KEY
    assert c.perturbation == "albumentations"
    assert c.params == {"std_range": "[0.1;0.1]", "transform": "GaussNoise"}
    assert P.canonical_condition(c.key).key == c.key  # what results.json holds reads back the same
    # spellings of one condition share one key (and so one random stream)
    for spelling in ("albumentations(transform=GaussNoise,std_range=[ 0.1 ; 0.1 ],p=1)",
                     "albumentations(std_range=[0.1;0.1],p=1.0,transform=GaussNoise)"):
        assert P.canonical_condition(spelling).key == NOISE_KEY
    yaml_form = Condition.from_spec({"albumentations": {"transform": "GaussNoise", "std_range": [0.1, 0.1]}})
    assert P.canonical_condition(yaml_form).key == NOISE_KEY
    c = P.canonical_condition("albumentations(transform=GaussNoise,per_channel=FALSE,p=0.5,std_range=[0;0.2])")
    assert c.params == {"p": 0.5, "per_channel": False, "std_range": "[0;0.2]", "transform": "GaussNoise"}
    assert P.canonical_condition(c.key).key == c.key
    assert fam.python_value("[[1;2];[3.5;none]]") == ((1, 2), (3.5, None))


def test_registered_lazily_and_described():
    info = PERTURBATIONS.entry("albumentations").info
    assert info["stochastic"] is True and "transform" in info["params"] and "GaussNoise" in info["summary"]
    code = textwrap.dedent("""
        import sys
        import bench.perturbations as P
        from bench.core.registry import PERTURBATIONS
        PERTURBATIONS.names(); P.perturbation_provenance(); P.canonical_condition("jpeg(quality=50)")
        assert "albumentations" in PERTURBATIONS
        print("albumentations" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"  # registering the family and recording its version import nothing


def test_provenance_records_the_version():
    prov = P.perturbation_provenance()
    try:
        expected = metadata.version("albumentations")
    except metadata.PackageNotFoundError:
        expected = None
    assert prov["albumentations"] == expected
    assert "set_random_seed" in prov["albumentations_seed"]
    json.dumps(prov)


# ---------------------------------------------------------------------------------- seeding
def test_same_seed_same_bytes_other_sample_other_draw(A):
    img = picture()
    a = apply(NOISE, img, "s1")
    assert a.dtype == np.uint8 and a.shape == img.shape and not np.array_equal(a, img)
    assert sha(apply(NOISE, img, "s1")) == sha(a)
    assert not np.array_equal(apply(NOISE, img, "s2"), a)  # another sample, another draw
    assert not np.array_equal(apply(NOISE, img, "s1", seed=1), a)  # another suite seed too
    assert np.array_equal(img, picture())  # the input is not written to


def test_same_bytes_in_a_fresh_process(A):
    img = picture()
    keys = [NOISE, "albumentations(transform=ISONoise)", "resize(scale=0.5)+" + NOISE]
    here = [sha(apply(k, img, "train/0007", seed=3)) for k in keys]
    code = textwrap.dedent(f"""
        import hashlib, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import bench.perturbations as P
        from test_perturbations_albumentations import picture
        for k in {keys!r}:
            out = P.apply_condition(picture(), P.canonical_condition(k), suite_seed=3, sample_id="train/0007")
            print(hashlib.sha256(out.tobytes()).hexdigest())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                         env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == here


def test_equals_albumentations_called_directly(A):
    img = picture()
    for sample in ("a", "b", "c"):
        ours = apply(NOISE, img, sample)
        ref = reference(A, A.GaussNoise(std_range=(0.1, 0.1), p=1.0), NOISE, img, sample)
        np.testing.assert_array_equal(ours, ref)
    key = "albumentations(transform=RandomBrightnessContrast,brightness_limit=[-0.3;0.3],contrast_limit=0.2)"
    ref = reference(A, A.RandomBrightnessContrast(brightness_limit=(-0.3, 0.3), contrast_limit=0.2, p=1.0),
                    key, img, "a")
    np.testing.assert_array_equal(apply(key, img, "a"), ref)
    # ImageCompression is albumentations' JPEG: the harness's jpeg_bgr_swap reproduces it exactly
    ours = apply(JPEG, img)
    np.testing.assert_array_equal(ours, A.ImageCompression(quality_range=(50, 50), p=1.0)(image=img)["image"])
    np.testing.assert_array_equal(ours, PERTURBATIONS.get("jpeg_bgr_swap")(img, rng=None, quality=50))


def test_p_is_one_unless_given_and_then_seeded(A):
    img = picture()
    # GaussNoise's own default p is 0.5: the family applies it to every sample
    changed = [not np.array_equal(apply("albumentations(transform=GaussNoise)", img, f"s{i}"), img)
               for i in range(12)]
    assert all(changed)
    key = "albumentations(transform=GaussNoise,p=0.5)"
    applied = []
    for i in range(24):
        ours = apply(key, img, f"s{i}")
        np.testing.assert_array_equal(ours, reference(A, A.GaussNoise(p=0.5), key, img, f"s{i}"))
        np.testing.assert_array_equal(ours, apply(key, img, f"s{i}"))
        applied.append(not np.array_equal(ours, img))
    assert 0 < sum(applied) < len(applied)  # drawn per sample, from the per-sample stream


def test_every_pixel_transform_is_seeded_by_the_harness_only(A):
    """Global random state (numpy's, Python's) changed between two applications changes nothing:
    every accepted transform draws only from the generator the harness seeds."""
    img = picture(40, 56)
    accepted, refused = [], []
    for name in sorted(vars(A)):
        cls = getattr(A, name)
        if not (isinstance(cls, type) and issubclass(cls, A.ImageOnlyTransform)):
            continue
        try:
            cond = P.canonical_condition(f"albumentations(transform={name})")
        except ValueError as exc:
            refused.append(name)
            assert "\n" not in str(exc)
            continue
        np.random.seed(1)
        random.seed(1)
        first = P.apply_condition(img, cond, suite_seed=0, sample_id="x")
        np.random.seed(2)
        random.seed(2)
        np.random.random(7)
        second = P.apply_condition(img, cond, suite_seed=0, sample_id="x")
        assert sha(first) == sha(second), name
        assert first.dtype == np.uint8 and first.shape == img.shape, name
        accepted.append(name)
    assert len(accepted) >= 45, accepted
    assert {"Normalize", "ToFloat", "FromFloat", "ImageOnlyTransform"} <= set(refused)
    assert {"GaussNoise", "ImageCompression", "MedianBlur", "ToSepia"} <= set(accepted)


# ---------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("name", ["HorizontalFlip", "Affine", "RandomCrop", "Resize", "ElasticTransform",
                                  "CoarseDropout"])
def test_geometric_transforms_are_refused(A, name):
    with pytest.raises(ValueError) as exc:
        P.canonical_condition(f"albumentations(transform={name})")
    msg = str(exc.value)
    assert "\n" not in msg and repr(name) in msg and "refused" in msg and "spatial-level" in msg
    with pytest.raises(ValueError, match="refused"):  # also when called directly, without the check
        PERTURBATIONS.get("albumentations")(picture(), rng=np.random.default_rng(0), transform=name)


def test_unknown_transform_suggests_close_names(A):
    with pytest.raises(UnknownNameError) as exc:
        P.canonical_condition("albumentations(transform=GausNoise,std_range=[0.1;0.1])")
    msg = str(exc.value)
    assert isinstance(exc.value, ValueError) and "\n" not in msg
    assert "unknown albumentations transform 'GausNoise'" in msg and "did you mean 'GaussNoise'" in msg
    with pytest.raises(UnknownNameError, match="did you mean 'GaussNoise'"):
        P.canonical_condition("albumentations(transform=gaussnoise)")
    with pytest.raises(ValueError, match="not one transform"):
        P.canonical_condition("albumentations(transform=Compose)")
    with pytest.raises(ValueError, match="missing parameter 'transform'"):
        P.canonical_condition("albumentations(std_range=[0.1;0.1])")


@pytest.mark.parametrize("key,words", [
    ("albumentations(transform=GaussNoise,std_range=[2;0.1])",
     ["'GaussNoise'", "albumentations", "must be >= 0 and <= 1"]),
    ("albumentations(transform=GaussNoise,std_range=0.1)", ["'GaussNoise'", "valid tuple"]),
    ("albumentations(transform=GaussNoise,std_rang=[0.1;0.1])",
     ["'GaussNoise'", "'std_rang' is not valid", "did you mean 'std_range'"]),
    ("albumentations(transform=MedianBlur,blur_limit=[4;4])", ["'MedianBlur'", "warns", "must be odd"]),
    ("albumentations(transform=MedianBlur,blur_lim=5)", ["'MedianBlur'", "did you mean 'blur_limit'"]),
    ("albumentations(transform=GaussNoise,p=2)", ["'GaussNoise'", "p"]),
    ("albumentations(transform=ImageCompression,quality_range=[50;50],compression_type=gif)",
     ["'ImageCompression'", "compression_type"]),
    ("albumentations(transform=GaussNoise,strict=False)", ["'strict' cannot be given"]),
    ("albumentations(transform=GaussNoise,std_range=[0.1;0.1)", ["std_range", "[a;b;...]"]),
    ("albumentations(transform=Normalize)", ["'Normalize'", "refused", "float32"]),
    ("albumentations(transform=ToGray,num_output_channels=1)", ["'ToGray'", "refused", "into uint8 64x64;"]),
    ("albumentations(transform=FDA)", ["'FDA'", "fda_metadata"]),
])
def test_bad_parameters_are_one_line_naming_the_transform(A, key, words):
    with pytest.raises(ValueError) as exc:
        P.canonical_condition(key)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("perturbation 'albumentations'")
    assert "errors.pydantic.dev" not in msg
    for w in words:
        assert w in msg, msg


def test_missing_albumentations_is_one_line_with_the_install_command(monkeypatch, capsys, tmp_path):
    fam._catalogue.cache_clear()
    monkeypatch.setitem(sys.modules, "albumentations", None)  # `import albumentations` now fails
    try:
        with pytest.raises(BenchError, match=r"pip install albumentations") as exc:
            P.canonical_condition(NOISE)
        assert "\n" not in str(exc.value)
        src = tmp_path / "pic.png"
        Image.fromarray(picture()).save(src)
        assert bench_main(["perturb", str(src), "--condition", NOISE, "-o", str(tmp_path / "o.png")]) == 2
        assert "pip install albumentations" in one_line_error(capsys)
        assert not (tmp_path / "o.png").exists()
        assert P.canonical_condition("jpeg(quality=50)").key == "jpeg(quality=50)"  # the rest still works
    finally:
        fam._catalogue.cache_clear()


# ---------------------------------------------------------------------------------- CLI
def test_cli_perturb_writes_the_family_and_refuses_in_one_line(A, tmp_path, capsys):
    src = tmp_path / "pic.png"
    Image.fromarray(picture()).save(src)
    out = tmp_path / "seen.png"
    assert bench_main(["perturb", str(src), "--condition", NOISE, "--sample-id", "a", "-o", str(out)]) == 0
    expected = P.apply_condition(decode_image(src), P.canonical_condition(NOISE), suite_seed=0, sample_id="a")
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)
    out.unlink()
    assert bench_main(["perturb", str(src), "-p", "albumentations", "--param", "transform=GaussNoise",
                       "--param", "std_range=[0.1;0.1]", "--sample-id", "a", "-o", str(out)]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)
    out.unlink()
    capsys.readouterr()
    cases = [
        (["--condition", "albumentations(transform=HorizontalFlip)"], "spatial-level"),
        (["-p", "albumentations", "--param", "transform=GausNoise"], "did you mean 'GaussNoise'"),
        (["--condition", "albumentations(transform=GaussNoise,std_range=[2;0.1])"], "must be >= 0 and <= 1"),
    ]
    for argv, needle in cases:
        assert bench_main(["perturb", str(src), *argv, "-o", str(out)]) == 2
        assert needle in one_line_error(capsys)
        assert not out.exists()


def test_bench_run_records_the_condition(A, tmp_path, capsys):
    out = tmp_path / "runs"
    assert bench_main(["run", "--suite", "demo", "--adapter", "empty", "--limit", "3", "--condition", NOISE,
                       "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    (results,) = out.rglob("results.json")
    data = json.loads(results.read_text())
    conds = {c["key"]: c for c in data["conditions"]}
    assert set(conds) == {"clean", NOISE_KEY}
    c = conds[NOISE_KEY]
    assert c["perturbation"] == "albumentations"
    assert c["params"] == {"std_range": "[0.1;0.1]", "transform": "GaussNoise"}
    assert c["n"] == 3 and c["n_failed"] == 0
    assert data["perturbation_provenance"]["albumentations"] == A.__version__
    capsys.readouterr()
    bad = tmp_path / "bad"
    for key, words in [("albumentations(transform=Rotate)", ["'Rotate'", "refused", "spatial-level"]),
                       ("albumentations(transform=GausNoise)", ["did you mean 'GaussNoise'"]),
                       ("albumentations(transform=GaussNoise,std_range=[2;0.1])", ["'GaussNoise'", "<= 1"])]:
        assert bench_main(["run", "--suite", "demo", "--adapter", "empty", "--limit", "3", "--condition", key,
                           "--out", str(bad), "--no-progress"]) == 2
        line = one_line_error(capsys)
        assert f"--condition {key!r}" in line
        for w in words:
            assert w in line, line
        assert not bad.exists() or not list(bad.rglob("results.json"))
