"""Compare two runs on the same data and protocol, with paired bootstrap intervals.

A run is a folder holding ``results.json`` (schema ``bench.results/1``) and
``samples.parquet`` (one row per (sample, condition)), read by :mod:`bench.results.reader`.
Two runs are comparable only when their ``dataset.fingerprint`` and their ``protocol`` agree
(the run-level rule of :mod:`bench.results.protocol`: the bootstrap settings and the local
path of the CSS model change no value and are ignored); otherwise :class:`BenchError` names
every field that differs.

For each condition and metric present in both runs, the rows are inner-joined on
``(sample_id, condition)`` and kept where both runs have ``status == "ok"``; then

- per-image metrics (``miou``, ``f1``, ``rouge_l``, ``css`` ...; a column in the parquet): the
  values where both are defined, ``A - B`` of the means and its paired percentile bootstrap
  interval (:func:`bench.metrics.stats.paired_bootstrap_diff`: one index matrix for both runs);
- dataset-level detection metrics (``det_auc``, ``det_acc``): the statistic of each run's
  scores on the same resampled images (:func:`bench.metrics.stats.paired_bootstrap_stat_diff`).

``value_a`` and ``value_b`` are computed on that paired subset, so ``diff = value_a - value_b``
exactly; they equal the values in ``results.json`` when no image failed in either run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.metrics.stats import (paired_bootstrap_diff, paired_bootstrap_stat_diff, unpaired_bootstrap_diff,
                                 unpaired_bootstrap_stat_diff)
from bench.results.protocol import comparability_problems
from bench.results.reader import Run, canonical_condition
from bench.results.schema import SAMPLES_FILE


# -- comparability --------------------------------------------------------------------------

def check_comparable(a: Run, b: Run) -> None:
    """:class:`BenchError` naming each differing field unless the runs are comparable."""
    problems = comparability_problems(a, b)
    if problems:
        raise BenchError(
            f"runs are not comparable (A = {a.describe()}, B = {b.describe()}); differing field(s):\n  "
            + "\n  ".join(problems)
        )


# -- the comparison ---------------------------------------------------------------------------

@dataclass
class DiffRow:
    """One (condition, metric) comparison. Values are fractions; ``diff = value_a - value_b``."""

    condition: str
    metric: str
    kind: str
    value_a: float
    value_b: float
    diff: float
    lo: float
    hi: float
    n: int
    paired: bool = True
    higher_is_better: bool = True
    note: str = ""

    @property
    def excludes_zero(self) -> bool:
        return bool(np.isfinite(self.lo) and np.isfinite(self.hi) and (self.lo > 0 or self.hi < 0))

    @property
    def better(self) -> str:
        """``A``, ``B`` or ``-`` (the interval contains 0)."""
        if not self.excludes_zero:
            return "-"
        a_higher = self.lo > 0
        return "A" if a_higher == self.higher_is_better else "B"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(ci95=[self.lo, self.hi], excludes_zero=self.excludes_zero, better=self.better)
        del d["lo"], d["hi"]
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def _metric_spec(name: str):
    from bench.metrics import get_metric

    try:
        return get_metric(name)
    except Exception:
        return None


def joined_samples(a: Run, b: Run) -> pd.DataFrame:
    """Rows of both runs inner-joined on (sample_id, condition), ok in both; suffixes _a / _b."""
    sa, sb = a.samples, b.samples
    for run, df in ((a, sa), (b, sb)):
        dup = df.duplicated(["sample_id", "condition"])
        if dup.any():
            first = df.loc[dup, ["sample_id", "condition"]].iloc[0]
            raise BenchError(f"{run.path / SAMPLES_FILE}: row ({first['sample_id']}, {first['condition']}) "
                             "appears more than once")
    m = sa.merge(sb, on=["sample_id", "condition"], how="inner", suffixes=("_a", "_b"))
    return m[(m["status_a"] == "ok") & (m["status_b"] == "ok")]


def diff_one(joined: pd.DataFrame, condition: str, metric: str, *, n_resamples: int, seed: int,
             paired: bool = True, b_rows: pd.DataFrame | None = None) -> DiffRow | None:
    """The comparison of one metric under one condition on joined rows (see module docstring).

    ``paired=False`` resamples A and B independently (``b_rows`` then holds B's own rows, with
    the same ``_b`` suffixes); used when the two runs are not on the same images. None when the
    metric has no per-sample values and is not a detection metric.
    """
    spec = _metric_spec(metric)
    hib = True if spec is None else bool(spec.higher_is_better)
    rows = joined[joined["condition"] == condition]
    rows_b = rows if b_rows is None else b_rows[b_rows["condition"] == condition]
    kind = spec.kind if spec is not None else "pixel"
    if kind == "detection":
        for r, sfx in ((rows, "_a"), (rows_b, "_b")):
            if f"score{sfx}" not in r:
                return None
        ra = rows[rows["score_a"].notna() & (rows["score_b"].notna() if paired else True)]
        rb = ra if paired else rows_b[rows_b["score_b"].notna()]
        la = ra["label_a" if "label_a" in ra else "label"].astype("int64").to_numpy()
        lb = rb["label_b" if "label_b" in rb else "label"].astype("int64").to_numpy()
        sa = ra["score_a"].astype("float64").to_numpy()
        sb = rb["score_b"].astype("float64").to_numpy()
        if paired and not np.array_equal(la, lb):
            raise BenchError(f"labels differ between the runs under {condition}: not the same dataset")
        va, vb = float(spec.fn(sa, la)), float(spec.fn(sb, lb))
        if paired:
            diff, lo, hi = paired_bootstrap_stat_diff(spec.fn, (sa, la), (sb, la), n_resamples, seed)
        else:
            diff, lo, hi = unpaired_bootstrap_stat_diff(spec.fn, (sa, la), (sb, lb), n_resamples, seed)
        return DiffRow(condition, metric, "detection", va, vb, diff, lo, hi, len(sa), paired, hib)
    ca, cb = f"{metric}_a", f"{metric}_b"
    if ca not in rows or cb not in rows_b:
        return None
    xa = rows[ca].astype("float64").to_numpy()
    if paired:
        xb = rows[cb].astype("float64").to_numpy()
        ok = np.isfinite(xa) & np.isfinite(xb)
        xa, xb = xa[ok], xb[ok]
        diff, lo, hi = paired_bootstrap_diff(xa, xb, n_resamples, seed)
    else:
        xb = rows_b[cb].astype("float64").to_numpy()
        xa, xb = xa[np.isfinite(xa)], xb[np.isfinite(xb)]
        diff, lo, hi = unpaired_bootstrap_diff(xa, xb, n_resamples, seed)
    va = float(xa.mean()) if xa.size else float("nan")
    vb = float(xb.mean()) if xb.size else float("nan")
    return DiffRow(condition, metric, kind, va, vb, diff, lo, hi, int(min(xa.size, xb.size)), paired, hib)


def compare_runs(a: Run, b: Run, *, n_resamples: int | None = None, seed: int | None = None,
                 metrics: Sequence[str] | None = None, conditions: Sequence[str] | None = None,
                 ) -> tuple[list[DiffRow], list[str]]:
    """Paired comparison of every (condition, metric) present in both runs.

    Refuses (:class:`BenchError`) runs that are not comparable. Bootstrap settings default to
    run A's ``protocol.bootstrap``. Returns the rows and notes on what was skipped.
    """
    check_comparable(a, b)
    boot = a.protocol.get("bootstrap") or {}
    n_resamples = int(n_resamples if n_resamples is not None else boot.get("n", 1000))
    seed = int(seed if seed is not None else boot.get("seed", 0))
    ca, cb = a.by_condition(), b.by_condition()
    keys = [k for k in ca if k in cb]
    notes = [f"condition {k} only in {'A' if k in ca else 'B'}" for k in list(ca) + list(cb)
             if (k in ca) != (k in cb)]
    if conditions:
        wanted = [canonical_condition(c) for c in conditions]
        missing = [c for c in wanted if c not in keys]
        if missing:
            raise BenchError(f"condition(s) {', '.join(missing)} not in both runs (common: {', '.join(keys)})")
        keys = wanted
    if metrics:  # a typo must not print an empty table
        from bench.core.validate import check_metric_names

        common = [m for k in keys for m in (ca[k].get("metrics") or {}) if m in (cb[k].get("metrics") or {})]
        check_metric_names(metrics, dict.fromkeys(common), "bench compare")
    joined = joined_samples(a, b)
    rows: list[DiffRow] = []
    for key in keys:
        ma = set((ca[key].get("metrics") or {}))
        mb = set((cb[key].get("metrics") or {}))
        names = [m for m in (ca[key].get("metrics") or {}) if m in mb]
        for m in sorted(ma ^ mb):
            notes.append(f"{key}: metric {m} only in {'A' if m in ma else 'B'}")
        if metrics:
            names = [m for m in metrics if m in names]
        for m in names:
            row = diff_one(joined, key, m, n_resamples=n_resamples, seed=seed)
            if row is None:
                notes.append(f"{key}: metric {m} has no per-sample values in samples.parquet; skipped")
                continue
            n_a, n_b = (ca[key]["metrics"][m].get("n"), cb[key]["metrics"][m].get("n"))
            if n_a is not None and n_b is not None and (row.n < n_a or row.n < n_b):
                row.note = f"paired on {row.n} of {n_a} (A) / {n_b} (B) images"
            rows.append(row)
    return rows, notes


def suffixed(df: pd.DataFrame, suffix: str) -> pd.DataFrame:
    """``df`` with ``suffix`` appended to every column except the join keys (for unpaired use)."""
    return df.rename(columns={c: f"{c}{suffix}" for c in df.columns if c not in ("sample_id", "condition")})


# -- display ----------------------------------------------------------------------------------

def fmt_points(x: float, signed: bool = False) -> str:
    """A fraction as points (x100), 2 decimals; ``-`` for NaN."""
    if x is None or not np.isfinite(x):
        return "-"
    return f"{100 * x:+.2f}" if signed else f"{100 * x:.2f}"


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], *, plain: bool = False,
                file=None) -> None:
    """A table with rich, or aligned plain text (``plain=True``)."""
    import sys

    file = file or sys.stdout
    if not plain:
        try:
            from rich.console import Console
            from rich.markup import escape
            from rich.table import Table

            t = Table(title=escape(title), show_lines=False)
            for h in header:
                t.add_column(escape(h), overflow="fold")
            for r in rows:
                t.add_row(*(escape(c) for c in r))
            Console(file=file, width=max(100, min(200, sum(len(h) for h in header) * 3))).print(t)
            return
        except ImportError:  # pragma: no cover - rich is a dependency
            pass
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    print(title, file=file)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(), file=file)
    print("  ".join("-" * w for w in widths), file=file)
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip(), file=file)
