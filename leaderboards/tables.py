"""The leaderboard's tables, built from validated runs (pure pandas; no Streamlit here).

Comparability (the metric-level rule of :mod:`bench.results.protocol`). Two results share a
leaderboard column only when they agree on
- the dataset (:data:`~bench.results.protocol.DATASET_KEYS`: name, split, fingerprint, number
  of samples, limit): otherwise they are in separate tables (one per dataset *group*, labelled
  with what differs), and
- every protocol choice that affects that metric (its *variant*, the choices in the metric's
  scope): the mask threshold and which images are scored for pixel metrics; the reference
  field and text cleaning for text metrics; the ROUGE implementation for ``rouge_l``; the CSS
  model for ``css``. Results of a metric in different variants never share a column: the
  board (:mod:`bench.leaderboards.board`) gives each set of differing choices its own table,
  and the Robustness page lists each variant as its own choice. Protocol keys the rule does
  not know affect every metric (the safe side). Bootstrap settings change only intervals and never split;
  ``css_model_info.path`` (where the model lies on one machine) is not a choice and is ignored.

Values in results are fractions in [0, 1]; every table here shows them x100.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Sequence

import pandas as pd

from bench.leaderboards.data import Run, metric_value
from bench.results.protocol import dataset_identity, flatten, metric_protocol

#: Usual column order (other metrics follow alphabetically).
PREFERRED_METRICS = ("miou", "f1", "iou_fg", "fp_area", "det_auc", "det_acc", "rouge_l", "css")
#: Perturbation parameters for which a LOWER value is the stronger perturbation.
LOWER_IS_STRONGER = frozenset({"quality", "scale"})


# -- metric information -------------------------------------------------------------------

def metric_info(name: str) -> dict[str, Any]:
    """task, higher_is_better and description of a metric from the metric registry
    (``bench.core.registry.METRICS``); an unknown (plugin) metric gets neutral defaults."""
    from bench.core.registry import METRICS

    try:
        spec = METRICS.get(name)
    except Exception:  # UnknownNameError: a metric registered by a plugin not installed here
        return {"task": "other", "higher_is_better": True, "description": "", "kind": "?", "applies_to": "?"}
    return {"task": getattr(spec, "task", "other"), "higher_is_better": bool(getattr(spec, "higher_is_better", True)),
            "description": getattr(spec, "description", ""), "kind": getattr(spec, "kind", "?"),
            "applies_to": getattr(spec, "applies_to", "?")}


def metric_definitions() -> pd.DataFrame:
    """Every registered metric with its definition (``.obj.description``)."""
    from bench.core.registry import METRICS

    rows = []
    for e in METRICS.entries():
        o = e.obj
        rows.append({"metric": e.name, "task": getattr(o, "task", ""), "kind": getattr(o, "kind", ""),
                     "averaged over": getattr(o, "applies_to", ""),
                     "better": "higher" if getattr(o, "higher_is_better", True) else "lower",
                     "definition": getattr(o, "description", ""), "source": e.source})
    return pd.DataFrame(rows, columns=["metric", "task", "kind", "averaged over", "better", "definition", "source"])


def order_metrics(names: Iterable[str]) -> list[str]:
    """Metric names in the usual column order (PREFERRED_METRICS first, then alphabetical)."""
    pref = {m: i for i, m in enumerate(PREFERRED_METRICS)}
    return sorted(set(names), key=lambda m: (pref.get(m, len(pref)), m))


# -- comparability ------------------------------------------------------------------------

def dataset_key(run: Run) -> str:
    """The dataset identity (JSON): runs with different keys are in different tables."""
    return json.dumps({"dataset": dataset_identity(run.data)}, sort_keys=True, default=str)


def variant_key(run: Run, metric: str) -> str:
    """JSON of the protocol choices that must agree for ``metric`` values to share a column
    (:func:`bench.results.protocol.metric_protocol`)."""
    choices = metric_protocol(run.data["protocol"], metric, metric_info(metric)["kind"])
    return json.dumps({"protocol": choices}, sort_keys=True, default=str)


def short_value(v: Any, n: int = 40) -> str:
    """A value as short text: strings as they are, others as JSON; cut to ``n`` characters."""
    s = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
    return s if len(s) <= n else s[: n - 1] + "…"


def differing_fields(keys: Sequence[str]) -> list[str]:
    """Dotted names of the fields whose values differ between the JSON keys given (e.g.
    ``protocol.css_model``, ``dataset.fingerprint``); a field missing in some counts as
    differing."""
    flat = [flatten(json.loads(k)) for k in keys]
    fields = sorted({f for d in flat for f in d})
    return [f for f in fields if len({json.dumps(d.get(f, "<absent>"), sort_keys=True, default=str) for d in flat}) > 1]


def _what_differs(keys: Sequence[str]) -> dict[str, str]:
    """Per key: "field=value · ..." for the fields that differ between the keys."""
    flat = {k: flatten(json.loads(k)) for k in keys}
    diff = differing_fields(keys)
    return {k: " · ".join(f"{d.split('.', 1)[1]}={short_value(flat[k].get(d, '(not recorded)'))}" for d in diff)
            for k in keys}


def variant_labels(df: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(metric, variant key) -> column label: the metric name alone when the metric has one
    variant in ``df``, else ``metric [what differs]``."""
    out: dict[tuple[str, str], str] = {}
    for m in df["metric"].unique():
        variants = list(dict.fromkeys(df.loc[df["metric"] == m, "variant"]))
        if len(variants) == 1:
            out[(m, variants[0])] = m
        else:
            for v, text in _what_differs(variants).items():
                out[(m, v)] = f"{m} [{text}]"
    return out


