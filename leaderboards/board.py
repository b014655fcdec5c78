"""The leaderboard's readable tables, shared by the app and the static export (pure pandas).

Built on the long table of :mod:`bench.leaderboards.tables` (one row per run, condition and
metric, with the metric's protocol *variant* from the one comparability rule,
:mod:`bench.results.protocol`). Per dataset group:

- **variants in their own table**: for each metric the variant most runs share is the
  reference; a run that agrees with it on every metric it reports is in the main table, the
  others are in one table per set of differing choices, titled with what differs. No table
  doubles a column, and no two variants are ever ranked together;
- **columns grouped by task** (a two- or three-level header: task, metric with its ``n``,
  condition when several are shown), the value x100 and, on demand, its 95% interval in one
  cell; a task the adapter does not do shows "n/a";
- **n and failed**: each metric's header names how many images it averages over, each row
  how many samples failed;
- **rank** as text: ``1``, ``2`` ... or ``unranked`` (no value in the ranking column).

The cells are numbers (so a click on a header sorts numerically); the text each cell shows is
a parallel frame of strings, which the app passes as a pandas Styler and the export writes as
HTML and Markdown, so both show the same thing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd

from bench.leaderboards import tables as T
from bench.results.protocol import flatten

#: Tasks in column order.
TASK_ORDER = ("localize", "detect", "explain", "other")
#: What a cell without a value shows (the task is not the adapter's, or nothing was computed).
NA_TEXT = "n/a"
UNRANKED = "unranked"
#: Row columns (before the metric columns); the header's upper levels are blank for them.
ROW_COLUMNS = ("#", "adapter", "failed", "badges")


@dataclass
class BoardTable:
    """One ranked table of one dataset group.

    ``frame``: numeric values (x100) and the row columns, MultiIndex columns, index = run
    folder (stable across views); ``display``: the text of every cell (same shape);
    ``cells``: value column -> (metric, condition); ``title``: "" for the group's main table,
    else the protocol choices in which its runs differ from the main one."""

    title: str
    frame: pd.DataFrame
    display: pd.DataFrame
    cells: dict[tuple, tuple[str, str]] = field(default_factory=dict)
    sort_metric: str | None = None
    long: pd.DataFrame = field(default_factory=pd.DataFrame)  # the long rows it shows

    @property
    def runs(self) -> list[str]:
        return list(self.frame.index)

    def styler(self):
        """The frame with every cell's text (what ``st.dataframe`` shows)."""
        sty = self.frame.style.format(na_rep=NA_TEXT, precision=2)
        for col in self.cells:  # the value columns; the row fields show as they are
            texts, values = self.display[col], self.frame[col]
            by_value: dict[float, set[str]] = {}
            for v, t in zip(values, texts):
                by_value.setdefault(v, set()).add(t)
            # one formatter per column, from value to text; a value with two texts (equal values,
            # other intervals) gets its cells formatted one by one
            exact = {v: next(iter(ts)) for v, ts in by_value.items() if len(ts) == 1}
            sty = sty.format(lambda v, m=exact: m.get(v, f"{v:.2f}"), subset=pd.IndexSlice[:, [col]])
            for idx in self.frame.index:
                if values[idx] not in exact:
                    sty = sty.format(lambda _v, t=texts[idx]: t, subset=pd.IndexSlice[[idx], [col]])
        return sty

    def flat_display(self) -> pd.DataFrame:
        """The display text with one-line column names (``miou (n=200) · clean``)."""
        out = self.display.copy()
        out.columns = [flat_name(c) for c in out.columns]
        return out


def flat_name(col: tuple) -> str:
    """``("localize", "miou (n=200)", "clean")`` -> ``miou (n=200) · clean``; row columns keep
    their name."""
    parts = [p for p in col[1:] if p]
    return " · ".join(parts) if parts else str(col[-1])


# -- variants -----------------------------------------------------------------------------

def reference_variants(gdf: pd.DataFrame) -> dict[str, str]:
    """Per metric, the protocol variant most runs of the group share (ties: the first seen)."""
    out = {}
    for m, mdf in gdf.groupby("metric", sort=False):
        counts = mdf.groupby("variant", sort=False)["run"].nunique()
        out[str(m)] = str(counts.sort_values(ascending=False, kind="mergesort").index[0])
    return out


