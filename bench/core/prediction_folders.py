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

Every problem raises :class:`SampleError` naming the file (and, for ``predictions.jsonl``, the
line). ``predictions.jsonl`` is read line by line: a malformed, non-UTF-8 or duplicate line
fails only the sample it belongs to (when its id can still be read from it) with
``<file>:<line>: <problem>``; a sample without a line fails with a message naming the file
(and any lines that could not be attributed to a sample). :func:`folder_tasks` says which
tasks a folder holds predictions for, and why the others are missing.
"""

from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from bench.errors import SampleError
from bench.io.imageio import load_binary_mask_png
from bench.core.types import Prediction

__all__ = ["read_legion_prediction", "read_native_prediction", "read_predictions_jsonl", "folder_tasks",
           "PredictionsIndex"]

PREDICTIONS_FILE = "predictions.jsonl"
TASKS = ("detect", "localize", "explain")


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
        raw = path.read_bytes()
    except OSError as exc:
        raise SampleError(str(path), f"cannot read explanation JSON ({exc.strerror or exc})") from None
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise SampleError(f"{path}:{line}", f"not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise SampleError(f"{path}:{exc.lineno}", f"not valid JSON ({exc.msg} at column {exc.colno})") from None
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
@dataclass
class PredictionsIndex:
    """``predictions.jsonl`` parsed line by line.

    ``by_id`` / ``by_name``: the line (a dict with ``_where`` = ``file:line``) of each sample id
    and file name (and its stem). ``bad``: a problem (``file:line``, text) per id or file name
    whose line could not be used (malformed JSON, not UTF-8, duplicate); ``orphans``: problems
    on lines whose sample could not be told. ``exists``: the file is there.
    """

    path: Path
    exists: bool = False
    by_id: dict[str, dict] = field(default_factory=dict)
    by_name: dict[str, dict] = field(default_factory=dict)
    bad: dict[str, tuple[str, str]] = field(default_factory=dict)
    orphans: list[tuple[str, str]] = field(default_factory=list)
    has_explanation: bool = False
    has_score: bool = False

    def lookup(self, sample_id: str, file_name: str | None) -> dict | None:
        """The sample's line, or None; raises SampleError (``file:line``) when its line is bad."""
        keys = [sample_id] + ([file_name, Path(file_name).stem] if file_name else [])
        for k in keys:
            if k in self.bad:
                where, problem = self.bad[k]
                raise SampleError(where, problem)
        rec = self.by_id.get(sample_id)
        if rec is None and file_name:
            rec = self.by_name.get(file_name) or self.by_name.get(Path(file_name).stem)
        return rec

    def missing_message(self, sample_id: str) -> str:
        msg = f'no line for sample {sample_id!r} (by "id", or "file_name")'
        if self.orphans:
            where, problem = self.orphans[0]
            more = f" and {len(self.orphans) - 1} more" if len(self.orphans) > 1 else ""
            msg += f"; {len(self.orphans)} line(s) could not be read, e.g. {where}: {problem}{more}"
        return msg


_JSONL_CACHE: dict[tuple[str, int, int], PredictionsIndex] = {}
_JSONL_LOCK = threading.Lock()
_ID_RE = re.compile(r'"(id|file_name)"\s*:\s*("(?:[^"\\]|\\.)*"|-?\d+)')


def _recover_keys(text: str) -> list[str]:
    """Sample ids / file names still readable in a broken line (to fail that sample)."""
    out = []
    for field_name, value in _ID_RE.findall(text):
        try:
            v = str(json.loads(value))
        except ValueError:
            continue
        out += [v] if field_name == "id" else [v, Path(v).stem]
    return out


