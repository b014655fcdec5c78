"""Reading ``results/`` safely for the leaderboard.

Rules (the leaderboard shows files written by others):
- only JSON (``results.json``, ``publish.json``, ``gallery/index.json``), parquet
  (``samples.parquet``) and image files (JPEG/PNG thumbnails) are read — nothing is unpickled
  or executed;
- every file opened lies inside the results folder after resolving symlinks;
- no text from a result becomes a path: run folders are found by listing the folder, and
  gallery file names must match :data:`bench.results.publish.SAFE_COMPONENT` before use.

A results folder may be the published layout ``<root>/<suite>/<run>/results.json``, a folder of
runs ``<root>/<run>/results.json`` (``bench run --out``), or a single run folder.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.results.publish import (
    GALLERY_DIR, PUBLISH_FILE, RESULTS_FILE, SAMPLES_FILE, contained, is_safe_component,
    read_json, validate_results,
)

#: Thumbnails larger than this many bytes are not decoded.
MAX_IMAGE_BYTES = 8 * 1024 * 1024
#: Thumbnails are at most this many pixels on the longest side (bench/engine/gallery.py: THUMB = 384); a little slack.
MAX_THUMB_SIDE = 1024


@dataclass(frozen=True)
class Run:
    """One (adapter, suite) result found under the results folder."""

    root: Path          # the results folder (resolved)
    dir: Path           # the run folder (resolved, inside root)
    data: dict          # parsed results.json (validated)
    published: dict = field(default_factory=dict)  # parsed publish.json, {} if none

    @property
    def rel(self) -> str:
        """The run folder relative to the results folder (display and widget keys)."""
        rel = self.dir.relative_to(self.root).as_posix()
        return rel if rel != "." else self.dir.name

    @property
    def run_id(self) -> str:
        return str(self.data["run_id"])

    @property
    def suite(self) -> str:
        return str(self.data["suite"]["name"])

    @property
    def adapter(self) -> str:
        return str(self.data["adapter"]["name"])

    @property
    def flags(self) -> dict[str, Any]:
        f = self.data["adapter"].get("flags") or {}
        return f if isinstance(f, dict) else {}

    @property
    def tasks(self) -> list[str]:
        t = self.data["adapter"].get("tasks") or []
        return [str(x) for x in t] if isinstance(t, list) else []

    @property
    def conditions(self) -> list[dict]:
        return list(self.data["conditions"])

    @property
    def n_failed(self) -> int:
        return int(sum(int(c.get("n_failed") or 0) for c in self.conditions))

    @property
    def created(self) -> str:
        return str(self.data.get("created", ""))


@dataclass
class Loaded:
    """All runs found, plus the folders that were skipped and why."""

    root: Path
    runs: list[Run]
    problems: list[tuple[str, str]]  # (folder relative to root, reason)


def _candidate_dirs(root: Path) -> list[Path]:
    """Folders that may hold a run: root itself, its children, its grandchildren (no hidden
    folders, e.g. publish's temporary ones)."""
    out: list[Path] = []
    if (root / RESULTS_FILE).is_file():
        out.append(root)
    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (child / RESULTS_FILE).is_file():
            out.append(child)
            continue
        out.extend(sorted(g for g in child.iterdir()
                          if g.is_dir() and not g.name.startswith(".") and (g / RESULTS_FILE).is_file()))
    return out


def load_runs(results_dir: Path | str) -> Loaded:
    """Read every valid run under ``results_dir``; invalid ones are reported, not shown."""
    root = Path(results_dir).resolve()
    runs: list[Run] = []
    problems: list[tuple[str, str]] = []
    if not root.is_dir():
        return Loaded(root, [], [(str(results_dir), "results folder not found")])
    for d in _candidate_dirs(root):
        rel = d.relative_to(root).as_posix() if d != root else "."
        rj = d / RESULTS_FILE
        if not contained(root, d) or not contained(root, rj):
            problems.append((rel, "points outside the results folder (symbolic link); skipped"))
            continue
        try:
            data = read_json(rj)
        except ValueError as exc:
            problems.append((rel, str(exc)))
            continue
        errs = validate_results(data)
        if errs:
            problems.append((rel, "; ".join(errs[:3]) + (f" (+{len(errs) - 3} more)" if len(errs) > 3 else "")))
            continue
        published: dict = {}
        pj = d / PUBLISH_FILE
        if pj.is_file() and contained(root, pj):
            try:
                meta = read_json(pj)
                published = meta if isinstance(meta, dict) else {}
            except ValueError:
                published = {}
        runs.append(Run(root, d.resolve(), data, published))
    return Loaded(root, runs, problems)


def signature(results_dir: Path | str) -> tuple:
    """A cheap fingerprint of the results folder's state (paths, sizes, mtimes) for caching."""
    root = Path(results_dir)
    if not root.is_dir():
        return ()
    sig = []
    for d in _candidate_dirs(root):
        for name in (RESULTS_FILE, SAMPLES_FILE, PUBLISH_FILE):
            f = d / name
            try:
                st = f.stat()
            except OSError:
                continue
            sig.append((str(f), st.st_size, st.st_mtime_ns))
    return tuple(sig)


# -- per-run files ------------------------------------------------------------------------

def run_file(run: Run, *parts: str) -> Path | None:
    """``run.dir / parts...`` if every part is a safe name and the result (symlinks resolved)
    stays inside both the run folder and the results folder; else None."""
    if not parts or not all(is_safe_component(p) for p in parts):
        return None
    path = run.dir.joinpath(*parts)
    if not (contained(run.root, path) and contained(run.dir, path)):
        return None
    return path


def load_samples(run: Run) -> pd.DataFrame:
    """The per-sample table (parquet only). Empty frame when missing or unreadable."""
    import pyarrow.parquet as pq

    path = run_file(run, SAMPLES_FILE)
    if path is None or not path.is_file():
        return pd.DataFrame()
    try:
        return pq.read_table(path).to_pandas()
    except Exception:  # unreadable parquet: shown as "no per-sample data"
        return pd.DataFrame()


@dataclass(frozen=True)
class Gallery:
    """A run's validated gallery index: sample id -> safe id, condition key -> folder slug."""

    samples: dict[str, str]
    conditions: dict[str, str]


def load_gallery(run: Run) -> Gallery | None:
    """The gallery index with every unsafe entry dropped; None when the run has no gallery."""
    path = run_file(run, GALLERY_DIR, "index.json")
    if path is None or not path.is_file():
        return None
    try:
        idx = read_json(path, max_bytes=4 * 1024 * 1024)
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


def gallery_image(run: Run, gallery: Gallery, sample_id: str) -> np.ndarray | None:
    """RGB uint8 thumbnail of the clean image, or None."""
    safe = gallery.samples.get(sample_id)
    if safe is None:
        return None
    return _read_image_file(run_file(run, GALLERY_DIR, "images", f"{safe}.jpg"), "RGB")


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
