"""SynthScars loader (bench/datasets/synthscars.py) against the real pre-release annotation file
and hand-made bad inputs.

Ground-truth masks are checked against LEGION's own rule re-implemented here from the raw JSON
(``eval/utils.py::generate_mask`` in opendatalab/LEGION: each polygon ``np.array(seg,
dtype=np.float32).reshape(-1, 2).astype(np.int32)``, one ``cv2.fillPoly`` per polygon, union
over refs), and against hand-worked masks.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from bench.datasets.synthscars import SynthScars
from bench.errors import BenchError, DataMissingError, SampleError
from bench.core.registry import DATASETS, create_dataset
from bench.core.types import FAKE, REAL
from helpers import shared_real_file

PRERELEASE = "synthscars_prerelease_val.json"


# --------------------------------------------------------------------------------------------
# helpers


def write_blank(path: Path, width: int, height: int) -> None:
    """A mid-grey image of the given size, format from the extension."""
    img = Image.new("RGB", (width, height), (120, 120, 120))
    img.save(path, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG")


def make_tree(root: Path, records: list, images: dict[str, tuple[int, int]] | None = None,
              split: str = "test", ann_dir: str = "annotations", raw: str | None = None) -> Path:
    """A SynthScars folder under ``root``; returns the SynthScars folder.

    ``images`` maps file name -> (width, height); ``raw`` replaces the JSON text.
    """
    sc = root / "SynthScars"
    (sc / split / "images").mkdir(parents=True, exist_ok=True)
    (sc / split / ann_dir).mkdir(parents=True, exist_ok=True)
    (sc / ("train" if split != "train" else "test")).mkdir(exist_ok=True)
    text = raw if raw is not None else json.dumps(records)
    (sc / split / ann_dir / f"{split}.json").write_text(text, encoding="utf-8")
    for name, (w, h) in (images or {}).items():
        write_blank(sc / split / "images" / name, w, h)
    return sc


def record(ann_id: str, name: str, polys: list[list[float]] | None = None, **extra) -> dict:
    refs = [{"sentence": f"place {k}", "explanation": f"why {k}", "bbox": None,
             "segmentation": [p]} for k, p in enumerate(polys or [])]
    return {ann_id: {"caption": f"caption of {name}", "img_file_name": name, "refs": refs, **extra}}


def legion_mask(raw_record: dict, height: int, width: int, via_float32: bool = True) -> np.ndarray:
    """LEGION's generate_mask for one raw JSON record (re-implemented for the test)."""
    mask = np.zeros((height, width), dtype=np.uint8)
    for ref in raw_record.get("refs", []):
        for seg in ref.get("segmentation", []):
            dtype = np.float32 if via_float32 else np.float64
            pts = np.array(seg, dtype=dtype).reshape((-1, 2)).astype(np.int32)
            cv2.fillPoly(mask, [pts], 1)
    return mask.astype(bool)


def plausible_size(raw_record: dict) -> tuple[int, int]:
    """(width, height) just covering every polygon (the real sizes are unknown)."""
    xs = [x for ref in raw_record["refs"] for s in ref["segmentation"] for x in s[0::2]]
    ys = [y for ref in raw_record["refs"] for s in ref["segmentation"] for y in s[1::2]]
    if not xs:
        return 256, 192
    return max(math.ceil(max(xs)), 16), max(math.ceil(max(ys)), 16)


def truncation_agrees(raw_record: dict) -> bool:
    """True when float64 and float32 truncation give the same integer vertices."""
    for ref in raw_record["refs"]:
        for s in ref["segmentation"]:
            a = np.asarray(s, dtype=np.float64)
            if not np.array_equal(a.astype(np.int32), a.astype(np.float32).astype(np.int32)):
                return False
    return True


# --------------------------------------------------------------------------------------------
# the pre-release file (119 records, images absent: blank images are made for each record)


