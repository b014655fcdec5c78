"""LOKI loader and its text cleaning: the real annotation file (skipped when absent), encoding
detection, broken records, id subsets, masks vs an independent rasteriser (PIL ImageDraw), and
image modes through the loader."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from bench.errors import BenchError, DataMissingError, SampleError
from bench.io.imageio import image_size, load_binary_mask_png, write_png
from bench.metrics.localization import confusion_counts, f1, miou
from bench.core.registry import DATASETS, create_dataset
from bench.datasets.text_clean import LOKI_CLEANING, clean_loki_text
from helpers import shared_real_file

REAL_NAME = "loki_open_ended_vqa.json"
#: Independent detector of the translator's chatter (not the cleaner's rules).
BOILERPLATE = re.compile(r"translat|Certainly|Sure, here", re.IGNORECASE)


# -- helpers --------------------------------------------------------------------------------

def record(rid: str, file: str, boxes: list[list[float]], glob: str = "", descs: list[str] | None = None) -> dict:
    descs = descs or [f"region {k} of {rid}" for k in range(len(boxes))]
    return {
        "image_path": f"media_data/image/{file}",
        "problems": {"global": [{"desc": glob}],
                     "regional": [{"region": b, "desc": d} for b, d in zip(boxes, descs)]},
        "id": rid, "question": "q", "choices": [], "answer": "", "modality": "image-text",
        "question_type": "image_open_ended_vqa", "metric": "model-as-judge",
    }


def write_json(path: Path, records: list, encoding: str = "utf-16") -> Path:
    """``utf-16`` writes Python's native-order BOM + text, as the LOKI release (LE with BOM)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(json.dumps(records, ensure_ascii=False, indent=1).encode(encoding))
    return path


def reference_mask(boxes, h: int, w: int) -> np.ndarray:
    """LEGION's rule drawn independently: PIL's rectangle fills both corners inclusive and
    clips to the image."""
    img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(img)
    for x, y, bw, bh in boxes:
        draw.rectangle([int(x), int(y), int(x + bw), int(y + bh)], fill=1)
    return np.asarray(img) > 0


def raw_records(path: Path) -> list[dict]:
    return json.loads(path.read_bytes().decode("utf-16"))  # the codec reads the BOM itself


# -- the real file --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_root(tmp_path_factory) -> Path:
    """A data root holding the real JSON (read from shared/, never copied into the repo) and
    blank images of plausible sizes: the box extents rounded up to 64 px, except every 10th
    image, cut exactly at int(max(x + w)) x int(max(y + h)) so its last boxes are clipped."""
    src = shared_real_file(REAL_NAME)
    root = tmp_path_factory.mktemp("loki")
    (root / "data_json" / "image").mkdir(parents=True)
    (root / "data_json" / "image" / "open_ended_vqa.json").symlink_to(src)
    img_dir = root / "media_data" / "image"
    img_dir.mkdir(parents=True)
    for k, rec in enumerate(raw_records(src)):
        boxes = [r["region"] for r in rec["problems"]["regional"]]
        right = max(x + w for x, y, w, h in boxes)
        bottom = max(y + h for x, y, w, h in boxes)
        if k % 10 == 0:
            w, h = int(right), int(bottom)
        else:
            w, h = 64 * math.ceil(right / 64 + 0.01), 64 * math.ceil(bottom / 64 + 0.01)
        name = Path(rec["image_path"]).name
        fmt = "PNG" if name.endswith(".png") else "JPEG"
        Image.new("RGB", (w, h), (90, 120, 150)).save(img_dir / name, format=fmt)
    return root


