"""The generated ``demo`` dataset: SynthScars on-disk format, content, determinism, cache.

A small demo (16 fake + 6 real) is generated twice (two folders) per test session. The full
default demo is checked in a test marked slow; it uses the default cache folder (the one
``bench run --suite demo`` fills), so it only generates when that cache is absent.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from bench.datasets import demo, demo_generator
from bench.errors import BenchError
from bench.core.registry import DATASETS, create_dataset
from bench.core.types import FAKE, REAL

N_FAKE, N_REAL = 16, 6
HEAD = "Upon examining the image. I have found: "
ELABORATE = "\nTo elaborate, I have found the following artifacts. "


def _tree_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """<root> holding SynthScars/ for a 24 + 8 image demo (seed 0)."""
    root = tmp_path_factory.mktemp("demo_a")
    demo.generate_demo(root, seed=0, n_fake=N_FAKE, n_real=N_REAL)
    return root


def _side(synthscars: Path) -> dict:
    return json.loads((synthscars / "test" / demo.GENERATION_FILE).read_text("utf-8"))


@pytest.fixture(scope="module")
def records(small) -> list[dict]:
    """The raw annotation records, read with json (independently of the loader), with
    ``_id`` (annotation id) and ``_kinds`` (artifact kinds from the side file) added."""
    items = json.loads((small / "SynthScars/test/annotations/test.json").read_text("utf-8"))
    side = _side(small / "SynthScars")
    assert side["version"] == demo.DEMO_VERSION and side["seed"] == 0
    out = []
    for item in items:
        assert isinstance(item, dict) and len(item) == 1
        (ann_id, rec), = item.items()
        out.append({"_id": ann_id, "_kinds": side["images"][rec["img_file_name"]]["kinds"], **rec})
    assert len(side["images"]) == len(out)
    return out


@pytest.fixture(scope="module")
def samples(small):
    return create_dataset("synthscars", data_root=small / "SynthScars").samples()


# -- on-disk format ------------------------------------------------------------------------
def test_layout_and_counts(small, records):
    images = sorted((small / "SynthScars/test/images").iterdir())
    assert len(images) == N_FAKE + N_REAL == len(records)
    assert {p.suffix for p in images} == {".png", ".jpg"}  # mixed, like the release
    assert sorted(r["img_file_name"] for r in records) == [p.name for p in images]
    assert all("/" not in r["img_file_name"] for r in records)  # bare names
    assert Counter(r["label"] for r in records) == {"fake": N_FAKE, "real": N_REAL}
    assert len({r["_id"] for r in records}) == len(records)
    # the file name does not give the label away
    assert all(re.fullmatch(r"img_\d{4}\.(png|jpg)", r["img_file_name"]) for r in records)
    # nothing left behind by the atomic write
    assert [p.name for p in small.iterdir()] == ["SynthScars"]


def test_files_decode_to_their_format(small, records):
    for r in records:
        with Image.open(small / "SynthScars/test/images" / r["img_file_name"]) as im:
            assert im.format == {"png": "PNG", "jpg": "JPEG"}[r["img_file_name"][-3:]]
            assert im.mode == "RGB"


def test_sizes_in_range_and_not_all_square(small, records):
    shapes = []
    for r in records:
        with Image.open(small / "SynthScars/test/images" / r["img_file_name"]) as im:
            w, h = im.size
        assert 256 <= h <= 1024 and 256 <= w <= 1024
        shapes.append((h, w))
    assert any(h != w for h, w in shapes)
    assert len(set(shapes)) > len(shapes) // 2  # varied, not one size


def test_record_fields(records):
    for r in records:
        # exactly SynthScars' fields + label + content_type: nothing that gives the answer away
        # to an adapter (the loader passes extra record fields on as Sample.meta)
        assert set(r) - {"_id", "_kinds"} == {"img_file_name", "caption", "refs", "label", "content_type"}
        assert isinstance(r["caption"], str) and r["content_type"] in ("scene", "object")
        for ref in r["refs"]:
            assert set(ref) == {"sentence", "explanation", "bbox", "segmentation", "category"}
            assert ref["bbox"] is None
            assert ref["sentence"] and ref["explanation"].endswith(".")
            assert ref["category"] in ("physics", "distortion", "structure")


def test_real_images_have_no_refs_and_empty_masks(records, samples):
    reals = [r for r in records if r["label"] == "real"]
    assert reals and all(r["refs"] == [] and r["_kinds"] == [] for r in reals)
    for s in samples:
        if s.label == REAL:
            img = s.load_image()
            assert not s.regions
            assert not s.load_mask(*img.shape[:2]).any()


def test_artifact_kinds_and_categories(records):
    fakes = [r for r in records if r["label"] == "fake"]
    kinds = Counter(k for r in fakes for k in r["_kinds"])
    cats = Counter(ref["category"] for r in fakes for ref in r["refs"])
    assert len(kinds) >= 4 and set(kinds) <= set(demo_generator.KINDS)
    assert set(cats) == {"physics", "distortion", "structure"}
    for r in fakes:
        assert 1 <= len(r["refs"]) <= 3
        assert len(r["_kinds"]) == len(r["refs"]) == len(set(r["_kinds"]))
        for kind, ref in zip(r["_kinds"], r["refs"]):
            assert ref["category"] == demo_generator.KIND_CATEGORY[kind]


def test_polygons_inside_irregular_and_masks_non_empty(small, records):
    for r in records:
        if r["label"] != "fake":
            continue
        with Image.open(small / "SynthScars/test/images" / r["img_file_name"]) as im:
            w, h = im.size
        union = np.zeros((h, w), np.uint8)
        for ref in r["refs"]:
            assert len(ref["segmentation"]) == 1
            poly = np.asarray(ref["segmentation"][0], dtype=np.float64)
            assert poly.size % 2 == 0 and poly.size // 2 >= 8  # irregular, not a rectangle
            pts = poly.reshape(-1, 2)
            assert (pts[:, 0] >= 0).all() and (pts[:, 0] <= w - 1).all()
            assert (pts[:, 1] >= 0).all() and (pts[:, 1] <= h - 1).all()
            assert not np.allclose(pts, np.round(pts))  # float coordinates
            # independent rasterisation (LEGION's rule): non-empty, disjoint from the others
            m = np.zeros((h, w), np.uint8)
            cv2.fillPoly(m, [pts.astype(np.int32).reshape(-1, 1, 2)], 1)
            assert m.sum() >= 64
            assert not (union & m).any()
            union |= m
        assert 0.003 < union.mean() < 0.25


def test_loader_masks_match_polygons(samples, records):
    by_name = {r["img_file_name"]: r for r in records}
    for s in samples[:12]:
        rec = by_name[s.id]
        img = s.load_image()
        h, w = img.shape[:2]
        expected = np.zeros((h, w), np.uint8)
        for ref in rec["refs"]:
            for poly in ref["segmentation"]:
                cv2.fillPoly(expected, [np.asarray(poly).reshape(-1, 2).astype(np.int32).reshape(-1, 1, 2)], 1)
        assert np.array_equal(s.load_mask(h, w), expected.astype(bool))
        assert s.label == (FAKE if rec["label"] == "fake" else REAL)
        assert s.meta["content_type"] == rec["content_type"]
        assert [reg.category for reg in s.regions] == [ref["category"] for ref in rec["refs"]]


def test_caption_format(records):
    for r in records:
        cap = r["caption"]
        assert cap.startswith(HEAD)
        if r["label"] == "fake":
            glob, sep, tail = cap[len(HEAD):].partition(ELABORATE)
            assert sep and glob.endswith(".") and "\n" not in glob
            # SynthScars style: "<phrase>:<explanation>" per ref, concatenated in order
            assert tail == "".join(f"{ref['sentence']}:{ref['explanation']}" for ref in r["refs"])
        else:
            assert ELABORATE not in cap and "no visible artifacts" in cap


def test_location_phrase_matches_polygon_position(small, records):
    """A phrase naming a corner or side must agree with where the polygon's centroid is."""
    checked = 0
    for r in records:
        with Image.open(small / "SynthScars/test/images" / r["img_file_name"]) as im:
            w, h = im.size
        for ref in r["refs"]:
            pts = np.asarray(ref["segmentation"][0]).reshape(-1, 2)
            m = np.zeros((h, w), np.uint8)
            cv2.fillPoly(m, [pts.astype(np.int32).reshape(-1, 1, 2)], 1)
            ys, xs = np.nonzero(m)
            cx, cy = xs.mean() / w, ys.mean() / h
            s = ref["sentence"]
            if "upper" in s:
                assert cy < 1 / 3
            if "lower" in s:
                assert cy > 2 / 3
            if "left" in s:
                assert cx < 1 / 3
            if "right" in s:
                assert cx > 2 / 3
            if "centre" in s:
                assert 1 / 3 <= cx <= 2 / 3 and 1 / 3 <= cy <= 2 / 3
            checked += 1
    assert checked >= N_FAKE