@pytest.fixture(scope="module")
def prerelease(tmp_path_factory):
    """(raw records, {variant: (data_root, options, expected annotation path)})."""
    src = shared_real_file(PRERELEASE)
    raw = json.loads(src.read_text(encoding="utf-8"))
    base = tmp_path_factory.mktemp("synthscars")
    sizes = {}
    for item in raw:
        (_, rec), = item.items()
        sizes[Path(rec["img_file_name"]).name] = plausible_size(rec)
    sc1 = make_tree(base / "a", raw, images=sizes, ann_dir="annotations")
    # second tree: the misspelt folder, sharing the images through a symlink
    sc2 = base / "b" / "SynthScars"
    (sc2 / "test" / "annoations").mkdir(parents=True)
    (sc2 / "test" / "images").symlink_to(sc1 / "test" / "images", target_is_directory=True)
    shutil.copy(src, sc2 / "test" / "annoations" / "test.json")
    variants = {
        "annotations": (sc1, {}, sc1 / "test" / "annotations" / "test.json"),
        "annoations": (sc2, {}, sc2 / "test" / "annoations" / "test.json"),
        "parent-dir": (sc1.parent, {}, sc1 / "test" / "annotations" / "test.json"),
        "option": (None, {"annotations": str(src), "images": str(sc1 / "test" / "images")}, src),
    }
    return raw, sizes, variants


@pytest.mark.parametrize("variant", ["annotations", "annoations", "parent-dir", "option"])
def test_prerelease_records(prerelease, variant):
    raw, sizes, variants = prerelease
    root, options, ann_path = variants[variant]
    ds = SynthScars(root, split="test", **options)
    samples = ds.samples()
    assert len(samples) == len(raw) == 119
    assert ds.annotation_files() == [ann_path]
    assert len({s.id for s in samples}) == len(samples)
    for s, item in zip(samples, raw):
        (ann_id, rec), = item.items()
        name = rec["img_file_name"].rsplit("/", 1)[-1]
        assert s.error is None, s.error
        assert s.id == name and s.file_name == name
        assert s.image_path.name == name and s.image_path.is_file()
        assert s.label == FAKE and s.mask_rule == "polygon"
        assert s.reference == rec["caption"]
        assert s.meta["annotation_id"] == ann_id
        assert s.meta["n_regions"] == len(rec["refs"]) == len(s.regions)
        for region, ref in zip(s.regions, rec["refs"]):
            assert region.phrase == ref["sentence"]
            assert region.explanation == ref["explanation"]
            assert region.polygons == tuple(tuple(float(v) for v in p) for p in ref["segmentation"])
            assert region.category is None


def test_prerelease_masks_match_legion(prerelease):
    raw, sizes, variants = prerelease
    root, options, _ = variants["annotations"]
    samples = SynthScars(root, "test").samples()
    compared = 0
    for s, item in zip(samples, raw):
        (_, rec), = item.items()
        if not truncation_agrees(rec):  # covered by the float32 test below
            continue
        img = s.load_image()
        w, h = sizes[s.id]
        assert img.shape == (h, w, 3) and img.dtype == np.uint8
        got = s.load_mask(h, w)
        want = legion_mask(rec, h, w)
        assert got.dtype == bool and got.shape == (h, w)
        assert np.array_equal(got, want), f"{s.id}: {np.count_nonzero(got != want)} pixels differ"
        assert got.any() == bool(rec["refs"])
        compared += 1
    assert compared >= 115


def test_truncation_goes_through_float32_like_legion(prerelease):
    raw, sizes, variants = prerelease
    root, _, _ = variants["annotations"]
    samples = SynthScars(root, "test").samples()
    differing = [(s, item) for s, item in zip(samples, raw)
                 if not truncation_agrees(next(iter(item.values())))]
    assert len(differing) == 3
    for s, item in differing:
        (_, rec), = item.items()
        w, h = sizes[s.id]
        assert np.array_equal(s.load_mask(h, w), legion_mask(rec, h, w)), s.id


def test_truncation_via_float32_hand_worked(tmp_path):
    # float32(3.9999999999999996) == 4.0, so LEGION's polygon reaches column 4 (float64
    # truncation would stop at column 3)
    x = 3.9999999999999996
    (s,) = _one_sample(tmp_path, [record("1", "f.png", [[0, 0, x, 0, x, 3, 0, 3]])],
                       {"f.png": (8, 6)})
    want = np.zeros((6, 8), dtype=bool)
    want[0:4, 0:5] = True
    assert np.array_equal(s.load_mask(6, 8), want)


