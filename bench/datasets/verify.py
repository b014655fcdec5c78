"""Is a dataset's data on disk complete? Used by ``bench data verify`` and, before a suite run,
by the runner (:func:`check_data_available`), which stops at once with the command that fixes it.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import DataMissingError, SampleError
from bench.io.imageio import decode_image, image_size, max_pixels, open_checked
from bench.core.registry import create_dataset
from bench.core.types import Dataset, Sample

log = logging.getLogger(__name__)

#: How to get each dataset's files; ``{root}`` is the data root the user gave (or DIR).
FIX_COMMANDS: dict[str, str] = {
    "synthscars": "bench data fetch synthscars --dest {root}",
    "loki": "bench data fetch loki --dest {root}   (then put LOKI's open_ended_vqa.json in {root}; "
            "the command prints where to get it)",
    "richhf": "bench data fetch richhf   (prints where to get the TFRecords and the Pick-a-Pic "
              "images, which cannot be fetched automatically)",
    "manifest": "fix the paths in the manifest (relative paths are resolved against its folder)",
}


def fix_command(dataset: str, data_root: Path | str | None) -> str:
    root = str(data_root) if data_root is not None else "DIR"
    return FIX_COMMANDS.get(dataset, f"bench data verify {dataset} --data-root {root}").format(root=root)


@dataclass
class DataReport:
    """Counts from checking a dataset's files. ``missing`` / ``unreadable`` name files (or ids)."""

    dataset: str
    split: str
    data_root: str | None
    n_records: int = 0
    n_found: int = 0
    missing: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    invalid: list[tuple[str, str]] = field(default_factory=list)  # broken records: (id, error)
    #: ground truth that cannot be built at the image's size (polygon, box, mask file): (id, error)
    bad_masks: list[tuple[str, str]] = field(default_factory=list)
    annotation_files: list[str] = field(default_factory=list)
    fingerprint: str | None = None
    n_masks_checked: int = 0

    @property
    def complete(self) -> bool:
        """True when there are records and every image is present and readable."""
        return self.n_records > 0 and not self.missing and not self.unreadable


def _image_state(sample: Sample) -> str:
    """``found`` / ``missing`` / ``none`` (a broken record that names no image)."""
    if sample.image_bytes is not None:
        return "found"
    if sample.image_path is None:
        return "missing" if sample.meta.get("image_missing") else "none"
    return "found" if Path(sample.image_path).is_file() else "missing"


def _label(sample: Sample) -> str:
    return str(sample.image_path) if sample.image_path is not None else str(sample.meta.get("file_name", sample.id))


def _check_header(sample: Sample, decode: bool) -> tuple[tuple[int, int] | None, str | None]:
    """((H, W), None) if the image opens (header only, or a full decode with ``decode``) within
    the pixel limit a run applies (``BENCH_MAX_PIXELS``), else (None, the problem)."""
    try:
        if decode:
            sample_bytes = sample.image_bytes
            arr = decode_image(sample_bytes if sample_bytes is not None else sample.image_path, name=_label(sample))
            hw = (int(arr.shape[0]), int(arr.shape[1]))
        elif sample.image_bytes is not None:
            with open_checked(io.BytesIO(sample.image_bytes), _label(sample), max_pixels()) as img:
                hw = (img.size[1], img.size[0])
        else:
            hw = image_size(sample.image_path)
    except SampleError as exc:
        return None, exc.problem
    except Exception as exc:  # PIL raises many types for an unidentifiable header
        return None, f"cannot read image header ({type(exc).__name__}: {exc})"
    return hw, None


def _check_mask(sample: Sample, hw: tuple[int, int]) -> str | None:
    """None if the ground-truth mask builds at the image's size (as the score phase builds
    it: polygons, boxes, heatmaps, mask files decoded), else the problem."""
    try:
        sample.load_mask(*hw)
    except SampleError as exc:
        return str(exc)
    except Exception as exc:  # a broken mask file, an odd annotation: report, never crash
        return f"{sample.where}: cannot build the ground-truth mask ({type(exc).__name__}: {exc})"
    return None


def verify_dataset(dataset: Dataset, decode: bool = False, masks: bool = True) -> DataReport:
    """Count records, images found / missing / unreadable (PIL header, or a full decode with
    ``decode``; the run's pixel limit either way), broken records, ground-truth masks that do
    not build at their image's size (``masks``), and compute the fingerprint. Reads only:
    nothing is written. Loader errors propagate."""
    samples = dataset.samples()
    report = DataReport(dataset.name, dataset.split,
                        str(dataset.data_root) if dataset.data_root is not None else None,
                        n_records=len(samples))
    for s in samples:
        state = _image_state(s)
        if state == "missing":
            report.missing.append(_label(s))
        elif state == "found":
            hw, problem = _check_header(s, decode)
            if problem is None:
                report.n_found += 1
                if masks and not s.error and hw is not None:
                    report.n_masks_checked += 1
                    bad = _check_mask(s, hw)
                    if bad:
                        report.bad_masks.append((s.id, bad))
            else:
                report.unreadable.append((_label(s), problem))
        if s.error and state != "missing":
            report.invalid.append((s.id, s.error))
    report.annotation_files = [str(p) for p in dataset.annotation_files()]
    report.fingerprint = dataset.fingerprint()
    return report


def check_data_available(dataset_name: str, data_root: Path | str | None, split: str = "test",
                         dataset: Any = None, **opts: Any) -> DataReport:
    """Before a suite run: load the dataset and check its image files exist (no decoding).

    Raises :class:`DataMissingError` with the exact command that fixes it when the annotations
    cannot be found, there are no records, or none of the images exists. Some images missing
    is only logged (those samples are counted as failed by the run). Returns the counts.
    """
    fix = fix_command(dataset_name, data_root)
    try:
        if dataset is None:  # the runner passes the dataset it built: loaded once
            dataset = create_dataset(dataset_name, data_root=data_root, split=split, **opts)
        samples = dataset.samples()
    except DataMissingError as exc:
        raise DataMissingError(f"{exc}\nFix: {fix}") from None
    report = DataReport(dataset_name, split, str(data_root) if data_root is not None else None,
                        n_records=len(samples))
    if not samples:
        raise DataMissingError(f"{dataset_name} ({split}): no records under {data_root}.\nFix: {fix}")
    for s in samples:
        state = _image_state(s)
        if state == "found":
            report.n_found += 1
        elif state == "missing":
            report.missing.append(_label(s))
    if report.n_found == 0 and report.missing:
        raise DataMissingError(
            f"{dataset_name} ({split}): none of the {len(samples)} records' images exists "
            f"(first missing: {', '.join(report.missing[:3])}).\nFix: {fix}"
        )
    if report.missing:
        log.warning("%s (%s): %d of %d images missing (counted as failed): %s%s",
                    dataset_name, split, len(report.missing), len(samples),
                    ", ".join(report.missing[:5]), " ..." if len(report.missing) > 5 else "")
    return report


def demo_data_missing(data_root: Path | str) -> str | None:
    """Where the demo's annotation file should be, if ``data_root`` does not hold a generated
    demo (then verifying it must not generate it: a check never writes into what it checks)."""
    root = Path(data_root)
    for cand in (root / "test" / "annotations" / "test.json",
                 root / "SynthScars" / "test" / "annotations" / "test.json"):
        if cand.is_file():
            return None
    return str(root / "SynthScars" / "test" / "annotations" / "test.json")