def read_predictions_jsonl(path: Path | str) -> PredictionsIndex:
    """Parse ``predictions.jsonl`` line by line into a :class:`PredictionsIndex` (remembered
    per (path, size, mtime)). Never raises for a bad line: the problem is attached to the
    line's sample (or kept as an orphan)."""
    path = Path(path)
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return PredictionsIndex(path)
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _JSONL_LOCK:
        if key in _JSONL_CACHE:
            return _JSONL_CACHE[key]
    idx = PredictionsIndex(path, exists=True)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        idx.orphans.append((str(path), f"cannot read the file ({exc.strerror or exc})"))
        return idx
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    first_line: dict[tuple[str, str], int] = {}

    def bad(keys: Iterable[str], where: str, problem: str) -> None:
        keys = [k for k in keys if k]
        if not keys:
            idx.orphans.append((where, problem))
        for k in keys:
            idx.bad.setdefault(k, (where, problem))

    for n, bline in enumerate(raw.split(b"\n"), 1):
        if not bline.strip():
            continue
        where = f"{path}:{n}"
        try:
            line = bline.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad(_recover_keys(bline.decode("utf-8", "replace")), where,
                f"not UTF-8 (byte 0x{bline[exc.start]:02x} at column {exc.start + 1})")
            continue
        try:
            rec = json.loads(line)
        except ValueError as exc:
            msg = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
            bad(_recover_keys(line), where, f"not valid JSON ({msg})")
            continue
        if not isinstance(rec, dict) or not ("id" in rec or "file_name" in rec):
            bad(_recover_keys(line), where, 'each line must be an object with "id" or "file_name"')
            continue
        rec = dict(rec, _where=where)
        keys = []
        if "id" in rec:
            keys.append(("id", str(rec["id"])))
        if "file_name" in rec:
            name = str(rec["file_name"])
            keys += [("name", k) for k in dict.fromkeys([name, Path(name).stem])]
        dup = [k for kind, k in keys if (kind, k) in first_line]
        if dup:
            k = dup[0]
            kind = next(kd for kd, kk in keys if kk == k)
            what = "id" if kind == "id" else "file name"
            bad([k for _, k in keys] + [k], where,
                f"{what} {k!r} appears twice (also line {first_line[(kind, k)]}); which one holds the prediction?")
            continue
        for kind, k in keys:
            first_line[(kind, k)] = n
            (idx.by_id if kind == "id" else idx.by_name)[k] = rec
        idx.has_explanation |= rec.get("explanation") is not None
        idx.has_score |= rec.get("score") is not None
    # a key whose first line was good but a later one duplicated it: the good line is ambiguous
    for k in idx.bad:
        idx.by_id.pop(k, None)
        idx.by_name.pop(k, None)
    with _JSONL_LOCK:
        _JSONL_CACHE[key] = idx
    return idx


def folder_tasks(folder: Path | str, fmt: str) -> tuple[set[str], dict[str, tuple[str, str | None]]]:
    """The tasks a prediction folder holds predictions for, and for each other task why not
    (reason, fix): ``localize`` (masks), ``explain`` (texts), ``detect`` (image scores)."""
    folder = Path(folder)
    tasks: set[str] = set()
    missing: dict[str, tuple[str, str | None]] = {}
    if fmt == "legion":
        tasks.add("localize")
        if any(folder.glob("*/explanation.json")):
            tasks.add("explain")
        else:
            missing["explain"] = (f"no <image>/explanation.json in the LEGION output folder {folder}: "
                                  "no explanations to score",
                                  "write LEGION's explanation.json files (its infer.py does) and score again")
        missing["detect"] = ("LEGION's output layout holds no image scores", None)
        return tasks, missing
    if (folder / "masks").is_dir() or (folder / "heatmaps").is_dir():
        tasks.add("localize")
    else:
        missing["localize"] = (f"no masks/ or heatmaps/ folder in {folder}: no localization to score",
                               f"write {folder}/masks/<id>.png (0/255) or heatmaps/<id>.png")
    idx = read_predictions_jsonl(folder / PREDICTIONS_FILE)
    jsonl = folder / PREDICTIONS_FILE
    for task, has, fld in (("explain", idx.has_explanation, "explanation"), ("detect", idx.has_score, "score")):
        if has:
            tasks.add(task)
        elif not idx.exists:
            missing[task] = (f"{jsonl} does not exist: no {fld}s to score",
                             f'write {jsonl} with one {{"id": ..., "{fld}": ...}} line per sample')
        else:
            missing[task] = (f'no line of {jsonl} has an "{fld}" field: no {fld}s to score',
                             f'add "{fld}" to the lines of {jsonl}')
    return tasks, missing


