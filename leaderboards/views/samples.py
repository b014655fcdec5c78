"""Samples page: one run's samples (worst or best first, per condition), with the image the
condition fed the model, the ground-truth and predicted overlays, the reference and predicted
explanations and per-sample metrics; a second run of the same suite side by side on the same
images."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import streamlit as st

from bench.io.overlay import overlay_gt, overlay_prediction
from bench.leaderboards import board as B
from bench.leaderboards import data as D
from bench.leaderboards import tables as T
from bench.leaderboards import ui

#: Per-sample metrics (x100 like the leaderboard); ``score`` stays a probability in [0, 1].
X100 = ("miou", "f1", "iou_fg", "fp_area", "rouge_l", "css")
METRIC_COLUMNS = (*X100, "score")
ORDERS = ("worst first", "best first", "as stored")

st.title("Samples")
loaded = ui.load()
if not loaded.runs:
    ui.no_results(loaded)
    st.stop()

runs = loaded.runs
suites = sorted({r.suite for r in runs})
row1 = st.columns([1, 2, 2, 2], vertical_alignment="bottom")
ui.init_state("sm_suite", "suite", suites, suites[0])
suite = row1[0].selectbox("Suite", suites, key="sm_suite")
in_suite = sorted((r for r in runs if r.suite == suite), key=lambda r: (r.adapter, r.rel))
labels = B.run_labels(in_suite)
rels = [r.rel for r in in_suite]
by_rel = {r.rel: r for r in in_suite}


def fmt(rel: str) -> str:
    return labels[by_rel[rel].run_id] if rel in by_rel else "(none)"


ui.init_state("sm_a", "a", rels, rels[0])
rel_a = row1[1].selectbox("Run A", rels, key="sm_a", format_func=fmt)
b_opts = [""] + [r for r in rels if r != rel_a]
ui.init_state("sm_b", "b", b_opts, "")
rel_b = row1[2].selectbox("Run B (side by side)", b_opts, key="sm_b", format_func=fmt)
run_a = by_rel[rel_a]
run_b = by_rel.get(rel_b)
cond_opts = [c["key"] for c in run_a.conditions]
ui.init_state("sm_cond", "cond", cond_opts, cond_opts[0])
cond = row1[3].selectbox("Condition", cond_opts, key="sm_cond")
df_a = ui.samples(run_a)
metric_opts = [m for m in METRIC_COLUMNS if m in df_a.columns and df_a[m].notna().any()]
row2 = st.columns([2, 2, 2, 2], vertical_alignment="bottom")
ui.init_state("sm_metric", "metric", metric_opts, metric_opts[0] if metric_opts else None)
metric = row2[0].selectbox("Order by metric", metric_opts, key="sm_metric")
ui.init_state("sm_order", "order", list(ORDERS), ORDERS[0])
order = row2[1].selectbox("Order", ORDERS, key="sm_order")
n_show = row2[2].slider("Samples shown", 1, 48, 8, key="sm_n")
ui.init_bool("sm_gallery", "gallery", True)
only_gallery = row2[3].toggle("Only samples with pictures", key="sm_gallery")

ui.write_params({"suite": suite, "a": rel_a, "b": rel_b, "cond": cond, "metric": metric, "order": order,
                 "gallery": only_gallery})

if df_a.empty:
    st.warning("This run has no readable samples.parquet.")
    st.stop()

gal_a = D.load_gallery(run_a)
gal_b = D.load_gallery(run_b) if run_b else None
scored = df_a[df_a["condition"] == cond].copy()
rows_a = scored
if only_gallery and gal_a is not None:
    rows_a = rows_a[rows_a["sample_id"].isin(list(gal_a.samples))]
if metric and order != "as stored":
    hib = True if metric == "score" else T.metric_info(metric)["higher_is_better"]
    worst_first = order == "worst first"
    # worst = lowest value of a higher-is-better metric; samples without a value go last
    rows_a = rows_a.sort_values(metric, ascending=(worst_first == hib), na_position="last", kind="mergesort")

df_b = ui.samples(run_b) if run_b else pd.DataFrame()
rows_b = df_b[df_b["condition"] == cond].set_index("sample_id") if not df_b.empty and "condition" in df_b else None

n_failed = int((scored["status"] == "failed").sum()) if "status" in scored else 0
pictured = f" ({len(rows_a)} with pictures)" if only_gallery and gal_a is not None else ""
st.caption(f"{min(n_show, len(rows_a))} shown of {len(scored)} scored under this condition{pictured}"
           + (f", {n_failed} failed" if n_failed else "") + ". Metrics x100 like the leaderboard; score: the "
           "model's probability that the image is synthetic (0–1). Overlays: ground truth yellow; prediction "
           "green = true positive, vermillion = false positive, blue = missed.")
table_cols = [c for c in ("sample_id", "label", "status", *METRIC_COLUMNS, "error", "explanation", "reference")
              if c in rows_a.columns]
shown = rows_a[table_cols].copy()
if "label" in shown:
    shown["label"] = [B.label_word(x) for x in shown["label"]]
for c in set(X100) & set(shown.columns):
    shown[c] = 100 * shown[c].astype("float64")
fmt_cols = {c: st.column_config.NumberColumn(f"{c} (x100)", format="%.2f") for c in X100 if c in shown.columns}
if "score" in shown.columns:
    fmt_cols["score"] = st.column_config.NumberColumn("score (0–1)", format="%.3f")
st.dataframe(shown, hide_index=True, column_config=fmt_cols, placeholder=B.NA_TEXT)


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
    st.text(f"sample {sid}   label: {B.label_word(row.get('label'))}   status A: {row.get('status')}")
    img, seen_caption = None, "image"
    if gal_a is not None:
        img = D.gallery_image(run_a, gal_a, sid, cond)
        if img is not None and cond != "clean":
            seen_caption = f"image fed to the model ({cond})"
        elif cond != "clean":
            img = D.gallery_image(run_a, gal_a, sid)
            seen_caption = "clean image (this run's gallery has no picture of the perturbed input)"
    gt = D.gallery_mask(run_a, gal_a, sid) if gal_a else None
    if gt is not None and img is not None and gt.shape != img.shape[:2]:
        gt = None
    row_b = rows_b.loc[sid] if rows_b is not None and sid in rows_b.index else None
    if isinstance(row_b, pd.DataFrame):
        row_b = row_b.iloc[0]
    pics = [(seen_caption, img),
            ("ground truth", overlay_gt(img, gt) if img is not None and gt is not None else None),
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
        def txt(m: str, got: dict[str, float]) -> str:  # x100 with 2 decimals, the 0-1 score with 3
            v = got.get(m, math.nan)
            return B.NA_TEXT if math.isnan(v) else f"{v:.2f}" if m in X100 else f"{v:.3f}"

        mt = pd.DataFrame({"metric": [f"{m} (x100)" if m in X100 else f"{m} (0–1)" for m in names],
                           "A": [txt(m, ma) for m in names]})
        if run_b is not None:
            mt["B"] = [txt(m, mb) for m in names]
        st.dataframe(mt, hide_index=True)

ui.show_problems(loaded)
