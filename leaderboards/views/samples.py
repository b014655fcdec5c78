"""Samples page: one run's samples (worst or best first, per condition), with the image, the
ground-truth and predicted overlays, the reference and predicted explanations and per-sample
metrics; a second adapter of the same suite side by side on the same images."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import streamlit as st

from bench.io.overlay import overlay_gt, overlay_prediction
from bench.leaderboards import data as D
from bench.leaderboards import tables as T
from bench.leaderboards import ui

METRIC_COLUMNS = ("miou", "f1", "iou_fg", "fp_area", "rouge_l", "css", "score")
#: per-sample metrics shown x100 like the leaderboard; ``score`` stays a probability in [0, 1]
X100 = frozenset(METRIC_COLUMNS) - {"score"}
ORDERS = ("worst first", "best first", "as stored")

st.title("Samples")
loaded = ui.load()
if not loaded.runs:
    ui.no_results(loaded)
    st.stop()

runs = loaded.runs
labels = T.row_labels(runs)
suites = sorted({r.suite for r in runs})
with st.sidebar:
    st.header("View")
    ui.init_state("sm_suite", "suite", suites, suites[0])
    suite = st.selectbox("Suite", suites, key="sm_suite")
    in_suite = sorted((r for r in runs if r.suite == suite), key=lambda r: (r.adapter, r.rel))
    rels = [r.rel for r in in_suite]
    by_rel = {r.rel: r for r in in_suite}

    def fmt(rel: str) -> str:
        return f"{labels[rel]} ({rel})" if rel in by_rel else "(none)"

    ui.init_state("sm_a", "a", rels, rels[0])
    rel_a = st.selectbox("Adapter A", rels, key="sm_a", format_func=fmt)
    b_opts = [""] + [r for r in rels if r != rel_a]
    ui.init_state("sm_b", "b", b_opts, "")
    rel_b = st.selectbox("Adapter B (side by side)", b_opts, key="sm_b", format_func=fmt)
    run_a = by_rel[rel_a]
    run_b = by_rel.get(rel_b)
    cond_opts = [c["key"] for c in run_a.conditions]
    ui.init_state("sm_cond", "cond", cond_opts, cond_opts[0])
    cond = st.selectbox("Condition", cond_opts, key="sm_cond")
    df_a = ui.samples(run_a)
    metric_opts = [m for m in METRIC_COLUMNS if m in df_a.columns and df_a[m].notna().any()]
    ui.init_state("sm_metric", "metric", metric_opts, metric_opts[0] if metric_opts else None)
    metric = st.selectbox("Order by metric", metric_opts, key="sm_metric")
    ui.init_state("sm_order", "order", list(ORDERS), ORDERS[0])
    order = st.selectbox("Order", ORDERS, key="sm_order")
    ui.init_bool("sm_gallery", "gallery", True)
    only_gallery = st.checkbox("Only samples with pictures", key="sm_gallery")
    n_show = st.slider("Samples shown", 1, 48, 8, key="sm_n")

ui.write_params({"suite": suite, "a": rel_a, "b": rel_b, "cond": cond, "metric": metric, "order": order,
                 "gallery": only_gallery})

if df_a.empty:
    st.warning("This run has no readable samples.parquet.")
    st.stop()

gal_a = D.load_gallery(run_a)
gal_b = D.load_gallery(run_b) if run_b else None
rows_a = df_a[df_a["condition"] == cond].copy()
if only_gallery and gal_a is not None:
    rows_a = rows_a[rows_a["sample_id"].isin(list(gal_a.samples))]
if metric and order != "as stored":
    hib = True if metric == "score" else T.metric_info(metric)["higher_is_better"]
    worst_first = order == "worst first"
    # worst = lowest value of a higher-is-better metric; samples without a value go last
    rows_a = rows_a.sort_values(metric, ascending=(worst_first == hib), na_position="last", kind="mergesort")

df_b = ui.samples(run_b) if run_b else pd.DataFrame()
rows_b = df_b[df_b["condition"] == cond].set_index("sample_id") if not df_b.empty and "condition" in df_b else None

st.caption(f"{len(rows_a)} sample(s) under this condition. Metrics x100 (score: probability of "
           "synthetic, 0–1). Overlays: ground truth yellow; prediction green = true positive, "
           "vermillion = false positive, blue = missed.")
table_cols = [c for c in ("sample_id", "label", "status", *METRIC_COLUMNS, "error", "explanation", "reference")
              if c in rows_a.columns]
shown = rows_a[table_cols].copy()
for c in X100 & set(shown.columns):
    shown[c] = 100 * shown[c].astype("float64")
fmt_cols = {c: st.column_config.NumberColumn(c, format="%.2f" if c in X100 else "%.3f")
            for c in METRIC_COLUMNS if c in shown.columns}
st.dataframe(shown, hide_index=True, column_config=fmt_cols)


def _metrics_of(row: pd.Series | None) -> dict[str, float]:
    if row is None:
        return {}
    return {m: float(row[m]) * (100 if m in X100 else 1) for m in METRIC_COLUMNS
            if m in row.index and pd.notna(row[m])}


def _pictures(run: D.Run, gal: D.Gallery | None, sid: str, gt: np.ndarray | None, img: np.ndarray | None):
    if gal is None or img is None:
        return None
    pred = D.gallery_mask(run, gal, sid, cond)
    if pred is None or pred.shape != img.shape[:2]:
        return None
    return overlay_prediction(img, pred, gt)


for _, row in rows_a.head(n_show).iterrows():
    sid = str(row["sample_id"])
    st.divider()
    st.text(f"sample {sid}   label: {'fake' if row.get('label') == 1 else 'real'}   status A: {row.get('status')}")
    img = D.gallery_image(run_a, gal_a, sid) if gal_a else None
    gt = D.gallery_mask(run_a, gal_a, sid) if gal_a else None
    if gt is not None and img is not None and gt.shape != img.shape[:2]:
        gt = None
    row_b = rows_b.loc[sid] if rows_b is not None and sid in rows_b.index else None
    if isinstance(row_b, pd.DataFrame):
        row_b = row_b.iloc[0]
    pics = [("image", img), ("ground truth", overlay_gt(img, gt) if img is not None and gt is not None else None),
            ("prediction A", _pictures(run_a, gal_a, sid, gt, img))]
    if run_b is not None:
        pics.append(("prediction B", _pictures(run_b, gal_b, sid, gt, img)))
    cols = st.columns(len(pics))
    for col, (cap, pic) in zip(cols, pics):
        with col:
            if pic is None:
                st.caption(f"{cap}: no picture")
            else:
                st.image(pic, caption=cap)
    texts = st.columns(3 if run_b is not None else 2)
    with texts[0]:
        st.caption("reference explanation")
        ref = row.get("reference")
        st.text(ref if isinstance(ref, str) and ref else "—")
    with texts[1]:
        st.caption("explanation A")
        ex = row.get("explanation")
        st.text(ex if isinstance(ex, str) and ex else "—")
        if isinstance(row.get("error"), str) and row.get("error"):
            st.text(f"error: {row.get('error')}")
    if run_b is not None:
        with texts[2]:
            st.caption("explanation B")
            ex_b = row_b.get("explanation") if row_b is not None else None
            st.text(ex_b if isinstance(ex_b, str) and ex_b else "—")
    ma, mb = _metrics_of(row), _metrics_of(row_b)
    names = [m for m in METRIC_COLUMNS if m in ma or m in mb]
    if names:
        mt = pd.DataFrame({"metric": names, "A": [ma.get(m, math.nan) for m in names]})
        if run_b is not None:
            mt["B"] = [mb.get(m, math.nan) for m in names]
        st.dataframe(mt, hide_index=True, column_config={k: st.column_config.NumberColumn(k, format="%.3f")
                                                         for k in ("A", "B")})

ui.show_problems(loaded)