# --------------------------------------------------------------------------------------------
# rasterisation: hand-worked cases


def _one_sample(tmp_path, records, images=None, **kw):
    sc = make_tree(tmp_path, records, images or {}, **kw)
    return SynthScars(sc, "test").samples()


def test_truncation_not_rounding(tmp_path):
    # x 0.5..2.9 -> columns 0..2 (rounding would give 0..3); y 1.5..3.7 -> rows 1..3 (not 2..4)
    poly = [0.5, 1.5, 2.9, 1.5, 2.9, 3.7, 0.5, 3.7]
    (s,) = _one_sample(tmp_path, [record("1", "a.png", [poly])], {"a.png": (8, 6)})
    want = np.zeros((6, 8), dtype=bool)
    want[1:4, 0:3] = True
    assert np.array_equal(s.load_mask(6, 8), want)


def test_triangle_boundary_pixels_included(tmp_path):
    # right triangle (1,1)-(5,1)-(1,5): fillPoly includes the boundary, so row r covers
    # columns 1 .. 6 - r (the hypotenuse x + y = 6 passes exactly through pixel centres)
    (s,) = _one_sample(tmp_path, [record("1", "t.png", [[1, 1, 5, 1, 1, 5]])], {"t.png": (7, 7)})
    want = np.zeros((7, 7), dtype=bool)
    for r in range(1, 6):
        want[r, 1:7 - r] = True
    assert np.array_equal(s.load_mask(7, 7), want)


def test_union_over_refs_and_polygons_has_no_holes(tmp_path):
    outer = [1, 1, 8, 1, 8, 8, 1, 8]
    inner = [3, 3, 6, 3, 6, 6, 3, 6]
    want = np.zeros((10, 10), dtype=bool)
    want[1:9, 1:9] = True
    # nested polygons in two refs
    (a,) = _one_sample(tmp_path / "a", [record("1", "a.png", [outer, inner])], {"a.png": (10, 10)})
    assert np.array_equal(a.load_mask(10, 10), want)
    # nested polygons in ONE ref (a single fillPoly call would leave the inner square empty)
    rec = record("2", "b.png")
    rec["2"]["refs"] = [{"sentence": "s", "explanation": "e", "bbox": None,
                         "segmentation": [outer, inner]}]
    (b,) = _one_sample(tmp_path / "b", [rec], {"b.png": (10, 10)})
    assert np.array_equal(b.load_mask(10, 10), want)
    # two disjoint refs: the union is both
    left, right = [0, 0, 2, 0, 2, 2, 0, 2], [6, 6, 9, 6, 9, 9, 6, 9]
    (c,) = _one_sample(tmp_path / "c", [record("3", "c.png", [left, right])], {"c.png": (10, 10)})
    want = np.zeros((10, 10), dtype=bool)
    want[0:3, 0:3] = True
    want[6:10, 6:10] = True
    assert np.array_equal(c.load_mask(10, 10), want)


def test_record_without_refs_is_fake_with_empty_mask(tmp_path):
    (s,) = _one_sample(tmp_path, [record("1", "a.png", [])], {"a.png": (5, 4)})
    assert s.label == FAKE and s.error is None and s.regions == ()
    assert not s.load_mask(4, 5).any()


# --------------------------------------------------------------------------------------------
# format details


def test_registered_and_created_by_name(tmp_path):
    assert DATASETS.get("synthscars") is SynthScars
    sc = make_tree(tmp_path, [record("1", "a.png", [])], {"a.png": (4, 4)})
    ds = create_dataset("synthscars", data_root=sc, split="test")
    assert isinstance(ds, SynthScars) and [s.id for s in ds.samples()] == ["a.png"]


def test_real_label_extension_and_extra_fields(tmp_path):
    fake = record("1", "f.png", [[0, 0, 3, 0, 3, 3]], content_type="human",
                  categories=["structure"])
    fake["1"]["refs"][0]["category"] = "structure"
    real = {"2": {"caption": "no artifacts", "img_file_name": "r.png", "label": "real",
                  "content_type": "scene"}}
    f, r = _one_sample(tmp_path, [fake, real], {"f.png": (6, 6), "r.png": (6, 6)})
    assert f.label == FAKE and f.meta["content_type"] == "human"
    assert f.meta["categories"] == ["structure"] and f.regions[0].category == "structure"
    assert r.label == REAL and r.mask_rule == "none" and r.regions == () and r.error is None
    assert r.reference == "no artifacts" and r.meta["content_type"] == "scene"
    assert not r.load_mask(6, 6).any()
    assert r.load_image().shape == (6, 6, 3)


