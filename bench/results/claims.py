"""Check numbers a paper claims against measured runs (`bench verify-claims`).

A claims file is YAML::

    schema: bench.claims/1             # optional
    title: LEGION robustness (Table 10)
    source: arXiv 2503.15264, appendix Table 10
    defaults: {dataset: synthscars, scale: 100, tolerance: 0, condition: clean}
    aliases: {LEGION: [legion], PAL4VST: [pal4vst]}   # claim method -> adapter names
    claims:
      - {method: PAL4VST, condition: clean, metric: miou, value: 56.10}
      - {method: LEGION, beats: PAL4VST, by: 3.31, metric: miou, condition: clean}

Fields of a claim (each may also come from ``defaults``):

- ``method`` (required): matched to a run's ``adapter.name``, exactly or through ``aliases``
  (case-insensitive);
- ``dataset`` and/or ``suite``: a run must match every one given (its ``dataset.name`` /
  ``suite.name``); with neither, any dataset matches;
- ``condition`` (default ``clean``): a condition key as runs record it, e.g.
  ``jpeg(quality=50)``; ``metric`` (required): a metric name, e.g. ``miou``;
- absolute claim: ``value``; relative claim: ``beats: B`` and optionally ``by: X``
  ("method's metric exceeds B's by X"; for lower-is-better metrics, "is lower by X");
- ``scale`` (default 100): the claim's numbers are ``fraction * scale`` (papers print x100;
  write ``scale: 1`` for fractions); ``tolerance`` (default 0, in the claim's scale): widens
  the interval on both sides (e.g. 0.005 for numbers rounded to 2 decimals);
- ``id``, ``note``: free text, shown.

Verdicts: ``consistent`` when the claimed value lies inside the measured 95% interval
(widened by the tolerance), else ``inconsistent`` with the distance to the interval; ``no run``
when no run matches (or the matching run lacks the condition or metric). A relative claim is
measured as the difference of the two runs with a paired bootstrap interval when both runs are
comparable (same dataset fingerprint and protocol) and carry ``samples.parquet``, else an
unpaired one; ``beats`` without ``by`` is consistent unless the whole interval is <= 0.
When several runs match a method, the newest (``created``) is used and the table says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench.core.conditions import Condition
from bench.results.compare import (Run, canonical_condition, comparability_problems, diff_one, joined_samples,
                           suffixed)
from bench.errors import BenchError

CLAIMS_SCHEMA = "bench.claims/1"
_CLAIM_KEYS = frozenset({"id", "method", "dataset", "suite", "condition", "metric", "value", "beats", "by",
                         "scale", "tolerance", "note"})
#: Added to every tolerance (fractions): float rounding must not turn "equal" into "inconsistent".
_FLOAT_SLACK = 1e-9
_TOP_KEYS = frozenset({"schema", "title", "source", "defaults", "aliases", "claims", "note"})


class ClaimsFileError(BenchError):
    """The claims file is malformed (the message names the file and the claim)."""


@dataclass
class Claim:
    method: str
    metric: str
    condition: str = "clean"
    value: float | None = None
    beats: str | None = None
    by: float | None = None
    dataset: str | None = None
    suite: str | None = None
    scale: float = 100.0
    tolerance: float = 0.0
    id: str | None = None
    note: str | None = None

    @property
    def relative(self) -> bool:
        return self.beats is not None

    def text(self) -> str:
        where = "/".join(x for x in (self.dataset, self.suite) if x) or "any dataset"
        fmt = (lambda v: f"{v:.2f}") if self.scale == 100 else (lambda v: f"{v:g}")  # papers print 2 decimals
        if self.relative:
            by = f" by {fmt(self.by)}" if self.by is not None else ""
            core = f"{self.method} beats {self.beats}{by} on {self.metric}"
        else:
            core = f"{self.method} {self.metric} = {fmt(self.value)}"
        return f"{core} [{self.condition}, {where}]"


@dataclass
class ClaimsFile:
    path: Path
    claims: list[Claim]
    aliases: dict[str, list[str]] = field(default_factory=dict)
    title: str = ""
    source: str = ""


def _num(v: Any, what: str, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        raise ClaimsFileError(f"{where}: {what} must be a finite number, got {v!r}")
    return float(v)


#: Built-in claims files: ``bench verify-claims NAME`` finds ``bench/claims/NAME.yaml``.
BUILTIN_DIR = Path(__file__).parents[1] / "claims"


def builtin_claims() -> list[str]:
    """Names of the built-in claims files (``legion_robustness`` ...)."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def resolve_claims(name_or_path: Path | str) -> Path:
    """A claims file by path, or a built-in one by name (``legion_robustness``)."""
    from bench.core.validate import did_you_mean

    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        raise ClaimsFileError(f"{p}: is a folder; give a claims YAML file or a built-in name "
                              f"({', '.join(builtin_claims())})")
    text = str(name_or_path)
    if "/" not in text and "\\" not in text:
        stem = text[:-5] if text.endswith(".yaml") else text[:-4] if text.endswith(".yml") else text
        builtin = BUILTIN_DIR / f"{stem}.yaml"
        if builtin.is_file():
            return builtin
        hint = did_you_mean(stem, builtin_claims())
    else:
        hint = ""
    raise ClaimsFileError(f"{text}: no such claims file or built-in claims name{hint} "
                          f"(built-in: {', '.join(builtin_claims())})")


