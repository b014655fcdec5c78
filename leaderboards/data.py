"""What the leaderboard reads from ``results/`` beyond the runs themselves: per-sample tables,
gallery thumbnails, and a cheap signature of the folder for caching.

The runs are found, read and validated by :mod:`bench.results.reader` (:func:`load_runs`,
:class:`Run`, :class:`Loaded`, named here for the pages). Its rules hold here too: the
leaderboard shows files written by others, so only JSON (``gallery/index.json``), parquet
(``samples.parquet``) and JPEG/PNG thumbnails are read, nothing is unpickled or executed;
every file opened lies inside the results folder after resolving symbolic links; and no text
from a result becomes a path unless it is a safe name (:func:`run_file`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.results.reader import (  # noqa: F401  (Loaded, Run, load_runs: the pages' names)
    PUBLISHED_DEPTH, Loaded, Run, is_safe_component, load_runs, read_json, read_samples, run_file, run_folders,
)
from bench.results.schema import GALLERY_DIR, GALLERY_INDEX, PUBLISH_FILE, RESULTS_FILE, SAMPLES_FILE

#: Thumbnails larger than this many bytes are not decoded.
MAX_IMAGE_BYTES = 8 * 1024 * 1024
#: Thumbnails are at most this many pixels on the longest side (bench/engine/gallery.py: THUMB = 384); a little slack.
MAX_THUMB_SIDE = 1024
#: gallery/index.json files larger than this are not read.
MAX_INDEX_BYTES = 4 * 1024 * 1024


def signature(results_dir: Path | str) -> tuple:
    """A cheap fingerprint of the results folder's state (paths, sizes, mtimes) for caching."""
    root = Path(results_dir)
    if not root.is_dir():
        return ()
    return stat_signature(d / name for d in run_folders(root, PUBLISHED_DEPTH)
                          for name in (RESULTS_FILE, SAMPLES_FILE, PUBLISH_FILE))


def stat_signature(files: Iterable[Path]) -> tuple:
    """``(path, size, mtime in ns)`` of each of ``files`` that exists, in order: part of a
    cache key that changes when a file does."""
    sig = []
    for f in files:
        try:
            st = f.stat()
        except OSError:
            continue
        sig.append((str(f), st.st_size, st.st_mtime_ns))
    return tuple(sig)


# -- per-run files ------------------------------------------------------------------------

def load_samples(run: Run) -> pd.DataFrame:
    """The per-sample table as stored (parquet only). Empty frame when missing or unreadable."""
    path = run_file(run, SAMPLES_FILE)
    if path is None or not path.is_file():
        return pd.DataFrame()
    try:
        return read_samples(path)
    except BenchError:  # unreadable parquet: shown as "no per-sample data"
        return pd.DataFrame()


@dataclass(frozen=True)
class Gallery:
    """A run's validated gallery index: sample id -> safe id, condition key -> folder slug."""

    samples: dict[str, str]
    conditions: dict[str, str]


def load_gallery(run: Run) -> Gallery | None:
    """The gallery index with every unsafe entry dropped; None when the run has no gallery."""
    path = run_file(run, GALLERY_DIR, GALLERY_INDEX)
    if path is None or not path.is_file():
        return None
    try:
        idx = read_json(path, max_bytes=MAX_INDEX_BYTES)
    except ValueError:
        return None
    if not isinstance(idx, dict):
        return None
    samples: dict[str, str] = {}
    for s in idx.get("samples") or []:
        if isinstance(s, dict) and isinstance(s.get("sample_id"), str) and is_safe_component(s.get("safe_id")):
            samples[s["sample_id"]] = s["safe_id"]
    conds = {str(k): v for k, v in (idx.get("conditions") or {}).items() if is_safe_component(v)} \
        if isinstance(idx.get("conditions"), dict) else {}
    return Gallery(samples, conds)


def _read_image_file(path: Path | None, mode: str) -> np.ndarray | None:
    if path is None or not path.is_file():
        return None
    try:
        if path.stat().st_size > MAX_IMAGE_BYTES:
            return None
        from PIL import Image

        with Image.open(path) as img:
            if img.format not in ("JPEG", "PNG") or max(img.size) > MAX_THUMB_SIDE:
                return None
            img.load()
            return np.asarray(img.convert(mode))
    except Exception:  # a broken thumbnail is shown as missing, never crashes the page
        return None


def gallery_image(run: Run, gallery: Gallery, sample_id: str, condition: str | None = None) -> np.ndarray | None:
    """RGB uint8 thumbnail of the image the model was fed: the clean image (``condition`` None
    or ``clean``) or the one perturbed by ``condition`` (``images/<condition folder>/``, written
    for the first gallery samples only); None when absent or unreadable."""
    safe = gallery.samples.get(sample_id)
    if safe is None:
        return None
    if condition is None or condition == "clean":
        return _read_image_file(run_file(run, GALLERY_DIR, "images", f"{safe}.jpg"), "RGB")
    cslug = gallery.conditions.get(condition)
    if cslug is None:
        return None
    return _read_image_file(run_file(run, GALLERY_DIR, "images", cslug, f"{safe}.jpg"), "RGB")


def gallery_mask(run: Run, gallery: Gallery, sample_id: str, condition: str | None = None) -> np.ndarray | None:
    """Bool thumbnail mask: ground truth (``condition`` None) or the prediction under
    ``condition``; None when absent or unreadable."""
    safe = gallery.samples.get(sample_id)
    if safe is None:
        return None
    if condition is None:
        path = run_file(run, GALLERY_DIR, "gt", f"{safe}.png")
    else:
        cslug = gallery.conditions.get(condition)
        if cslug is None:
            return None
        path = run_file(run, GALLERY_DIR, "pred", cslug, f"{safe}.png")
    arr = _read_image_file(path, "L")
    return None if arr is None else arr > 127


# -- small helpers ------------------------------------------------------------------------

def metric_value(cond: dict, metric: str) -> tuple[float, float, float]:
    """(value, lo, hi) as fractions; NaN where absent or undefined."""
    m = (cond.get("metrics") or {}).get(metric)
    if not isinstance(m, dict):
        return (math.nan, math.nan, math.nan)

    def num(x: Any) -> float:
        return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan

    ci = m.get("ci95") if isinstance(m.get("ci95"), list) and len(m.get("ci95")) == 2 else [None, None]
    return (num(m.get("value")), num(ci[0]), num(ci[1]))


def to_json_text(obj: Any) -> str:
    """Pretty JSON for display (in st.code, which shows text verbatim)."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str)
