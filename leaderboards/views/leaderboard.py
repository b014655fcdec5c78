"""Leaderboard page: per suite and dataset group, one ranked table per protocol variant (a row
per run, columns grouped by task, n per metric, failed per row), then the numbers papers report
for the suite's methods with each claim's verdict (never ranked with the measured rows), then
what is known about each adapter (paper, code, licence, parameters, training data)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from bench.leaderboards import board as B
from bench.leaderboards import reported as R
from bench.leaderboards import tables as T
from bench.leaderboards import ui

st.title("Leaderboard")
loaded = ui.load()
reps, claim_problems = ui.reported(loaded)
if not loaded.runs and not reps:
    ui.no_results(loaded)
    st.stop()

long = T.long_table(loaded.runs)
suites = sorted(set(long["suite"]) | {r.suite for r in reps})
all_tasks = sorted(set(long["task"]))
all_datasets = sorted(set(long["dataset"]))
claim_metrics = {v.claim.metric for r in reps for v in r.verdicts}
claim_conds = {v.claim.condition for r in reps for v in r.verdicts}

ui.init_state("lb_suites", "suite", suites, suites, multi=True)
ui.init_state("lb_tasks", "task", all_tasks, all_tasks, multi=True)
ui.init_state("lb_datasets", "ds", all_datasets, all_datasets, multi=True)
top = st.columns([3, 2, 2, 1.2], vertical_alignment="bottom")
with st.expander("Filters: suites, tasks, datasets, metric columns"):
    f1, f2, f3 = st.columns(3)
    sel_suites = f1.multiselect("Suites", suites, key="lb_suites")
    sel_tasks = f2.multiselect("Tasks", all_tasks, key="lb_tasks")
    sel_datasets = f3.multiselect("Datasets", all_datasets, key="lb_datasets")
    scope = T.filter_long(long, suites=sel_suites, tasks=sel_tasks, datasets=sel_datasets)
    metric_opts = T.order_metrics(set(scope["metric"]) | claim_metrics)
    ui.init_state("lb_metrics", "metric", metric_opts, metric_opts, multi=True)
    sel_metrics = st.multiselect("Columns (metrics)", metric_opts, key="lb_metrics",
                                 help="Which metric columns to show (and which reported claims).")
cond_opts = sorted(set(scope["condition"]) | claim_conds, key=lambda c: (c != "clean", c))
ui.init_state("lb_conditions", "cond", cond_opts, [c for c in cond_opts if c == "clean"] or cond_opts[:1],
              multi=True)
sel_conds = top[0].multiselect("Conditions", cond_opts, key="lb_conditions")
ui.init_state("lb_sort", "sort", metric_opts, metric_opts[0] if metric_opts else None)
sort_metric = top[1].selectbox("Rank by", metric_opts, key="lb_sort",
                               help="Rows are ranked by this metric on the first chosen condition, best first "
                               "(lower is better for fp_area). A click on a column header also sorts.")
ui.init_text("lb_search", "q")
search = top[2].text_input("Search adapters", key="lb_search", placeholder="name, run id or badge")
ui.init_bool("lb_ci", "ci", True)
with_ci = top[3].toggle("95% intervals", key="lb_ci", help="Show each value's 95% bootstrap interval in its cell.")

ui.write_params({"suite": sel_suites, "task": sel_tasks, "ds": sel_datasets, "cond": sel_conds,
                 "metric": sel_metrics, "sort": sort_metric, "q": search, "ci": with_ci})

st.caption(f"Values x100{', [95% bootstrap interval over images]' if with_ci else ''}. "
           "Runs that differ in dataset or in a protocol choice are in separate tables and never ranked "
           "together. n: images each metric averages over; failed: samples that failed (counted, never "
           "dropped); n/a: a task the adapter does not do, or a metric not computed. The address bar holds "
           f"this view. Last updated {ui.md_escape(B.last_updated(loaded.runs) or 'never')}.")

shown = T.filter_long(long, suites=sel_suites, tasks=sel_tasks, datasets=sel_datasets, conditions=sel_conds,
                      metrics=sel_metrics, search=search)
metric_order = [m for m in sel_metrics if m in set(shown["metric"])]
failed = B.failed_counts(loaded.runs)
exported: list[pd.DataFrame] = []
reported_parts: list[pd.DataFrame] = []
if shown.empty and not reps:
    st.warning("Nothing matches these filters.")
for suite in sel_suites:
    sdf = shown[shown["suite"] == suite]
    srep = [r for r in reps if r.suite == suite]
    rtables = [(r, R.reported_lines(r, conditions=sel_conds, metrics=sel_metrics, search=search)) for r in srep]
    rtables = [(r, t) for r, t in rtables if not t.empty]
    if sdf.empty and not rtables:
        continue
    st.header(f"Suite {ui.md_escape(suite)}")
    groups = ui.suite_groups(sdf, metric_order, sel_conds, sort_metric=sort_metric, with_ci=with_ci,
                             failed=failed) if not sdf.empty else []
    if len(groups) > 1:
        st.warning(f"{len(groups)} dataset groups in this suite, in separate tables (never ranked together).")
    for g in groups:
        (st.subheader if len(groups) > 1 else st.caption)(ui.md_escape(g.title))
        for tb in g.tables:
            if tb.title:
                st.caption(f"{ui.md_escape(tb.title)} — these runs differ from the table above in that "
                           "protocol choice, so they are ranked only among themselves.")
            st.dataframe(tb.styler(), hide_index=True, placeholder=B.NA_TEXT, width="stretch",
                         key=f"lb_table_{suite}_{g.key}_{tb.title}")
            exported.append(tb.long.assign(group_label=g.title + (f" · {tb.title}" if tb.title else ""),
                                           column=tb.long["metric"]))
    for rep, lines in rtables:
        c = R.counts(rep)
        st.subheader(f"Reported in {ui.md_escape(rep.source)}")
        st.caption(f"{ui.md_escape(rep.title)} · {ui.md_escape(rep.rel)} · not ranked: numbers a paper reports, "
                   f"checked against the runs here by `bench verify-claims` ({c['consistent']} consistent, "
                   f"{c['inconsistent']} inconsistent, {c['no run']} without a run). Consistent: the reported "
                   "value lies inside the measured 95% interval (widened by the claim's tolerance).")
        st.dataframe(R.reported_table(lines), hide_index=True, width="stretch", key=f"lb_reported_{rep.rel}")
        reported_parts.append(lines.assign(suite=suite, claims_file=rep.rel))
    cards = B.cards_table([r for r in loaded.runs if r.suite == suite and r.rel in set(sdf["run"])])
    if not cards.empty:
        with st.expander(f"Adapters of suite {ui.md_escape(suite)}: paper, code, licence, parameters, training data"):
            st.dataframe(cards, hide_index=True, width="stretch", column_config={
                "paper link": st.column_config.LinkColumn("paper link", display_text="paper"),
                "code": st.column_config.LinkColumn("code", display_text="code")})
            st.caption("Unknown facts stay empty, never guessed. 'card from': recorded in the result, or (for "
                       "results made before adapters recorded it) the adapter's current code.")

cols = st.columns(4)
if exported:
    cols[0].download_button("Download CSV", T.export_csv(exported), file_name="leaderboard.csv", mime="text/csv",
                            key="lb_csv")
if reported_parts:
    cols[1].download_button("Download reported (CSV)", T.csv_safe(pd.concat(reported_parts)).to_csv(index=False)
                            .encode("utf-8"), file_name="reported.csv", mime="text/csv", key="lb_reported_csv")
ui.show_problems(loaded, claim_problems)
