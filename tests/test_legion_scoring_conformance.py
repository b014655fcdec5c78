"""Scores equal LEGION's own scoring code (issue 11): ground-truth masks for geometry past the
image border, duplicate records, and the per-image metrics and their means.

Three references:

- hand-worked pixels for LEGION's ``generate_mask`` / ``generate_loki_mask`` rules
  (docs/protocol.md §8) on out-of-border cases, derived in the comments;
- ``protocol``: the rules of docs/protocol.md §4 and §8, written here (SynthScars: float32 ->
  int32 -> ``cv2.fillPoly``, over EVERY record naming the image: the ``break`` in LEGION's
  ``generate_mask`` only leaves the loop over one record's keys, so it is no first match;
  LOKI: the first record naming the image, clamped corners ->
  ``cv2.rectangle(thickness=-1)``) and the §1 metric formulas;
- ``legion``: LEGION's real functions, from the checkout named by the environment variable
  ``BENCH_LEGION_EVAL_REPO`` (a folder holding its first commit's ``evaluate_ours.py`` and
  ``eval/utils.py``). Their module headers import the model stack, so only the function
  definitions needed are taken from the parsed source (``ast``) and run with numpy, cv2, json
  and torch in their namespace; nothing of theirs is stored in this project. Skipped, naming the
  variable, when it is unset.

The real annotation files (``../shared/data/real``) are checked record by record at synthesised
image sizes (the files give none); skipped when absent.
"""

from __future__ import annotations

import ast
import json
import math
import os
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.datasets.loki import Loki
from bench.datasets.synthscars import SynthScars
from bench.errors import SampleError
from bench.metrics.localization import confusion_counts, f1, iou_fg, miou
from bench.core.types import Sample
from helpers import shared_real_file

LEGION_ENV = "BENCH_LEGION_EVAL_REPO"
#: LEGION's functions used here: (file in the checkout, function names)
LEGION_FUNCTIONS = (
    ("evaluate_ours.py", ("calculate_miou", "calculate_miou_without_background", "calculate_f1")),
    ("eval/utils.py", ("generate_mask", "generate_loki_mask")),
)
TOL = 1e-9


# --------------------------------------------------------------------------------------------
# references


def load_legion_functions(root: Path) -> dict[str, Callable]:
    """LEGION's function definitions, executed from its parsed source (module headers skipped)."""
    torch = pytest.importorskip("torch", reason="LEGION's functions build torch tensors")
    namespace: dict[str, Any] = {"np": np, "cv2": cv2, "json": json, "torch": torch}
    found: dict[str, Callable] = {}
    for rel, names in LEGION_FUNCTIONS:
        path = root / rel
        if not path.is_file():
            pytest.fail(f"{LEGION_ENV}={root}: {path} not found (expected LEGION's first-commit checkout)")
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names]
        missing = set(names) - {d.name for d in defs}
        if missing:
            pytest.fail(f"{path}: no top-level function(s) {', '.join(sorted(missing))}")
        exec(compile(ast.Module(body=defs, type_ignores=[]), str(path), "exec"), namespace)
        found.update({name: namespace[name] for name in names})
    return found


class ProtocolReference:
    """docs/protocol.md §8's mask rules and §1's metrics, written out here (independent of bench)."""

    name = "protocol"

    def synthscars_mask(self, gt_path: Path, file_name: str, h: int, w: int) -> np.ndarray:
        mask = np.zeros((h, w), np.uint8)
        for item in json.loads(gt_path.read_text(encoding="utf-8")):
            (rec,) = item.values()
            if Path(rec["img_file_name"]).name == file_name:  # every exact match
                for ref in rec["refs"]:
                    for seg in ref["segmentation"]:
                        pts = np.array(seg, np.float32).reshape(-1, 2).astype(np.int32)
                        cv2.fillPoly(mask, [pts], 1)
        return mask.astype(bool)

    def loki_mask(self, gt_path: Path, file_name: str, h: int, w: int) -> np.ndarray:
        mask = np.zeros((h, w), np.uint8)
        for rec in json.loads(gt_path.read_bytes().decode("utf-16")):
            if Path(rec["image_path"]).name == file_name:  # the first exact match only
                for region in rec["problems"]["regional"]:
                    x, y, bw, bh = region["region"]
                    p1 = (max(0, int(x)), max(0, int(y)))
                    p2 = (min(w - 1, int(x + bw)), min(h - 1, int(y + bh)))
                    cv2.rectangle(mask, p1, p2, 1, thickness=-1)
                break
        return mask.astype(bool)

    def metrics(self, pred: np.ndarray, gt: np.ndarray) -> tuple[float, float, float]:
        """(miou, f1, artifact-only iou) for bool masks."""
        ious = []
        for c in (False, True):
            ious.append(np.sum((pred == c) & (gt == c)) / (np.sum((pred == c) | (gt == c)) + 1e-6))
        tp, fp, fn = np.sum(pred & gt), np.sum(pred & ~gt), np.sum(~pred & gt)
        if tp == fp == fn == 0:
            f = 1.0
        else:
            p = tp / (tp + fp) if tp + fp else 0.0
            r = tp / (tp + fn) if tp + fn else 0.0
            f = 0.0 if p + r == 0 else 2 * p * r / (p + r)
        return (ious[0] + ious[1]) / 2, float(f), ious[1]