def test_real_file_counts_and_encoding(real_root):
    src = shared_real_file(REAL_NAME)
    assert src.read_bytes()[:2] == b"\xff\xfe"  # the fact the detection must find
    ds = create_dataset("loki", data_root=real_root)
    samples = ds.samples()
    assert ds.encoding == "utf-16-le"
    assert len(samples) == 229
    assert sum(len(s.regions) for s in samples) == 687
    assert [s.error for s in samples if s.error] == []
    assert all(s.label == 1 and s.mask_rule == "box_inclusive" for s in samples)
    raw = raw_records(src)
    assert [s.id for s in samples] == [r["id"] for r in raw]
    assert len({s.id for s in samples}) == 229
    assert all(s.file_name == Path(r["image_path"]).name for s, r in zip(samples, raw))
    assert all(s.image_path == real_root / r["image_path"] for s, r in zip(samples, raw))
    assert all(s.meta["reference_cleaning"] == LOKI_CLEANING for s in samples)
    boxes = [tuple(x["region"]) for r in raw for x in r["problems"]["regional"]]
    assert [r.box for s in samples for r in s.regions] == boxes


def test_real_file_cleaning_removes_every_boilerplate(real_root):
    raw = raw_records(shared_real_file(REAL_NAME))
    glob = [g["desc"] for r in raw for g in r["problems"]["global"]]
    regional = [x["desc"] for r in raw for x in r["problems"]["regional"]]
    # docs/protocol.md §4: 93 of 229 global and 112 regional descriptions carry the chatter.
    assert sum(bool(BOILERPLATE.search(t)) for t in glob) == 93
    assert sum(bool(BOILERPLATE.search(t)) for t in regional) == 112
    for t in glob + regional:
        cleaned = clean_loki_text(t)
        assert not BOILERPLATE.search(cleaned), (t, cleaned)
        assert clean_loki_text(cleaned) == cleaned  # idempotent
        if not BOILERPLATE.search(t):  # texts without chatter only get whitespace collapsed
            assert cleaned == " ".join(t.split())
        else:
            assert cleaned and len(cleaned) < len(t)
            assert not cleaned.startswith('"') and not cleaned.endswith('"')
    samples = create_dataset("loki", data_root=real_root).samples()
    for s in samples:
        assert s.reference is not None and not BOILERPLATE.search(s.reference)
        assert not BOILERPLATE.search(s.meta["global_explanation"])
        for region in s.regions:
            assert region.explanation in s.reference
    assert sum(not r.explanation for s in samples for r in s.regions) == 1  # one empty desc in the file
    # Reference = global text first, then the regional texts, one space between.
    s0 = next(s for s in samples if s.meta["global_explanation"])
    assert s0.reference == " ".join([s0.meta["global_explanation"]] + [r.explanation for r in s0.regions])


@pytest.mark.parametrize("raw, expected", [
    # hand-worked from texts in the real file
    ('The text "配图有水印" translates to "The image has a watermark" in English.', "The image has a watermark"),
    ('The text translates to: "There is an unexpectedly large gap between the lines."',
     "There is an unexpectedly large gap between the lines."),
    ('Certainly! The translation of the text is:\n\n"The grassland appears above the sea level."',
     "The grassland appears above the sea level."),
    ("Sure, here are the translations of the text descriptions into English:\n\n1. The paragraph "
     "boundaries are not aligned.\n2. Occasionally, there are larger gaps.",
     "1. The paragraph boundaries are not aligned. 2. Occasionally, there are larger gaps."),
    ('The translation of "屋顶结构错误" into English is "Roof structure error."', "Roof structure error."),
    ('The English translation of "孤立出现的英文文本" is "Isolated English text."', "Isolated English text."),
    ('The text "意义不明的物体" translates to "an object of unclear meaning" or "an object with an '
     'unclear purpose" in English.', "an object of unclear meaning"),
    ("The text descriptions you provided are in Chinese, and they say that the first line of text is "
     "incomplete, with only the lower half visible. If you have specific text that you would like "
     "translated, please provide it, and I will be happy to help with the translation.",
     "The first line of text is incomplete, with only the lower half visible."),
    ('The text describes an issue where there are large spaces. The translation is:\n\n"There are large spaces."',
     "There are large spaces."),
    # no chatter: Chinese kept, whitespace collapsed, inner quotes untouched
    ("图像中的  手指\n数量不对", "图像中的 手指 数量不对"),
    ('The sign says "OPEN" but the "door" is shut.', 'The sign says "OPEN" but the "door" is shut.'),
    ("", ""),
    (None, ""),
])
def test_clean_loki_text_cases(raw, expected):
    assert clean_loki_text(raw) == expected


