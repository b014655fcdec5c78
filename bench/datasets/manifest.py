"""``manifest`` loader: your own data as a JSONL file, one sample a line.

``data_root`` is the manifest file, or a folder holding ``manifest.jsonl``. Each non-blank
line is a JSON object (UTF-8)::

    {"image": "imgs/a.png", "label": "fake", "mask": "masks/a.png", "reference": "The hand has six fingers."}
    {"image": "imgs/b.jpg", "label": "fake", "polygons": [[10, 10, 60, 12, 40, 70]], "meta": {"generator": "sdxl"}}
    {"id": "c", "image": "/data/c.png", "label": 0}

Keys: ``image`` (required; a path), ``label`` (required; ``"fake"``/``"real"`` in any case, or
``1``/``0``), at most one geometry field — ``mask`` (a 0/255 or 0/1 PNG the size of the
image), ``polygons`` (flat ``[x1, y1, x2, y2, ...]`` pixel lists, filled like SynthScars:
truncated to int, ``cv2.fillPoly``) or ``boxes`` (``[x, y, w, h]`` pixel lists, LEGION's
inclusive-corner rule as for LOKI) — and optional ``id`` (default: the image path as written),
``reference`` (explanation text), ``split`` (the line belongs to that split only; lines
without it belong to every split), ``meta`` (an object copied to the sample). Relative paths
are resolved against the manifest's folder.

A real image's mask is all False whatever geometry the line gives. A fake image with no
geometry has no localization ground truth: its mask rule is ``none`` and ``meta["has_mask"]``
is False (use such lines for detection and explanation only).

A bad line (not JSON, missing image, unknown label, two geometry fields, a polygon with NaN,
a box with negative size, an unknown key ...) becomes a Sample with ``error`` set naming the
manifest path and line number; the other lines load.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from bench.datasets._files import is_number, json_type
from bench.errors import BenchError, DataMissingError
from bench.core.registry import register_dataset
from bench.core.types import FAKE, REAL, Dataset, Region, Sample

MANIFEST_NAME = "manifest.jsonl"
GEOMETRY_KEYS = ("mask", "polygons", "boxes")
KNOWN_KEYS = frozenset({"id", "image", "label", "reference", "meta", "split", *GEOMETRY_KEYS})
LABELS: dict[Any, int] = {"fake": FAKE, "real": REAL}


class LineError(ValueError):
    """One manifest line is malformed (becomes ``Sample.error``)."""


def parse_label(value: Any) -> int:
    if isinstance(value, str) and value.strip().lower() in LABELS:
        return LABELS[value.strip().lower()]
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return value
    raise LineError(f"'label' is {value!r}; expected \"fake\", \"real\", 1 or 0")


@register_dataset
class Manifest(Dataset):
    """Your own data: a JSONL manifest of images, labels, masks / polygons / boxes and texts."""

    name: ClassVar[str] = "manifest"
    splits: ClassVar[tuple[str, ...]] = ("test",)
    summary: ClassVar[str] = (
        "your own data: a JSONL manifest (image, label, mask|polygons|boxes, reference, meta)"
    )

    def __init__(self, data_root: Path | str | None = None, split: str = "test", **options: Any):
        if options:
            raise BenchError(f"manifest: unknown option(s) {', '.join(sorted(options))} (it takes none)")
        super().__init__(data_root, split, **options)
        self._mask_files: list[Path] = []

    def manifest_path(self) -> Path:
        if self.data_root is None:
            raise DataMissingError("manifest: no data root given; pass --data-root MANIFEST.jsonl "
                                   "(or a folder holding manifest.jsonl)")
        root = self.data_root
        path = root / MANIFEST_NAME if root.is_dir() else root
        if not path.is_file():
            raise DataMissingError(f"manifest: {path} not found (pass the manifest file or a folder "
                                   f"holding {MANIFEST_NAME})")
        return path

    def annotation_files(self) -> list[Path]:
        """The manifest and the existing mask files it names (their bytes are ground truth)."""
        self.samples()
        return [self.manifest_path(), *self._mask_files]

    def _load(self) -> list[Sample]:
        path = self.manifest_path()
        base = path.parent
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise DataMissingError(f"{path}: cannot read manifest: {exc.strerror or exc}") from None
        samples: list[Sample] = []
        self._mask_files = []
        for lineno, line in enumerate(raw.split(b"\n"), start=1):
            if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                sample = parse_line(line, base, where)
            except LineError as exc:
                samples.append(Sample(id=f"line{lineno}", image_path=None, mask_rule="none",
                                      meta={"manifest_line": lineno}, error=f"{where}: {exc}"))
                continue
            line_split = sample.meta.get("split")
            if line_split is not None and line_split != self.split:
                continue
            if sample.mask_path is not None and sample.mask_path.is_file():
                self._mask_files.append(sample.mask_path)
            samples.append(sample)
        return _unique_ids(samples, path)


def parse_line(line: bytes, base: Path, where: str) -> Sample:
    """One manifest line as a Sample.

    Parameters
    ----------
    line : bytes
        The line, without its newline.
    base : Path
        The manifest's folder: relative paths are resolved against it.
    where : str
        ``<manifest path>:<line number>``; the number goes to ``meta["manifest_line"]``.

    Returns
    -------
    sample : Sample
        With ``mask_rule`` ``file``, ``polygon`` or ``box_inclusive`` from the line's geometry
        field, ``none`` for a real image or a line without geometry.

    Raises
    ------
    LineError
        Naming the first problem of the line (see the module docstring).
    """
    rec = _record(line)
    image, label = _image_and_label(rec)
    sid = rec.get("id", image)
    if not isinstance(sid, str) or not sid.strip():
        raise LineError(f"'id' is {sid!r}; expected a non-empty string")
    reference = _optional_text(rec, "reference")
    user_meta = rec.get("meta", {})
    if not isinstance(user_meta, dict):
        raise LineError(f"'meta' is a JSON {json_type(user_meta)}, not an object")
    split = _optional_text(rec, "split")
    geometry = [k for k in GEOMETRY_KEYS if rec.get(k) is not None]
    if len(geometry) > 1:
        raise LineError(f"two geometry fields ({' and '.join(geometry)}); give one of mask, polygons, boxes")

    image_path = _resolve(base, image)
    meta: dict[str, Any] = {**user_meta, "source": "manifest", "manifest_line": int(where.rsplit(":", 1)[1]),
                            "file_name": image_path.name, "has_mask": bool(geometry) or label == REAL}
    if split is not None:
        meta["split"] = split
    regions, mask_path, mask_rule = _ground_truth(rec, geometry[0] if geometry else None, base)
    if label == REAL:
        mask_rule = "none"
    return Sample(id=sid, image_path=image_path, label=label, reference=reference, regions=regions,
                  meta=meta, mask_rule=mask_rule, mask_path=mask_path)


def _record(line: bytes) -> dict[str, Any]:
    """The line's JSON object, of known keys only."""
    try:
        rec = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise LineError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise LineError(f"not valid JSON (column {exc.colno}: {exc.msg})") from None
    if not isinstance(rec, dict):
        raise LineError(f"a line must be a JSON object, got a JSON {json_type(rec)}")
    unknown = set(rec) - KNOWN_KEYS
    if unknown:
        raise LineError(f"unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(KNOWN_KEYS))})")
    return rec