class LegionReference:
    """LEGION's own functions (first commit), called as its evaluate_ours.py calls them."""

    name = "legion"

    def __init__(self, fns: dict[str, Callable]):
        import torch

        self.fns, self.torch = fns, torch

    def synthscars_mask(self, gt_path: Path, file_name: str, h: int, w: int) -> np.ndarray:
        return self.fns["generate_mask"](str(gt_path), file_name, h, w).numpy().astype(bool)

    def loki_mask(self, gt_path: Path, file_name: str, h: int, w: int) -> np.ndarray:
        return self.fns["generate_loki_mask"](str(gt_path), file_name, h, w).numpy().astype(bool)

    def metrics(self, pred: np.ndarray, gt: np.ndarray) -> tuple[float, float, float]:
        # evaluate_ours.py: pred = torch.any(logits > 0, dim=0).int(); gt = a long tensor
        p = self.torch.from_numpy(pred.astype(np.int32))
        g = self.torch.from_numpy(gt.astype(np.int64))
        return (self.fns["calculate_miou"](p, g), self.fns["calculate_f1"](p, g),
                self.fns["calculate_miou_without_background"](p, g))


@pytest.fixture(scope="module")
def legion() -> LegionReference:
    root = os.environ.get(LEGION_ENV)
    if not root:
        pytest.skip(f"{LEGION_ENV} is not set (a folder holding LEGION's first-commit "
                    "evaluate_ours.py and eval/utils.py)")
    return LegionReference(load_legion_functions(Path(root).expanduser()))


@pytest.fixture(params=["protocol", "legion"])
def reference(request):
    return ProtocolReference() if request.param == "protocol" else request.getfixturevalue("legion")


def ours(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float, float]:
    counts = confusion_counts(pred, gt)
    return float(miou(*counts)), float(f1(*counts)), float(iou_fg(*counts))


# --------------------------------------------------------------------------------------------
# writing datasets in the two formats


def write_synthscars_json(path: Path, records: list[tuple[str, str, list[list[float]]]]) -> Path:
    """``records``: (annotation id, img_file_name, polygons); one ref per polygon."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = [{aid: {"img_file_name": name, "caption": f"caption {aid}",
                   "refs": [{"sentence": "s", "explanation": "e", "bbox": None, "segmentation": [p]}
                            for p in polys]}}
            for aid, name, polys in records]
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_loki_json(path: Path, records: list[tuple[str, str, list[list[float]]]]) -> Path:
    """``records``: (id, image file name, boxes); UTF-16 with BOM like the release."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = [{"id": rid, "image_path": f"media_data/image/{name}",
             "problems": {"global": [{"desc": "g"}],
                          "regional": [{"region": b, "desc": "r"} for b in boxes]}}
            for rid, name, boxes in records]
    path.write_bytes(json.dumps(data).encode("utf-16"))
    return path


def synthscars_sample(tmp_path: Path, polys: list[list[float]], name: str = "p.png") -> tuple[Sample, Path]:
    ann = write_synthscars_json(tmp_path / "SynthScars" / "test" / "annotations" / "test.json",
                                [("1", name, polys)])
    (tmp_path / "SynthScars" / "test" / "images").mkdir(exist_ok=True)
    (s,) = SynthScars(tmp_path / "SynthScars", "test").samples()
    return s, ann


def loki_sample(tmp_path: Path, boxes: list[list[float]], name: str = "b.png") -> tuple[Sample, Path]:
    ann = write_loki_json(tmp_path / "open_ended_vqa.json", [("r", name, boxes)])
    (s,) = Loki(tmp_path).samples()
    return s, ann