# -- masks and scoring on the real file -----------------------------------------------------

def test_real_file_masks_match_independent_rasteriser(real_root):
    samples = create_dataset("loki", data_root=real_root).samples()
    clipped = 0
    for s in samples[::7] + samples[::10]:
        h, w = image_size(s.image_path)
        boxes = [r.box for r in s.regions]
        got = s.load_mask(h, w)
        assert got.dtype == bool and got.shape == (h, w)
        np.testing.assert_array_equal(got, reference_mask(boxes, h, w), err_msg=s.id)
        clipped += any(int(x + bw) >= w or int(y + bh) >= h for x, y, bw, bh in boxes)
    assert clipped > 0  # the clipping path was exercised


def test_prediction_equal_to_reference_scores_f1_one_on_every_image(real_root, tmp_path):
    """The "done when" check: every image's reference mask, written in LEGION's prediction layout
    (mask.png 0/255) and read back, scores F1 = 1 and mIoU = 1; a shifted copy does not."""
    samples = create_dataset("loki", data_root=real_root).samples()
    assert len(samples) == 229
    shifted_f1 = []
    for s in samples:
        h, w = image_size(s.image_path)
        gt = s.load_mask(h, w)
        assert gt.any()
        out = tmp_path / s.file_name
        out.mkdir()
        write_png(out / "mask.png", gt)
        pred = load_binary_mask_png(out / "mask.png", (h, w))
        counts = confusion_counts(pred, gt)
        assert f1(*counts) == 1.0, s.id
        assert miou(*counts) == pytest.approx(1.0, abs=1e-6)
        shifted_f1.append(float(f1(*confusion_counts(np.roll(gt, 7, axis=1), gt))))
    assert max(shifted_f1) < 1.0


def test_box_rule_hand_worked():
    ds_boxes = [(0.5, 1.9, 2.2, 0.2)]  # cols int(0.5)=0 .. int(2.7)=2, rows int(1.9)=1 .. int(2.1)=2
    from bench.core.types import Region, Sample

    s = Sample(id="x", image_path=None, regions=tuple(Region(box=b) for b in ds_boxes), mask_rule="box_inclusive")
    expected = np.zeros((5, 5), bool)
    expected[1:3, 0:3] = True
    np.testing.assert_array_equal(s.load_mask(5, 5), expected)


# -- encodings --------------------------------------------------------------------------------

RECS = [record("a", "a.png", [[1, 2, 3, 4]], glob="Sure, here is the translation of the text descriptions into English:\n\n\"Odd light.\""),
        record("b", "b.jpg", [[0, 0, 5, 5], [2.5, 2.5, 1, 1]], descs=["手 has six fingers", 'The text translates to: "Bad text."'])]


@pytest.mark.parametrize("codec, expected", [
    ("utf-16", "utf-16-le"),       # BOM + little-endian (Python's native order here), as released
    ("utf-16-be", "utf-16-be"),    # no BOM: found from the zero-byte pattern
    ("utf-16-le", "utf-16-le"),
    ("utf-8", "utf-8"),
    ("utf-8-sig", "utf-8-sig"),
    ("utf-32", "utf-32-le"),
])
def test_encoding_is_detected(tmp_path, codec, expected):
    if codec == "utf-16-be":
        data = b"\xfe\xff" + json.dumps(RECS, ensure_ascii=False).encode("utf-16-be")  # BE with BOM
    else:
        data = json.dumps(RECS, ensure_ascii=False).encode(codec)
    (tmp_path / "open_ended_vqa.json").write_bytes(data)
    ds = create_dataset("loki", data_root=tmp_path)
    samples = ds.samples()
    assert ds.encoding == expected
    assert [s.id for s in samples] == ["a", "b"]
    assert samples[0].reference == "Odd light. region 0 of a"
    assert samples[1].reference == "手 has six fingers Bad text."


