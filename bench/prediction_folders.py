"""Readers for folders of precomputed predictions (used by ``bench score`` and the
``predictions`` adapter).

Two layouts:

``legion`` — LEGION's official ``scripts/loc_exp/infer.py`` output::

    <dir>/<image file name>/mask.png           0/255 greyscale, at the image's size
    <dir>/<image file name>/explanation.json   {"<image path>": "<cleaned text>"}

``native`` — this harness's own layout, keyed by sample id (or, failing that, the image file
name's stem)::

    <dir>/masks/<key>.png       binary mask, 0/255 (or 0/1), at the image's size
    <dir>/heatmaps/<key>.png    8-bit greyscale heatmap, value / 255 (16-bit: value / 65535)
    <dir>/predictions.jsonl     one JSON object a line: {"id" or "file_name", "score", "explanation"}

Every problem raises :class:`SampleError` naming the file.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import SampleError
from bench.imageio import load_binary_mask_png
from bench.types import Prediction

__all__ = ["read_legion_prediction", "read_native_prediction", "read_predictions_jsonl"]


# -- legion ------------------------------------------------------------------------------------
def read_legion_prediction(
    folder: Path | str, file_name: str, hw: tuple[int, int], *, require_explanation: bool = True
) -> Prediction:
    """Read ``<folder>/<file_name>/{mask.png, explanation.json}`` into a Prediction with a bool
    mask at ``hw`` = (H, W) and the explanation text.

    The explanation is the value whose key's base name is ``file_name``, else the only value.
    """
    sub = Path(folder) / file_name
    if not sub.is_dir():
        raise SampleError(str(sub), "no LEGION output folder for this image")
    mask = load_binary_mask_png(sub / "mask.png", tuple(hw))
    explanation: str | None = None
    exp_path = sub / "explanation.json"
    if exp_path.is_file():
        explanation = _legion_explanation(exp_path, file_name)
    elif require_explanation:
        raise SampleError(str(exp_path), "explanation file not found")
    return Prediction(mask=mask, explanation=explanation, extras={"source": str(sub)})


def _legion_explanation(path: Path, file_name: str) -> str:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SampleError(str(path), f"cannot read explanation JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or not data:
        raise SampleError(str(path), "expected a JSON object {\"<image path>\": \"<text>\"}")
    matches = [v for k, v in data.items() if Path(str(k)).name == file_name]
    if len(matches) == 1:
        text = matches[0]
    elif len(data) == 1:
        text = next(iter(data.values()))
    else:
        raise SampleError(str(path), f"{len(data)} entries and none (or several) for {file_name!r}")
    if not isinstance(text, str):
        raise SampleError(str(path), f"explanation is {type(text).__name__}, not a string")
    return text


# -- native ------------------------------------------------------------------------------------
_JSONL_CACHE: dict[tuple[str, int, int], tuple[dict[str, dict], dict[str, dict]]] = {}
_JSONL_LOCK = threading.Lock()


def read_predictions_jsonl(path: Path | str) -> tuple[dict[str, dict], dict[str, dict]]:
    """Parse ``predictions.jsonl`` into two indexes: by ``id`` and by ``file_name`` (and its
    stem). Remembered per (path, size, mtime). Raises SampleError naming the line."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return {}, {}
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _JSONL_LOCK:
        if key in _JSONL_CACHE:
            return _JSONL_CACHE[key]
    by_id: dict[str, dict] = {}
    by_name: dict[str, dict] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                rec = json.loads(line)
            except ValueError as exc:
                raise SampleError(where, f"not valid JSON ({exc})") from None
            if not isinstance(rec, dict) or not ("id" in rec or "file_name" in rec):
                raise SampleError(where, 'each line must be an object with "id" or "file_name"')
            rec = dict(rec, _where=where)
            if "id" in rec:
                sid = str(rec["id"])
                if sid in by_id:
                    raise SampleError(where, f"id {sid!r} appears twice")
                by_id[sid] = rec
            if "file_name" in rec:
                name = str(rec["file_name"])
                for k in {name, Path(name).stem}:
                    by_name.setdefault(k, rec)
    with _JSONL_LOCK:
        _JSONL_CACHE[key] = (by_id, by_name)
    return by_id, by_name


def _first_file(folder: Path, keys: list[str]) -> Path | None:
    for k in keys:
        p = folder / f"{k}.png"
        if p.is_file():
            return p
    return None


def _read_heatmap(path: Path, hw: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            arr = np.asarray(img)
    except Exception as exc:
        raise SampleError(str(path), f"cannot decode heatmap ({type(exc).__name__}: {exc})") from None
    if mode == "L":
        heat = arr.astype(np.float32) / 255.0
    elif mode.startswith("I;16") or (mode == "I" and arr.max(initial=0) <= 65535):
        heat = arr.astype(np.float32) / 65535.0
    else:
        raise SampleError(str(path), f"heatmap must be 8- or 16-bit greyscale, got PIL mode {mode}")
    if heat.shape != tuple(hw):
        raise SampleError(
            str(path), f"heatmap is {heat.shape[1]}x{heat.shape[0]} (W x H) but the image is {hw[1]}x{hw[0]}"
        )
    return heat


def read_native_prediction(
    folder: Path | str, sample_id: str, file_name: str | None, hw: tuple[int, int]
) -> Prediction:
    """Read one sample's prediction from a ``native`` folder (see the module doc).

    Files are looked up by ``sample_id`` first, then by the stem of ``file_name``. A sample with
    no mask, no heatmap and no ``predictions.jsonl`` line raises SampleError.
    """
    folder = Path(folder)
    keys = [sample_id] + ([Path(file_name).stem] if file_name else [])
    keys = [k for i, k in enumerate(keys) if k and k not in keys[:i] and "/" not in k and k not in (".", "..")]
    mask_path = _first_file(folder / "masks", keys)
    heat_path = _first_file(folder / "heatmaps", keys)
    mask = load_binary_mask_png(mask_path, tuple(hw)) if mask_path else None
    heatmap = _read_heatmap(heat_path, tuple(hw)) if heat_path else None

    jsonl = folder / "predictions.jsonl"
    by_id, by_name = read_predictions_jsonl(jsonl)
    rec: dict[str, Any] | None = by_id.get(sample_id)
    if rec is None and file_name:
        rec = by_name.get(file_name) or by_name.get(Path(file_name).stem)
    score = explanation = None
    if rec is not None:
        where = rec["_where"]
        if rec.get("score") is not None:
            s = rec["score"]
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or not 0 <= s <= 1:
                raise SampleError(where, f"score {s!r} is not a number in [0, 1]")
            score = float(s)
        if rec.get("explanation") is not None:
            if not isinstance(rec["explanation"], str):
                raise SampleError(where, "explanation must be a string")
            explanation = rec["explanation"]
    if mask is None and heatmap is None and rec is None:
        raise SampleError(
            str(folder), f"no prediction for sample {sample_id!r}: looked for masks/{keys[0]}.png, "
            f"heatmaps/{keys[0]}.png (or by file stem) and a line in predictions.jsonl"
        )
    src = str(mask_path or heat_path or jsonl)
    return Prediction(heatmap=heatmap, mask=mask, score=score, explanation=explanation, extras={"source": src})
