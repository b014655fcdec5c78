"""The adapter kit's contract check (``bench check-adapter NAME``).

Runs an adapter on a few inputs (the ``demo`` dataset, or synthetic images of varied sizes) and
checks what the runner relies on: one Prediction per input in order, outputs at each input's
size, mask bool / heatmap float32 in [0, 1] / score in [0, 1], no NaN, outputs for every
declared task, explanation text, the same result twice (deterministic adapters), the same result
for a reordered batch, a JSON-serialisable identity without secrets, and the time per image.
Each check is PASS / FAIL / WARN / SKIP / INFO with a reason.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from bench.types import Adapter, ModelInput, Prediction

PASS, FAIL, WARN, SKIP, INFO = "PASS", "FAIL", "WARN", "SKIP", "INFO"
VALID_TASKS = {"detect", "localize", "explain"}
#: env vars whose values must never appear in an adapter's identity
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.I)


@dataclass
class Check:
    name: str
    status: str
    detail: str = ""


@dataclass
class CheckReport:
    adapter: str
    inputs: str
    device: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    def add(self, name: str, status: str, detail: str = "") -> Check:
        c = Check(name, status, detail)
        self.checks.append(c)
        return c

    def get(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def render(self) -> str:
        lines = [f"check-adapter {self.adapter}  device={self.device}  inputs: {self.inputs}"]
        width = max((len(c.name) for c in self.checks), default=10)
        for c in self.checks:
            detail = c.detail.replace("\n", "\n" + " " * (width + 10))
            lines.append(f"  {c.status:<5} {c.name:<{width}}  {detail}".rstrip())
        counts = {s: sum(c.status == s for c in self.checks) for s in (PASS, FAIL, WARN, SKIP)}
        verdict = "PASS" if self.ok else "FAIL"
        lines.append(
            f"RESULT: {verdict} ({counts[PASS]} passed, {counts[FAIL]} failed, "
            f"{counts[WARN]} warnings, {counts[SKIP]} skipped)"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"adapter": self.adapter, "inputs": self.inputs, "device": self.device, "ok": self.ok,
                "checks": [c.__dict__ for c in self.checks]}


# -- inputs --------------------------------------------------------------------------------
#: (H, W) sizes of the synthetic inputs: odd, non-square, both orientations, so a model that
#: forgets to resize back, transposes H and W, or reorders outputs is caught.
SYNTHETIC_SIZES = [(64, 96), (97, 61), (48, 48), (120, 75), (33, 130), (80, 80), (71, 53), (100, 140)]


def synthetic_inputs(n: int = 8, seed: int = 0) -> list[ModelInput]:
    """``n`` deterministic RGB uint8 images of varied sizes: a colour gradient, noise and a bright
    square (a stand-in artifact)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = SYNTHETIC_SIZES[i % len(SYNTHETIC_SIZES)]
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([xx * 255 // max(1, w - 1), yy * 255 // max(1, h - 1),
                        np.full((h, w), 40 * (i % 6))], axis=-1).astype(np.int32)
        img += rng.integers(-20, 21, size=img.shape)
        y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
        img[y0:y0 + h // 4 + 1, x0:x0 + w // 4 + 1] = 250
        out.append(ModelInput(sample_id=f"synthetic-{i:02d}", image=np.clip(img, 0, 255).astype(np.uint8),
                              file_name=f"synthetic-{i:02d}.png"))
    return out


def demo_inputs(n: int = 8) -> list[ModelInput]:
    """The first ``n`` samples of the ``demo`` dataset (raises if it is unavailable)."""
    from bench.registry import create_dataset

    ds = create_dataset("demo")
    items = []
    for s in ds.samples():
        if len(items) >= n:
            break
        if getattr(s, "error", None):
            continue
        items.append(ModelInput(sample_id=s.id, image=s.load_image(), file_name=s.file_name))
    if not items:
        raise RuntimeError("the demo dataset has no usable samples")
    return items


def default_inputs(n: int = 8, synthetic: bool = False) -> tuple[list[ModelInput], str]:
    """Demo samples when available, else synthetic images; and a description."""
    if not synthetic:
        try:
            return demo_inputs(n), f"{n} demo samples"
        except Exception as exc:  # demo dataset missing or broken: still check the adapter
            reason = f"{type(exc).__name__}: {exc}".split("\n")[0][:120]
            return synthetic_inputs(n), f"{n} synthetic images (demo dataset unavailable: {reason})"
    return synthetic_inputs(n), f"{n} synthetic images"


# -- config parsing --------------------------------------------------------------------------
def parse_config_pairs(pairs: Sequence[str] | None) -> dict[str, Any]:
    """``["k=v", ...]`` -> dict (see :func:`bench.config_args.parse_pairs`)."""
    from bench.config_args import parse_pairs

    return parse_pairs(pairs)


# -- comparisons -------------------------------------------------------------------------------
def _diff(a: Prediction, b: Prediction, tol: float) -> str | None:
    """None when ``a`` and ``b`` are equal (heatmaps/scores within ``tol``), else what differs."""
    if a.extras.get("error") or b.extras.get("error"):
        return None if a.extras.get("error") == b.extras.get("error") else "error messages differ"
    for field_ in ("mask", "heatmap"):
        x, y = getattr(a, field_), getattr(b, field_)
        if (x is None) != (y is None):
            return f"{field_} present in one output only"
        if x is None:
            continue
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape:
            return f"{field_} shapes {x.shape} vs {y.shape}"
        if field_ == "mask":
            if not np.array_equal(x, y):
                return f"mask differs in {int(np.sum(x != y))} pixels"
        else:
            x, y = x.astype(np.float64), y.astype(np.float64)
            both_nan = np.isnan(x) & np.isnan(y)  # NaN is reported by its own check, not here
            diff = np.where(both_nan, 0.0, np.abs(x - y))
            d = float(np.max(diff)) if diff.size else 0.0
            if not d <= tol:
                return f"heatmap differs by up to {d:.3g}"
    if (a.score is None) != (b.score is None):
        return "score present in one output only"
    if a.score is not None:
        sa, sb = float(a.score), float(b.score)  # type: ignore[arg-type]
        if not (math.isnan(sa) and math.isnan(sb)) and not abs(sa - sb) <= tol:
            return f"score {a.score!r} vs {b.score!r}"
    if a.explanation != b.explanation:
        return "explanation text differs"
    return None


def _secrets() -> list[str]:
    return [v for k, v in os.environ.items() if _SECRET_NAME.search(k) and v and len(v) >= 8]


# -- the check ---------------------------------------------------------------------------------
def _run_batches(adapter: Adapter, inputs: Sequence[ModelInput], batch_size: int) -> tuple[list[Any], list[str]]:
    outs: list[Any] = []
    problems: list[str] = []
    for start in range(0, len(inputs), batch_size):
        chunk = list(inputs[start:start + batch_size])
        res = adapter.predict(chunk)
        if not isinstance(res, list):
            problems.append(f"predict returned {type(res).__name__}, not a list")
            res = list(res) if res is not None else []
        if len(res) != len(chunk):
            problems.append(f"batch of {len(chunk)} inputs gave {len(res)} outputs")
        outs.extend(list(res)[:len(chunk)] + [None] * max(0, len(chunk) - len(res)))
    return outs, problems


def check_adapter(
    adapter: Adapter | str,
    config: dict[str, Any] | None = None,
    *,
    inputs: Sequence[ModelInput] | None = None,
    inputs_label: str | None = None,
    device: str = "cpu",
    tolerance: float = 0.0,
    factory: Callable[..., Adapter] | None = None,
) -> CheckReport:
    """Check an adapter (an instance, or a registered name plus ``config``) against the contract."""
    if inputs is None:
        inputs, label = default_inputs(8)
    else:
        label = inputs_label or f"{len(inputs)} given inputs"
    name = adapter if isinstance(adapter, str) else getattr(adapter, "name", type(adapter).__name__)
    report = CheckReport(adapter=str(name), inputs=label, device=device)

    # construct
    if isinstance(adapter, str):
        try:
            if factory is None:
                from bench.registry import create_adapter as factory  # type: ignore[no-redef]
            adapter = factory(adapter, **(config or {}))  # type: ignore[misc]
        except Exception as exc:
            report.add("construct", FAIL, f"{type(exc).__name__}: {exc}")
            return report
        report.add("construct", PASS, f"config {json.dumps(config or {}, default=str)}")
    assert isinstance(adapter, Adapter) or hasattr(adapter, "predict")

    # declared
    tasks = set(getattr(adapter, "tasks", ()) or ())
    req = getattr(adapter, "requirements", {}) or {}
    problems = []
    if not tasks:
        problems.append("no tasks declared")
    if tasks - VALID_TASKS:
        problems.append(f"unknown tasks {sorted(tasks - VALID_TASKS)}")
    bs = req.get("batch_size")
    if not isinstance(bs, int) or isinstance(bs, bool) or bs < 1:
        problems.append(f"requirements['batch_size'] is {bs!r}; a positive int is required")
        bs = 1
    for key in ("num_gpus", "gpu_memory_gb"):
        if key in req and not (isinstance(req[key], (int, float)) and req[key] >= 0):
            problems.append(f"requirements[{key!r}] is {req[key]!r}")
    report.add("declared", FAIL if problems else PASS, "; ".join(problems) or
               f"tasks={','.join(sorted(tasks))} batch_size={bs} num_gpus={req.get('num_gpus', 0)} "
               f"gpu_memory_gb={req.get('gpu_memory_gb', 0)}")

    # load
    t0 = time.perf_counter()
    try:
        adapter.load(device)
    except Exception as exc:
        report.add("load", FAIL, f"{type(exc).__name__}: {exc}")
        return report
    report.add("load", PASS, f"{time.perf_counter() - t0:.2f} s")

    # predict
    batch = max(1, min(bs, len(inputs)))
    t0 = time.perf_counter()
    try:
        first, count_problems = _run_batches(adapter, inputs, batch)
    except Exception as exc:
        tb = traceback.format_exc(limit=3).strip().splitlines()
        report.add("predict", FAIL, f"{type(exc).__name__}: {exc}\n" + "\n".join(tb[-3:]))
        return report
    elapsed = time.perf_counter() - t0
    report.add("predict", PASS, f"{len(inputs)} inputs in batches of {batch}")
    report.add("count and order", FAIL if count_problems else PASS,
               "; ".join(count_problems) or "one output per input")

    per_sample: dict[str, list[str]] = {k: [] for k in
                                        ("types", "failed samples", "sizes", "dtypes", "ranges", "no NaN",
                                         "task outputs", "explanation type", "contract")}
    warnings: dict[str, list[str]] = {k: [] for k in per_sample}
    for item, pred in zip(inputs, first):
        sid, (h, w) = item.sample_id, item.image.shape[:2]
        if not isinstance(pred, Prediction):
            per_sample["types"].append(f"{sid}: got {type(pred).__name__}")
            continue
        if pred.extras.get("error"):
            per_sample["failed samples"].append(f"{sid}: {str(pred.extras['error']).splitlines()[0][:200]}")
            continue
        for fld in ("mask", "heatmap"):
            arr = getattr(pred, fld)
            if arr is None:
                continue
            arr = np.asarray(arr)
            if arr.shape != (h, w):
                per_sample["sizes"].append(f"{sid}: {fld} is {arr.shape}, image is {(h, w)} (H x W)")
            if fld == "mask" and arr.dtype != bool:
                per_sample["dtypes"].append(f"{sid}: mask dtype {arr.dtype}, bool required")
            if fld == "heatmap":
                if not np.issubdtype(arr.dtype, np.floating):
                    per_sample["dtypes"].append(f"{sid}: heatmap dtype {arr.dtype}, float32 required")
                else:
                    if arr.dtype != np.float32:
                        warnings["dtypes"].append(f"{sid}: heatmap dtype {arr.dtype} (float32 expected)")
                    if not np.all(np.isfinite(arr)):
                        per_sample["no NaN"].append(f"{sid}: heatmap has {int(np.sum(~np.isfinite(arr)))} NaN/inf values")
                    finite = arr[np.isfinite(arr)]
                    if finite.size and (finite.min() < 0 or finite.max() > 1):
                        per_sample["ranges"].append(f"{sid}: heatmap spans [{finite.min():.3g}, {finite.max():.3g}]")
        if pred.score is not None:
            s = pred.score
            if isinstance(s, bool) or not isinstance(s, (int, float, np.floating)):
                per_sample["dtypes"].append(f"{sid}: score is {type(s).__name__}")
            elif not math.isfinite(float(s)):
                per_sample["no NaN"].append(f"{sid}: score is {s}")
            elif not 0 <= float(s) <= 1:
                per_sample["ranges"].append(f"{sid}: score {s} outside [0, 1]")
        if "localize" in tasks and pred.mask is None and pred.heatmap is None:
            per_sample["task outputs"].append(f"{sid}: localize declared but no mask or heatmap")
        if "detect" in tasks and pred.score is None:
            per_sample["task outputs"].append(f"{sid}: detect declared but no score")
        if "explain" in tasks and pred.explanation is None:
            per_sample["task outputs"].append(f"{sid}: explain declared but no explanation")
        if pred.explanation is not None:
            if not isinstance(pred.explanation, str):
                per_sample["explanation type"].append(f"{sid}: explanation is {type(pred.explanation).__name__}")
            elif not pred.explanation.strip():
                warnings["explanation type"].append(f"{sid}: explanation is empty")
        try:
            pred.validate(h, w, tasks, sid)
        except Exception as exc:
            per_sample["contract"].append(str(exc))
    n_ok = len(first)
    for key, probs in per_sample.items():
        if probs:
            more = f" (+{len(probs) - 3} more)" if len(probs) > 3 else ""
            report.add(key, FAIL, "; ".join(probs[:3]) + more)
        elif warnings[key]:
            report.add(key, WARN, "; ".join(warnings[key][:3]))
        else:
            report.add(key, PASS, f"{n_ok} outputs")

    # determinism and order
    deterministic = bool(getattr(adapter, "deterministic", True))
    try:
        second, _ = _run_batches(adapter, inputs, batch)
        diffs = [f"{i.sample_id}: {d}" for i, a, b in zip(inputs, first, second)
                 if isinstance(a, Prediction) and isinstance(b, Prediction) and (d := _diff(a, b, tolerance))]
        if diffs:
            report.add("determinism", FAIL if deterministic else WARN,
                       ("two calls on the same inputs differ: " if deterministic else
                        "outputs differ between calls (adapter declares deterministic=False): ")
                       + "; ".join(diffs[:3]))
        else:
            report.add("determinism", PASS, "two calls gave equal outputs")
        rev_in = list(reversed(inputs))
        rev_out, _ = _run_batches(adapter, rev_in, batch)
        rev_out = list(reversed(rev_out))
        diffs = [f"{i.sample_id}: {d}" for i, a, b in zip(inputs, first, rev_out)
                 if isinstance(a, Prediction) and isinstance(b, Prediction) and (d := _diff(a, b, tolerance))]
        if diffs:
            report.add("batch order", FAIL if deterministic else WARN,
                       "an input's output changes when the batch is reordered: " + "; ".join(diffs[:3]))
        else:
            report.add("batch order", PASS, "reordered batch gave the same output per input")
    except Exception as exc:
        report.add("determinism", FAIL, f"repeat call raised {type(exc).__name__}: {exc}")

    # identity
    try:
        ident = adapter.identity()
        text = json.dumps(ident, sort_keys=True)
        problems = [k for k in ("name", "version", "config", "weights_sha256") if k not in ident]
        sha = ident.get("weights_sha256")
        if sha is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
            problems.append(f"weights_sha256 {sha!r} is not a sha256 hex digest")
        leaked = [s for s in _secrets() if s in text]
        if leaked:
            problems.append("identity contains the value of a secret environment variable (key/token)")
        report.add("identity", FAIL if problems else PASS,
                   "; ".join(f"missing {p}" if p in ("name", "version", "config", "weights_sha256") else p
                             for p in problems) or f"weights_sha256={sha}")
    except (TypeError, ValueError) as exc:
        report.add("identity", FAIL, f"identity() is not JSON-serialisable: {exc}")
    except Exception as exc:
        report.add("identity", FAIL, f"identity() raised {type(exc).__name__}: {exc}")

    report.add("time per image", INFO, f"{1000 * elapsed / max(1, len(inputs)):.1f} ms "
               f"(first call, {len(inputs)} images, device {device})")
    return report