def test_utf16_without_bom_detected(tmp_path):
    (tmp_path / "open_ended_vqa.json").write_bytes(json.dumps(RECS).encode("utf-16-be"))
    ds = create_dataset("loki", data_root=tmp_path)
    assert [s.id for s in ds.samples()] == ["a", "b"] and ds.encoding == "utf-16-be"


def test_wrong_encoding_is_a_clear_error(tmp_path):
    path = tmp_path / "open_ended_vqa.json"
    path.write_bytes(json.dumps(RECS, ensure_ascii=False).replace("手", "é").encode("latin-1"))
    with pytest.raises(BenchError, match=r"open_ended_vqa\.json: not valid utf-8 text"):
        create_dataset("loki", data_root=tmp_path).samples()


def test_truncated_utf16_is_a_clear_error(tmp_path):
    path = tmp_path / "open_ended_vqa.json"
    path.write_bytes(json.dumps(RECS).encode("utf-16")[:-1])  # odd byte count
    with pytest.raises(BenchError, match=r"open_ended_vqa\.json: not valid utf-16-le text"):
        create_dataset("loki", data_root=tmp_path).samples()


def test_not_json_is_a_clear_error(tmp_path):
    (tmp_path / "open_ended_vqa.json").write_bytes('[{"id": "a",'.encode("utf-16"))
    with pytest.raises(BenchError, match=r"open_ended_vqa\.json: not valid JSON"):
        create_dataset("loki", data_root=tmp_path).samples()


# -- locating files ---------------------------------------------------------------------------

def test_annotation_places_and_override(tmp_path):
    with pytest.raises(DataMissingError, match="opendatalab/LOKI"):
        create_dataset("loki", data_root=tmp_path).samples()
    with pytest.raises(DataMissingError, match="does not exist"):
        create_dataset("loki", data_root=tmp_path / "nope").samples()
    other = write_json(tmp_path / "elsewhere" / "x.json", RECS)
    ds = create_dataset("loki", data_root=tmp_path, annotations=other)
    assert [s.id for s in ds.samples()] == ["a", "b"]
    assert ds.annotation_files() == [other]
    write_json(tmp_path / "data_json" / "image" / "open_ended_vqa.json", RECS[:1])
    assert [s.id for s in create_dataset("loki", data_root=tmp_path).samples()] == ["a"]
    write_json(tmp_path / "open_ended_vqa.json", RECS)  # the root wins over data_json/image/
    assert len(create_dataset("loki", data_root=tmp_path).samples()) == 2
    imgs = create_dataset("loki", data_root=tmp_path, images=tmp_path / "pics").samples()
    assert imgs[0].image_path == tmp_path / "pics" / "a.png"


def test_unknown_option_and_split(tmp_path):
    with pytest.raises(BenchError, match="unknown option"):
        create_dataset("loki", data_root=tmp_path, imgs="x")
    with pytest.raises(BenchError, match="split"):
        create_dataset("loki", data_root=tmp_path, split="train")
    assert "loki" in DATASETS.names()


# -- broken records ---------------------------------------------------------------------------