def test_exact_file_name_match_never_substring(tmp_path):
    recs = [record("1", "1.png", [[0, 0, 2, 0, 2, 2]]), record("2", "/deep/path/11.png", [])]
    one, eleven = _one_sample(tmp_path, recs, {"11.png": (20, 10)})
    assert (one.id, eleven.id) == ("1.png", "11.png")
    with pytest.raises(SampleError) as exc:
        one.load_image()
    assert exc.value.where == str(one.image_path) and "not found" in exc.value.problem
    assert eleven.load_image().shape == (10, 20, 3)
    write_blank(one.image_path, 30, 5)
    assert one.load_image().shape == (5, 30, 3)
    assert eleven.load_image().shape == (10, 20, 3)


def test_windows_style_path_uses_base_name(tmp_path):
    (s,) = _one_sample(tmp_path, [record("1", "C:\\data\\imgs\\w.png", [])], {"w.png": (3, 3)})
    assert s.id == "w.png" and s.error is None and s.load_image().shape == (3, 3, 3)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_byte_order_marks(tmp_path, encoding):
    sc = make_tree(tmp_path, [], {"a.png": (4, 4)})
    ann = sc / "test" / "annotations" / "test.json"
    ann.write_bytes(json.dumps([record("1", "a.png", [])], ensure_ascii=False).encode(encoding))
    assert [s.id for s in SynthScars(sc, "test").samples()] == ["a.png"]


def test_fingerprint_follows_annotation_bytes(tmp_path):
    recs = [record("1", "a.png", [[0, 0, 2, 0, 2, 2]])]
    sc = make_tree(tmp_path, recs, {"a.png": (4, 4)})
    fp1 = SynthScars(sc, "test").fingerprint()
    assert SynthScars(sc.parent, "test").fingerprint() == fp1
    recs[0]["1"]["caption"] = "changed"
    make_tree(tmp_path, recs)
    assert SynthScars(sc, "test").fingerprint() != fp1


# --------------------------------------------------------------------------------------------
# bad input


def test_duplicate_file_name_is_one_sample_with_the_union(tmp_path):
    # LEGION's generate_mask fills every record whose img_file_name holds the image name (its
    # break only leaves the loop over one record's keys): record 7's square (columns/rows
    # 0..2) and record 8's (5..7) are both the ground truth; record 10 adds nothing
    first_sq, second_sq = [0, 0, 2, 0, 2, 2, 0, 2], [5, 5, 7, 5, 7, 7, 5, 7]
    recs = [record("7", "a.png", [first_sq]), record("8", "/x/y/a.png", [second_sq]),
            record("9", "b.png", []), record("10", "a.png", [])]
    sc = make_tree(tmp_path, recs, {"a.png": (8, 8), "b.png": (4, 4)})
    samples = SynthScars(sc, "test").samples()
    assert [s.id for s in samples] == ["a.png", "b.png"]
    a, b = samples
    assert a.error is None and a.meta["annotation_id"] == "7" and a.reference == "caption of a.png"
    assert a.meta["n_regions"] == len(a.regions) == 2
    (warning,) = a.warnings
    ann = str(sc / "test" / "annotations" / "test.json")
    assert warning.startswith("duplicate_record: ") and ann in warning
    assert "annotation '8' (record #1)" in warning and "annotation '10' (record #3)" in warning
    assert "first record (annotation '7')" in warning and "union" in warning
    want = np.zeros((8, 8), dtype=bool)
    want[0:3, 0:3] = True
    want[5:8, 5:8] = True
    assert np.array_equal(a.load_mask(8, 8), want)
    assert np.array_equal(a.load_mask(8, 8), legion_mask(recs[0]["7"], 8, 8) | legion_mask(recs[1]["8"], 8, 8))
    assert b.warnings == () and b.error is None