def block(h: int, w: int, rows: tuple[int, int] | None, cols: tuple[int, int] | None) -> np.ndarray:
    """bool H x W, True on rows[0]..rows[1] x cols[0]..cols[1] (inclusive); None = empty."""
    m = np.zeros((h, w), bool)
    if rows is not None:
        m[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1] = True
    return m


# --------------------------------------------------------------------------------------------
# hand-worked pixels (image 6 wide x 5 high unless said)

H, W = 5, 6

POLYGON_CASES = {
    # x 3..10, y 1..3: fillPoly clips at column W-1 = 5 -> columns 3..5, rows 1..3
    "partly-right": ([[3, 1, 10, 1, 10, 3, 3, 3]], block(H, W, (1, 3), (3, 5)), 1),
    # x 2..4, y 3..9: rows clip at H-1 = 4 -> rows 3..4, columns 2..4
    "partly-bottom": ([[2, 3, 4, 3, 4, 9, 2, 9]], block(H, W, (3, 4), (2, 4)), 1),
    # x 7..9 on a 6-wide image: nothing inside
    "wholly-right": ([[7, 0, 9, 0, 9, 2]], block(H, W, None, None), 1),
    # every vertex at negative x: nothing inside
    "wholly-left": ([[-9, 0, -7, 0, -7, 4]], block(H, W, None, None), 1),
    # -0.7 truncates toward zero to 0: vertices (0,0) (2,0) (2,1) (0,1), wholly inside, so
    # columns 0..2, rows 0..1 and NOT counted as clipped
    "minus-0.7-truncates-to-0": ([[-0.7, -0.7, 2.5, -0.7, 2.5, 1.9, -0.7, 1.9]],
                                 block(H, W, (0, 1), (0, 2)), 0),
    # negative x past -1: x -3..1 -> columns 0..1 (clipped), rows 2..3; plus an inside pixel
    # square at (4..5, 0..0): both filled, one of the two polygons clipped
    "negative-x-and-inside": ([[-3, 2, 1, 2, 1, 3, -3, 3], [4, 0, 5, 0, 5, 0.5, 4, 0.5]],
                              block(H, W, (2, 3), (0, 1)) | block(H, W, (0, 0), (4, 5)), 1),
}

BOX_CASES = {
    # x 3 + 10 -> int 13 > W-1: columns 3..5, rows int(1)..int(1+2) = 1..3
    "past-right": ([[3, 1, 10, 2]], block(H, W, (1, 3), (3, 5)), 1),
    # y 2.5 + 7 -> 9 > H-1: rows 2..4, columns int(0.2)..int(1.7) = 0..1
    "past-bottom": ([[0.2, 2.5, 1.5, 7]], block(H, W, (2, 4), (0, 1)), 1),
    # wholly right: x1 = int(8) = 8, x2 = min(5, 9) = 5: cv2.rectangle swaps the corners and
    # clips -> the last column 5, rows 1..2
    "wholly-right": ([[8, 1, 1, 1]], block(H, W, (1, 2), (5, 5)), 1),
    # wholly below: y1 = 7, y2 = min(4, 8) = 4 -> the last row 4, columns 2..3
    "wholly-below": ([[2, 7, 1, 1]], block(H, W, (4, 4), (2, 3)), 1),
    # wholly right and below: the corner pixel (4, 5)
    "wholly-right-below": ([[9, 9, 3, 3]], block(H, W, (4, 4), (5, 5)), 1),
    # negative x: x1 = max(0, int(-2.5) = -2) = 0, x2 = int(-2.5 + 4) = 1 -> columns 0..1, rows 1..2
    "negative-x": ([[-2.5, 1, 4, 1]], block(H, W, (1, 2), (0, 1)), 1),
    # wholly left: x2 = int(-5 + 2) = -3 < x1 = 0 -> column 0, rows 0..1
    "wholly-left": ([[-5, 0, 2, 1]], block(H, W, (0, 1), (0, 0)), 1),
    # x = -0.9 truncates to 0 and x + w = 0.6 to 0: column 0 only, nothing clipped
    "minus-0.9-truncates-to-0": ([[-0.9, 3, 1.5, 0]], block(H, W, (3, 3), (0, 0)), 0),
}