# -- badges -------------------------------------------------------------------------------

def badges(run: Run) -> str:
    """Flags shown beside the adapter name, as plain words (no emoji: they need a font that
    many machines lack): fine-tuned on a dataset (and whether it is the test distribution),
    external model, box output, hard mask only, other truthy flags, failed samples."""
    out: list[str] = []
    f = run.flags
    if f.get("finetuned_on"):
        on = str(f["finetuned_on"])
        same = on.lower() == str(run.data["dataset"].get("name", "")).lower()
        out.append(f"fine-tuned on {on}" + (" (test distribution)" if same else ""))
    if f.get("external"):
        out.append("external")
    if f.get("box_output"):
        out.append("box output")
    if f.get("hard_mask"):
        out.append("hard mask")
    for k, v in sorted(f.items()):
        if k not in ("finetuned_on", "external", "box_output", "hard_mask") and v:
            out.append(str(k) if v is True else f"{k}={v}")
    missing = sorted({m for c in run.conditions for m, v in (c.get("metrics") or {}).items()
                      if isinstance(v, dict) and v.get("status") == "not_computed"})
    if missing:
        out.append(f"{', '.join(missing)} {NOT_COMPUTED_TEXT}")
    if run.n_failed:
        allowed = " (published with --allow-failed)" if run.published.get("allow_failed") else ""
        out.append(f"⚠ {run.n_failed} failed{allowed}")
    return " · ".join(out)


# -- the leaderboard ----------------------------------------------------------------------

LONG_COLUMNS = ["suite", "group", "run", "run_id", "adapter", "row", "badges", "dataset", "condition",
                "perturbation", "metric", "variant", "task", "higher_is_better", "value", "lo", "hi", "n",
                "status"]

#: What a cell shows for a metric the run could not compute (``status: not_computed``): missing
#: (NaN value, unranked), never 0.
NOT_COMPUTED_TEXT = "n/a (not computed)"


def row_labels(runs: Sequence[Run]) -> dict[str, str]:
    """Row label per run folder: the adapter name, plus the run id where one adapter has
    several runs in the same suite and dataset group."""
    count: dict[tuple, int] = {}
    for r in runs:
        count[(r.suite, dataset_key(r), r.adapter)] = count.get((r.suite, dataset_key(r), r.adapter), 0) + 1
    return {r.rel: r.adapter if count[(r.suite, dataset_key(r), r.adapter)] == 1 else f"{r.adapter} [{r.run_id}]"
            for r in runs}


