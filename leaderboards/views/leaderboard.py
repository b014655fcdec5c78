"""Leaderboard page: per suite and comparability group, one row per adapter, a column per
(metric, condition) x100 with its 95% interval beside it."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from bench.leaderboards import tables as T
from bench.leaderboards import ui

st.title("Leaderboard")
loaded = ui.load()
if not loaded.runs:
    ui.no_results(loaded)
    st.stop()

long = T.long_table(loaded.runs)
suites = sorted(long["suite"].unique())
all_tasks = sorted(long["task"].unique())
all_datasets = sorted(long["dataset"].unique())

with st.sidebar:
    st.header("View")
    ui.init_state("lb_suites", "suite", suites, suites, multi=True)
    sel_suites = st.multiselect("Suites", suites, key="lb_suites")
    ui.init_state("lb_tasks", "task", all_tasks, all_tasks, multi=True)
    sel_tasks = st.multiselect("Tasks", all_tasks, key="lb_tasks")
    ui.init_state("lb_datasets", "ds", all_datasets, all_datasets, multi=True)
    sel_datasets = st.multiselect("Datasets", all_datasets, key="lb_datasets")
    scope = T.filter_long(long, suites=sel_suites, tasks=sel_tasks, datasets=sel_datasets)
    cond_opts = sorted(scope["condition"].unique(), key=lambda c: (c != "clean", c))
    ui.init_state("lb_conditions", "cond", cond_opts, [c for c in cond_opts if c == "clean"] or cond_opts[:1],
                  multi=True)
    sel_conds = st.multiselect("Conditions", cond_opts, key="lb_conditions")
    metric_opts = T.order_metrics(scope["metric"].unique())
    ui.init_state("lb_metrics", "metric", metric_opts, metric_opts, multi=True)
    sel_metrics = st.multiselect("Columns (metrics)", metric_opts, key="lb_metrics",
                                 help="Choose which metric columns to show.")
    ui.init_state("lb_sort", "sort", metric_opts, metric_opts[0] if metric_opts else None)
    sort_metric = st.selectbox("Rank by", metric_opts, key="lb_sort",
                               help="Rows are ranked by this metric on the first chosen condition, best first "
                               "(lower is better for fp_area). Column headers also sort on click.")
    ui.init_text("lb_search", "q")
    search = st.text_input("Search adapters", key="lb_search", placeholder="name, run id or badge")
    ui.init_bool("lb_ci", "ci", True)
    with_ci = st.checkbox("Show 95% intervals", key="lb_ci")

ui.write_params({"suite": sel_suites, "task": sel_tasks, "ds": sel_datasets, "cond": sel_conds,
                 "metric": sel_metrics, "sort": sort_metric, "q": search, "ci": with_ci})

st.caption("Values x100 (fractions in results are multiplied by 100), with 95% bootstrap intervals over "
           "images. Runs that differ in dataset or protocol choices are in separate tables and never "
           "ranked together. The address bar holds this view: share it to restore it.")

shown = T.filter_long(long, suites=sel_suites, tasks=sel_tasks, datasets=sel_datasets, conditions=sel_conds,
                      metrics=sel_metrics, search=search)
if shown.empty:
    st.warning("Nothing matches these filters.")
metric_order = [m for m in sel_metrics if m in set(shown["metric"])]
exported: list[pd.DataFrame] = []
for suite in sel_suites:
    sdf = shown[shown["suite"] == suite]
    if sdf.empty:
        continue
    st.header(f"Suite {ui.md_escape(suite)}")
    groups = list(dict.fromkeys(sdf["group"]))
    labels = T.group_labels(groups)
    if len(groups) > 1:
        st.warning(f"{len(groups)} dataset groups in this suite, in separate tables (never ranked together); "
                   "they differ in: " + ui.md_escape(", ".join(T.differing_fields(groups))))
    for g in groups:
        gdf = sdf[sdf["group"] == g]
        if len(groups) > 1:
            st.subheader(ui.md_escape(labels[g]))
        else:
            st.caption(ui.md_escape(labels[g]))
        vlabels = T.variant_labels(gdf)
        split = sorted({m for (m, _), lab in vlabels.items() if lab != m})
        if split:
            st.caption("Results of " + ui.md_escape(", ".join(split)) + " differ in protocol choices; each "
                       "variant has its own columns, labelled with what differs, and is never ranked with another.")
        conds = [c for c in sel_conds if c in set(gdf["condition"])]
        table, value_cols = T.wide_table(gdf, metric_order, conds, sort_metric, with_ci)
        cfg = {"#": st.column_config.NumberColumn("#", width="small"),
               "adapter": st.column_config.TextColumn("adapter", help="adapter name"),
               "badges": st.column_config.TextColumn("badges", help="fine-tuned on a dataset (test distribution: trained on "
                                                     "this benchmark's data) · external model · box output · "
                                                     "hard mask only (no heatmap) · metrics not computed (n/a, never 0) · "
                                                     "⚠ failed samples")}
        for col, m in value_cols.items():
            info = T.metric_info(m)
            arrow = "higher is better" if info["higher_is_better"] else "lower is better"
            cfg[col] = st.column_config.NumberColumn(col, format="%.2f",
                                                     help=f"{info['description']} (x100, {arrow})")
        st.dataframe(table, hide_index=True, column_config=cfg, width="stretch")
        exported.append(gdf.assign(group_label=labels[g],
                                   column=[vlabels[(m, v)] for m, v in zip(gdf["metric"], gdf["variant"])]))

if exported:
    st.download_button("Download CSV", T.export_csv(exported), file_name="leaderboard.csv", mime="text/csv")
ui.show_problems(loaded)