def test_area_fractions_realistic(samples):
    fr = []
    for s in samples:
        if s.label == FAKE:
            img = s.load_image()
            fr.append(s.load_mask(*img.shape[:2]).mean())
    assert 0.015 < float(np.median(fr)) < 0.09


# -- determinism, cache --------------------------------------------------------------------
def test_deterministic_bytes(small, tmp_path):
    again = demo.generate_demo(tmp_path, seed=0, n_fake=N_FAKE, n_real=N_REAL)
    a, b = _tree_hashes(small / "SynthScars"), _tree_hashes(again)
    assert len(a) == N_FAKE + N_REAL + 2 and a == b  # images, annotations, side file


def test_other_seed_differs(small, tmp_path):
    other = demo.generate_demo(tmp_path, seed=1, n_fake=3, n_real=1)
    a, b = _tree_hashes(small / "SynthScars"), _tree_hashes(other)
    assert len(b) == 6
    assert not [k for k in b if a.get(k) == b[k]]


def test_existing_folder_is_kept(small):
    before = _tree_hashes(small / "SynthScars")
    assert demo.generate_demo(small, seed=5, n_fake=2, n_real=1) == small / "SynthScars"
    assert _tree_hashes(small / "SynthScars") == before


def test_concurrent_generation_one_winner(tmp_path):
    results, errors = [], []

    def work():
        try:
            results.append(demo.generate_demo(tmp_path, seed=3, n_fake=3, n_real=1))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == [tmp_path / "SynthScars"] * 3
    assert [p.name for p in tmp_path.iterdir()] == ["SynthScars"]  # losers cleaned up
    ds = create_dataset("synthscars", data_root=tmp_path)
    assert len(ds.samples()) == 4 and all(s.error is None for s in ds.samples())


