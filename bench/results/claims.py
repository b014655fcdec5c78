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
from bench.errors import BenchError
from bench.results.protocol import comparability_problems
from bench.results.reader import Run, canonical_condition

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


#: Where claims files live: ``<results>/<suite>/claims/NAME.yaml`` (the board's content, reviewed
#: like code). ``bench verify-claims NAME`` looks in ``./results`` and in the project's own
#: ``results/`` (beside the ``bench`` package in a checkout).
CLAIMS_GLOB = "*/claims/*.yaml"


def claims_roots() -> list[Path]:
    """The results folders searched for claims by name: ``./results``, then the project's."""
    roots: list[Path] = []
    for r in (Path.cwd() / "results", Path(__file__).resolve().parents[2] / "results"):
        if r.is_dir() and r.resolve() not in [x.resolve() for x in roots]:
            roots.append(r)
    return roots


def claims_files(results_dir: Path | str | None = None) -> list[Path]:
    """Every ``<suite>/claims/*.yaml`` under ``results_dir`` (default: :func:`claims_roots`),
    sorted; symbolic links are skipped (the board reads only plain files inside its folder)."""
    roots = [Path(results_dir)] if results_dir is not None else claims_roots()
    out: list[Path] = []
    for root in roots:
        if root.is_dir():
            out += sorted(p for p in root.glob(CLAIMS_GLOB)
                          if p.is_file() and not p.is_symlink() and not p.parent.is_symlink())
    return out


def claims_names(files: Sequence[Path] | None = None) -> dict[str, Path]:
    """Name -> file: the file's stem when one suite has it, else ``<suite>/<stem>`` for each
    (``legion_table2_localization`` is in synthscars, loki and richhf). The first root wins."""
    files = claims_files() if files is None else list(files)
    by_stem: dict[str, dict[str, Path]] = {}
    for f in files:
        by_stem.setdefault(f.stem, {}).setdefault(f.parent.parent.name, f)
    out: dict[str, Path] = {}
    for stem, suites in sorted(by_stem.items()):
        if len(suites) == 1:
            out[stem] = next(iter(suites.values()))
        for suite, f in sorted(suites.items()):
            out[f"{suite}/{stem}"] = f
    return out


def claims_listing(names: dict[str, Path] | None = None) -> str:
    """The names to offer, comma-separated: stems where unique, ``suite/stem`` where a stem is
    in several suites."""
    names = claims_names() if names is None else names
    stems = {n for n in names if "/" not in n}
    shown = [n for n in names if "/" not in n or n.rpartition("/")[2] not in stems]
    return ", ".join(shown) or "none found"


def resolve_claims(name_or_path: Path | str) -> Path:
    """A claims file by path, or by name: ``NAME`` or ``SUITE/NAME`` for
    ``results/SUITE/claims/NAME.yaml`` (``legion_table10_robustness``)."""
    from bench.core.validate import did_you_mean

    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    names = claims_names()
    if p.is_dir():
        raise ClaimsFileError(f"{p}: is a folder; give a claims YAML file or a claims name "
                              f"({claims_listing(names)})")
    text = str(name_or_path)
    stem = text[:-5] if text.endswith(".yaml") else text[:-4] if text.endswith(".yml") else text
    if stem in names:
        return names[stem]
    in_suites = sorted(n for n in names if n.endswith("/" + stem))
    if in_suites:
        raise ClaimsFileError(f"{text}: claims name in several suites; give one of {', '.join(in_suites)}")
    raise ClaimsFileError(f"{text}: no such claims file or claims name{did_you_mean(stem, names)} "
                          f"(names, from results/<suite>/claims/: {claims_listing(names)})")


def load_claims(path: Path | str) -> ClaimsFile:
    """Parse and validate a claims YAML.

    Parameters
    ----------
    path : Path or str
        A claims file, or a built-in name (:func:`resolve_claims`).

    Returns
    -------
    claims_file : ClaimsFile
        The claims, each with the file's ``defaults`` applied and its condition canonical.

    Raises
    ------
    ClaimsFileError
        Naming the file, the line and the claim.
    """
    from bench.core.validate import InputError, load_yaml_file, node_line

    p = resolve_claims(path)
    try:
        data, root = load_yaml_file(p, "claims file")
    except InputError as exc:
        raise ClaimsFileError(str(exc)) from None
    _check_top_level(p, data, root)
    defaults = _defaults(p, data, root)
    aliases = _aliases(p, data)
    items = data.get("claims")
    if not isinstance(items, list) or not items:
        raise ClaimsFileError(f"{p}: `claims` must be a non-empty list")
    claims = [_claim(item, defaults, f"{p}:{node_line(root, ['claims', i])}: claim {i + 1}")
              for i, item in enumerate(items)]
    return ClaimsFile(p, claims, aliases, str(data.get("title") or ""), str(data.get("source") or ""))


