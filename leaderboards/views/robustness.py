"""Robustness page: metric vs perturbation severity, one line per run with its 95% band and a
legend, and the drop from clean as a table. By default: the dataset group and the protocol
variant that most runs with perturbed conditions share."""

from __future__ import annotations

import streamlit as st

from bench.leaderboards import board as B
from bench.leaderboards import tables as T
from bench.leaderboards import ui

st.title("Robustness")
loaded = ui.load()
if not loaded.runs:
    ui.no_results(loaded)
    st.stop()

runs = loaded.runs
suites = sorted({r.suite for r in runs})
top = st.columns([1, 2, 2], vertical_alignment="bottom")
ui.init_state("rb_suite", "suite", suites, B.default_robustness_suite(runs))
suite = top[0].selectbox("Suite", suites, key="rb_suite")
in_suite = [r for r in runs if r.suite == suite]
groups = B.robustness_groups(in_suite)
labels = {g: B.group_title(g) for g in groups}
gidx = list(range(len(groups)))
ui.init_state("rb_group", "group", gidx, 0)
gi = top[1].selectbox("Dataset", gidx, key="rb_group", format_func=lambda i: labels[groups[i]],
                      help="Runs on different data are never drawn on one chart. Default: the data most "
                      "runs with perturbed conditions share.")
group_runs = [r for r in in_suite if T.dataset_key(r) == groups[gi]]
variants = T.metric_variants(group_runs)
metric_opts = list(variants)
ui.init_state("rb_metric", "metric", metric_opts, B.default_variant(group_runs, variants))
choice = top[2].selectbox("Metric", metric_opts, key="rb_metric",
                          help="A metric whose results differ in protocol choices is listed once per variant; "
                          "the default is the variant most runs with perturbed conditions share.")
metric, variant = variants[choice] if choice else (None, None)
in_variant = T.in_variant(group_runs, metric, variant) if metric else []
run_label = B.run_labels(in_variant)
ids = [r.run_id for r in in_variant]
# links name runs by run id (stable when an adapter gets a second run); adapter=NAME still works
legacy = [r.run_id for r in in_variant if r.adapter in set(ui.query_list("adapter"))]
ui.init_state("rb_runs", "run", ids, legacy or ids, multi=True)
sel = st.multiselect("Runs", ids, key="rb_runs", format_func=lambda i: run_label.get(i, i))

ui.write_params({"suite": suite, "group": gi, "metric": choice, "run": sel})
chosen = [r for r in in_variant if r.run_id in set(sel)]

if metric is None or not chosen:
    st.info("Choose a metric and at least one run.")
    st.stop()

curves = B.run_curves(chosen, metric, variant, run_label)
if curves.empty:
    st.info("These runs have no perturbed conditions (clean only). Run with `--perturb legion` for the "
            "robustness grid, or choose another dataset or metric.")
else:
    direction = "higher is better" if T.metric_info(metric)["higher_is_better"] else "lower is better"
    st.caption(f"{ui.md_escape(choice)} x100 ({direction}) against perturbation strength, from the clean "
               "image on the left; one line per run (legend below each chart), bands are 95% bootstrap "
               "intervals.")
    for fam in sorted(curves["perturbation"].unique()):
        st.subheader(ui.md_escape(fam))
        st.altair_chart(B.robustness_chart(curves[curves["perturbation"] == fam], fam, metric), width="stretch")

st.subheader("Drop from clean")
drops = B.run_drops(chosen, metric, variant, run_label)
if drops.empty:
    st.info("No clean condition to compare against, or no perturbed conditions.")
else:
    st.caption("drop = clean − perturbed (for a lower-is-better metric: perturbed − clean), x100 points; "
               "relative drop in percent of the clean value. Positive means worse.")
    st.dataframe(drops, hide_index=True, column_config={
        c: st.column_config.NumberColumn(c, format="%.2f") for c in ("clean", "value", "drop (points)",
                                                                     "relative drop %")})
ui.show_problems(loaded)