def split_variants(gdf: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The group's long rows split into tables: ``("", main rows)`` first, then one
    ``(what differs, rows)`` per set of protocol choices some runs differ in."""
    ref = reference_variants(gdf)
    sig: dict[str, tuple] = {}
    for run, rdf in gdf.groupby("run", sort=False):
        pairs = rdf[["metric", "variant"]].drop_duplicates()
        sig[str(run)] = tuple(sorted((m, v) for m, v in zip(pairs["metric"], pairs["variant"]) if ref.get(m) != v))
    parts: list[tuple[str, pd.DataFrame]] = []
    for s in dict.fromkeys(sorted(set(sig.values()), key=lambda s: (len(s), s))):
        runs = [r for r, x in sig.items() if x == s]
        title = "" if not s else variant_title(s, ref)
        parts.append((title, gdf[gdf["run"].isin(runs)]))
    if parts and parts[0][0]:  # every run differs somewhere: still no empty main table
        parts.insert(0, ("", gdf.iloc[0:0]))
    return [p for p in parts if not p[1].empty]


def variant_title(differing: tuple, ref: dict[str, str]) -> str:
    """"protocol variant: mask_threshold=0.3 (miou, f1 ...)" for a set of (metric, variant)."""
    import json

    fields: dict[str, set[str]] = {}
    for m, v in differing:
        a, b = flatten(json.loads(ref[m])), flatten(json.loads(v))
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                name = k.split(".", 1)[1] if k.startswith("protocol.") else k
                fields.setdefault(f"{name}={T.short_value(b.get(k, '(not recorded)'))}", set()).add(m)
    what = "; ".join(f"{f} ({', '.join(T.order_metrics(ms))})" for f, ms in fields.items())
    return f"protocol variant: {what}"


# -- one table ----------------------------------------------------------------------------

def _n_text(ns: Sequence[Any]) -> str:
    vals = sorted({int(n) for n in ns if n is not None and not (isinstance(n, float) and math.isnan(n))})
    if not vals:
        return ""
    return f"n={vals[0]}" if len(vals) == 1 else f"n={vals[0]}–{vals[-1]}"


def cell_text(v: float, lo: float, hi: float, with_ci: bool, status: str = "ok") -> str:
    """What a value cell shows: ``66.68``, ``66.68 [64.0, 69.1]`` with the interval, ``n/a``
    without a value, ``n/a (not computed)`` for a metric the run recorded as not computed."""
    if status == "not_computed":
        return T.NOT_COMPUTED_TEXT
    if v is None or math.isnan(v):
        return NA_TEXT
    if with_ci and not (math.isnan(lo) or math.isnan(hi)):
        return f"{v:.2f} [{lo:.1f}, {hi:.1f}]"
    return f"{v:.2f}"


def board_table(rows: pd.DataFrame, metrics: Sequence[str], conditions: Sequence[str], *,
                sort_metric: str | None, with_ci: bool, failed: dict[str, dict[str, int]],
                title: str = "") -> BoardTable:
    """One table: a row per run of ``rows`` (long rows of one dataset group and variant), a
    value column per (metric, condition) grouped by task; ranked by ``sort_metric`` on the
    first condition (its direction; rows without a value unranked and last)."""
    multi = len(conditions) > 1
    runs = rows.drop_duplicates("run")[["run", "badges"]]
    idx = list(runs["run"])
    depth = 3 if multi else 2
    pad = ("",) * (depth - 1)
    ordered = sorted((m for m in metrics if m in set(rows["metric"])),
                     key=lambda m: (TASK_ORDER.index(T.metric_info(m)["task"])
                                    if T.metric_info(m)["task"] in TASK_ORDER else len(TASK_ORDER),
                                    list(metrics).index(m)))
    values: dict[tuple, list[float]] = {}
    texts: dict[tuple, list[str]] = {}
    cells: dict[tuple, tuple[str, str]] = {}
    for m in ordered:
        mdf = rows[rows["metric"] == m]
        info = T.metric_info(m)
        head = f"{m} ({_n_text(mdf['n'])})" if _n_text(mdf["n"]) else m
        for c in conditions:
            sub = mdf[mdf["condition"] == c].drop_duplicates("run").set_index("run")
            if sub.empty:
                continue
            col = (info["task"], head, c) if multi else (info["task"], head)
            v = sub["value"].reindex(idx).astype("float64")
            lo = sub["lo"].reindex(idx).astype("float64")
            hi = sub["hi"].reindex(idx).astype("float64")
            status = sub["status"].reindex(idx).fillna("ok")
            values[col] = list(v)
            texts[col] = [cell_text(a, b, d, with_ci, st) for a, b, d, st in zip(v, lo, hi, status)]
            cells[col] = (m, c)
    frame = pd.DataFrame(values, index=idx)
    display = pd.DataFrame(texts, index=idx)
    # rank by the sort metric's first column
    rank_col = next((col for col, (m, _) in cells.items() if m == sort_metric), next(iter(cells), None))
    if rank_col is not None:
        asc = not T.metric_info(cells[rank_col][0])["higher_is_better"]
        order = frame[rank_col].sort_values(ascending=asc, na_position="last", kind="mergesort").index
        ranks = frame[rank_col].rank(ascending=asc, method="min")
    else:
        order, ranks = pd.Index(idx), pd.Series(math.nan, index=idx)
    adapters = dict(zip(runs["run"], rows.drop_duplicates("run")["adapter"]))
    twice = {a for a in adapters.values() if list(adapters.values()).count(a) > 1}
    run_ids = dict(zip(rows["run"], rows["run_id"]))
    labels = {r: f"{a} · {run_ids[r]}" if a in twice else a for r, a in adapters.items()}
    n_failed = [sum(failed.get(r, {}).get(c, 0) for c in conditions) for r in idx]
    lead = {("#",): [UNRANKED if math.isnan(x) else str(int(x)) for x in ranks.reindex(idx)],
            ("adapter",): [labels[r] for r in idx],
            ("failed",): n_failed}
    badge_texts = list(runs["badges"])
    if any(badge_texts):
        lead[("badges",)] = badge_texts
    lead_frame = pd.DataFrame({pad + k: v for k, v in lead.items()}, index=idx)
    lead_display = lead_frame.astype(str)
    frame = pd.concat([lead_frame, frame], axis=1).loc[order]
    display = pd.concat([lead_display, display], axis=1).loc[order]
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    display.columns = pd.MultiIndex.from_tuples(display.columns)
    return BoardTable(title, frame, display, cells, cells[rank_col][0] if rank_col is not None else None, rows)


def failed_counts(runs: Sequence[Any]) -> dict[str, dict[str, int]]:
    """Run folder -> condition key -> failed samples."""
    return {r.rel: {str(c.get("key")): int(c.get("n_failed") or 0) for c in r.conditions} for r in runs}


# -- the groups ---------------------------------------------------------------------------

def group_title(key: str) -> str:
    """A dataset group in words: ``demo/test · all 260 images · fingerprint b57ba32d0416``, or
    ``first 8 images (--limit 8)`` for a limited run."""
    import json

    ds = json.loads(key).get("dataset", {})
    limit = ds.get("limit")
    n = ds.get("n_samples")
    size = f"first {n} images (--limit {limit})" if limit else f"all {n} images"
    return f"{ds.get('name')}/{ds.get('split')} · {size} · fingerprint {str(ds.get('fingerprint'))[:12]}"


@dataclass
class Group:
    key: str
    title: str
    tables: list[BoardTable]
    long: pd.DataFrame


def suite_groups(sdf: pd.DataFrame, metrics: Sequence[str], conditions: Sequence[str], *,
                 sort_metric: str | None, with_ci: bool, failed: dict[str, dict[str, int]]) -> list[Group]:
    """The dataset groups of one suite's (filtered) long rows, largest first, each with its
    main table and one table per protocol variant."""
    keys = sorted(dict.fromkeys(sdf["group"]), key=lambda g: -sdf.loc[sdf["group"] == g, "run"].nunique())
    out = []
    for g in keys:
        gdf = sdf[sdf["group"] == g]
        conds = [c for c in conditions if c in set(gdf["condition"])]
        tabs = [board_table(rows, metrics, conds, sort_metric=sort_metric, with_ci=with_ci, failed=failed,
                            title=title) for title, rows in split_variants(gdf)]
        out.append(Group(g, group_title(g), tabs, gdf))
    return out


# -- robustness ---------------------------------------------------------------------------

def perturbed(run: Any) -> bool:
    return any(c.get("perturbation") != "clean" for c in run.conditions)


def default_robustness_suite(runs: Sequence[Any]) -> str | None:
    """The suite with the most runs that have perturbed conditions (else the first suite)."""
    suites = sorted({r.suite for r in runs})
    return max(suites, key=lambda s: sum(perturbed(r) for r in runs if r.suite == s)) if suites else None


def robustness_groups(runs: Sequence[Any]) -> list[str]:
    """Dataset group keys of ``runs``, the one with the most perturbed runs first (then the
    most runs): the default chart shows the grid most runs share."""
    keys = list(dict.fromkeys(T.dataset_key(r) for r in runs))
    return sorted(keys, key=lambda k: (-sum(perturbed(r) for r in runs if T.dataset_key(r) == k),
                                       -sum(T.dataset_key(r) == k for r in runs)))


def default_variant(runs: Sequence[Any], variants: dict[str, tuple[str, str]]) -> str | None:
    """The metric choice to show first: the first metric in the usual order (mIoU) under the
    protocol variant most runs with perturbed conditions share (then most runs)."""
    if not variants:
        return None
    order = {m: i for i, m in enumerate(T.order_metrics({m for m, _ in variants.values()}))}

    def score(label: str) -> tuple:
        m, v = variants[label]
        members = T.in_variant(runs, m, v)
        return (order[m], -sum(perturbed(r) for r in members), -len(members))

    return min(variants, key=score)


def run_labels(runs: Sequence[Any]) -> dict[str, str]:
    """run id -> label: the adapter name, plus, where an adapter has several runs here, what
    differs between them (config, protocol, data), else the run id."""
    import json

    by_adapter: dict[str, list[Any]] = {}
    for r in runs:
        by_adapter.setdefault(r.adapter, []).append(r)
    out = {}
    for name, rs in by_adapter.items():
        if len(rs) == 1:
            out[rs[0].run_id] = name
            continue
        flat = {r.run_id: flatten({"config": (r.data.get("adapter") or {}).get("config") or {},
                                   "protocol": r.protocol, "dataset": r.data.get("dataset") or {}})
                for r in rs}
        fields = sorted({k for f in flat.values() for k in f})
        differ = [k for k in fields if len({json.dumps(f.get(k), sort_keys=True, default=str)
                                            for f in flat.values()}) > 1 and k != "dataset.n_samples"]
        for r in rs:
            what = ", ".join(f"{k.split('.', 1)[1]}={T.short_value(flat[r.run_id].get(k), 24)}".replace("=null", "=none")
                             for k in differ[:3])
            out[r.run_id] = f"{name} · {what or r.run_id}"
    return out


def run_curves(runs: Sequence[Any], metric: str, variant: str | None, labels: dict[str, str]) -> pd.DataFrame:
    """:func:`tables.curves` per run, labelled by ``labels`` (run id -> label)."""
    parts = [T.curves([r], metric, variant).assign(run_id=r.run_id, adapter=labels[r.run_id]) for r in runs]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def run_drops(runs: Sequence[Any], metric: str, variant: str | None, labels: dict[str, str]) -> pd.DataFrame:
    """:func:`tables.drop_table` per run, labelled by ``labels`` (run id -> label)."""
    parts = [T.drop_table([r], metric, variant).assign(adapter=labels[r.run_id]) for r in runs]
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def robustness_chart(fdf: pd.DataFrame, family: str, metric: str):
    """One perturbation family: a line per run (x: the setting, clean first, stronger to the
    right), its 95% band, and a legend naming the runs (the band layer shares the line
    layer's colour scale and legend, so the legend is drawn once)."""
    import altair as alt

    df = fdf.rename(columns={"value": "v", "lo": "l", "hi": "h"})
    runs = list(dict.fromkeys(df["adapter"]))
    color = alt.Color("adapter:N", title="run", scale=alt.Scale(scheme="tableau10", domain=runs),
                      legend=alt.Legend(orient="bottom", columns=3, labelLimit=360, symbolOpacity=1,
                                                     symbolType="stroke", symbolStrokeWidth=3))
    base = alt.Chart(df).encode(
        x=alt.X("setting:N", title=f"{family} setting (stronger to the right)",
                sort=alt.EncodingSortField("level", op="min"), axis=alt.Axis(labelAngle=0)))
    y_scale = alt.Scale(zero=False)
    band = base.mark_area(opacity=0.15).encode(y=alt.Y("l:Q", title=f"{metric} x100", scale=y_scale), y2="h:Q",
                                               color=color)
    line = base.mark_line(point=True).encode(
        y=alt.Y("v:Q", title=f"{metric} x100", scale=y_scale), color=color,
        tooltip=[alt.Tooltip("adapter:N", title="run"), alt.Tooltip("condition:N"),
                 alt.Tooltip("v:Q", title="value", format=".2f"),
                 alt.Tooltip("l:Q", title="95% lo", format=".2f"), alt.Tooltip("h:Q", title="95% hi", format=".2f")])
    return (band + line).properties(height=280)


def label_word(label: Any) -> str:
    """A sample's label in words: 1 / True -> ``fake``, 0 / False -> ``real``."""
    if isinstance(label, str) and label in ("fake", "real"):
        return label
    try:
        return {1: "fake", 0: "real"}[int(label)]
    except (TypeError, ValueError, KeyError):
        return "unknown"


# -- the protocol page --------------------------------------------------------------------

#: Fields of a result the protocol summary compares (protocol choices, data, seeds, harness).
SUMMARY_BLOCKS = ("protocol", "dataset", "perturbation_provenance", "harness", "suite")
#: Dotted fields left out of the summary: one machine's paths, and the per-run identity.
SUMMARY_SKIP = frozenset({"protocol.css_model_info.path", "harness.scoring_code_sha256"})


def protocol_summary(runs: Sequence[Any], labels: dict[str, str]) -> pd.DataFrame:
    """Per recorded field (``protocol.mask_threshold``, ``dataset.fingerprint``, the perturbation
    seed, the harness version ...): each value with how many results have it; ``shared`` when
    every result agrees. Differing fields first, then shared ones, each sorted by name."""
    import json

    flats = {r.run_id: flatten({b: r.data.get(b) for b in SUMMARY_BLOCKS if isinstance(r.data.get(b), dict)})
             for r in runs}
    fields = sorted({k for f in flats.values() for k in f} - SUMMARY_SKIP)
    rows = []
    from bench.results.protocol import RECORDED_WHEN_COMPUTED

    when_computed = tuple(f"protocol.{b}." for b in RECORDED_WHEN_COMPUTED)
    for k in fields:
        vals: dict[str, list[str]] = {}
        for r in runs:
            if k not in flats[r.run_id] and k.startswith(when_computed):
                continue  # a block a run records only when it computed that metric: not a difference
            v = T.short_value(flats[r.run_id][k], 80) if k in flats[r.run_id] else "(not recorded)"
            vals.setdefault(v, []).append(labels.get(r.run_id, r.run_id))
        shared = len(vals) == 1
        for v, who in sorted(vals.items(), key=lambda kv: -len(kv[1])):
            rows.append({"field": k, "value": v, "results": len(who), "shared": shared,
                         "which": "all" if shared else ", ".join(dict.fromkeys(who))})
    df = pd.DataFrame(rows, columns=["field", "value", "results", "shared", "which"])
    return df.sort_values(["shared", "field"], kind="mergesort").reset_index(drop=True) if not df.empty else df


def conditions_summary(runs: Sequence[Any]) -> pd.DataFrame:
    """Every condition that occurs: perturbation, its parameters as text, how many results
    have it; clean first, then per perturbation mildest first (numeric order: kernel 5, 9, 15;
    JPEG quality 50, 35, 20)."""
    seen: dict[str, dict[str, Any]] = {}
    for r in runs:
        for c in r.conditions:
            e = seen.setdefault(str(c.get("key")), {"cond": c, "runs": 0})
            e["runs"] += 1
    ordered = sorted(seen.values(), key=lambda e: (e["cond"].get("perturbation") != "clean",
                                                   str(e["cond"].get("perturbation")), T.severity_key(e["cond"])))
    return pd.DataFrame([{"condition": str(e["cond"].get("key")), "perturbation": e["cond"].get("perturbation"),
                          "parameters": T.setting_label(e["cond"]), "results": e["runs"]} for e in ordered],
                        columns=["condition", "perturbation", "parameters", "results"])


def harness_text(harness: dict[str, Any]) -> str:
    """``0.1.0 @ 4129694 ⚠ dirty`` (commit shortened; flagged when made from a modified checkout)."""
    commit = str(harness.get("git_commit") or "")
    dirty = commit.endswith("-dirty")
    sha = commit.removesuffix("-dirty")[:12] or "commit unknown"
    return f"{harness.get('version', '?')} @ {sha}" + (" ⚠ dirty" if dirty else "")


def results_summary(runs: Sequence[Any], labels: dict[str, str]) -> pd.DataFrame:
    """Identity, data, harness and environment of every result (one row each); the stored
    free-text command is left out on purpose (see :mod:`bench.leaderboards.reproduce`)."""
    rows = []
    for r in runs:
        d = r.data
        env = d.get("environment") or {}
        ds = d.get("dataset") or {}
        rows.append({
            "suite": r.suite, "run": labels.get(r.run_id, r.adapter), "adapter version": str(d["adapter"].get("version")),
            "run_id": r.run_id, "created": r.created, "dataset": f"{ds.get('name')}/{ds.get('split')}",
            "images": ds.get("n_samples"), "limit": ds.get("limit"), "fingerprint": ds.get("fingerprint"),
            "harness": harness_text(d.get("harness") or {}), "weights_sha256": d["adapter"].get("weights_sha256") or "",
            "python": str(env.get("python", "")), "platform": str(env.get("platform", "")),
            "failed samples": r.n_failed, "published with --allow-failed": bool(r.published.get("allow_failed")),
            "folder": r.rel})
    return pd.DataFrame(rows)


# -- adapters and dates --------------------------------------------------------------------

#: A link the board will make clickable: http(s) only, no spaces, quotes or angle brackets (a
#: result is written by others; ``javascript:`` and the like stay text).
_SAFE_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(?::[0-9]+)?(?:/[^\s<>\"'`]*)?$")


def safe_url(url: Any) -> str | None:
    """``url`` if it is a plain http(s) address, else None."""
    return url if isinstance(url, str) and len(url) <= 500 and _SAFE_URL.match(url) else None


CARD_COLUMNS = ["adapter", "version", "paper", "paper link", "code", "licence", "parameters", "training data",
                "fine-tuned on", "card from"]


def run_card(run: Any) -> tuple[dict[str, Any], str]:
    """(card, where it came from): the card the result records (``adapter.card``), else the
    registered adapter's current one (results made before adapters recorded it), else {}."""
    card = (run.data.get("adapter") or {}).get("card")
    if isinstance(card, dict):
        return card, "result"
    from bench.core.registry import ADAPTERS

    try:
        cls = ADAPTERS.get(run.adapter)
    except Exception:  # an adapter not installed here (a plugin): nothing known
        return {}, "unknown"
    return dict(getattr(cls, "card", {}) or {}), "adapter code (not recorded in the result)"


def cards_table(runs: Sequence[Any]) -> pd.DataFrame:
    """One row per adapter (name, version) of ``runs``: what is known about the model. Links
    are kept only when they are plain http(s) addresses; unknown facts stay empty."""
    rows: dict[tuple, dict[str, Any]] = {}
    for r in runs:
        card, where = run_card(r)
        flags = r.flags
        key = (r.adapter, str((r.data.get("adapter") or {}).get("version", "")))
        text = lambda k: str(card[k]) if card.get(k) is not None else ""  # noqa: E731
        rows.setdefault(key, {
            "adapter": r.adapter, "version": key[1], "paper": text("paper"),
            "paper link": safe_url(card.get("paper_url")), "code": safe_url(card.get("code_url")),
            "licence": text("licence"), "parameters": text("parameters"), "training data": text("training_data"),
            "fine-tuned on": text("finetuned_on") or str(flags.get("finetuned_on") or ""), "card from": where})
    return pd.DataFrame(list(rows.values()), columns=CARD_COLUMNS)


def last_updated(runs: Sequence[Any]) -> str | None:
    """The newest publish date (``publish.json``; the creation date of unpublished runs), as
    ``YYYY-MM-DD``."""
    dates = [str(r.published.get("published") or r.created or "") for r in runs]
    dates = [d for d in dates if d]
    return max(dates)[:10] if dates else None


# -- Markdown -----------------------------------------------------------------------------

def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub Markdown table of a frame of text (one-line headers). Written here rather than
    with pandas' ``to_markdown``, which needs the ``tabulate`` package for a dozen lines; pipes
    and line breaks in cells are escaped so a cell can never end the row."""
    def cell(x: Any) -> str:
        return str(x).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(cell(c) for c in df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(x) for x in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])
