"""SynthScars loader: the released on-disk format (docs/protocol.md §4).

Layout (``data_root`` names the ``SynthScars`` folder; its parent, holding ``SynthScars/``,
is accepted too)::

    SynthScars/<split>/images/<file>                     mixed .jpg / .png, sizes vary
    SynthScars/<split>/annotations/<split>.json          (also spelled ``annoations``)

The JSON is a list of single-key objects ``{"<annotation_id>": record}``; a record has
``img_file_name`` (a bare file name, or an absolute internal path in the pre-release file:
only its base name is used), ``caption`` (the reference explanation) and ``refs`` = list of
``{sentence, explanation, bbox (null), segmentation}``, ``segmentation`` = list of flat
``[x1, y1, x2, y2, ...]`` float pixel polygons in the original image.

Each record becomes one :class:`~bench.core.types.Sample`: id = the image file name (matched
EXACTLY by name, never by substring as LEGION's script did: "1.png" is not "11.png"),
label fake, ``reference`` = caption, one :class:`~bench.core.types.Region` per ref, mask rule
``polygon`` (float -> int32 truncation, ``cv2.fillPoly``, union over refs; see
:func:`bench.io.masks.polygons_to_mask`). Polygons reaching past the image border are filled
clipped, as LEGION's ``generate_mask`` does, and the sample carries a ``geometry_clipped``
warning (a column of samples.parquet); option ``strict=true`` refuses them instead.

Several records naming one image file: one sample, whose ground truth is the union of all
their regions, as LEGION's ``generate_mask`` builds it (its ``break`` leaves only the loop over
one record's keys, so every matching record is filled); the first record gives the caption and
meta, and a ``duplicate_record`` warning names the others. A broken one fails the sample.

Extension (not in the release): a record with ``"label": "real"`` is a real image (label 0,
mask rule ``none``, all-False mask, no refs allowed). The project's generated ``demo``
dataset writes its real images that way; ``"label": "fake"`` is accepted and is the default.
Any other record fields (e.g. ``content_type``, ``categories``) and a ref's ``category`` are
copied through (to ``Sample.meta`` and ``Region.category``).

Options: ``annotations=PATH`` replaces the annotation file (e.g. the pre-release file);
``images=DIR`` replaces the image folder; ``strict=true`` refuses polygons more than
:data:`bench.io.masks.OUTSIDE_TOLERANCE` past the image border (the harness's former rule) instead
of clipping them like LEGION. Broken records are never dropped: they become
Samples with ``error`` set, naming the annotation file and the annotation id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, ClassVar

from bench.errors import BenchError, DataMissingError
from bench.io.masks import parse_strict_option
from bench.core.registry import register_dataset
from bench.core.types import FAKE, REAL, Dataset, Region, Sample

#: Both spellings of the annotation folder (the upstream README writes ``annoations``).
ANNOTATION_DIRS = ("annotations", "annoations")
#: Warning code of an image named by several records (their regions are united).
DUPLICATE_WARNING = "duplicate_record"
#: Record fields the loader interprets; every other field is copied to ``Sample.meta``.
RECORD_FIELDS = frozenset({"img_file_name", "caption", "refs", "label"})
LABELS = {"fake": FAKE, "real": REAL}

FIX_HINT = (
    "fetch it with `bench data fetch synthscars`, or pass --data-root pointing at the "
    "SynthScars folder (the one holding train/ and test/)"
)


class RecordError(ValueError):
    """One annotation record is malformed (becomes ``Sample.error``)."""


@register_dataset
class SynthScars(Dataset):
    """SynthScars (LEGION, ICCV 2025): fully synthetic images with polygon artifact
    annotations, location phrases and explanations."""

    name: ClassVar[str] = "synthscars"
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    summary: ClassVar[str] = (
        "SynthScars (LEGION): synthetic images, polygon artifact masks, explanations; "
        "options annotations=PATH, images=DIR, strict=true"
    )
    #: Options this loader understands; a subclass adding options extends this set.
    known_options: ClassVar[frozenset[str]] = frozenset({"annotations", "images", "strict"})

    def __init__(self, data_root: Path | str | None = None, split: str = "test", **options: Any):
        unknown = set(options) - self.known_options
        if unknown:
            raise BenchError(
                f"{self.name}: unknown option(s) {', '.join(sorted(unknown))} "
                f"(known: {', '.join(sorted(self.known_options))})"
            )
        super().__init__(data_root, split, **options)
        #: ``strict=true``: polygons past the image border are refused, not clipped.
        self.strict = parse_strict_option(options.get("strict", False), self.name)

    def fingerprint(self) -> str:
        """The base fingerprint; with ``strict=true`` (other ground truth) a different one."""
        fp = super().fingerprint()
        return hashlib.sha256(f"{fp}\0strict-geometry".encode()).hexdigest() if self.strict else fp

    # -- locating files ------------------------------------------------------------------
    def split_dir(self) -> Path:
        """``<SynthScars>/<split>``, from ``data_root`` (the SynthScars folder or its parent)."""
        if self.data_root is None:
            raise DataMissingError(
                f"{self.name}: no data root given for split {self.split!r}; {FIX_HINT}"
            )
        root = self.data_root
        if not root.is_dir():
            raise DataMissingError(f"{self.name}: data root {root} is not an existing folder; {FIX_HINT}")
        for candidate in (root / self.split, root / "SynthScars" / self.split):
            if candidate.is_dir():
                return candidate
        present = sorted(p.name for p in root.iterdir() if p.is_dir())[:10]
        raise DataMissingError(
            f"{self.name}: {root} holds no {self.split}/ folder (nor SynthScars/{self.split}/); "
            f"sub-folders present: {', '.join(present) or 'none'}; {FIX_HINT}"
        )

    def annotation_path(self) -> Path:
        """The annotation JSON: the ``annotations`` option, else ``<split>/annotations/<split>.json``
        (or ``annoations/``)."""
        override = self.options.get("annotations")
        if override is not None:
            path = Path(override).expanduser()
            if not path.is_file():
                raise DataMissingError(
                    f"{self.name}: annotation file {path} (option annotations=) not found"
                )
            return path
        split_dir = self.split_dir()
        tried = [split_dir / d / f"{self.split}.json" for d in ANNOTATION_DIRS]
        for path in tried:
            if path.is_file():
                return path
        raise DataMissingError(
            f"{self.name}: annotation file not found (tried {tried[0]} and {tried[1]}); {FIX_HINT}"
        )

    def images_dir(self) -> Path:
        """The image folder: the ``images`` option, else ``<split>/images``."""
        override = self.options.get("images")
        path = Path(override).expanduser() if override is not None else self.split_dir() / "images"
        if not path.is_dir():
            source = " (option images=)" if override is not None else ""
            raise DataMissingError(f"{self.name}: image folder {path}{source} not found; {FIX_HINT}")
        return path

    def annotation_files(self) -> list[Path]:
        return [self.annotation_path()]

    # -- loading -------------------------------------------------------------------------
    def _load(self) -> list[Sample]:
        ann = self.annotation_path()
        return load_annotation_file(ann, self.images_dir(), source=self.name,
                                    clip_geometry=not self.strict)


def read_annotation_json(path: Path) -> list[Any]:
    """The top-level list of an annotation file; :class:`BenchError` naming the file otherwise.

    ``json.loads`` on bytes detects UTF-8 / UTF-16 / UTF-32 and a UTF-8 byte-order mark.
    """
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise DataMissingError(f"{path}: cannot read annotation file: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise BenchError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except UnicodeDecodeError as exc:
        raise BenchError(f"{path}: not valid JSON text ({exc})") from None
    if not isinstance(data, list):
        raise BenchError(
            f"{path}: top level is a JSON {_json_type(data)}; SynthScars annotations are a "
            "list of {annotation_id: record} objects"
        )
    return data


def load_annotation_file(path: Path, images_dir: Path, source: str = "synthscars",
                         clip_geometry: bool = True) -> list[Sample]:
    """One sample per image named in ``path``, in file order; images looked up in
    ``images_dir``. Several records naming one file (matched exactly, not by LEGION's
    substring): the image's ground truth is the union of their regions, as LEGION's
    ``generate_mask`` fills every matching record; the first record gives the id, caption and
    meta, and the sample carries a ``duplicate_record`` warning naming the others."""
    records = read_annotation_json(path)
    samples: list[Sample] = []
    first: dict[str, int] = {}  # file name -> position in samples
    merged: dict[str, list[str]] = {}  # file name -> the later records naming it
    for index, item in enumerate(records):
        ann_id = _annotation_id(item)
        label_id = f"annotation {ann_id!r}" if ann_id is not None else f"record #{index}"
        name = _file_name_of(item)
        try:
            sample = parse_record(item, images_dir, source)
        except RecordError as exc:
            sid = f"annotation:{ann_id}" if ann_id is not None else f"record:{index}"
            sample = Sample(
                id=sid, image_path=None,
                meta={"annotation_id": ann_id, "record_index": index, "source": source},
                mask_rule="none", error=f"{path}, {label_id}: {exc}",
            )
        if name is not None and name in first:
            merged.setdefault(name, []).append(f"{label_id} (record #{index})")
            samples[first[name]] = _merge_duplicate(samples[first[name]], sample, name, path)
            continue
        if name is not None:
            first[name] = len(samples)
        samples.append(replace(sample, clip_geometry=clip_geometry))

    for name, others in merged.items():
        s = samples[first[name]]
        warning = (
            f"{DUPLICATE_WARNING}: image file {name!r} is also named by {', '.join(others)} of "
            f"{path}: the ground truth is the union of their regions and those of the first "
            f"record (annotation {s.meta.get('annotation_id')!r}), whose caption is used, as "
            "LEGION's generate_mask fills every record naming the image"
        )
        samples[first[name]] = replace(s, warnings=s.warnings + (warning,))
    return _unique_ids(samples)


def _merge_duplicate(kept: Sample, extra: Sample, name: str, path: Path) -> Sample:
    """``kept`` with the regions of ``extra``, a later record for the same image file."""
    if kept.error:
        return kept
    if extra.error:
        return replace(kept, error=f"{extra.error} (a further record for image {name!r}, whose "
                                   "ground truth is the union of every record naming it)")
    if extra.label != kept.label:
        return replace(kept, error=f"{path}, annotation {extra.meta.get('annotation_id')!r}: "
                                   f"labels image {name!r} otherwise than annotation "
                                   f"{kept.meta.get('annotation_id')!r} does")
    regions = kept.regions + extra.regions
    return replace(kept, regions=regions, meta={**kept.meta, "n_regions": len(regions)})


def parse_record(item: Any, images_dir: Path, source: str = "synthscars") -> Sample:
    """One ``{annotation_id: record}`` object -> Sample; :class:`RecordError` if malformed."""
    if not isinstance(item, dict) or len(item) != 1:
        what = f"a {_json_type(item)}" if not isinstance(item, dict) else f"an object with {len(item)} keys"
        raise RecordError(f"expected an object with one key (the annotation id), got {what}")
    (ann_id, rec), = item.items()
    if not isinstance(rec, dict):
        raise RecordError(f"record is a JSON {_json_type(rec)}, not an object")

    raw_name = rec.get("img_file_name")
    if not isinstance(raw_name, str) or not raw_name.strip():
        raise RecordError("missing or empty 'img_file_name'")
    file_name = _base_name(raw_name)
    if file_name in ("", ".", ".."):
        raise RecordError(f"'img_file_name' {raw_name!r} has no file name")

    label_text = rec.get("label", "fake")
    if label_text not in LABELS:
        raise RecordError(f"'label' is {label_text!r}; expected 'fake' or 'real'")
    label = LABELS[label_text]

    caption = rec.get("caption")
    if caption is not None and not isinstance(caption, str):
        raise RecordError(f"'caption' is a JSON {_json_type(caption)}, not a string")

    refs = rec.get("refs", [] if label == REAL else None)
    if refs is None:
        raise RecordError("no 'refs' list")
    if not isinstance(refs, list):
        raise RecordError(f"'refs' is a JSON {_json_type(refs)}, not a list")
    if label == REAL and refs:
        raise RecordError(f"labelled real but has {len(refs)} artifact refs")
    regions = tuple(_parse_ref(k, ref) for k, ref in enumerate(refs))

    meta: dict[str, Any] = {k: v for k, v in rec.items() if k not in RECORD_FIELDS}
    meta.update(annotation_id=ann_id, file_name=file_name, n_regions=len(regions), source=source)
    return Sample(
        id=file_name,
        image_path=images_dir / file_name,
        label=label,
        reference=caption,
        regions=regions,
        meta=meta,
        mask_rule="polygon" if label == FAKE else "none",
    )


def _parse_ref(k: int, ref: Any) -> Region:
    if not isinstance(ref, dict):
        raise RecordError(f"ref {k} is a JSON {_json_type(ref)}, not an object")
    texts = {}
    for key in ("sentence", "explanation", "category"):
        value = ref.get(key)
        if value is not None and not isinstance(value, str):
            raise RecordError(f"ref {k} '{key}' is a JSON {_json_type(value)}, not a string")
        texts[key] = value
    seg = ref.get("segmentation")
    if not isinstance(seg, list):
        raise RecordError(f"ref {k} 'segmentation' is {_json_type(seg)}; expected a list of polygons")
    polygons = []
    for j, poly in enumerate(seg):
        if not isinstance(poly, list) or not all(_is_number(v) for v in poly):
            raise RecordError(
                f"ref {k} polygon {j} is not a flat list of numbers [x1, y1, x2, y2, ...]"
            )
        # Point count, NaN and image bounds are checked when the mask is built (at the image's
        # size) by bench.io.masks.polygons_to_mask, which raises SampleError naming the image.
        polygons.append(tuple(float(v) for v in poly))
    return Region(
        phrase=texts["sentence"] or "",
        explanation=texts["explanation"] or "",
        polygons=tuple(polygons),
        category=texts["category"],
    )


def _file_name_of(item: Any) -> str | None:
    """The base file name a raw record names (None when it names none)."""
    if isinstance(item, dict) and len(item) == 1:
        rec = next(iter(item.values()))
        raw = rec.get("img_file_name") if isinstance(rec, dict) else None
        if isinstance(raw, str) and _base_name(raw) not in ("", ".", ".."):
            return _base_name(raw)
    return None


def _annotation_id(item: Any) -> str | None:
    if isinstance(item, dict) and len(item) == 1:
        return str(next(iter(item)))
    return None


def _base_name(raw: str) -> str:
    """Base name of a bare name or of a POSIX / Windows path ("" for a folder path)."""
    raw = raw.strip()
    if raw.endswith(("/", "\\")):
        return ""
    name = PurePosixPath(raw).name
    return PureWindowsPath(name).name if "\\" in name else name


def _is_number(v: Any) -> bool:
    """A JSON number (not a boolean); NaN / infinity pass here and are refused by the mask
    builder, which names the image."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean",
            int: "number", float: "number"}.get(type(v), type(v).__name__)


def _unique_ids(samples: list[Sample]) -> list[Sample]:
    """Append ``#2``, ``#3`` ... to ids seen before (e.g. two broken records with one id)."""
    seen: set[str] = set()
    out = []
    for s in samples:
        sid, n = s.id, 1
        while sid in seen:
            n += 1
            sid = f"{s.id}#{n}"
        seen.add(sid)
        out.append(s if sid == s.id else replace(s, id=sid))
    return out