@pytest.mark.parametrize("case", sorted(POLYGON_CASES))
def test_polygon_past_border_hand_worked(tmp_path, case):
    polys, want, n_clipped = POLYGON_CASES[case]
    s, _ = synthscars_sample(tmp_path, polys)
    warnings: list[str] = []
    got = s.load_mask(H, W, warnings)
    np.testing.assert_array_equal(got, want)
    if n_clipped:
        assert warnings == [f"geometry_clipped: {n_clipped} of {len(polys)} polygons reach past the "
                            f"{W}x{H} (W x H) image border, filled clipped as LEGION's cv2.fillPoly does"]
    else:
        assert warnings == []


@pytest.mark.parametrize("case", sorted(BOX_CASES))
def test_box_past_border_hand_worked(tmp_path, case):
    boxes, want, n_clipped = BOX_CASES[case]
    s, _ = loki_sample(tmp_path, boxes)
    warnings: list[str] = []
    np.testing.assert_array_equal(s.load_mask(H, W, warnings), want)
    assert len(warnings) == (1 if n_clipped else 0)
    if n_clipped:
        assert warnings[0].startswith(f"geometry_clipped: {n_clipped} of {len(boxes)} boxes")


@pytest.mark.parametrize("case", sorted(POLYGON_CASES))
def test_hand_worked_polygons_are_legions_rule(tmp_path, reference, case):
    polys, want, _ = POLYGON_CASES[case]
    _, ann = synthscars_sample(tmp_path, polys)
    np.testing.assert_array_equal(reference.synthscars_mask(ann, "p.png", H, W), want)


@pytest.mark.parametrize("case", sorted(BOX_CASES))
def test_hand_worked_boxes_are_legions_rule(tmp_path, reference, case):
    boxes, want, _ = BOX_CASES[case]
    _, ann = loki_sample(tmp_path, boxes)
    np.testing.assert_array_equal(reference.loki_mask(ann, "b.png", H, W), want)


#: LEGION's scoring ran with opencv-python 4.8.0.74 (requirements/default.txt of its repository).
#: OpenCV 4.11 changed cv2.fillPoly's rasterisation (edges from clipped end points, other
#: rounding): 4.8-4.10 agree pixel for pixel, 4.11 and later fill some pixels differently, at
#: the border and inside alike, so SynthScars ground truth needs OpenCV 4.8-4.10.
LEGION_OPENCV = "4.8.0"


def test_installed_opencv_fills_like_legions_opencv(tmp_path):
    # triangle (-4,-4) (4,-4) (-4,4) on 6 x 5: inside the image it is x >= 0, y >= 0,
    # x + y <= 0, i.e. pixel (0, 0) alone, which the hypotenuse passes through (boundary
    # pixels are filled). OpenCV 4.8-4.10 fill exactly that; 4.11+ also fill column 0, rows 1..3
    want = block(H, W, (0, 0), (0, 0))
    raw = np.zeros((H, W), np.uint8)
    cv2.fillPoly(raw, [np.array([[-4, -4], [4, -4], [-4, 4]], np.int32)], 1)
    s, _ = synthscars_sample(tmp_path, [[-4, -4, 4, -4, -4, 4]])
    ok = np.array_equal(raw.astype(bool), want) and np.array_equal(s.load_mask(H, W), want)
    assert ok, (f"cv2 {cv2.__version__} fills polygons unlike OpenCV {LEGION_OPENCV}, with which "
                "LEGION scored (OpenCV >= 4.11 changed cv2.fillPoly): SynthScars ground truth will "
                "not equal LEGION's; install opencv-python-headless>=4.8,<4.11")


def test_duplicates_hand_worked(tmp_path, reference):
    # SynthScars: two records for d.png, squares at columns/rows 0..1 and 3..4: LEGION fills
    # both (union); LOKI: two records for d.png, boxes [0,0,1,1] (0..1) and [3,3,1,1] (3..4):
    # LEGION stops at the first, so only 0..1
    union = block(H, W, (0, 1), (0, 1)) | block(H, W, (3, 4), (3, 4))
    ann = write_synthscars_json(tmp_path / "s" / "SynthScars" / "test" / "annotations" / "test.json",
                                [("1", "d.png", [[0, 0, 1, 0, 1, 1, 0, 1]]),
                                 ("2", "/elsewhere/d.png", [[3, 3, 4, 3, 4, 4, 3, 4]])])
    (tmp_path / "s" / "SynthScars" / "test" / "images").mkdir()
    (s,) = SynthScars(tmp_path / "s" / "SynthScars", "test").samples()
    np.testing.assert_array_equal(s.load_mask(H, W), union)
    np.testing.assert_array_equal(reference.synthscars_mask(ann, "d.png", H, W), union)
    ann = write_loki_json(tmp_path / "l" / "open_ended_vqa.json",
                          [("r1", "d.png", [[0, 0, 1, 1]]), ("r2", "d.png", [[3, 3, 1, 1]])])
    (s,) = Loki(tmp_path / "l").samples()
    np.testing.assert_array_equal(s.load_mask(H, W), block(H, W, (0, 1), (0, 1)))
    np.testing.assert_array_equal(reference.loki_mask(ann, "d.png", H, W), block(H, W, (0, 1), (0, 1)))
    assert "duplicate_record" in s.warnings[0] and "record 'r2' (#1)" in s.warnings[0]