def test_broken_records_fail_alone(tmp_path):
    nan_rec = record("nan", "n.png", [[1, 1, 2, 2]])
    nan_rec["problems"]["regional"][0]["region"] = [1.0, float("nan"), 2.0, 2.0]
    no_regions = record("empty", "e.png", [])
    neg = record("neg", "g.png", [[5, 5, -3, 4]])
    no_id = record("", "i.png", [[1, 1, 1, 1]])
    bad_box = record("short", "s.png", [[1, 2, 3]])
    recs = [RECS[0], no_regions, neg, nan_rec, no_id, bad_box, RECS[1]]
    path = write_json(tmp_path / "open_ended_vqa.json", recs)  # json.dumps writes NaN as NaN
    samples = create_dataset("loki", data_root=tmp_path).samples()
    assert len(samples) == len(recs)  # nothing dropped
    by_id = {s.id: s for s in samples}
    assert by_id["a"].error is None and by_id["b"].error is None
    cases = {"empty": "no regions", "neg": "negative size", "nan": "NaN", "record:4": "missing or empty 'id'",
             "short": "expected \\[x, y, w, h\\]"}
    for sid, problem in cases.items():
        err = by_id[sid].error
        assert err and re.search(problem, err), (sid, err)
        assert str(path) in err
        with pytest.raises(SampleError) as info:
            by_id[sid].load_image()
        assert re.search(problem, str(info.value))
    assert str(tmp_path / "media_data" / "image" / "g.png") in str(
        pytest.raises(SampleError, by_id["neg"].load_image).value)


def test_duplicate_image_first_record_wins(tmp_path):
    # LEGION's generate_loki_mask breaks at the first record whose image_path holds the file:
    # record "b" (#1) is b.jpg's ground truth; "b2" (#2, same file) and the repeat of "b" (#3)
    # are ignored and named. Box [0, 0, 5, 5] fills columns/rows 0..5 and [2.5, 2.5, 1, 1]
    # fills 2..3, so the mask is the 6 x 6 block; b2's box [8, 8, 1, 1] is not in it.
    other = record("b2", "b.jpg", [[8, 8, 1, 1]])
    path = write_json(tmp_path / "open_ended_vqa.json", [RECS[0], RECS[1], other, RECS[1]])
    samples = create_dataset("loki", data_root=tmp_path).samples()
    assert [s.id for s in samples] == ["a", "b"]
    b = samples[1]
    (warning,) = b.warnings
    assert warning.startswith("duplicate_record: image file 'b.jpg'") and str(path) in warning
    assert "record 'b2' (#2)" in warning and "record 'b' (#3)" in warning
    assert "first record ('b', #1)" in warning
    want = np.zeros((10, 10), bool)
    want[0:6, 0:6] = True
    np.testing.assert_array_equal(b.load_mask(10, 10), want)
    assert samples[0].warnings == ()


def test_duplicate_id_on_another_image_is_kept(tmp_path):
    # LEGION matches by image file, so both images are scored; the second id gets "#2"
    path = write_json(tmp_path / "open_ended_vqa.json",
                      [record("x", "one.png", [[0, 0, 1, 1]]), record("x", "two.png", [[1, 1, 1, 1]])])
    one, two = create_dataset("loki", data_root=tmp_path).samples()
    assert (one.id, two.id) == ("x", "x#2") and one.error is None and two.error is None
    assert one.warnings == () and two.file_name == "two.png"
    (warning,) = two.warnings
    assert warning.startswith("duplicate_id: record id 'x' (#1)") and str(path) in warning
    assert "record #0" in warning and "'x#2'" in warning


