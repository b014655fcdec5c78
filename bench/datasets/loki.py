"""LOKI loader: the image open-ended VQA annotations with artifact boxes (docs/protocol.md §4).

Layout (``data_root``)::

    media_data/image/<uuid>.png|jpg          the unzipped HF archive bczhou/LOKI media_data.zip
    open_ended_vqa.json                      from github opendatalab/LOKI, either here or at
    data_json/image/open_ended_vqa.json      (its place in the LOKI repository)

The JSON is a list of records (UTF-16 LE with a BOM in the release; the encoding is detected,
never assumed): ``id``, ``image_path`` (``media_data/image/<file>``, relative to the data
root), ``problems.global = [{desc}]``, ``problems.regional = [{region: [x, y, w, h], desc}]``
with boxes in original-image pixels.

Each record becomes one fake :class:`~bench.core.types.Sample`: id = the record ``id``; one
:class:`~bench.core.types.Region` per regional entry (``box`` = (x, y, w, h), ``explanation`` = its
cleaned desc); mask rule ``box_inclusive`` (LEGION: columns int(x)..int(x+w) and rows
int(y)..int(y+h), both inclusive, clipped; union; a box wholly past an edge fills that edge's
last column or row, as ``cv2.rectangle`` does in LEGION's code; a box reaching past the border
gives the sample a ``geometry_clipped`` warning, a column of samples.parquet); reference =
cleaned global desc(s) then cleaned regional descs, joined by one space
(:func:`bench.datasets.text_clean.clean_loki_text`, version :data:`bench.datasets.text_clean.LOKI_CLEANING`,
recorded in ``meta["reference_cleaning"]``).

Options: ``annotations=PATH`` (the JSON elsewhere), ``images=DIR`` (image files elsewhere,
looked up by base name), ``ids=PATH`` (a text file of record ids or image file names, one per
line, ``#`` comments: score only that subset, e.g. LEGION's unpublished 112-image list; an id
not in the file is an error naming it), ``strict=true`` (a box wholly outside the image fails
its sample instead of filling the border column / row, the harness's former rule).

Several records naming one image file: as in LEGION's ``generate_loki_mask`` (which stops at
the first match), the FIRST is the image's ground truth and the others are left out (a
``duplicate_record`` warning on the sample names them). Two records with one ``id`` but
different images are both kept, the second id suffixed ``#2`` (warning ``duplicate_id``). A
broken record (no regions, a box with NaN or a negative size, no id ...) becomes a Sample with
``error`` set; it never stops the load.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from bench.datasets._files import is_number, json_type, read_id_list, read_json_text
from bench.errors import BenchError, DataMissingError
from bench.io.masks import parse_strict_option
from bench.core.registry import register_dataset
from bench.datasets.text_clean import LOKI_CLEANING, clean_loki_text, join_reference
from bench.core.types import FAKE, Dataset, Region, Sample

ANNOTATION_NAME = "open_ended_vqa.json"
#: Where the annotation file is looked for, relative to the data root, in this order.
ANNOTATION_PLACES = (Path(ANNOTATION_NAME), Path("data_json") / "image" / ANNOTATION_NAME)
IMAGE_DIR = Path("media_data") / "image"
#: Scalar record fields copied to ``Sample.meta`` (the long ``question`` prompt is not).
META_FIELDS = ("modality", "question_type", "metric")

FETCH_HINT = "run `bench data fetch loki --dest DIR` for the images"
JSON_HINT = (
    "download data_json/image/open_ended_vqa.json from https://github.com/opendatalab/LOKI "
    "into the data root (or its data_json/image/ folder), or pass annotations=PATH"
)


class RecordError(ValueError):
    """One LOKI record is malformed (becomes ``Sample.error``)."""


@register_dataset
class Loki(Dataset):
    """LOKI (ICLR 2025) image open-ended VQA: synthetic images with artifact boxes and
    machine-translated explanations."""

    name: ClassVar[str] = "loki"
    splits: ClassVar[tuple[str, ...]] = ("test",)
    summary: ClassVar[str] = (
        "LOKI open-ended VQA images: 229 synthetic images, 687 artifact boxes, explanations; "
        "options annotations=PATH, images=DIR, ids=PATH, strict=true"
    )
    known_options: ClassVar[frozenset[str]] = frozenset({"annotations", "images", "ids", "strict"})

    def __init__(self, data_root: Path | str | None = None, split: str = "test", **options: Any):
        unknown = set(options) - self.known_options
        if unknown:
            raise BenchError(
                f"loki: unknown option(s) {', '.join(sorted(unknown))} "
                f"(known: {', '.join(sorted(self.known_options))})"
            )
        if split not in self.splits:
            raise BenchError(f"loki: unknown split {split!r}; LOKI has one split: 'test'")
        super().__init__(data_root, split, **options)
        #: Codec of the annotation file, set when it is read (e.g. "utf-16-le").
        self.encoding: str | None = None
        #: ``strict=true``: a box wholly outside the image is refused, not drawn on the border.
        self.strict = parse_strict_option(options.get("strict", False), "loki")

    def fingerprint(self) -> str:
        """The base fingerprint; with ``strict=true`` (other ground truth) a different one."""
        fp = super().fingerprint()
        return hashlib.sha256(f"{fp}\0strict-geometry".encode()).hexdigest() if self.strict else fp

    # -- locating files ------------------------------------------------------------------
    def _root(self) -> Path:
        if self.data_root is None:
            raise DataMissingError(f"loki: no data root given; {FETCH_HINT}")
        if not self.data_root.is_dir():
            raise DataMissingError(f"loki: data root {self.data_root} does not exist; {FETCH_HINT}")
        return self.data_root

    def annotation_path(self) -> Path:
        override = self.options.get("annotations")
        if override is not None:
            path = Path(override).expanduser()
            if not path.is_file():
                raise DataMissingError(f"loki: annotation file {path} (option annotations=) not found")
            return path
        root = self._root()
        for rel in ANNOTATION_PLACES:
            if (root / rel).is_file():
                return root / rel
        tried = " and ".join(str(root / rel) for rel in ANNOTATION_PLACES)
        raise DataMissingError(f"loki: annotation file not found (tried {tried}); {JSON_HINT}")

    def image_file(self, image_path: str) -> Path:
        """Where the record's image is: ``images=DIR/<base name>`` or ``<root>/<image_path>``."""
        override = self.options.get("images")
        rel = PurePosixPath(image_path.replace("\\", "/"))
        if override is not None:
            return Path(override).expanduser() / rel.name
        if rel.is_absolute() or ".." in rel.parts:
            raise RecordError(f"image_path {image_path!r} is not a path inside the data root")
        return self._root() / Path(*rel.parts)

    def annotation_files(self) -> list[Path]:
        return [self.annotation_path()]

    # -- loading -------------------------------------------------------------------------
    def _load(self) -> list[Sample]:
        path = self.annotation_path()
        data, self.encoding = read_json_text(path)
        if not isinstance(data, list):
            raise BenchError(f"{path}: top level is a JSON {json_type(data)}; LOKI's file is a list of records")
        samples = [self._sample(path, index, rec) for index, rec in enumerate(data)]
        samples = _unique_ids(_first_record_per_file(samples, path), path)
        samples = [replace(s, clip_geometry=not self.strict) for s in samples]
        ids_file = self.options.get("ids")
        if ids_file is not None:
            samples = select_ids(samples, read_id_list(ids_file), ids_file)
        return samples

    def _sample(self, path: Path, index: int, rec: Any) -> Sample:
        rid = rec.get("id") if isinstance(rec, dict) else None
        sid = rid if isinstance(rid, str) and rid.strip() else f"record:{index}"
        where = f"{path}: record {sid!r} (#{index})"
        image_file: Path | None = None
        meta: dict[str, Any] = {"source": "loki", "record_index": index,
                                "reference_cleaning": LOKI_CLEANING}
        try:
            if not isinstance(rec, dict):
                raise RecordError(f"record is a JSON {json_type(rec)}, not an object")
            raw_path = rec.get("image_path")
            if not isinstance(raw_path, str) or not raw_path.strip():
                raise RecordError("missing or empty 'image_path'")
            meta["file_name"] = PurePosixPath(raw_path.replace("\\", "/")).name
            meta["image_path_in_json"] = raw_path
            image_file = self.image_file(raw_path)
            if sid.startswith("record:"):
                raise RecordError("missing or empty 'id'")
            meta.update({k: rec[k] for k in META_FIELDS if isinstance(rec.get(k), str)})
            regions, global_texts = parse_problems(rec.get("problems"))
        except RecordError as exc:
            return Sample(id=sid, image_path=image_file, label=FAKE, meta=meta,
                          mask_rule="box_inclusive", error=f"{where}: {exc}")
        meta["global_explanation"] = join_reference(global_texts)
        meta["n_regions"] = len(regions)
        return Sample(
            id=sid,
            image_path=image_file,
            label=FAKE,
            reference=join_reference(global_texts + [r.explanation for r in regions]),
            regions=regions,
            meta=meta,
            mask_rule="box_inclusive",
        )