def test_strict_refuses_what_legion_clips(tmp_path):
    s, _ = synthscars_sample(tmp_path / "s", POLYGON_CASES["wholly-right"][0])
    strict = SynthScars(tmp_path / "s" / "SynthScars", "test", strict="true").samples()[0]
    assert not s.load_mask(H, W).any()
    with pytest.raises(SampleError, match="outside the 6x5"):
        strict.load_mask(H, W)
    write_loki_json(tmp_path / "l" / "open_ended_vqa.json", [("r", "b.png", BOX_CASES["wholly-right"][0])])
    with pytest.raises(SampleError, match="lies outside the 6x5 image"):
        Loki(tmp_path / "l", strict="true").samples()[0].load_mask(H, W)


@pytest.mark.parametrize("geometry, problem", [
    ([[0, 0, float("nan"), 0, 3, 3]], "NaN"),
    ([[0, 0, 3, 3]], "at least 3"),
    ([[0, 0, 3, 0, 3]], "odd number"),
])
def test_non_regions_still_fail(tmp_path, geometry, problem):
    s, _ = synthscars_sample(tmp_path, geometry)
    with pytest.raises(SampleError, match=problem):
        s.load_mask(H, W)


# --------------------------------------------------------------------------------------------
# generated cases: masks, per-image metrics and means vs the references


def random_polygon(rng: np.random.Generator, h: int, w: int) -> list[float]:
    """3-7 vertices around a centre anywhere from half an image before to half after the image,
    some of them on exact or near-integer values (float32 rounding)."""
    cx, cy = rng.uniform(-0.5 * w, 1.5 * w), rng.uniform(-0.5 * h, 1.5 * h)
    r = rng.uniform(2, 0.6 * max(h, w))
    pts = []
    for _ in range(int(rng.integers(3, 8))):
        x, y = cx + rng.uniform(-r, r), cy + rng.uniform(-r, r)
        if rng.random() < 0.2:
            x = float(round(x)) - (1e-15 if rng.random() < 0.5 else 0.0)
        pts += [float(x), float(y)]
    return pts


def random_box(rng: np.random.Generator, h: int, w: int) -> list[float]:
    return [float(rng.uniform(-0.4 * w, 1.3 * w)), float(rng.uniform(-0.4 * h, 1.3 * h)),
            float(rng.uniform(0, 0.6 * w)), float(rng.uniform(0, 0.6 * h))]


def random_prediction(rng: np.random.Generator, gt: np.ndarray, k: int) -> np.ndarray:
    """Empty, full, the ground truth, a shifted copy, or random rectangles (by k)."""
    h, w = gt.shape
    kind = k % 5
    if kind == 0:
        return np.zeros((h, w), bool)
    if kind == 1:
        return np.ones((h, w), bool)
    if kind == 2:
        return gt.copy()
    if kind == 3:
        return np.roll(gt, (int(rng.integers(-5, 6)), int(rng.integers(-5, 6))), axis=(0, 1))
    pred = np.zeros((h, w), bool)
    for _ in range(int(rng.integers(1, 4))):
        y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        pred[y0:y0 + int(rng.integers(1, h)), x0:x0 + int(rng.integers(1, w))] = True
    return pred


def generated_synthscars(rng: np.random.Generator, n: int) -> tuple[list, dict[str, tuple[int, int]]]:
    """(records, {file name: (h, w)}): every 7th image has no refs (empty ground truth), every
    5th a second record for the same file (path form differs) that LEGION ignores."""
    records, sizes = [], {}
    for i in range(n):
        name = f"img_{i:03d}.png" if i % 2 else f"img_{i:03d}.jpg"
        h, w = int(rng.integers(20, 70)), int(rng.integers(20, 70))
        sizes[name] = (h, w)
        polys = [] if i % 7 == 3 else [random_polygon(rng, h, w) for _ in range(int(rng.integers(1, 4)))]
        records.append((str(1000 + i), name, polys))
        if i % 5 == 1:
            records.append((str(5000 + i), f"/other/place/{name}", [random_polygon(rng, h, w)]))
    return records, sizes