def _check_top_level(p: Path, data: Any, root: Any) -> None:
    """The file is a mapping of known top-level keys with the claims schema (if named)."""
    from bench.core.validate import node_line

    if not isinstance(data, dict):
        raise ClaimsFileError(f"{p}: a claims file is a YAML mapping with a `claims:` list")
    unknown = _unknown_key(data, _TOP_KEYS, "top-level key", "keys")
    if unknown:
        raise ClaimsFileError(f"{p}:{node_line(root, [unknown[0]], True)}: {unknown[1]}")
    if data.get("schema", CLAIMS_SCHEMA) != CLAIMS_SCHEMA:
        raise ClaimsFileError(f"{p}: schema is {data.get('schema')!r}, expected {CLAIMS_SCHEMA!r}")


def _unknown_key(mapping: dict, known: frozenset[str], noun: str, plural: str) -> tuple[str, str] | None:
    """(the first key of ``mapping`` not in ``known``, ``unknown <noun> 'k'`` with a suggestion
    and the ``known`` list), or None when every key is known."""
    from bench.core.validate import did_you_mean

    unknown = sorted(set(mapping) - known, key=str)
    if not unknown:
        return None
    k = unknown[0]
    return k, f"unknown {noun} {k!r}{did_you_mean(k, known)} ({plural}: {', '.join(sorted(known))})"


def _defaults(p: Path, data: dict, root: Any) -> dict[str, Any]:
    """The file's ``defaults``: a mapping of claim fields."""
    from bench.core.validate import did_you_mean, node_line

    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict) or set(defaults) - _CLAIM_KEYS:
        bad = sorted(set(defaults) - _CLAIM_KEYS, key=str) if isinstance(defaults, dict) else []
        hint = f": unknown field {bad[0]!r}{did_you_mean(bad[0], _CLAIM_KEYS)}" if bad else ""
        raise ClaimsFileError(f"{p}:{node_line(root, ['defaults'])}: `defaults` must be a mapping of claim "
                              f"fields{hint} ({', '.join(sorted(_CLAIM_KEYS))})")
    return defaults


def _aliases(p: Path, data: dict) -> dict[str, list[str]]:
    """The file's ``aliases``: claim method -> adapter names (one name becomes a list)."""
    raw = data.get("aliases") or {}
    if not isinstance(raw, dict):
        raise ClaimsFileError(f"{p}: `aliases` must map a method to an adapter name or a list of names")
    return {str(k): [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in raw.items()}


def _claim(item: Any, defaults: dict[str, Any], where: str) -> Claim:
    """One entry of ``claims``, with ``defaults`` applied; ``where`` names it in errors."""
    if not isinstance(item, dict):
        raise ClaimsFileError(f"{where}: must be a mapping, got {item!r}")
    unknown = _unknown_key(item, _CLAIM_KEYS, "field", "fields")
    if unknown:
        raise ClaimsFileError(f"{where}: {unknown[1]}")
    c = {**defaults, **item}
    _check_fields(c, where)
    scale = _num(c.get("scale", 100), "scale", where)
    if scale <= 0:
        raise ClaimsFileError(f"{where}: scale must be > 0")
    tol = _num(c.get("tolerance", 0), "tolerance", where)
    if tol < 0:
        raise ClaimsFileError(f"{where}: tolerance must be >= 0")
    _check_metric(str(c["metric"]), where)
    _check_condition(str(c.get("condition", "clean")), where)
    return Claim(
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
    )


def _check_fields(c: dict[str, Any], where: str) -> None:
    """A claim names its method and metric, and is either absolute or relative."""
    for key in ("method", "metric"):
        if not c.get(key):
            raise ClaimsFileError(f"{where}: missing {key!r}")
    if ("value" in c) == ("beats" in c):
        raise ClaimsFileError(f"{where}: give exactly one of `value` (absolute) or `beats` (relative)")
    if "by" in c and "beats" not in c:
        raise ClaimsFileError(f"{where}: `by` needs `beats`")


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
    from bench.results.compare import diff_one, joined_samples, suffixed  # pandas: only when verifying

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