def parse_problems(problems: Any) -> tuple[tuple[Region, ...], list[str]]:
    """(regions, cleaned global texts) from a record's ``problems``; :class:`RecordError` if
    malformed (no regions, a box that is not 4 finite numbers with w, h >= 0 ...)."""
    if not isinstance(problems, dict):
        raise RecordError(f"'problems' is a JSON {json_type(problems)}, not an object")
    glob = problems.get("global") or []
    if not isinstance(glob, list):
        raise RecordError(f"'problems.global' is a JSON {json_type(glob)}, not a list")
    global_texts = []
    for k, g in enumerate(glob):
        desc = g.get("desc") if isinstance(g, dict) else None
        if desc is not None and not isinstance(desc, str):
            raise RecordError(f"global entry {k} 'desc' is a JSON {json_type(desc)}, not a string")
        global_texts.append(clean_loki_text(desc))
    regional = problems.get("regional")
    if not isinstance(regional, list) or not regional:
        what = "empty" if isinstance(regional, list) else f"a JSON {json_type(regional)}"
        raise RecordError(f"record has no regions ('problems.regional' is {what}); no ground-truth mask")
    regions = []
    for k, entry in enumerate(regional):
        if not isinstance(entry, dict):
            raise RecordError(f"region {k} is a JSON {json_type(entry)}, not an object")
        box = entry.get("region")
        if not isinstance(box, list) or len(box) != 4 or not all(is_number(v) for v in box):
            raise RecordError(f"region {k} 'region' is {box!r}; expected [x, y, w, h] numbers")
        x, y, w, h = (float(v) for v in box)
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            raise RecordError(f"region {k} box {box} has NaN or infinite values")
        if w < 0 or h < 0:
            raise RecordError(f"region {k} box {box} has negative size (w={w}, h={h})")
        desc = entry.get("desc")
        if desc is not None and not isinstance(desc, str):
            raise RecordError(f"region {k} 'desc' is a JSON {json_type(desc)}, not a string")
        regions.append(Region(explanation=clean_loki_text(desc), box=(x, y, w, h)))
    return tuple(regions), global_texts