def test_duplicate_with_a_broken_record_fails_the_image(tmp_path):
    # the union cannot be built when one of the records naming the image is broken
    broken = {"6": {"img_file_name": "c.png", "refs": "none"}}
    for recs in ([broken, record("5", "c.png", [])], [record("5", "c.png", []), broken]):
        sc = make_tree(tmp_path, recs, {"c.png": (4, 4)})
        (s,) = SynthScars(sc, "test").samples()
        assert s.error and "annotation '6'" in s.error and "'refs' is a JSON string" in s.error
        assert str(sc / "test" / "annotations" / "test.json") in s.error
        assert len(s.warnings) == 1 and "duplicate_record" in s.warnings[0]
    real = {"7": {"img_file_name": "c.png", "label": "real", "caption": "fine"}}
    sc = make_tree(tmp_path, [record("5", "c.png", []), real], {"c.png": (4, 4)})
    (s,) = SynthScars(sc, "test").samples()
    assert s.error and "annotation '7': labels image 'c.png' otherwise than annotation '5'" in s.error


BROKEN = {
    "not-an-object": ("oops", "record #1"),
    "two-keys": ({"5": {"img_file_name": "x.png", "refs": []}, "6": {}}, "record #1"),
    "record-not-object": ({"5": [1, 2]}, "'5'"),
    "no-file-name": ({"5": {"caption": "c", "refs": []}}, "'5'"),
    "file-name-number": ({"5": {"img_file_name": 3, "refs": []}}, "'5'"),
    "file-name-dir-only": ({"5": {"img_file_name": "/a/b/", "refs": []}}, "'5'"),
    "refs-not-list": ({"5": {"img_file_name": "x.png", "refs": "none"}}, "'5'"),
    "refs-missing": ({"5": {"img_file_name": "x.png"}}, "'5'"),
    "ref-not-object": ({"5": {"img_file_name": "x.png", "refs": [3]}}, "'5'"),
    "segmentation-null": ({"5": {"img_file_name": "x.png", "refs": [
        {"sentence": "s", "explanation": "e", "bbox": None, "segmentation": None}]}}, "'5'"),
    "coordinate-string": ({"5": {"img_file_name": "x.png", "refs": [
        {"sentence": "s", "segmentation": [[0, 0, "3", 0, 3, 3]]}]}}, "'5'"),
    "point-pairs": ({"5": {"img_file_name": "x.png", "refs": [
        {"sentence": "s", "segmentation": [[[0, 0], [3, 0], [3, 3]]]}]}}, "'5'"),
    "sentence-not-string": ({"5": {"img_file_name": "x.png", "refs": [
        {"sentence": 4, "segmentation": []}]}}, "'5'"),
    "bad-label": ({"5": {"img_file_name": "x.png", "refs": [], "label": "maybe"}}, "'5'"),
    "real-with-refs": ({"5": {"img_file_name": "x.png", "label": "real", "refs": [
        {"sentence": "s", "segmentation": [[0, 0, 3, 0, 3, 3]]}]}}, "'5'"),
    "caption-not-string": ({"5": {"img_file_name": "x.png", "refs": [], "caption": ["a"]}}, "'5'"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_record_becomes_failed_sample(tmp_path, case):
    item, names = BROKEN[case]
    recs = [record("1", "good.png", []), item, record("3", "good2.png", [])]
    sc = make_tree(tmp_path, recs, {"good.png": (4, 4), "good2.png": (4, 4), "x.png": (4, 4)})
    samples = SynthScars(sc, "test").samples()
    assert len(samples) == 3  # never dropped
    assert len({s.id for s in samples}) == 3
    assert samples[0].error is None and samples[2].error is None
    broken = samples[1]
    ann = str(sc / "test" / "annotations" / "test.json")
    assert broken.error and ann in broken.error and names in broken.error, broken.error
    with pytest.raises(SampleError) as exc:
        broken.load_image()
    assert broken.error in str(exc.value)


def test_broken_record_next_to_good_one(tmp_path):
    recs = [record("1", "good.png", [[0, 0, 2, 0, 2, 2, 0, 2]]), {"2": {"img_file_name": "x.png"}}]
    good, broken = _one_sample(tmp_path, recs, {"good.png": (4, 4)})
    assert good.error is None and good.load_mask(4, 4).sum() == 9
    assert broken.id == "annotation:2" and "no 'refs'" in broken.error


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("poly, problem", [
    ([0, 0, 3, 3], "at least 3"),
    ([0, 0, 3, 0, 3], "odd number"),
    ([0, 0, float("nan"), 0, 3, 3], "NaN"),
    ([0, 0, float("inf"), 0, 3, 3], "infinite"),
])
def test_bad_polygon_raises_naming_the_image(tmp_path, poly, problem, strict):
    # not a region at all: refused whether or not geometry past the border is clipped
    sc = make_tree(tmp_path, [], {"p.png": (32, 24)},
                   raw=json.dumps([record("1", "p.png", [poly])]))  # NaN -> NaN literal
    (s,) = SynthScars(sc, "test", strict=strict).samples()
    assert s.error is None
    with pytest.raises(SampleError) as exc:
        s.load_mask(24, 32)
    assert exc.value.where == str(sc / "test" / "images" / "p.png")
    assert problem in exc.value.problem


def test_coordinates_past_int32_refused(tmp_path):
    # float32 -> int32 has no value for 3e9 (LEGION's cast is undefined there)
    (s,) = _one_sample(tmp_path, [record("1", "p.png", [[0, 0, 3e9, 0, 3, 3]])], {"p.png": (32, 24)})
    with pytest.raises(SampleError, match="int32 range"):
        s.load_mask(24, 32)


@pytest.mark.parametrize("poly, rows, cols", [
    # wholly outside (right/below): nothing filled
    ([100, 100, 140, 100, 140, 140], None, None),
    # wholly left of column 0 (negative x): nothing filled
    ([-50, 0, -40, 0, -40, 5], None, None),
    # rectangle x 28..60, y 20..30 on 32 x 24: clipped to columns 28..31, rows 20..23
    ([28, 20, 60, 20, 60, 30, 28, 30], (20, 24), (28, 32)),
])
def test_polygon_far_outside_is_clipped_with_a_warning(tmp_path, poly, rows, cols):
    sc = make_tree(tmp_path, [record("1", "p.png", [poly])], {"p.png": (32, 24)})
    (s,) = SynthScars(sc, "test").samples()
    warnings: list[str] = []
    got = s.load_mask(24, 32, warnings)
    want = np.zeros((24, 32), dtype=bool)
    if rows:
        want[rows[0]:rows[1], cols[0]:cols[1]] = True
    assert np.array_equal(got, want)
    assert warnings == ["geometry_clipped: 1 of 1 polygons reach past the 32x24 (W x H) image "
                        "border, filled clipped as LEGION's cv2.fillPoly does"]
    (strict,) = SynthScars(sc, "test", strict="true").samples()
    with pytest.raises(SampleError, match="outside the 32x24") as exc:
        strict.load_mask(24, 32)
    assert exc.value.where == str(sc / "test" / "images" / "p.png")


def test_polygon_slightly_past_border_is_clipped(tmp_path):
    # annotation tools put vertices a little past the edge; LEGION's fillPoly clips them
    # (within the tolerance strict=true accepts them too); an inside polygon is not counted
    inside, past = [1, 1, 3, 1, 3, 3], [-1.5, -1, 9.7, -1, 9.7, 4, -1.5, 4]
    sc = make_tree(tmp_path, [record("1", "e.png", [inside, past])], {"e.png": (8, 6)})
    want = np.zeros((6, 8), dtype=bool)
    want[0:5, :] = True
    for strict in ("false", "true"):
        (s,) = SynthScars(sc, "test", strict=strict).samples()
        warnings: list[str] = []
        assert np.array_equal(s.load_mask(6, 8, warnings), want)
        assert len(warnings) == 1 and warnings[0].startswith("geometry_clipped: 1 of 2 polygons")


def test_polygon_on_the_last_pixel_is_not_clipped(tmp_path):
    # vertices at x = 7.9 -> column 7 = W - 1: inside, no warning
    (s,) = _one_sample(tmp_path, [record("1", "e.png", [[0, 0, 7.9, 0, 7.9, 5.9]])], {"e.png": (8, 6)})
    warnings: list[str] = []
    assert s.load_mask(6, 8, warnings).any() and warnings == []


@pytest.mark.parametrize("value, expected", [
    ("true", True), ("True", True), ("1", True), ("yes", True), (True, True),
    ("false", False), ("0", False), ("no", False), (False, False),
])
def test_strict_option_values(tmp_path, value, expected):
    sc = make_tree(tmp_path, [record("1", "a.png", [])], {"a.png": (4, 4)})
    ds = create_dataset("synthscars", data_root=sc, split="test", strict=value)
    assert ds.strict is expected
    assert all(s.clip_geometry is not expected for s in ds.samples())
    plain = SynthScars(sc, "test")
    assert (ds.fingerprint() == plain.fingerprint()) is not expected


def test_strict_option_refuses_a_non_boolean(tmp_path):
    with pytest.raises(BenchError, match=r"synthscars: option strict='maybe' is not a boolean"):
        SynthScars(tmp_path, "test", strict="maybe")


@pytest.mark.parametrize("suffix, fmt", [(".png", "PNG"), (".jpg", "JPEG")])
def test_truncated_image_raises_naming_the_file(tmp_path, suffix, fmt):
    name = "t" + suffix
    sc = make_tree(tmp_path, [record("1", name, [])])
    path = sc / "test" / "images" / name
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    (s,) = SynthScars(sc, "test").samples()
    with pytest.raises(SampleError) as exc:
        s.load_image()
    assert exc.value.where == str(path) and "cannot decode" in exc.value.problem


def test_non_json_file(tmp_path):
    sc = make_tree(tmp_path, [], raw="[{\"1\": {\"img_file_name\": ")
    ann = sc / "test" / "annotations" / "test.json"
    with pytest.raises(BenchError, match="not valid JSON") as exc:
        SynthScars(sc, "test").samples()
    assert str(ann) in str(exc.value)


@pytest.mark.parametrize("top", [{"1": {"img_file_name": "a.png"}}, "text", 3, None])
def test_wrong_top_level_type(tmp_path, top):
    sc = make_tree(tmp_path, [], raw=json.dumps(top))
    with pytest.raises(BenchError, match="top level") as exc:
        SynthScars(sc, "test").samples()
    assert str(sc / "test" / "annotations" / "test.json") in str(exc.value)


def _assert_fix_hint(exc):
    text = str(exc.value)
    assert "bench data fetch synthscars" in text and "--data-root" in text


def test_missing_data_root(tmp_path):
    with pytest.raises(DataMissingError) as exc:
        SynthScars(None, "test").samples()
    _assert_fix_hint(exc)
    with pytest.raises(DataMissingError) as exc:
        SynthScars(tmp_path / "nowhere", "test").samples()
    assert "nowhere" in str(exc.value)
    _assert_fix_hint(exc)


def test_missing_split_folder(tmp_path):
    sc = make_tree(tmp_path, [], split="train")
    with pytest.raises(DataMissingError) as exc:
        SynthScars(sc, "test").samples()
    assert "test/" in str(exc.value) and "train" in str(exc.value)
    _assert_fix_hint(exc)


def test_missing_annotation_file_names_both_spellings(tmp_path):
    sc = make_tree(tmp_path, [])
    (sc / "test" / "annotations" / "test.json").unlink()
    with pytest.raises(DataMissingError) as exc:
        SynthScars(sc, "test").samples()
    assert "annotations/test.json" in str(exc.value) and "annoations/test.json" in str(exc.value)
    _assert_fix_hint(exc)


def test_missing_image_folder(tmp_path):
    sc = make_tree(tmp_path, [])
    (sc / "test" / "images").rmdir()
    with pytest.raises(DataMissingError) as exc:
        SynthScars(sc, "test").samples()
    assert str(sc / "test" / "images") in str(exc.value)


def test_missing_override_files(tmp_path):
    sc = make_tree(tmp_path, [])
    with pytest.raises(DataMissingError, match="nope.json"):
        SynthScars(sc, "test", annotations=tmp_path / "nope.json").samples()
    with pytest.raises(DataMissingError, match="noimg"):
        SynthScars(sc, "test", images=tmp_path / "noimg").samples()


def test_unknown_option_refused(tmp_path):
    with pytest.raises(BenchError, match="annotation"):
        SynthScars(tmp_path, "test", annotation="typo.json")
