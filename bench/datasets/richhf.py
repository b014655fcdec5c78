"""RichHF-18K loader: human artifact heatmaps on Pick-a-Pic images (docs/protocol.md §4).

Layout (``data_root``)::

    train.tfrecord  dev.tfrecord  test.tfrecord     github google-research-datasets/richhf-18k (Git LFS)
    images/<uid>.<ext>                              Pick-a-Pic v1 images (and/or *.parquet files)

Each TFRecord holds ``tf.train.Example`` protos with eight features: ``filename`` (bytes),
``aesthetics_score``, ``artifact_score``, ``misalignment_score``, ``overall_score`` (floats,
higher is better), ``artifact_map``, ``misalignment_map`` (encoded single-channel 512 x 512
images, 0-255) and ``prompt_misalignment_label`` (bytes: space-separated 0/1, 0 = misaligned
token). They are read without TensorFlow, both CRCs checked
(:mod:`bench.datasets.tfrecord_reader`).

A record's uid is its ``filename``'s base name without the extension; its image is
``<images>/<uid>.<ext>`` or, in Pick-a-Pic parquet files, the ``jpg_0`` / ``jpg_1`` bytes of
the row whose ``image_0_uid`` / ``image_1_uid`` equals the uid (only the uid columns are read
for every row group, the JPEG columns only for row groups holding a wanted uid).

Each record becomes one fake Sample: id = uid; mask rule ``heatmap`` with ``gt_heatmap_png`` =
the encoded artifact map (decoded on demand to uint8 0-255): the mask is heatmap > 0 resized to the
image with nearest neighbour (:func:`bench.io.masks.heatmap_to_mask`); reference None (the
explanation is not scored on RichHF). The other seven features are in ``meta``
(``misalignment_map_png`` keeps the encoded bytes).

Options: ``images=`` a folder, a parquet file, a glob pattern, or a list of those (replaces
``<data_root>/images``). A corrupt or truncated record, an undecodable heatmap, or a record
whose image is not found becomes a Sample with ``error`` set (counted as failed); the load
goes on and logs how many images are missing with the first few uids.
"""

from __future__ import annotations

import glob
import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Iterable


from bench.errors import BenchError, DataMissingError
from bench.core.registry import register_dataset
from bench.core.types import FAKE, Dataset, Sample
from bench.io.imageio import decode_heatmap

log = logging.getLogger(__name__)

#: The eight features of a RichHF-18K example and their TF kinds.
FEATURES: dict[str, str] = {
    "filename": "bytes",
    "aesthetics_score": "float",
    "artifact_score": "float",
    "misalignment_score": "float",
    "overall_score": "float",
    "artifact_map": "bytes",
    "misalignment_map": "bytes",
    "prompt_misalignment_label": "bytes",
}
SCORES = ("aesthetics_score", "artifact_score", "misalignment_score", "overall_score")
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
#: Pick-a-Pic parquet columns: (uid column, JPEG bytes column).
PICKAPIC_PAIRS = (("image_0_uid", "jpg_0"), ("image_1_uid", "jpg_1"))
SHOW_MISSING = 5

TFRECORD_HINT = (
    "get {split}.tfrecord from https://github.com/google-research-datasets/richhf-18k "
    "(Git LFS: `git lfs pull`) into the data root; `bench data fetch richhf` prints the steps"
)
IMAGES_HINT = (
    "put the Pick-a-Pic v1 images in <data root>/images/<uid>.<ext>, or pass images= a folder "
    "or the Pick-a-Pic parquet files (HF dataset yuvalkirstain/pickapic_v1; the test split "
    "for test.tfrecord); `bench data fetch richhf` prints the steps"
)


def uid_of(filename: str) -> str:
    """A record's uid: the base name of its ``filename`` without folder or extension."""
    return PurePosixPath(filename.replace("\\", "/")).stem


@dataclass
class ImageIndex:
    """Where each wanted uid's image is: a file (``paths``) or JPEG bytes (``blobs``)."""

    paths: dict[str, Path] = field(default_factory=dict)
    blobs: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # uid -> (bytes, source)
    searched: list[str] = field(default_factory=list)  # human-readable list of sources


def _expand_sources(images: Any) -> list[Path]:
    items = images if isinstance(images, (list, tuple)) else [images]
    out: list[Path] = []
    for item in items:
        text = str(item)
        if any(c in text for c in "*?["):
            matches = sorted(glob.glob(str(Path(text).expanduser())))
            if not matches:
                raise DataMissingError(f"richhf: images pattern {text!r} matches no file; {IMAGES_HINT}")
            out.extend(Path(m) for m in matches)
        else:
            out.append(Path(text).expanduser())
    return out