def _first_file(folder: Path, keys: list[str]) -> Path | None:
    for k in keys:
        p = folder / f"{k}.png"
        if p.is_file():
            return p
    return None


def _read_heatmap(path: Path, hw: tuple[int, int]) -> np.ndarray:
    from bench.io.imageio import open_checked, max_pixels

    try:
        with open_checked(path, str(path), max_pixels()) as img:
            img.load()
            mode = img.mode
            arr = np.asarray(img)
    except SampleError:
        raise
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
    folder: Path | str, sample_id: str, file_name: str | None, hw: tuple[int, int],
    tasks: Iterable[str] | None = None,
) -> Prediction:
    """Read one sample's prediction from a ``native`` folder (see the module doc).

    Files are looked up by ``sample_id`` first, then by the stem of ``file_name``. ``tasks``
    (default: what the folder holds, :func:`folder_tasks`) are the outputs this sample must
    have: a missing mask (``localize``) or a missing ``predictions.jsonl`` line (``explain``,
    ``detect``) raises SampleError naming the file; so does a bad line of this sample.
    """
    folder = Path(folder)
    if tasks is None:
        tasks = folder_tasks(folder, "native")[0]
    tasks = set(tasks)
    keys = [sample_id] + ([Path(file_name).stem] if file_name else [])
    keys = [k for i, k in enumerate(keys) if k and k not in keys[:i] and "/" not in k and k not in (".", "..")]
    if not keys:
        raise SampleError(str(folder), f"sample id {sample_id!r} cannot name a file in a prediction folder")
    mask_path = _first_file(folder / "masks", keys)
    heat_path = _first_file(folder / "heatmaps", keys)
    mask = load_binary_mask_png(mask_path, tuple(hw)) if mask_path else None
    heatmap = _read_heatmap(heat_path, tuple(hw)) if heat_path else None

    jsonl = folder / PREDICTIONS_FILE
    idx = read_predictions_jsonl(jsonl)
    rec: dict[str, Any] | None = idx.lookup(sample_id, file_name)  # a bad line raises (file:line)
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
        if "detect" in tasks and score is None:
            raise SampleError(where, f'no "score" for sample {sample_id!r} (other lines have one)')
        if "explain" in tasks and explanation is None:
            raise SampleError(where, f'no "explanation" for sample {sample_id!r} (other lines have one; '
                              'an empty string says "no explanation" and scores 0)')
    if mask is None and heatmap is None and rec is None:
        raise SampleError(
            str(folder), f"no prediction for sample {sample_id!r}: looked for masks/{keys[0]}.png, "
            f"heatmaps/{keys[0]}.png (or by file stem) and a line in predictions.jsonl"
            + (f" ({idx.missing_message(sample_id).split('; ', 1)[1]})" if idx.orphans else "")
        )
    if "localize" in tasks and mask is None and heatmap is None:
        raise SampleError(str(folder), f"no mask for sample {sample_id!r}: looked for masks/{keys[0]}.png "
                          f"and heatmaps/{keys[0]}.png (or by file stem)")
    if ("explain" in tasks or "detect" in tasks) and rec is None:
        raise SampleError(str(jsonl), idx.missing_message(sample_id) if idx.exists else "file not found")
    src = str(mask_path or heat_path or jsonl)
    return Prediction(heatmap=heatmap, mask=mask, score=score, explanation=explanation, extras={"source": src})