@pytest.mark.parametrize("box, cols, rows", [
    # partly past the right/bottom edges: x 7..int(12.5)=12 -> 7..9, y 8..int(10)=10 -> 8..9
    ([7, 8, 5.5, 2], (7, 10), (8, 10)),
    # wholly right of a 10-wide image: x1 = int(12) = 12, x2 = min(9, 14) = 9; cv2.rectangle
    # swaps the corners and clips: column 9 only, rows 1..3
    ([12, 1, 2, 2], (9, 10), (1, 4)),
    # wholly above: y1 = max(0, -5) = 0, y2 = int(-5 + 2) = -3: row 0 only, columns 2..4
    ([2, -5, 2, 2], (2, 5), (0, 1)),
])
def test_box_past_the_border_clipped_like_legion(tmp_path, box, cols, rows):
    write_json(tmp_path / "open_ended_vqa.json", [record("c", "c.png", [box])])
    (s,) = create_dataset("loki", data_root=tmp_path).samples()
    warnings: list[str] = []
    want = np.zeros((10, 10), bool)
    want[rows[0]:rows[1], cols[0]:cols[1]] = True
    np.testing.assert_array_equal(s.load_mask(10, 10, warnings), want)
    assert warnings == ["geometry_clipped: 1 of 1 boxes reach past the 10x10 (W x H) image border, "
                        "filled clipped as LEGION's cv2.rectangle does"]
    (strict,) = create_dataset("loki", data_root=tmp_path, strict="true").samples()
    if box[0] >= 10 or box[1] + box[3] < 0:  # wholly outside: strict=true refuses it
        with pytest.raises(SampleError, match="lies outside the 10x10 image"):
            strict.load_mask(10, 10)
    else:
        np.testing.assert_array_equal(strict.load_mask(10, 10), want)


def test_strict_option_and_fingerprint(tmp_path):
    write_json(tmp_path / "open_ended_vqa.json", RECS)
    plain = create_dataset("loki", data_root=tmp_path)
    strict = create_dataset("loki", data_root=tmp_path, strict="yes")
    assert (plain.strict, strict.strict) == (False, True)
    assert all(s.clip_geometry for s in plain.samples())
    assert not any(s.clip_geometry for s in strict.samples())
    assert plain.fingerprint() != strict.fingerprint()
    assert create_dataset("loki", data_root=tmp_path, strict="false").fingerprint() == plain.fingerprint()
    with pytest.raises(BenchError, match=r"loki: option strict='2' is not a boolean"):
        create_dataset("loki", data_root=tmp_path, strict="2")


def test_negative_box_also_refused_at_mask_time():
    from bench.core.types import Region, Sample

    s = Sample(id="x", image_path=Path("x.png"), regions=(Region(box=(1, 1, -2, 3)),), mask_rule="box_inclusive")
    with pytest.raises(SampleError, match="negative size"):
        s.load_mask(10, 10)


# -- id subsets -------------------------------------------------------------------------------

def test_ids_subset(tmp_path):
    recs = [record(f"r{k}", f"f{k}.png", [[k, k, 2, 2]]) for k in range(6)]
    write_json(tmp_path / "open_ended_vqa.json", recs)
    ids = tmp_path / "subset.txt"
    ids.write_text("# LEGION subset\nr4\n\nf1.png   # by file name\nmedia_data/image/f2.png\nr4\n", encoding="utf-8")
    ds = create_dataset("loki", data_root=tmp_path, ids=ids)
    assert [s.id for s in ds.samples()] == ["r1", "r2", "r4"]  # file order
    full_fp = create_dataset("loki", data_root=tmp_path).fingerprint()
    assert ds.fingerprint() != full_fp
    ids.write_text("r1\nnope-1\nr2\nmissing.png\n", encoding="utf-8")
    with pytest.raises(BenchError, match=r"2 of 4 ids match no LOKI record: 'nope-1', 'missing.png'"):
        create_dataset("loki", data_root=tmp_path, ids=ids).samples()
    with pytest.raises(BenchError, match="not found"):
        create_dataset("loki", data_root=tmp_path, ids=tmp_path / "none.txt").samples()


def test_fingerprint_follows_annotation_bytes(tmp_path):
    path = write_json(tmp_path / "open_ended_vqa.json", RECS)
    fp1 = create_dataset("loki", data_root=tmp_path).fingerprint()
    assert create_dataset("loki", data_root=tmp_path).fingerprint() == fp1
    changed = json.loads(json.dumps(RECS))
    changed[0]["problems"]["regional"][0]["region"][0] = 1.5
    write_json(path, changed)
    assert create_dataset("loki", data_root=tmp_path).fingerprint() != fp1


# -- image modes through the loader -----------------------------------------------------------