def long_table(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per (run, condition, metric): value, lo, hi as x100, with the run's dataset
    group and the metric's protocol variant."""
    labels = row_labels(runs)
    rows = []
    for r in runs:
        g = dataset_key(r)
        b = badges(r)
        variants = {m: variant_key(r, m) for c in r.conditions for m in (c.get("metrics") or {})}
        for c in r.conditions:
            for m in sorted((c.get("metrics") or {})):
                v, lo, hi = metric_value(c, m)
                info = metric_info(m)
                mm = c["metrics"][m]
                rows.append({"suite": r.suite, "group": g, "run": r.rel, "run_id": r.run_id, "adapter": r.adapter,
                             "row": labels[r.rel], "badges": b, "dataset": r.data["dataset"]["name"],
                             "condition": c["key"], "perturbation": c["perturbation"], "metric": m,
                             "variant": variants[m], "task": info["task"], "higher_is_better": info["higher_is_better"],
                             "value": 100 * v, "lo": 100 * lo, "hi": 100 * hi,
                             "n": mm.get("n") if isinstance(mm, dict) else None,
                             "status": str(mm.get("status", "ok")) if isinstance(mm, dict) else "ok"})
    return pd.DataFrame(rows, columns=LONG_COLUMNS)


def filter_long(df: pd.DataFrame, *, suites: Iterable[str] | None = None, tasks: Iterable[str] | None = None,
                conditions: Iterable[str] | None = None, datasets: Iterable[str] | None = None,
                metrics: Iterable[str] | None = None, search: str = "") -> pd.DataFrame:
    """Rows matching every given filter (None = no filter). ``search`` is a case-insensitive
    substring of the adapter name, run id or badges."""
    keep = pd.Series(True, index=df.index)
    for col, vals in (("suite", suites), ("task", tasks), ("condition", conditions), ("dataset", datasets),
                      ("metric", metrics)):
        if vals is not None:
            keep &= df[col].isin(list(vals))
    if search.strip():
        s = search.strip().lower()
        hay = (df["adapter"].str.lower() + "\n" + df["run_id"].str.lower() + "\n" + df["badges"].str.lower())
        keep &= hay.str.contains(s, regex=False)
    return df[keep]


# -- robustness ---------------------------------------------------------------------------

def severity_key(cond: dict) -> tuple:
    """Sort key: stronger perturbations later. A single numeric parameter orders the levels
    (reversed for JPEG quality and resize scale, where lower is stronger); chains by key."""
    params = cond.get("params")
    if isinstance(params, dict):
        nums = []
        for k, v in sorted(params.items()):
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                nums.append(-float(v) if k in LOWER_IS_STRONGER else float(v))
        if nums:
            return (0, tuple(nums), str(cond.get("key")))
    return (1, (), str(cond.get("key")))


def metric_variants(runs: Sequence[Run]) -> dict[str, tuple[str, str]]:
    """Choosable metrics of comparable runs: label -> (metric, variant key); the label is the
    metric name, with what differs when its results come in several protocol variants."""
    rows = [{"metric": m, "variant": variant_key(r, m)}
            for r in runs for c in r.conditions for m in (c.get("metrics") or {})]
    if not rows:
        return {}
    labels = variant_labels(pd.DataFrame(rows).drop_duplicates())
    order = {m: i for i, m in enumerate(order_metrics({m for m, _ in labels}))}
    return {lab: key for key, lab in sorted(labels.items(), key=lambda kv: (order[kv[0][0]], kv[1]))}


def has_metric(run: Run, metric: str) -> bool:
    return any(metric in (c.get("metrics") or {}) for c in run.conditions)


def in_variant(runs: Sequence[Run], metric: str, variant: str | None) -> list[Run]:
    """The runs that report ``metric`` under the protocol ``variant`` (None: any variant)."""
    return [r for r in runs if has_metric(r, metric) and (variant is None or variant_key(r, metric) == variant)]


def curves(runs: Sequence[Run], metric: str, variant: str | None = None) -> pd.DataFrame:
    """Per (run, perturbation, level): the metric x100 with its interval, for the runs whose
    protocol ``variant`` of the metric matches (None: all). Each perturbation's curve starts at
    the clean condition (level 0); levels count up with severity."""
    labels = row_labels(runs)
    rows = []
    for r in in_variant(runs, metric, variant):
        clean = next((c for c in r.conditions if c["perturbation"] == "clean"), None)
        fams: dict[str, list[dict]] = {}
        for c in r.conditions:
            if c["perturbation"] != "clean":
                fams.setdefault(c["perturbation"], []).append(c)
        for fam, conds in fams.items():
            ordered = ([clean] if clean else []) + sorted(conds, key=severity_key)
            for level, c in enumerate(ordered, start=0 if clean else 1):
                v, lo, hi = metric_value(c, metric)
                rows.append({"adapter": labels[r.rel], "perturbation": fam, "level": level, "condition": c["key"],
                             "setting": setting_label(c), "value": 100 * v, "lo": 100 * lo, "hi": 100 * hi})
    return pd.DataFrame(rows, columns=["adapter", "perturbation", "level", "condition", "setting", "value", "lo", "hi"])


def setting_label(cond: dict) -> str:
    """Short axis label: ``clean``, ``quality=50`` for one step, the full key for a chain."""
    params = cond.get("params")
    if cond.get("perturbation") == "clean":
        return "clean"
    if isinstance(params, dict) and params:
        return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
    return str(cond.get("key"))


def drop_table(runs: Sequence[Run], metric: str, variant: str | None = None) -> pd.DataFrame:
    """Per run (of the given protocol ``variant``) and perturbed condition: drop from clean in
    points (x100) and relative drop in percent of the clean value. A drop is a change for the
    worse: clean - value for a higher-is-better metric, value - clean for a lower-is-better one."""
    hib = metric_info(metric)["higher_is_better"]
    labels = row_labels(runs)
    rows = []
    for r in in_variant(runs, metric, variant):
        clean = next((c for c in r.conditions if c["perturbation"] == "clean"), None)
        if clean is None:
            continue
        cv = metric_value(clean, metric)[0]
        for c in sorted((c for c in r.conditions if c["perturbation"] != "clean"),
                        key=lambda c: (c["perturbation"], severity_key(c))):
            v = metric_value(c, metric)[0]
            drop = (cv - v) if hib else (v - cv)
            rel = drop / cv if cv and not math.isnan(cv) else math.nan
            rows.append({"adapter": labels[r.rel], "perturbation": c["perturbation"], "condition": c["key"],
                         "clean": 100 * cv, "value": 100 * v, "drop (points)": 100 * drop,
                         "relative drop %": 100 * rel})
    return pd.DataFrame(rows, columns=["adapter", "perturbation", "condition", "clean", "value",
                                       "drop (points)", "relative drop %"])


# -- CSV export ---------------------------------------------------------------------------

EXPORT_COLUMNS = {"suite": "suite", "group_label": "group", "row": "adapter", "badges": "badges",
                  "condition": "condition", "metric": "metric", "column": "column", "value": "value_x100", "lo": "ci95_lo_x100",
                  "hi": "ci95_hi_x100", "n": "n", "status": "status", "run_id": "run_id", "run": "folder"}


def export_csv(parts: Sequence[pd.DataFrame]) -> bytes:
    """The shown cells in long form (one line per adapter x condition x metric), UTF-8 CSV,
    protected against spreadsheet formula injection. ``parts`` are long-table slices with
    ``group_label`` and ``column`` (the metric's column label, naming its protocol variant)."""
    if not parts:
        return b""
    df = pd.concat(parts)[list(EXPORT_COLUMNS)].rename(columns=EXPORT_COLUMNS)
    return csv_safe(df).to_csv(index=False).encode("utf-8")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells cannot be taken for spreadsheet formulas (a leading ``'`` is
    added to text starting with = + - @ tab or CR; OWASP's CSV-injection advice)."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_object_dtype(out[col]) or pd.api.types.is_string_dtype(out[col]):
            out[col] = [("'" + v) if isinstance(v, str) and v.startswith(_FORMULA_START) else v for v in out[col]]
    return out