def test_bad_counts_refused(tmp_path):
    with pytest.raises(ValueError):
        demo.generate_demo(tmp_path, n_fake=0, n_real=0)
    with pytest.raises(ValueError):
        demo.generate_demo(tmp_path, n_fake=-1, n_real=3)


# -- the registered dataset ----------------------------------------------------------------
def test_registered_demo_uses_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    assert "demo" in DATASETS
    ds = create_dataset("demo", seed=2, n_fake=4, n_real=2)
    folder = tmp_path / "cache" / "demo" / f"v{demo.DEMO_VERSION}-seed2-f4-r2" / "SynthScars"
    assert demo.demo_cache_dir(2, 4, 2) == folder.parent
    assert (folder / "test/annotations/test.json").is_file()
    ss = ds.samples()
    assert len(ss) == 6 and Counter(s.label for s in ss) == {FAKE: 4, REAL: 2}
    assert ds.options["seed"] == 2 and ds.options["n_fake"] == 4 and ds.options["n_real"] == 2
    # a second instance reuses the files (no regeneration: same modification time)
    stamp = (folder / "test/annotations/test.json").stat().st_mtime_ns
    ds2 = create_dataset("demo", seed=2, n_fake=4, n_real=2)
    assert (folder / "test/annotations/test.json").stat().st_mtime_ns == stamp
    assert ds2.fingerprint() == ds.fingerprint()
    # the default name for the default counts
    assert demo.demo_cache_dir(0).name == f"v{demo.DEMO_VERSION}-seed0"


def test_demo_with_data_root(small):
    ds = create_dataset("demo", data_root=small, n_fake=N_FAKE, n_real=N_REAL)
    assert len(ds.samples()) == N_FAKE + N_REAL
    ds2 = create_dataset("demo", data_root=small / "SynthScars")  # the SynthScars folder itself
    assert [s.id for s in ds2.samples()] == [s.id for s in ds.samples()]


def test_demo_unknown_option(tmp_path):
    with pytest.raises(BenchError, match="unknown option"):
        create_dataset("demo", data_root=tmp_path, n_fake=1, n_real=1, colour="red")


@pytest.mark.slow
def test_full_default_demo():
    """The default demo: 200 fake + 60 real, all five kinds, median area 2-8%."""
    ds = create_dataset("demo")
    ss = ds.samples()
    assert Counter(s.label for s in ss) == {FAKE: demo.DEFAULT_N_FAKE, REAL: demo.DEFAULT_N_REAL}
    assert len(ss) >= 200
    side = _side(demo.demo_cache_dir() / "SynthScars")["images"]
    kinds = Counter(k for s in ss for k in side[s.id]["kinds"])
    assert set(kinds) == set(demo_generator.KINDS) and min(kinds.values()) >= 30
    fr = [s.load_mask(*s.load_image().shape[:2]).mean() for s in ss if s.label == FAKE]
    assert 0.02 <= float(np.median(fr)) <= 0.08