def select_ids(samples: list[Sample], wanted: list[str], source: Any) -> list[Sample]:
    """The samples named in ``wanted`` (by id, image file name or JSON image path), in file
    order; :class:`BenchError` naming every entry that matches no sample."""
    keys: dict[str, int] = {}
    for i, s in enumerate(samples):
        for key in (s.id, s.meta.get("file_name"), s.meta.get("image_path_in_json")):
            if isinstance(key, str):
                keys.setdefault(key, i)
    missing = [w for w in wanted if w not in keys]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise BenchError(f"{source}: {len(missing)} of {len(wanted)} ids match no LOKI record: {shown}")
    chosen = {keys[w] for w in wanted}
    return [s for i, s in enumerate(samples) if i in chosen]


def _first_record_per_file(samples: list[Sample], path: Path) -> list[Sample]:
    """One sample per image file: the first record naming it (LEGION's first match, by exact
    file name); the later ones are left out and named in a ``duplicate_record`` warning."""
    first: dict[str, int] = {}
    ignored: dict[str, list[str]] = {}
    out: list[Sample] = []
    for s in samples:
        name = s.meta.get("file_name")
        if name in first:
            ignored.setdefault(name, []).append(f"record {s.id!r} (#{s.meta['record_index']})")
            continue
        if name is not None:
            first[name] = len(out)
        out.append(s)
    for name, others in ignored.items():
        s = out[first[name]]
        warning = (f"duplicate_record: image file {name!r} is also named by {', '.join(others)} of "
                   f"{path}, ignored: the first record ({s.id!r}, #{s.meta['record_index']}) is "
                   "used, as in LEGION's scoring")
        out[first[name]] = replace(s, warnings=s.warnings + (warning,))
    return out


def _unique_ids(samples: list[Sample], path: Path) -> list[Sample]:
    """A record id seen before (on another image) gets ``#2``, ``#3`` ... and a ``duplicate_id``
    warning; both images are scored, as LEGION matches records by image file, not id."""
    seen: dict[str, Sample] = {}
    out = []
    for s in samples:
        if s.id not in seen:
            seen[s.id] = s
            out.append(s)
            continue
        n = 2
        while f"{s.id}#{n}" in seen:
            n += 1
        new_id = f"{s.id}#{n}"
        seen[new_id] = s
        other = seen[s.id]
        warning = (f"duplicate_id: record id {s.id!r} (#{s.meta['record_index']}) of {path} is also "
                   f"used by record #{other.meta['record_index']} for another image, this one is "
                   f"scored as {new_id!r}")
        out.append(replace(s, id=new_id, warnings=s.warnings + (warning,)))
    return out
