"""Robustness summaries: each condition's drop from ``clean``, and means over a perturbation's levels.

Conventions: metric values are as the runner aggregates them (fractions in [0,1]). A *drop*
is a degradation, whatever the metric's direction: ``drop_abs = clean - value`` for a
higher-is-better metric (mIoU, F1, AUC ...), ``value - clean`` for a lower-is-better one
(``fp_area``); a negative drop means the perturbation helped. ``drop_rel = drop_abs / |clean|``
(a fraction; None when clean is 0 or missing). The direction comes from the metric registry
(``MetricSpec.higher_is_better``; unknown metrics count as higher-is-better) unless given.
Missing or NaN values give None and are left out of means. A perturbation *family* groups conditions by perturbation name and the
names of its parameters — ``jpeg(quality)``, ``gaussian_blur(kernel)``,
``gaussian_blur(sigma)``, ``resize(scale)+jpeg(quality)`` — so LEGION's kernel-blur and
ImageNet-C's sigma-blur are never averaged together.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from bench.core.conditions import Condition

CLEAN = "clean"


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def family_of(key: str) -> tuple[str, str]:
    """(perturbation, family) of a condition key, e.g. ``jpeg(quality=50)`` -> (jpeg, jpeg(quality))."""
    try:
        cond = Condition.parse(key)
    except ValueError:
        return key, key
    if cond.is_clean:
        return CLEAN, CLEAN
    fam = "+".join(_step_family(s.name, s.params) for s in cond.steps)
    return cond.perturbation, fam


#: Parameters that name WHAT is applied rather than how strongly: part of the family.
IDENTITY_PARAMS = frozenset({"transform"})  # albumentations(transform=Blur, blur_limit=...)


def _step_family(name: str, params: tuple) -> str:
    """``jpeg(quality)``; ``albumentations(transform=Blur,blur_limit)``: the levels of one family
    differ only in strength, never in which transform runs."""
    if not params:
        return name
    return f"{name}({','.join(f'{k}={v}' if k in IDENTITY_PARAMS else k for k, v in params)})"


def _mean(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return sum(vals) / len(vals) if vals else None


def _registry_direction(metric: str) -> bool:
    """higher_is_better of a registered metric; True for one the registry does not know."""
    from bench.core.registry import METRICS

    try:
        return bool(getattr(METRICS.get(metric), "higher_is_better", True))
    except Exception:  # UnknownNameError: a plugin metric not installed here
        return True


def robustness_summary(
    condition_metrics: Mapping[str, Mapping[str, Any]],
    higher_is_better: Mapping[str, bool] | Callable[[str], bool] | None = None,
) -> dict[str, Any]:
    """Summarise metrics per condition against ``clean``.

    ``condition_metrics`` maps condition key -> {metric: value}. ``higher_is_better`` maps a
    metric name to its direction (a dict, missing names -> True, or a function); by default the
    metric registry decides. Returns::

        {"clean": {metric: value} or None,
         "higher_is_better": {metric: bool},
         "conditions": {key: {metric: {"value", "drop_abs", "drop_rel"}}},   # clean included, drops 0
         "perturbations": {family: {"perturbation": name, "levels": [keys in input order],
                                    "metrics": {metric: {"value", "drop_abs", "drop_rel", "n"}}}}}

        where the family means are plain means over the levels that have a value (n of them).
    """
    if higher_is_better is None:
        direction: Callable[[str], bool] = _registry_direction
    elif callable(higher_is_better):
        direction = higher_is_better
    else:
        table = dict(higher_is_better)
        direction = lambda m: bool(table.get(m, True))  # noqa: E731
    clean_raw = condition_metrics.get(CLEAN)
    clean = {m: _num(v) for m, v in clean_raw.items()} if clean_raw is not None else None
    hib: dict[str, bool] = {}
    conditions: dict[str, dict[str, dict[str, float | None]]] = {}
    families: dict[str, dict[str, Any]] = {}
    for key, metrics in condition_metrics.items():
        row: dict[str, dict[str, float | None]] = {}
        for m, raw in metrics.items():
            if m not in hib:
                hib[m] = direction(m)
            v = _num(raw)
            c = clean.get(m) if clean is not None else None
            drop = (c - v if hib[m] else v - c) if (c is not None and v is not None) else None
            rel = drop / abs(c) if (drop is not None and c not in (None, 0.0)) else None
            row[m] = {"value": v, "drop_abs": drop, "drop_rel": rel}
        conditions[key] = row
        if key == CLEAN:
            continue
        pert, fam = family_of(key)
        entry = families.setdefault(fam, {"perturbation": pert, "levels": [], "metrics": {}})
        entry["levels"].append(key)
    for fam, entry in families.items():
        metric_names: list[str] = []
        for key in entry["levels"]:
            metric_names += [m for m in conditions[key] if m not in metric_names]
        for m in metric_names:
            cells = [conditions[k].get(m, {}) for k in entry["levels"]]
            entry["metrics"][m] = {
                "value": _mean([c.get("value") for c in cells]),
                "drop_abs": _mean([c.get("drop_abs") for c in cells]),
                "drop_rel": _mean([c.get("drop_rel") for c in cells]),
                "n": sum(c.get("value") is not None for c in cells),
            }
    return {"clean": clean, "higher_is_better": hib, "conditions": conditions, "perturbations": families}


def format_robustness_table(summary: Mapping[str, Any], metrics: list[str] | None = None,
                            scale: float = 100.0) -> str:
    """A plain-text table of :func:`robustness_summary`: one row per condition, then one per
    family (mean over levels). Each cell is ``value drop drop%``: the value times ``scale``, its
    drop from clean times ``scale`` (positive = worse, in the metric's own direction) and the
    relative drop in percent."""
    conds: Mapping[str, Any] = summary.get("conditions", {})
    fams: Mapping[str, Any] = summary.get("perturbations", {})
    if metrics is None:
        metrics = []
        for row in conds.values():
            metrics += [m for m in row if m not in metrics]

    def cell(c: Mapping[str, Any] | None) -> str:
        c = c or {}
        v, d, r = c.get("value"), c.get("drop_abs"), c.get("drop_rel")
        vs = f"{v * scale:7.2f}" if v is not None else f"{'-':>7}"
        ds = f"{d * scale:+7.2f}" if d is not None else f"{'':>7}"
        rs = f"{r * 100:+6.1f}%" if r is not None else f"{'':>7}"
        return f"{vs} {ds} {rs}"

    names = list(conds) + [f"{f} mean of {len(e['levels'])}" for f, e in fams.items()]
    width = max([len("condition")] + [len(n) for n in names])
    colw = len(cell(None))
    lines = [
        f"robustness (values x{scale:g}; each cell: value, drop from clean, relative drop; "
        "a positive drop is a degradation)",
        f"{'condition':<{width}}  " + "  ".join(f"{m:>{colw}}" for m in metrics),
    ]
    for key, row in conds.items():
        if key == CLEAN:  # its drops are 0 by definition
            row = {m: {"value": (c or {}).get("value")} for m, c in row.items()}
        lines.append(f"{key:<{width}}  " + "  ".join(cell(row.get(m)) for m in metrics))
    if fams:
        lines.append(f"{'-- mean over levels':<{width}}")
        for fam, entry in fams.items():
            label = f"{fam} mean of {len(entry['levels'])}"
            lines.append(f"{label:<{width}}  " + "  ".join(cell(entry["metrics"].get(m)) for m in metrics))
    return "\n".join(lines)
