"""Robustness page: metric vs perturbation severity, one line per adapter with its 95% band,
and the drop from clean as a table."""

from __future__ import annotations

import altair as alt
import streamlit as st

from bench.leaderboards import tables as T
from bench.leaderboards import ui

st.title("Robustness")
loaded = ui.load()
if not loaded.runs:
    ui.no_results(loaded)
    st.stop()

runs = loaded.runs
suites = sorted({r.suite for r in runs})
with st.sidebar:
    st.header("View")
    ui.init_state("rb_suite", "suite", suites, suites[0])
    suite = st.selectbox("Suite", suites, key="rb_suite")
    in_suite = [r for r in runs if r.suite == suite]
    groups = list(dict.fromkeys(T.dataset_key(r) for r in in_suite))
    labels = T.group_labels(groups)
    gidx = list(range(len(groups)))
    ui.init_state("rb_group", "group", gidx, 0)
    gi = st.selectbox("Dataset", gidx, key="rb_group", format_func=lambda i: labels[groups[i]],
                      help="Runs on different data are never drawn on one chart.")
    group_runs = [r for r in in_suite if T.dataset_key(r) == groups[gi]]
    variants = T.metric_variants(group_runs)
    metric_opts = list(variants)
    ui.init_state("rb_metric", "metric", metric_opts, metric_opts[0] if metric_opts else None)
    choice = st.selectbox("Metric", metric_opts, key="rb_metric",
                          help="A metric whose results differ in protocol choices is listed once per variant.")
    metric, variant = variants[choice] if choice else (None, None)
    row_label = T.row_labels(group_runs)
    in_variant = T.in_variant(group_runs, metric, variant) if metric else []
    adapters = [row_label[r.rel] for r in in_variant]
    ui.init_state("rb_adapters", "adapter", adapters, adapters, multi=True)
    sel = st.multiselect("Adapters", adapters, key="rb_adapters")

ui.write_params({"suite": suite, "group": gi, "metric": choice, "adapter": sel})
chosen = [r for r in in_variant if row_label[r.rel] in set(sel)]
st.caption(ui.md_escape(labels[groups[gi]]))

if metric is None or not chosen:
    st.info("Choose a metric and at least one adapter.")
    st.stop()

curves = T.curves(chosen, metric, variant)
if curves.empty:
    st.info("These runs have no perturbed conditions. Run with `--perturb legion` for the robustness grid.")
else:
    direction = "higher is better" if T.metric_info(metric)["higher_is_better"] else "lower is better"
    st.caption(f"{ui.md_escape(choice)} x100 ({direction}) against perturbation strength, from the clean "
               "image on the left. Bands are 95% bootstrap intervals.")
    for fam in sorted(curves["perturbation"].unique()):
        fdf = curves[curves["perturbation"] == fam].rename(columns={"value": "v", "lo": "l", "hi": "h"})
        st.subheader(ui.md_escape(fam))
        base = alt.Chart(fdf).encode(
            x=alt.X("setting:N", title=f"{fam} setting (stronger to the right)",
                    sort=alt.EncodingSortField("level", op="min"), axis=alt.Axis(labelAngle=0)),
        )
        color = alt.Color("adapter:N", title="adapter", scale=alt.Scale(scheme="tableau10"))
        y_scale = alt.Scale(zero=False)
        band = base.mark_area(opacity=0.15).encode(
            y=alt.Y("l:Q", title=f"{metric} x100", scale=y_scale), y2="h:Q",
            color=alt.Color("adapter:N", scale=alt.Scale(scheme="tableau10"), legend=None))
        line = base.mark_line(point=True).encode(
            y=alt.Y("v:Q", title=f"{metric} x100", scale=y_scale), color=color,
            tooltip=[alt.Tooltip("adapter:N"), alt.Tooltip("condition:N"), alt.Tooltip("v:Q", title="value", format=".2f"),
                     alt.Tooltip("l:Q", title="95% lo", format=".2f"), alt.Tooltip("h:Q", title="95% hi", format=".2f")],
        )
        st.altair_chart((band + line).properties(height=280), width="stretch")

st.subheader("Drop from clean")
drops = T.drop_table(chosen, metric, variant)
if drops.empty:
    st.info("No clean condition to compare against, or no perturbed conditions.")
else:
    st.caption("drop = clean − perturbed (for a lower-is-better metric: perturbed − clean), x100 points; "
               "relative drop in percent of the clean value. Positive means worse.")
    st.dataframe(drops, hide_index=True, column_config={
        c: st.column_config.NumberColumn(c, format="%.2f") for c in ("clean", "value", "drop (points)",
                                                                     "relative drop %")})
ui.show_problems(loaded)