def build_image_index(sources: Iterable[Path], wanted: set[str]) -> ImageIndex:
    """Find the images of ``wanted`` uids in folders (``<uid>.<ext>``, not recursive; also any
    ``*.parquet`` in them) and Pick-a-Pic parquet files. The first source holding a uid wins."""
    index = ImageIndex()
    parquet_files: list[Path] = []
    for src in sources:
        if src.is_dir():
            index.searched.append(f"{src}/<uid>.<ext>")
            for entry in sorted(src.iterdir()):
                if not entry.is_file():
                    continue
                suffix = entry.suffix.lower()
                if suffix == ".parquet":
                    parquet_files.append(entry)
                elif suffix in IMAGE_EXTS and entry.stem in wanted:
                    index.paths.setdefault(entry.stem, entry)
        elif src.is_file() and src.suffix.lower() == ".parquet":
            parquet_files.append(src)
        elif src.exists():
            raise BenchError(f"richhf: images source {src} is neither a folder nor a .parquet file")
        else:
            raise DataMissingError(f"richhf: images source {src} not found; {IMAGES_HINT}")
    for pq_path in parquet_files:
        index.searched.append(str(pq_path))
        todo = wanted - index.paths.keys() - index.blobs.keys()
        if todo:
            for uid, data in read_pickapic_parquet(pq_path, todo).items():
                index.blobs[uid] = (data, str(pq_path))
    return index


def read_pickapic_parquet(path: Path, wanted: set[str]) -> dict[str, bytes]:
    """``{uid: JPEG bytes}`` for the ``wanted`` uids found in one Pick-a-Pic parquet file.

    Reads the uid columns row group by row group, and a JPEG column only for row groups that
    hold a wanted uid (a Pick-a-Pic file is mostly image bytes). A cell may be raw bytes or a
    Hugging Face ``Image`` struct ``{bytes, path}``.
    """
    import pyarrow.parquet as pq  # local: only RichHF with parquet images needs it

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for a non-parquet file
        raise BenchError(f"{path}: cannot read as parquet ({type(exc).__name__}: {exc})") from None
    names = set(pf.schema_arrow.names)
    pairs = [(u, j) for u, j in PICKAPIC_PAIRS if u in names and j in names]
    if not pairs:
        raise BenchError(
            f"{path}: not a Pick-a-Pic parquet file (needs columns image_0_uid + jpg_0 and/or "
            f"image_1_uid + jpg_1; has {', '.join(sorted(names)[:12])})"
        )
    found: dict[str, bytes] = {}
    for rg in range(pf.num_row_groups):
        uid_table = pf.read_row_group(rg, columns=[u for u, _ in pairs])
        for uid_col, jpg_col in pairs:
            uids = uid_table.column(uid_col).to_pylist()
            rows = [i for i, u in enumerate(uids) if u in wanted and u not in found]
            if not rows:
                continue
            jpgs = pf.read_row_group(rg, columns=[jpg_col]).column(jpg_col).take(rows).to_pylist()
            for i, cell in zip(rows, jpgs):
                data = cell.get("bytes") if isinstance(cell, dict) else cell
                if isinstance(data, (bytes, bytearray)) and data:
                    found[uids[i]] = bytes(data)
    return found


