"""``manifest`` loader: JSONL lines with masks / polygons / boxes, relative paths, bad lines
failing alone (named by manifest path and line number), image modes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from bench.errors import BenchError, DataMissingError, SampleError
from bench.core.registry import DATASETS, create_dataset


def write_manifest(path: Path, lines: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    d = tmp_path / "mine"
    (d / "imgs").mkdir(parents=True)
    (d / "masks").mkdir()
    for name in ("a.png", "b.png", "c.png", "r.png"):
        Image.new("RGB", (40, 30), (120, 130, 140)).save(d / "imgs" / name)
    m = np.zeros((30, 40), np.uint8)
    m[5:12, 8:20] = 255
    Image.fromarray(m).save(d / "masks" / "a.png")
    return d


def test_three_line_example_from_docs(folder, tmp_path):
    absolute = tmp_path / "elsewhere.png"
    Image.new("RGB", (40, 30)).save(absolute)
    write_manifest(folder / "manifest.jsonl", [
        {"image": "imgs/a.png", "label": "fake", "mask": "masks/a.png", "reference": "The hand has six fingers."},
        {"image": "imgs/b.png", "label": "fake", "polygons": [[10, 10, 30, 12, 20, 25]], "meta": {"generator": "sdxl"}},
        {"id": "c", "image": str(absolute), "label": 0},
    ])
    ds = create_dataset("manifest", data_root=folder)  # a folder holding manifest.jsonl
    a, b, c = ds.samples()
    assert (a.id, a.image_path, a.mask_rule, a.mask_path) == ("imgs/a.png", folder / "imgs/a.png", "file", folder / "masks/a.png")
    assert a.reference == "The hand has six fingers." and a.label == 1
    expected = np.zeros((30, 40), bool)
    expected[5:12, 8:20] = True
    np.testing.assert_array_equal(a.load_mask(30, 40), expected)
    assert b.mask_rule == "polygon" and b.meta["generator"] == "sdxl" and b.reference is None
    poly = np.zeros((30, 40), np.uint8)
    cv2.fillPoly(poly, [np.array([[10, 10], [30, 12], [20, 25]], np.int32)], 1)
    np.testing.assert_array_equal(b.load_mask(30, 40), poly.astype(bool))
    assert (c.id, c.label, c.image_path, c.mask_rule) == ("c", 0, absolute, "none")
    assert not c.load_mask(30, 40).any()
    assert c.load_image().shape == (30, 40, 3)
    # the manifest file itself works as data root too, and the mask file is part of the fingerprint
    same = create_dataset("manifest", data_root=folder / "manifest.jsonl")
    assert [s.id for s in same.samples()] == ["imgs/a.png", "imgs/b.png", "c"]
    assert folder / "masks/a.png" in same.annotation_files()
    fp = same.fingerprint()
    m = np.zeros((30, 40), np.uint8)
    m[0:3, 0:3] = 255
    Image.fromarray(m).save(folder / "masks" / "a.png")
    assert create_dataset("manifest", data_root=folder).fingerprint() != fp
    assert "manifest" in DATASETS.names()


def test_boxes_use_inclusive_rule(folder):
    write_manifest(folder / "manifest.jsonl", [
        {"image": "imgs/a.png", "label": "fake", "boxes": [[2.7, 3.2, 4.5, 0.5], [30, 20, 50, 50]]},
    ])
    (s,) = create_dataset("manifest", data_root=folder).samples()
    img = Image.new("L", (40, 30), 0)
    draw = ImageDraw.Draw(img)  # PIL's rectangle: both corners inclusive, clipped
    draw.rectangle([2, 3, 7, 3], fill=1)
    draw.rectangle([30, 20, 80, 70], fill=1)
    np.testing.assert_array_equal(s.load_mask(30, 40), np.asarray(img) > 0)
    assert s.load_mask(30, 40).sum() == 6 * 1 + 10 * 10


def test_labels_and_splits(folder):
    write_manifest(folder / "m.jsonl", [
        {"image": "imgs/a.png", "label": "FAKE", "split": "test"},
        {"image": "imgs/b.png", "label": 1, "split": "train"},
        {"image": "imgs/c.png", "label": "Real"},
        {"image": "imgs/r.png", "label": 0, "boxes": [[1, 1, 5, 5]]},  # geometry on a real image: ignored
    ])
    test = create_dataset("manifest", data_root=folder / "m.jsonl").samples()
    assert [(s.id, s.label) for s in test] == [("imgs/a.png", 1), ("imgs/c.png", 0), ("imgs/r.png", 0)]
    assert test[0].mask_rule == "none" and test[0].meta["has_mask"] is False  # fake without geometry
    assert not test[2].load_mask(30, 40).any()
    train = create_dataset("manifest", data_root=folder / "m.jsonl", split="train").samples()
    assert [s.id for s in train] == ["imgs/b.png", "imgs/c.png", "imgs/r.png"]


def test_bad_lines_fail_alone(folder):
    path = write_manifest(folder / "manifest.jsonl", [
        {"image": "imgs/a.png", "label": "fake"},                                     # 1 ok
        "{not json",                                                                  # 2
        {"label": "fake"},                                                            # 3 no image
        {"image": "imgs/b.png", "label": "maybe"},                                    # 4 unknown label
        {"image": "imgs/b.png", "label": "fake", "mask": "m.png", "boxes": [[1, 1, 2, 2]]},  # 5 two geometries
        '{"image": "imgs/c.png", "label": "fake", "polygons": [[1, 1, NaN, 2, 3, 3]]}',     # 6 NaN
        {"image": "imgs/c.png", "label": "fake", "boxes": [[1, 1, -2, 2]]},           # 7 negative box
        {"image": "imgs/c.png", "label": "fake", "polygon": [[1, 1, 2, 2, 3, 3]]},    # 8 unknown key
        "",                                                                           # 9 blank: skipped
        "[1, 2]",                                                                     # 10 not an object
        {"image": "imgs/a.png", "label": "fake"},                                     # 11 repeated id
        {"image": "imgs/c.png", "label": True},                                       # 12 boolean label
        {"image": "imgs/c.png", "label": "fake", "polygons": [[1, 1, 2, 2]]},         # 13 two points
    ])
    samples = create_dataset("manifest", data_root=path).samples()
    assert len(samples) == 12
    assert samples[0].error is None
    expected = {
        2: "not valid JSON", 3: "missing or empty 'image'", 4: "'label' is 'maybe'",
        5: "two geometry fields", 6: "NaN", 7: "negative size", 8: "unknown key\\(s\\) polygon",
        10: "must be a JSON object", 11: "repeats line 1", 12: "'label' is True", 13: "at least 6",
    }
    by_line = {s.meta["manifest_line"]: s for s in samples}
    assert sorted(by_line) == [1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13]
    for line, problem in expected.items():
        err = by_line[line].error
        assert err and err.startswith(f"{path}:{line}: ") and re.search(problem, err), (line, err)
        with pytest.raises(SampleError):
            by_line[line].load_image()
    assert by_line[11].id == "imgs/a.png#2"


def test_missing_manifest_and_options(tmp_path):
    with pytest.raises(DataMissingError, match="manifest.jsonl not found"):
        create_dataset("manifest", data_root=tmp_path).samples()
    with pytest.raises(DataMissingError):
        create_dataset("manifest", data_root=tmp_path / "x.jsonl").samples()
    with pytest.raises(BenchError, match="unknown option"):
        create_dataset("manifest", data_root=tmp_path, images="x")


def test_missing_image_file_fails_that_sample(folder):
    write_manifest(folder / "manifest.jsonl", [{"image": "imgs/nope.png", "label": "fake"}])
    (s,) = create_dataset("manifest", data_root=folder).samples()
    with pytest.raises(SampleError) as info:
        s.load_image()
    assert str(folder / "imgs/nope.png") in str(info.value) and "not found" in str(info.value)


def test_image_modes_through_loader(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    Image.new("L", (12, 10), 100).save(d / "grey.png")
    Image.new("RGBA", (12, 10), (10, 20, 30, 0)).save(d / "rgba.png")
    Image.fromarray(np.full((10, 12), 257 * 40, np.uint16)).save(d / "deep.png")  # 16-bit 10280 -> 40
    Image.new("CMYK", (12, 10), (0, 0, 0, 0)).save(d / "cmyk.tif")  # lossless CMYK white
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\1" * 30)
    expected = {"grey.png": (100, 100, 100), "rgba.png": (10, 20, 30), "deep.png": (40, 40, 40),
                "cmyk.tif": (255, 255, 255), "broken.png": None}
    write_manifest(tmp_path / "manifest.jsonl", [{"image": f"imgs/{n}", "label": "real"} for n in expected])
    for s in create_dataset("manifest", data_root=tmp_path).samples():
        rgb = expected[s.image_path.name]
        if rgb is None:
            with pytest.raises(SampleError) as info:
                s.load_image()
            assert "broken.png" in str(info.value) and "cannot decode" in str(info.value)
            continue
        img = s.load_image()
        assert img.dtype == np.uint8 and img.shape == (10, 12, 3)
        assert (img == np.array(rgb, np.uint8)).all(), (s.id, img[0, 0])