def generated_loki(rng: np.random.Generator, n: int) -> tuple[list, dict[str, tuple[int, int]]]:
    records, sizes = [], {}
    for i in range(n):
        name = f"u{i:04d}.png"
        h, w = int(rng.integers(20, 70)), int(rng.integers(20, 70))
        sizes[name] = (h, w)
        records.append((f"rec{i}", name, [random_box(rng, h, w) for _ in range(int(rng.integers(1, 5)))]))
        if i % 6 == 2:
            records.append((f"dup{i}", name, [random_box(rng, h, w)]))
    return records, sizes


def _check_against(reference, samples, ann, sizes, mask_fn_name, rng):
    """Per image: our mask == the reference's; our metrics == the reference's; then the means."""
    ref_mask = getattr(reference, mask_fn_name)
    assert sorted(s.file_name for s in samples) == sorted(sizes)  # one sample per image
    ours_rows, ref_rows, n_clipped = [], [], 0
    for k, s in enumerate(samples):
        h, w = sizes[s.file_name]
        warnings: list[str] = []
        got = s.load_mask(h, w, warnings)
        want = ref_mask(ann, s.file_name, h, w)
        assert np.array_equal(got, want), f"{s.id}: {np.count_nonzero(got != want)} pixels differ"
        n_clipped += any(x.startswith("geometry_clipped") for x in warnings)
        pred = random_prediction(rng, want, k)
        ours_rows.append(ours(pred, got))
        ref_rows.append(reference.metrics(pred, want))
    a, b = np.array(ours_rows), np.array(ref_rows)
    np.testing.assert_allclose(a, b, rtol=0, atol=TOL)
    np.testing.assert_allclose(a.mean(axis=0), b.mean(axis=0), rtol=0, atol=TOL)
    return n_clipped


def test_generated_synthscars_equals_reference(tmp_path, reference):
    rng = np.random.default_rng(11)
    records, sizes = generated_synthscars(rng, 60)
    ann = write_synthscars_json(tmp_path / "SynthScars" / "test" / "annotations" / "test.json", records)
    (tmp_path / "SynthScars" / "test" / "images").mkdir()
    samples = SynthScars(tmp_path / "SynthScars", "test").samples()
    assert all(s.error is None for s in samples)
    dup = [s for s in samples if s.warnings]
    assert len(dup) == 12 and all("duplicate_record" in s.warnings[0] for s in dup)
    n_clipped = _check_against(reference, samples, ann, sizes, "synthscars_mask", rng)
    assert n_clipped >= 20  # the out-of-border path is exercised
    polys_by_name: dict[str, list] = {}
    for _, name, polys in records:
        polys_by_name.setdefault(Path(name).name, []).extend(polys)
    empty = sorted(n for n, p in polys_by_name.items() if not p)
    assert sorted(s.file_name for s in samples if not s.regions) == empty and len(empty) >= 5


def test_generated_loki_equals_reference(tmp_path, reference):
    rng = np.random.default_rng(12)
    records, sizes = generated_loki(rng, 60)
    ann = write_loki_json(tmp_path / "open_ended_vqa.json", records)
    samples = Loki(tmp_path).samples()
    assert all(s.error is None for s in samples)
    assert sum(bool(s.warnings) for s in samples) == 10
    wholly_outside = sum(
        int(x) > w - 1 or int(y) > h - 1 or int(x + bw) < 0 or int(y + bh) < 0
        for s in samples for (x, y, bw, bh) in (r.box for r in s.regions)
        for h, w in [sizes[s.file_name]])
    assert wholly_outside >= 10
    assert _check_against(reference, samples, ann, sizes, "loki_mask", rng) >= 20


# --------------------------------------------------------------------------------------------
# end to end: `bench score --format legion` means vs the reference's means


