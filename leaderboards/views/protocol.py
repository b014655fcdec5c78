"""Protocol page: metric definitions; the protocol choices across runs (shared and differing);
the perturbation parameters in severity order; per result its data, harness version (a dirty
checkout flagged) and environment; and the command that reproduces a result, rebuilt from its
recorded fields (never the free text a result stores)."""

from __future__ import annotations

import streamlit as st

from bench.leaderboards import board as B
from bench.leaderboards import data as D
from bench.leaderboards import tables as T
from bench.leaderboards import ui
from bench.leaderboards.reproduce import reproduce

st.title("Protocol")

st.header("Metrics")
st.caption("From the metric registry. Per-image values are averaged over the images named in "
           "'averaged over'; results store fractions in [0, 1] and the leaderboard shows x100.")
st.dataframe(T.metric_definitions(), hide_index=True)

loaded = ui.load()
if not loaded.runs:
    ui.no_results(loaded)
    st.stop()
runs = loaded.runs
labels = B.run_labels(runs)

st.header("Protocol choices across results")
summary = B.protocol_summary(runs, labels)
differ, shared = summary[~summary["shared"]], summary[summary["shared"]]
st.caption(f"Every choice the {len(runs)} result(s) record. {differ['field'].nunique()} field(s) differ between "
           "results (one line per value, with how many results have it and which); the others are shared by all. "
           "Results that differ in a choice that affects a metric are never ranked together on the Leaderboard.")
st.subheader("Differing")
if differ.empty:
    st.info("Every result records the same choices.")
else:  # tall enough to show every line without scrolling inside the table
    st.dataframe(differ.drop(columns=["shared"]), hide_index=True, width="stretch",
                 height=min(38 + 35 * len(differ), 1200), key="pr_differ")
with st.expander(f"Shared by all {len(runs)} result(s): {len(shared)} field(s)"):
    st.dataframe(shared.drop(columns=["shared", "which", "results"]), hide_index=True, width="stretch")

st.header("Perturbations")
st.caption("Every condition in the results with its exact parameters, mildest first within each "
           "perturbation. The random state of a stochastic perturbation comes from (suite seed, sample id, "
           "condition) only.")
st.dataframe(B.conditions_summary(runs), hide_index=True)

st.header("Results")
st.caption("Dataset fingerprint (sha256 over sample ids and annotation bytes), harness version and commit "
           "(⚠ dirty: made from a checkout with uncommitted changes, so the commit alone does not say what "
           "code ran), environment and failures of every result.")
st.dataframe(B.results_summary(runs, labels), hide_index=True, width="stretch")

st.header("Reproduce a result")
rels = [r.rel for r in runs]
by_rel = {r.rel: r for r in runs}
ui.init_state("pr_run", "run", rels, rels[0])
rel = st.selectbox("Result", rels, key="pr_run",
                   format_func=lambda x: f"{by_rel[x].suite} / {labels[by_rel[x].run_id]} ({x})")
ui.write_params({"run": rel})
run = by_rel[rel]
rep = reproduce(run.data)
st.caption("Rebuilt from the fields the result records (suite, adapter and config, conditions, limit, "
           "protocol); the free-text command a result stores is not shown, since a published file could "
           "put any shell line there. Every word is shell-quoted.")
st.code(rep.text(), language="bash")
st.caption("Dataset")
st.code(D.to_json_text(run.data["dataset"]), language="json")
st.caption("Protocol")
st.code(D.to_json_text(run.data["protocol"]), language="json")
st.caption("Perturbation provenance")
st.code(D.to_json_text(run.data.get("perturbation_provenance")), language="json")
st.caption("Adapter")
st.code(D.to_json_text(run.data["adapter"]), language="json")
st.caption("Harness and environment")
st.code(D.to_json_text({"harness": run.data["harness"], "environment": run.data["environment"],
                        "timing": run.data.get("timing"), "published": run.published}), language="json")
ui.show_problems(loaded)