def _image_and_label(rec: dict[str, Any]) -> tuple[str, int]:
    """The two required fields: the image path as written, and the label."""
    image = rec.get("image")
    if not isinstance(image, str) or not image.strip():
        raise LineError("missing or empty 'image' (a path to the image file)")
    if "label" not in rec:
        raise LineError("missing 'label' (\"fake\", \"real\", 1 or 0)")
    return image, parse_label(rec["label"])


def _optional_text(rec: dict[str, Any], key: str) -> str | None:
    """``rec[key]`` if it is a string, None if absent or null."""
    value = rec.get(key)
    if value is not None and not isinstance(value, str):
        raise LineError(f"'{key}' is a JSON {json_type(value)}, not a string")
    return value


def _ground_truth(rec: dict[str, Any], geometry: str | None, base: Path,
                  ) -> tuple[tuple[Region, ...], Path | None, str]:
    """(regions, mask file, mask rule) from the line's one geometry field (None: no geometry)."""
    if geometry == "mask":
        if not isinstance(rec["mask"], str) or not rec["mask"].strip():
            raise LineError(f"'mask' is {rec['mask']!r}; expected a path to a mask image")
        return (), _resolve(base, rec["mask"]), "file"
    if geometry == "polygons":
        return _polygons(rec["polygons"]), None, "polygon"
    if geometry == "boxes":
        return _boxes(rec["boxes"]), None, "box_inclusive"
    return (), None, "none"


def _resolve(base: Path, p: str) -> Path:
    path = Path(p).expanduser()
    return path if path.is_absolute() else base / path


def _polygons(value: Any) -> tuple[Region, ...]:
    if not isinstance(value, list) or not value:
        raise LineError("'polygons' must be a non-empty list of [x1, y1, x2, y2, ...] lists")
    polys = []
    for k, poly in enumerate(value):
        if not isinstance(poly, list) or not all(is_number(v) for v in poly):
            raise LineError(f"polygon {k} is not a flat list of numbers [x1, y1, x2, y2, ...]")
        if len(poly) % 2 or len(poly) < 6:
            raise LineError(f"polygon {k} has {len(poly)} numbers; need an even count, at least 6 (3 points)")
        if not all(math.isfinite(float(v)) for v in poly):
            raise LineError(f"polygon {k} has NaN or infinite coordinates")
        polys.append(tuple(float(v) for v in poly))
    return (Region(polygons=tuple(polys)),)


def _boxes(value: Any) -> tuple[Region, ...]:
    if not isinstance(value, list) or not value:
        raise LineError("'boxes' must be a non-empty list of [x, y, w, h] lists")
    regions = []
    for k, box in enumerate(value):
        if not isinstance(box, list) or len(box) != 4 or not all(is_number(v) for v in box):
            raise LineError(f"box {k} is {box!r}; expected [x, y, w, h] numbers")
        x, y, w, h = (float(v) for v in box)
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            raise LineError(f"box {k} has NaN or infinite values")
        if w < 0 or h < 0:
            raise LineError(f"box {k} has negative size (w={w}, h={h})")
        regions.append(Region(box=(x, y, w, h)))
    return tuple(regions)


def _unique_ids(samples: list[Sample], path: Path) -> list[Sample]:
    """A repeated id fails the later line (id suffixed ``#2`` ...): which is meant is unclear."""
    first: dict[str, int] = {}
    out = []
    for s in samples:
        if s.id not in first:
            first[s.id] = s.meta.get("manifest_line", 0)
            out.append(s)
            continue
        n = 2
        while f"{s.id}#{n}" in first:
            n += 1
        new_id = f"{s.id}#{n}"
        first[new_id] = s.meta.get("manifest_line", 0)
        out.append(replace(s, id=new_id, error=s.error or
                           f"{path}:{s.meta.get('manifest_line')}: id {s.id!r} repeats line {first[s.id]}"))
    return out