def _write_image(path: Path, h: int, w: int, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def _write_predictions(pred_dir: Path, masks: dict[str, np.ndarray]) -> None:
    for name, m in masks.items():
        (pred_dir / name).mkdir(parents=True)
        Image.fromarray(m.astype(np.uint8) * 255).save(pred_dir / name / "mask.png")


def _score(dataset: str, data_root: Path, pred_dir: Path, out: Path) -> tuple[pd.DataFrame, dict]:
    from bench.cli import main

    rc = main(["score", "--dataset", dataset, "--data-root", str(data_root), "--predictions",
               str(pred_dir), "--format", "legion", "--out", str(out), "--no-progress"])
    assert rc == 0
    df = pd.read_parquet(out / "samples.parquet").set_index("file_name")
    return df, json.loads((out / "results.json").read_text(encoding="utf-8"))


def _compare_scores(df, results, want: dict[str, tuple[float, float, float]]):
    """Per image and mean: miou, f1, iou_fg of `bench score` == the reference's, to 1e-9."""
    assert sorted(df.index) == sorted(want) and (df["status"] == "ok").all()
    (clean,) = results["conditions"]
    assert clean["n"] == len(want) and clean["n_failed"] == 0
    names = sorted(want)
    ref = np.array([want[n] for n in names])
    got = df.loc[names, ["miou", "f1", "iou_fg"]].to_numpy(dtype=float)
    np.testing.assert_allclose(got, ref, rtol=0, atol=TOL)
    for j, metric in enumerate(("miou", "f1", "iou_fg")):
        assert abs(clean["metrics"][metric]["value"] - ref[:, j].mean()) < TOL, metric
        assert clean["metrics"][metric]["n"] == len(want)


def test_bench_score_synthscars_equals_reference(tmp_path, reference):
    rng = np.random.default_rng(21)
    records, sizes = generated_synthscars(rng, 24)
    root = tmp_path / "data"
    ann = write_synthscars_json(root / "SynthScars" / "test" / "annotations" / "test.json", records)
    for name, (h, w) in sizes.items():
        _write_image(root / "SynthScars" / "test" / "images" / name, h, w, rng)
    gts = {name: reference.synthscars_mask(ann, name, h, w) for name, (h, w) in sizes.items()}
    preds = {name: random_prediction(rng, gt, k) for k, (name, gt) in enumerate(sorted(gts.items()))}
    _write_predictions(tmp_path / "pred", preds)
    df, results = _score("synthscars", root, tmp_path / "pred", tmp_path / "out")
    _compare_scores(df, results, {n: reference.metrics(preds[n], gts[n]) for n in gts})
    # warnings: a column, one per sample, naming the ignored duplicate / the clipping
    dup_names = {Path(name).name for _, name, _ in records if name.startswith("/other/")}
    assert len(dup_names) == 5
    warning = df["warning"].fillna("")
    for name in sizes:  # img_<i>: its duplicate, if any, is annotation 5000 + i
        text = warning[name]
        assert ("duplicate_record" in text) == (name in dup_names), name
        if name in dup_names:
            assert f"annotation '{5000 + int(name[4:7])}'" in text and str(ann) in text
    assert warning.str.contains("geometry_clipped").sum() >= 8


def test_bench_score_loki_equals_reference(tmp_path, reference):
    rng = np.random.default_rng(22)
    records, sizes = generated_loki(rng, 24)
    ann = write_loki_json(tmp_path / "data" / "open_ended_vqa.json", records)
    for name, (h, w) in sizes.items():
        _write_image(tmp_path / "data" / "media_data" / "image" / name, h, w, rng)
    gts = {name: reference.loki_mask(ann, name, h, w) for name, (h, w) in sizes.items()}
    preds = {name: random_prediction(rng, gt, k) for k, (name, gt) in enumerate(sorted(gts.items()))}
    _write_predictions(tmp_path / "pred", preds)
    df, results = _score("loki", tmp_path / "data", tmp_path / "pred", tmp_path / "out")
    _compare_scores(df, results, {n: reference.metrics(preds[n], gts[n]) for n in gts})
    warned = df["warning"].fillna("")
    assert warned.str.contains("duplicate_record").sum() == 4
    assert warned.str.contains("geometry_clipped").sum() >= 8
    # strict=true: exactly the images whose (first) record has a box wholly outside fail
    first: dict[str, list] = {}
    for _, name, boxes in records:
        first.setdefault(name, boxes)
    outside = sorted(n for n, boxes in first.items() for h, w in [sizes[n]]
                     if any(int(x) > w - 1 or int(y) > h - 1 or int(x + bw) < 0 or int(y + bh) < 0
                            for x, y, bw, bh in boxes))
    assert outside
    from bench.cli import main

    assert main(["score", "--dataset", "loki", "--data-root", str(tmp_path / "data"), "--predictions",
                 str(tmp_path / "pred"), "--format", "legion", "--out", str(tmp_path / "strict"),
                 "--no-progress", "--dataset-option", "strict=true"]) == 0
    strict = pd.read_parquet(tmp_path / "strict" / "samples.parquet").set_index("file_name")
    assert sorted(strict.index[strict["status"] == "failed"]) == outside
    assert strict.loc[outside, "error"].str.contains("lies outside the").all()


# --------------------------------------------------------------------------------------------
# the real annotation files, every record, at synthesised sizes


def prerelease_sizes(rec: dict, variant: str) -> tuple[int, int]:
    """(h, w) for a pre-release record (the file gives no size). ``cover``: just covering every
    polygon, as tests/test_synthscars.py; ``512``: 512 x 512 (the records name RichHF-18K
    images, whose heatmaps are 512 x 512); ``shrunk``: 70% of the cover size, cutting polygons."""
    xs = [x for ref in rec["refs"] for s in ref["segmentation"] for x in s[0::2]] or [255.0]
    ys = [y for ref in rec["refs"] for s in ref["segmentation"] for y in s[1::2]] or [191.0]
    cover = (max(math.ceil(max(ys)), 16), max(math.ceil(max(xs)), 16))
    if variant == "512":
        return 512, 512
    if variant == "shrunk":
        return max(int(cover[0] * 0.7), 16), max(int(cover[1] * 0.7), 16)
    return cover


@pytest.mark.parametrize("variant", ["cover", "512", "shrunk"])
def test_real_prerelease_masks_equal_reference(tmp_path, reference, variant):
    src = shared_real_file("synthscars_prerelease_val.json")
    raw = json.loads(src.read_text(encoding="utf-8"))
    (tmp_path / "images").mkdir()
    samples = SynthScars(None, "test", annotations=str(src), images=str(tmp_path / "images")).samples()
    assert len(samples) == len(raw) == 119 and all(s.error is None for s in samples)
    clipped = 0
    for s, item in zip(samples, raw):
        (rec,) = item.values()
        h, w = prerelease_sizes(rec, variant)
        warnings: list[str] = []
        got = s.load_mask(h, w, warnings)
        want = reference.synthscars_mask(src, s.file_name, h, w)
        assert np.array_equal(got, want), f"{s.id}: {np.count_nonzero(got != want)} pixels differ"
        clipped += bool(warnings)
    # clipping must be exercised: at the covering size where a vertex's integer coordinate
    # equals the side (one past the last pixel), at 512 where the records reach past 512
    assert clipped >= {"cover": 1, "512": 4, "shrunk": 100}[variant]


@pytest.mark.parametrize("variant", ["plausible", "shrunk"])
def test_real_loki_masks_equal_reference(tmp_path, reference, variant):
    """Every record of the real LOKI file. ``plausible``: the box extents rounded up to 64 px,
    every 10th cut at int(max(x + w)) x int(max(y + h)) (as tests/test_loki.py); ``shrunk``: 60%
    of the extents, so that boxes reach past the border and some lie wholly outside."""
    src = shared_real_file("loki_open_ended_vqa.json")
    raw = json.loads(src.read_bytes().decode("utf-16"))
    samples = Loki(tmp_path, annotations=str(src)).samples()
    assert len(samples) == 229 and all(s.error is None for s in samples)
    clipped = wholly = 0
    for k, (s, rec) in enumerate(zip(samples, raw)):
        boxes = [r["region"] for r in rec["problems"]["regional"]]
        right = max(x + w for x, y, w, h in boxes)
        bottom = max(y + h for x, y, w, h in boxes)
        if variant == "shrunk":
            w, h = max(int(right * 0.6), 8), max(int(bottom * 0.6), 8)
        elif k % 10 == 0:
            w, h = int(right), int(bottom)
        else:
            w, h = 64 * math.ceil(right / 64 + 0.01), 64 * math.ceil(bottom / 64 + 0.01)
        warnings: list[str] = []
        got = s.load_mask(h, w, warnings)
        want = reference.loki_mask(src, s.file_name, h, w)
        assert np.array_equal(got, want), f"{s.id}: {np.count_nonzero(got != want)} pixels differ"
        clipped += bool(warnings)
        wholly += sum(int(x) > w - 1 or int(y) > h - 1 for x, y, _, _ in boxes)
    if variant == "shrunk":
        assert clipped >= 200 and wholly >= 50
    else:
        assert clipped >= 23
