"""The adapter kit's contract check (``bench check-adapter NAME``).

Runs an adapter on a few inputs (the ``demo`` dataset, or synthetic images of varied sizes) and
checks what the runner relies on: one Prediction per input in order, outputs at each input's
size, mask bool / heatmap float32 in [0, 1] / score in [0, 1], no NaN, outputs for every
declared task, explanation text, the same result twice (deterministic adapters), the same result
for a reordered batch, a JSON-serialisable identity without secrets, and the time per image.
Each check is PASS / FAIL / WARN / SKIP / INFO with a reason. The output rules are not written
here: they are :meth:`bench.core.types.Prediction.problems` (the runner's own check), grouped into
checks by :data:`OUTPUT_CHECKS`.
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

from bench.errors import SampleError
from bench.core.types import Adapter, ModelInput, Prediction

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
    from bench.core.registry import create_dataset

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
    """``["k=v", ...]`` -> dict (see :func:`bench.core.config_args.parse_pairs`)."""
    from bench.core.config_args import parse_pairs

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
    built = _check_construct(report, adapter, config, factory)
    if built is None:
        return report
    tasks, batch_size = _check_declared(report, built)
    if not _check_load(report, built, device):
        return report
    batch = max(1, min(batch_size, len(inputs)))
    first, elapsed = _check_predict(report, built, inputs, batch)
    if first is None:
        return report
    _check_outputs(report, inputs, first, tasks)
    deterministic = bool(getattr(built, "deterministic", True))
    _check_determinism(report, built, inputs, first, batch, tolerance, deterministic)
    _check_batch_order(report, built, inputs, first, batch, tolerance, deterministic)
    _check_identity(report, built)
    report.add("time per image", INFO, f"{1000 * elapsed / max(1, len(inputs)):.1f} ms "
               f"(first call, {len(inputs)} images, device {device})")
    return report


def _check_construct(report: CheckReport, adapter: Adapter | str, config: dict[str, Any] | None,
                     factory: Callable[..., Adapter] | None) -> Adapter | None:
    """An instance is used as given; a name is built with ``config`` ("construct")."""
    if not isinstance(adapter, str):
        return adapter
    try:
        if factory is None:
            from bench.core.registry import create_adapter as factory  # type: ignore[no-redef]
        built = factory(adapter, **(config or {}))  # type: ignore[misc]
    except Exception as exc:
        report.add("construct", FAIL, f"{type(exc).__name__}: {exc}")
        return None
    report.add("construct", PASS, f"config {json.dumps(config or {}, default=str)}")
    return built


def _check_declared(report: CheckReport, adapter: Adapter) -> tuple[set[str], int]:
    """Known tasks, a positive int batch size, non-negative GPU needs ("declared"); returns the
    tasks and the batch size to use (1 when the declared one is unusable)."""
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
    return tasks, bs


def _check_load(report: CheckReport, adapter: Adapter, device: str) -> bool:
    """``load(device)`` returns ("load"); False when it raised."""
    t0 = time.perf_counter()
    try:
        adapter.load(device)
    except Exception as exc:
        report.add("load", FAIL, f"{type(exc).__name__}: {exc}")
        return False
    report.add("load", PASS, f"{time.perf_counter() - t0:.2f} s")
    return True


def _check_predict(report: CheckReport, adapter: Adapter, inputs: Sequence[ModelInput],
                   batch: int) -> tuple[list[Any] | None, float]:
    """``predict`` runs on every input ("predict") and gives one output per input, in order
    ("count and order"); returns the outputs (None when it raised) and the seconds taken."""
    t0 = time.perf_counter()
    try:
        outputs, count_problems = _run_batches(adapter, inputs, batch)
    except Exception as exc:
        tb = traceback.format_exc(limit=3).strip().splitlines()
        report.add("predict", FAIL, f"{type(exc).__name__}: {exc}\n" + "\n".join(tb[-3:]))
        return None, 0.0
    elapsed = time.perf_counter() - t0
    report.add("predict", PASS, f"{len(inputs)} inputs in batches of {batch}")
    report.add("count and order", FAIL if count_problems else PASS,
               "; ".join(count_problems) or "one output per input")
    return outputs, elapsed


#: the per-output checks, in report order, and the :meth:`Prediction.problems` /
#: :meth:`Prediction.advisories` rules each one reports. "types" (not a Prediction) and "failed
#: samples" (``extras['error']``) are about the output as a whole; "contract" lists, per output,
#: the message the runner would record (the first problem), and any rule not grouped here.
OUTPUT_CHECKS: dict[str, tuple[str, ...]] = {
    "types": (),
    "failed samples": (),
    "sizes": ("mask_size", "heatmap_size"),
    "dtypes": ("mask_dtype", "heatmap_dtype", "score_type", "heatmap_float32"),
    "ranges": ("heatmap_range", "score_range"),
    "no NaN": ("heatmap_finite", "score_finite"),
    "task outputs": ("localize_output", "detect_output", "explain_output"),
    "explanation type": ("explanation_type", "explanation_empty"),
    "contract": (),
}
_CHECK_OF_RULE = {rule: check for check, rules in OUTPUT_CHECKS.items() for rule in rules}


def _check_outputs(report: CheckReport, inputs: Sequence[ModelInput], outputs: Sequence[Any],
                   tasks: set[str]) -> None:
    """Every output against the contract (:meth:`Prediction.problems`), one check per group of
    rules (:data:`OUTPUT_CHECKS`): FAIL for problems, WARN for advisories, else PASS."""
    fails: dict[str, list[str]] = {k: [] for k in OUTPUT_CHECKS}
    warns: dict[str, list[str]] = {k: [] for k in OUTPUT_CHECKS}
    for item, pred in zip(inputs, outputs):
        _file_output(item, pred, tasks, fails, warns)
    for key in OUTPUT_CHECKS:
        if fails[key]:
            more = f" (+{len(fails[key]) - 3} more)" if len(fails[key]) > 3 else ""
            report.add(key, FAIL, "; ".join(fails[key][:3]) + more)
        elif warns[key]:
            report.add(key, WARN, "; ".join(warns[key][:3]))
        else:
            report.add(key, PASS, f"{len(outputs)} outputs")


def _file_output(item: ModelInput, pred: Any, tasks: set[str], fails: dict[str, list[str]],
                 warns: dict[str, list[str]]) -> None:
    """File one output's problems and advisories under their checks."""
    sid, (h, w) = item.sample_id, item.image.shape[:2]
    if not isinstance(pred, Prediction):
        fails["types"].append(f"{sid}: got {type(pred).__name__}")
        return
    if pred.extras.get("error"):
        fails["failed samples"].append(f"{sid}: {str(pred.extras['error']).splitlines()[0][:200]}")
        return
    try:
        problems, notes = pred.problems(h, w, tasks), pred.advisories()
    except Exception as exc:  # arrays numpy cannot read: the runner records "invalid output"
        fails["contract"].append(f"{sid}: invalid output: {type(exc).__name__}: {exc}")
        return
    for found, into in ((problems, fails), (notes, warns)):
        for p in found:
            into[_CHECK_OF_RULE.get(p.rule, "contract")].append(f"{sid}: {p.brief}")
    if problems:
        fails["contract"].append(str(SampleError(sid, str(problems[0]))))


