"""Protocol page: metric definitions, perturbation parameters, and per result its dataset
fingerprint, protocol, environment and the exact `bench run` command that reproduces it."""

from __future__ import annotations

import streamlit as st

from bench.leaderboards import data as D
from bench.leaderboards import tables as T
from bench.leaderboards import ui

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

st.header("Perturbations")
st.caption("Every condition in the results with its exact parameters. The random state of a "
           "stochastic perturbation comes from (suite seed, sample id, condition) only.")
st.dataframe(T.conditions_table(runs), hide_index=True)

st.header("Results")
st.caption("Dataset fingerprint (sha256 over sample ids and annotation bytes), protocol and "
           "environment of every result, and the command that reproduces it.")
st.dataframe(T.runs_table(runs), hide_index=True)

st.header("Reproduce a row")
rels = [r.rel for r in runs]
by_rel = {r.rel: r for r in runs}
labels = T.row_labels(runs)
ui.init_state("pr_run", "run", rels, rels[0])
rel = st.selectbox("Result", rels, key="pr_run", format_func=lambda x: f"{by_rel[x].suite} / {labels[x]} ({x})")
ui.write_params({"run": rel})
run = by_rel[rel]
st.caption("Command")
st.code(run.data["command"], language="bash")
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