def load_claims(path: Path | str) -> ClaimsFile:
    """Parse and validate a claims YAML (a path, or a built-in name, see :func:`resolve_claims`);
    :class:`ClaimsFileError` naming the file, the line and the claim."""
    from bench.core.validate import InputError, did_you_mean, load_yaml_file, node_line

    p = resolve_claims(path)
    try:
        data, root = load_yaml_file(p, "claims file")
    except InputError as exc:
        raise ClaimsFileError(str(exc)) from None
    if not isinstance(data, dict):
        raise ClaimsFileError(f"{p}: a claims file is a YAML mapping with a `claims:` list")
    unknown = sorted(set(data) - _TOP_KEYS, key=str)
    if unknown:
        k = unknown[0]
        raise ClaimsFileError(f"{p}:{node_line(root, [k], True)}: unknown top-level key {k!r}"
                              f"{did_you_mean(k, _TOP_KEYS)} (keys: {', '.join(sorted(_TOP_KEYS))})")
    if data.get("schema", CLAIMS_SCHEMA) != CLAIMS_SCHEMA:
        raise ClaimsFileError(f"{p}: schema is {data.get('schema')!r}, expected {CLAIMS_SCHEMA!r}")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict) or set(defaults) - _CLAIM_KEYS:
        bad = sorted(set(defaults) - _CLAIM_KEYS, key=str) if isinstance(defaults, dict) else []
        hint = f": unknown field {bad[0]!r}{did_you_mean(bad[0], _CLAIM_KEYS)}" if bad else ""
        raise ClaimsFileError(f"{p}:{node_line(root, ['defaults'])}: `defaults` must be a mapping of claim "
                              f"fields{hint} ({', '.join(sorted(_CLAIM_KEYS))})")
    aliases_raw = data.get("aliases") or {}
    if not isinstance(aliases_raw, dict):
        raise ClaimsFileError(f"{p}: `aliases` must map a method to an adapter name or a list of names")
    aliases = {str(k): [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in aliases_raw.items()}
    items = data.get("claims")
    if not isinstance(items, list) or not items:
        raise ClaimsFileError(f"{p}: `claims` must be a non-empty list")
    claims = []
    for i, item in enumerate(items, 1):
        where = f"{p}:{node_line(root, ['claims', i - 1])}: claim {i}"
        if not isinstance(item, dict):
            raise ClaimsFileError(f"{where}: must be a mapping, got {item!r}")
        unknown = sorted(set(item) - _CLAIM_KEYS, key=str)
        if unknown:
            k = unknown[0]
            raise ClaimsFileError(f"{where}: unknown field {k!r}{did_you_mean(k, _CLAIM_KEYS)} "
                                  f"(fields: {', '.join(sorted(_CLAIM_KEYS))})")
        c = {**defaults, **item}
        for key in ("method", "metric"):
            if not c.get(key):
                raise ClaimsFileError(f"{where}: missing {key!r}")
        if ("value" in c) == ("beats" in c):
            raise ClaimsFileError(f"{where}: give exactly one of `value` (absolute) or `beats` (relative)")
        if "by" in c and "beats" not in c:
            raise ClaimsFileError(f"{where}: `by` needs `beats`")
        scale = _num(c.get("scale", 100), "scale", where)
        if scale <= 0:
            raise ClaimsFileError(f"{where}: scale must be > 0")
        tol = _num(c.get("tolerance", 0), "tolerance", where)
        if tol < 0:
            raise ClaimsFileError(f"{where}: tolerance must be >= 0")
        _check_metric(str(c["metric"]), where)
        _check_condition(str(c.get("condition", "clean")), where)
        claims.append(Claim(
            method=str(c["method"]), metric=str(c["metric"]),
            condition=canonical_condition(str(c.get("condition", "clean"))),
            value=_num(c["value"], "value", where) if "value" in c else None,
            beats=str(c["beats"]) if "beats" in c else None,
            by=_num(c["by"], "by", where) if c.get("by") is not None else None,
            dataset=str(c["dataset"]) if c.get("dataset") else None,
            suite=str(c["suite"]) if c.get("suite") else None,
            scale=scale, tolerance=tol,
            id=str(c["id"]) if c.get("id") is not None else None,
            note=str(c["note"]) if c.get("note") else None,
        ))
    return ClaimsFile(p, claims, aliases, str(data.get("title") or ""), str(data.get("source") or ""))


def _check_metric(name: str, where: str) -> None:
    """A claim's metric must be registered: a typo would only ever find "no run"."""
    from bench.core.registry import METRICS
    from bench.core.validate import did_you_mean

    if name not in METRICS:
        raise ClaimsFileError(f"{where}: unknown metric {name!r}{did_you_mean(name, METRICS.names())} "
                              f"(metrics: {', '.join(METRICS.names())})")


def _check_condition(key: str, where: str) -> None:
    """A claim's condition must parse and name registered perturbations."""
    from bench.core.registry import PERTURBATIONS
    from bench.core.validate import did_you_mean

    try:
        cond = Condition.parse(key)
    except ValueError as exc:
        raise ClaimsFileError(f"{where}: condition {key!r}: {exc}") from None
    for step in cond.steps:
        if step.name not in PERTURBATIONS:
            raise ClaimsFileError(f"{where}: condition {key!r}: unknown perturbation {step.name!r}"
                                  f"{did_you_mean(step.name, PERTURBATIONS.names())} "
                                  f"(perturbations: {', '.join(PERTURBATIONS.names())})")


# -- matching -------------------------------------------------------------------------------------

def _names_for(method: str, aliases: dict[str, list[str]]) -> set[str]:
    names = {method.lower()}
    for k, v in aliases.items():
        if k.lower() == method.lower():
            names.update(x.lower() for x in v)
    return names


def matching_runs(claim: Claim, method: str, runs: Sequence[Run], aliases: dict[str, list[str]]) -> list[Run]:
    """Runs of ``method`` on the claim's dataset/suite, newest first."""
    names = _names_for(method, aliases)
    out = [r for r in runs
           if r.adapter.lower() in names
           and (claim.dataset is None or r.dataset.lower() == claim.dataset.lower())
           and (claim.suite is None or r.suite.lower() == claim.suite.lower())]
    return sorted(out, key=lambda r: r.created, reverse=True)


# -- verdicts -------------------------------------------------------------------------------------

@dataclass
class Verdict:
    claim: Claim
    status: str                    # consistent | inconsistent | no run
    measured: float = float("nan")  # fraction (a difference for relative claims)
    lo: float = float("nan")
    hi: float = float("nan")
    distance: float = 0.0           # in the claim's scale; > 0 only when inconsistent
    runs: str = ""
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        def f(x: float) -> float | None:
            return None if not np.isfinite(x) else float(x)

        return {"claim": self.claim.text(), "id": self.claim.id, "status": self.status,
                "measured": f(self.measured), "ci95": [f(self.lo), f(self.hi)],
                "distance": self.distance, "scale": self.claim.scale, "runs": self.runs, "note": self.note}


def _judge(claim: Claim, target: float | None, measured: float, lo: float, hi: float) -> tuple[str, float, str]:
    """(status, distance in claim scale, note) for claimed fraction ``target`` vs interval [lo, hi].

    ``target`` None is a bare ``beats``: the claim is "difference > 0".
    """
    tol = claim.tolerance / claim.scale + _FLOAT_SLACK
    note = ""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        lo = hi = measured
        note = "no interval; point value used"
    if not np.isfinite(lo):
        return "no run", 0.0, "no measured value"
    if target is None:
        if hi + tol > 0:
            return "consistent", 0.0, note
        return "inconsistent", round((0 - hi) * claim.scale, 6), note
    if lo - tol <= target <= hi + tol:
        return "consistent", 0.0, note
    dist = (lo - tol - target) if target < lo - tol else (target - hi - tol)
    side = "below" if target < lo else "above"
    return "inconsistent", round(dist * claim.scale, 6), (note + "; " if note else "") + f"claim is {side} the interval"


def _run_label(run: Run, n_matching: int) -> str:
    extra = f" (newest of {n_matching})" if n_matching > 1 else ""
    return f"{run.adapter}@{run.path.name}{extra}"


def verify_claim(claim: Claim, runs: Sequence[Run], aliases: dict[str, list[str]], *,
                 n_resamples: int | None = None, seed: int | None = None) -> Verdict:
    """The verdict for one claim against the given runs (see module docstring)."""
    ra_all = matching_runs(claim, claim.method, runs, aliases)
    if not ra_all:
        return Verdict(claim, "no run", note=f"no run of {claim.method}")
    ra = ra_all[0]
    label = _run_label(ra, len(ra_all))
    m = ra.metric(claim.condition, claim.metric)
    if m is not None and m.get("value") is None:  # recorded as not computed (e.g. no CSS model)
        return Verdict(claim, "no run", runs=label, note=f"{claim.metric} not computed under "
                       f"{claim.condition}: {m.get('reason') or 'no value'}")
    if not claim.relative:
        if m is None:
            return Verdict(claim, "no run", runs=label,
                           note=f"run has no {claim.metric} under {claim.condition}")
        value = float(m.get("value", float("nan")))
        ci = m.get("ci95") or [float("nan"), float("nan")]
        lo, hi = (float("nan") if x is None else float(x) for x in ci)
        status, dist, note = _judge(claim, claim.value / claim.scale, value, lo, hi)
        return Verdict(claim, status, value, lo, hi, dist, label, note)

    rb_all = matching_runs(claim, claim.beats or "", runs, aliases)
    if not rb_all:
        return Verdict(claim, "no run", runs=label, note=f"no run of {claim.beats}")
    rb = rb_all[0]
    label = f"{label} vs {_run_label(rb, len(rb_all))}"
    mb = rb.metric(claim.condition, claim.metric)
    if m is None or mb is None:
        who = claim.method if m is None else claim.beats
        return Verdict(claim, "no run", runs=label, note=f"{who}'s run has no {claim.metric} under {claim.condition}")
    if mb.get("value") is None:
        return Verdict(claim, "no run", runs=label, note=f"{claim.beats}'s {claim.metric} not computed under "
                       f"{claim.condition}: {mb.get('reason') or 'no value'}")
    from bench.metrics import get_metric

    try:
        hib = get_metric(claim.metric).higher_is_better
    except Exception:
        hib = True
    sign = 1.0 if hib else -1.0
    boot = ra.protocol.get("bootstrap") or {}
    n_boot = int(n_resamples if n_resamples is not None else boot.get("n", 1000))
    seed_ = int(seed if seed is not None else boot.get("seed", 0))
    note = ""
    row = None
    if ra.has_samples and rb.has_samples:
        if not comparability_problems(ra, rb):
            row = diff_one(joined_samples(ra, rb), claim.condition, claim.metric, n_resamples=n_boot, seed=seed_)
            note = "paired"
        else:
            ok_a = ra.samples[ra.samples["status"] == "ok"]
            ok_b = rb.samples[rb.samples["status"] == "ok"]
            row = diff_one(suffixed(ok_a, "_a"), claim.condition, claim.metric, n_resamples=n_boot, seed=seed_,
                           paired=False, b_rows=suffixed(ok_b, "_b"))
            note = "unpaired (runs not comparable)"
    if row is not None:
        diff, lo, hi = sign * row.diff, *sorted((sign * row.lo, sign * row.hi))
    else:
        diff = sign * (float(m["value"]) - float(mb["value"]))
        lo = hi = float("nan")
        note = "no per-sample values"
    target = None if claim.by is None else claim.by / claim.scale
    status, dist, jnote = _judge(claim, target, diff, lo, hi)
    return Verdict(claim, status, diff, lo, hi, dist, label, "; ".join(x for x in (note, jnote) if x))


def verify_claims(cf: ClaimsFile, runs: Sequence[Run], **kw: Any) -> list[Verdict]:
    return [verify_claim(c, runs, cf.aliases, **kw) for c in cf.claims]