@register_dataset
class RichHF(Dataset):
    """RichHF-18K (CVPR 2024): human artifact heatmaps on Pick-a-Pic v1 images."""

    name: ClassVar[str] = "richhf"
    splits: ClassVar[tuple[str, ...]] = ("train", "dev", "test")
    summary: ClassVar[str] = (
        "RichHF-18K: artifact heatmaps (mask = map > 0) on Pick-a-Pic images; option images=DIR|PARQUET"
    )
    known_options: ClassVar[frozenset[str]] = frozenset({"images"})

    def __init__(self, data_root: Path | str | None = None, split: str = "test", **options: Any):
        unknown = set(options) - self.known_options
        if unknown:
            raise BenchError(
                f"richhf: unknown option(s) {', '.join(sorted(unknown))} (known: images)"
            )
        if split not in self.splits:
            raise BenchError(f"richhf: unknown split {split!r}; splits are {', '.join(self.splits)}")
        super().__init__(data_root, split, **options)
        #: uids of records whose image was not found (filled by the load).
        self.missing_images: list[str] = []

    def tfrecord_path(self) -> Path:
        hint = TFRECORD_HINT.format(split=self.split)
        if self.data_root is None:
            raise DataMissingError(f"richhf: no data root given; {hint}")
        path = self.data_root / f"{self.split}.tfrecord"
        if not path.is_file():
            raise DataMissingError(f"richhf: {path} not found; {hint}")
        if path.stat().st_size < 200 and path.read_bytes().startswith(b"version https://git-lfs"):
            raise DataMissingError(f"richhf: {path} is a Git LFS pointer, not the data; run `git lfs pull`")
        return path

    def image_sources(self) -> list[Path]:
        override = self.options.get("images")
        if override is not None:
            return _expand_sources(override)
        default = (self.data_root or Path(".")) / "images"
        return [default] if default.is_dir() else []

    def annotation_files(self) -> list[Path]:
        return [self.tfrecord_path()]

    def _load(self) -> list[Sample]:
        # local: protobuf / crc32c load only when RichHF is actually read
        from bench.datasets.tfrecord_reader import ExampleError, iter_records, parse_example

        path = self.tfrecord_path()
        parsed: list[tuple[int, dict[str, Any] | None, str | None]] = []
        for rec in iter_records(path):
            if rec.error:
                parsed.append((rec.index, None, rec.error))
                continue
            where = f"{path}: record {rec.index}"
            try:
                parsed.append((rec.index, _features(parse_example(rec.payload)), None))
            except (ExampleError, ValueError) as exc:
                parsed.append((rec.index, None, f"{where}: {exc}"))
        wanted = {uid_of(f["filename"]) for _, f, _ in parsed if f is not None}
        sources = self.image_sources()
        index = build_image_index(sources, wanted)
        searched = "; ".join(index.searched) or f"no image source ({(self.data_root or Path('.')) / 'images'} does not exist)"

        samples: list[Sample] = []
        seen: set[str] = set()
        self.missing_images = []
        for rec_index, feats, error in parsed:
            if feats is None:
                samples.append(Sample(
                    id=f"{self.split}.tfrecord#{rec_index}", image_path=None, label=FAKE,
                    meta={"source": "richhf", "record_index": rec_index},
                    mask_rule="heatmap", error=error,
                ))
                continue
            samples.append(self._sample(path, rec_index, feats, index, searched, seen))
        if self.missing_images:
            shown = ", ".join(self.missing_images[:SHOW_MISSING])
            more = " ..." if len(self.missing_images) > SHOW_MISSING else ""
            log.warning(
                "richhf %s: %d of %d records have no image (counted as failed): %s%s; searched %s",
                self.split, len(self.missing_images), len(parsed), shown, more, searched,
            )
        return samples

    def _sample(self, path: Path, rec_index: int, feats: dict[str, Any], index: ImageIndex,
                searched: str, seen: set[str]) -> Sample:
        filename = feats["filename"]
        uid = uid_of(filename)
        where = f"{path}: record {rec_index} (uid {uid!r})"
        sid, n = uid, 1
        while sid in seen:
            n += 1
            sid = f"{uid}#{n}"
        seen.add(sid)
        meta: dict[str, Any] = {
            "source": "richhf", "record_index": rec_index, "uid": uid, "filename": filename,
            **{k: feats[k] for k in SCORES},
            "prompt_misalignment_label": feats["prompt_misalignment_label"],
            "misalignment_map_png": feats["misalignment_map"],
        }
        image_path: Path | None = None
        image_bytes: bytes | None = None
        problems: list[str] = []  # the record's own problems first, then a missing image
        if sid != uid:
            problems.append(f"uid {uid!r} appears more than once in {path.name}")
        try:  # decoded once to check it, then kept encoded (memory); decoded again at scoring
            meta["artifact_map_shape"] = tuple(decode_heatmap(feats["artifact_map"]).shape)
        except Exception as exc:  # PIL raises many types for corrupt data
            problems.append(f"cannot decode artifact_map ({type(exc).__name__}: {exc})")
        if uid in index.paths:
            image_path = index.paths[uid]
            meta["file_name"] = image_path.name
        elif uid in index.blobs:
            image_bytes, src = index.blobs[uid]
            meta["file_name"] = f"{uid}.jpg"
            meta["image_source"] = src
        else:
            meta["file_name"] = f"{uid}.jpg"
            meta["image_missing"] = True
            problems.append(f"no image found for this uid (searched {searched})")
            self.missing_images.append(uid)
        error = f"{where}: {'; '.join(problems)}" if problems else None
        return Sample(
            id=sid, image_path=image_path, label=FAKE, reference=None, meta=meta,
            mask_rule="heatmap", image_bytes=image_bytes, gt_heatmap_png=feats["artifact_map"], error=error,
        )


def _features(example: dict[str, tuple[str, list]]) -> dict[str, Any]:
    """The eight RichHF features as Python values; ValueError naming what is missing or wrong."""
    missing = [k for k in FEATURES if k not in example]
    if missing:
        raise ValueError(f"missing feature(s) {', '.join(missing)}")
    out: dict[str, Any] = {}
    for name, kind in FEATURES.items():
        got_kind, values = example[name]
        if got_kind != kind:
            raise ValueError(f"feature {name!r} is a {got_kind} list; expected {kind}")
        if not values:
            raise ValueError(f"feature {name!r} is empty")
        out[name] = values[0]
    for name in ("filename", "prompt_misalignment_label"):
        try:
            out[name] = out[name].decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"feature {name!r} is not UTF-8 text") from None
    if not uid_of(out["filename"]):
        raise ValueError(f"feature 'filename' {out['filename']!r} has no base name")
    for name in SCORES:
        out[name] = float(out[name])
    return out