def _diffs(inputs: Sequence[ModelInput], a: Sequence[Any], b: Sequence[Any], tol: float) -> list[str]:
    """``"id: what differs"`` for each input whose two Predictions differ (:func:`_diff`)."""
    return [f"{i.sample_id}: {d}" for i, x, y in zip(inputs, a, b)
            if isinstance(x, Prediction) and isinstance(y, Prediction) and (d := _diff(x, y, tol))]


def _check_determinism(report: CheckReport, adapter: Adapter, inputs: Sequence[ModelInput], first: list[Any],
                       batch: int, tol: float, deterministic: bool) -> None:
    """A second call on the same inputs gives the same outputs ("determinism"; WARN only for an
    adapter declaring ``deterministic = False``)."""
    try:
        diffs = _diffs(inputs, first, _run_batches(adapter, inputs, batch)[0], tol)
    except Exception as exc:
        report.add("determinism", FAIL, f"repeat call raised {type(exc).__name__}: {exc}")
        return
    if not diffs:
        report.add("determinism", PASS, "two calls gave equal outputs")
        return
    report.add("determinism", FAIL if deterministic else WARN,
               ("two calls on the same inputs differ: " if deterministic else
                "outputs differ between calls (adapter declares deterministic=False): ") + "; ".join(diffs[:3]))


def _check_batch_order(report: CheckReport, adapter: Adapter, inputs: Sequence[ModelInput], first: list[Any],
                       batch: int, tol: float, deterministic: bool) -> None:
    """An input's output does not depend on its batch: the reversed inputs give the same output
    per input ("batch order"; WARN only for a non-deterministic adapter)."""
    try:
        rev_out, _ = _run_batches(adapter, list(reversed(inputs)), batch)
        diffs = _diffs(inputs, first, list(reversed(rev_out)), tol)
    except Exception as exc:
        report.add("batch order", FAIL, f"reordered call raised {type(exc).__name__}: {exc}")
        return
    if diffs:
        report.add("batch order", FAIL if deterministic else WARN,
                   "an input's output changes when the batch is reordered: " + "; ".join(diffs[:3]))
    else:
        report.add("batch order", PASS, "reordered batch gave the same output per input")


_IDENTITY_KEYS = ("name", "version", "config", "weights_sha256")


def _check_identity(report: CheckReport, adapter: Adapter) -> None:
    """``identity()`` is JSON with name, version, config and a sha256 (or None) for the weights,
    and holds no secret environment value ("identity")."""
    try:
        ident = adapter.identity()
        text = json.dumps(ident, sort_keys=True)
    except (TypeError, ValueError) as exc:
        report.add("identity", FAIL, f"identity() is not JSON-serialisable: {exc}")
        return
    except Exception as exc:
        report.add("identity", FAIL, f"identity() raised {type(exc).__name__}: {exc}")
        return
    if not isinstance(ident, dict):
        report.add("identity", FAIL, f"identity() returned {type(ident).__name__}, not a dict")
        return
    problems = [f"missing {k}" for k in _IDENTITY_KEYS if k not in ident]
    sha = ident.get("weights_sha256")
    if sha is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
        problems.append(f"weights_sha256 {sha!r} is not a sha256 hex digest")
    if any(s in text for s in _secrets()):
        problems.append("identity contains the value of a secret environment variable (key/token)")
    report.add("identity", FAIL if problems else PASS, "; ".join(problems) or f"weights_sha256={sha}")