def _write_mode_images(img_dir: Path) -> dict[str, tuple[int, int, int] | None]:
    """Images in awkward modes and their expected RGB value (None = undecodable)."""
    img_dir.mkdir(parents=True, exist_ok=True)
    Image.new("L", (12, 10), 100).save(img_dir / "grey.png")
    Image.new("RGBA", (12, 10), (10, 20, 30, 0)).save(img_dir / "rgba.png")
    Image.fromarray(np.full((10, 12), 32768, np.uint16)).save(img_dir / "deep.png")  # 16-bit grey
    Image.new("CMYK", (12, 10), (0, 0, 0, 0)).save(img_dir / "cmyk.jpg", quality=95)  # white
    (img_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    # 16-bit: 32768 * 255 / 65535 rounds to 128 (nominal-range scaling)
    return {"grey.png": (100, 100, 100), "rgba.png": (10, 20, 30), "deep.png": (128, 128, 128),
            "cmyk.jpg": (255, 255, 255), "broken.png": None}


def test_image_modes_through_loader(tmp_path):
    expected = _write_mode_images(tmp_path / "media_data" / "image")
    assert Image.open(tmp_path / "media_data" / "image" / "deep.png").mode.startswith("I")
    assert Image.open(tmp_path / "media_data" / "image" / "cmyk.jpg").mode == "CMYK"
    recs = [record(name.split(".")[0], name, [[1, 1, 3, 3]]) for name in expected]
    write_json(tmp_path / "open_ended_vqa.json", recs)
    samples = create_dataset("loki", data_root=tmp_path).samples()
    for s, (name, rgb) in zip(samples, expected.items()):
        if rgb is None:
            with pytest.raises(SampleError) as info:
                s.load_image()
            assert name in str(info.value) and "cannot decode" in str(info.value)
            continue
        img = s.load_image()
        assert img.dtype == np.uint8 and img.shape == (10, 12, 3), name
        assert np.abs(img.astype(int) - np.array(rgb)).max() <= 2, (name, img[0, 0])
        assert s.load_mask(10, 12).sum() == 16  # 4 x 4 inclusive box


# -- suite and end to end -------------------------------------------------------------------

def test_suite_records_the_cleaning_version():
    from bench.suites import get_suite

    suite = get_suite("loki")
    assert suite.dataset == "loki" and suite.split == "test"
    assert suite.metrics == ["miou", "f1", "iou_fg", "rouge_l", "css"]
    assert suite.protocol["reference_field"] == "global+regional"
    assert suite.protocol["reference_cleaning"] == LOKI_CLEANING


def test_bench_score_end_to_end_on_an_id_subset(real_root, tmp_path):
    """`bench score --dataset loki` on LEGION-layout masks equal to the reference: F1 = 1 per image."""
    pytest.importorskip("bench.cli.score")
    import pandas as pd

    from bench.cli import main

    samples = create_dataset("loki", data_root=real_root).samples()
    chosen = samples[3:8]
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(s.file_name for s in chosen) + "\n", encoding="utf-8")
    pred = tmp_path / "pred"
    for s in chosen:
        h, w = image_size(s.image_path)
        (pred / s.file_name).mkdir(parents=True)
        write_png(pred / s.file_name / "mask.png", reference_mask([r.box for r in s.regions], h, w))
    out = tmp_path / "out"
    rc = main(["score", "--dataset", "loki", "--data-root", str(real_root), "--dataset-option", f"ids={ids}",
               "--predictions", str(pred), "--format", "legion", "--out", str(out), "--no-progress"])
    assert rc == 0
    df = pd.read_parquet(out / "samples.parquet")
    assert sorted(df["sample_id"]) == sorted(s.id for s in chosen)
    assert (df["status"] == "ok").all() and (df["f1"] == 1.0).all()
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["protocol"]["reference_cleaning"] == LOKI_CLEANING
    assert results["dataset"]["n_samples"] == 5
