"""About / Submit page: what the board is, how to submit an adapter or a prediction folder,
what ``bench publish`` checks, how reported numbers get on the board, and when it was last
updated."""

from __future__ import annotations

import streamlit as st

from bench.leaderboards import board as B
from bench.leaderboards import ui

st.title("About")
loaded = ui.load()
reps, _ = ui.reported(loaded)
updated = B.last_updated(loaded.runs)
st.subheader(f"Last updated: {ui.md_escape(updated or 'no published result yet')}")
st.caption(f"{len(loaded.runs)} result(s) in {len({r.suite for r in loaded.runs})} suite(s), "
           f"{len(reps)} claims file(s) of reported numbers.")
if not loaded.runs:
    ui.no_results(loaded)

st.markdown("""
This board ranks models that *detect* synthetic images, *localize* their artifacts (pixel
masks) and *explain* them in words. Every number on it comes from a result file in the
`results/` folder of the repository, written by `bench run` (or `bench score`) and admitted by
`bench publish`; result files are reviewed like code. Values are fractions in the files and x100
on the board, with 95% bootstrap intervals over images. Results that differ in their data or in
a protocol choice (mask threshold, CSS model, reference text, text cleaning, ROUGE
implementation) are never ranked together. The formulas are on the Protocol page.
""")

st.header("Submit an adapter")
st.markdown("""
1. Wrap your model as an adapter: a generic one needs no code (`hf-segmentation`,
   `timm-classifier`, `torchscript-seg`, `onnx-seg`, `external` for a script in its own
   environment, `openai-chat`), or write a plugin package (`examples/bench-example-plugin/`).
   Fill in the adapter's `card` (paper, code URL, licence, parameters, training data,
   fine-tuned on) so the board can show it; leave unknown facts out.
2. Check it: `bench check-adapter NAME --config KEY=VALUE ...`
3. Run a suite: `bench run --suite demo --perturb legion --adapter NAME --out runs/demo`
   (or a real suite: `synthscars`, `loki`, `richhf`, with `--data-root`).
4. Publish: `bench publish runs/demo/NAME` copies the run into `results/demo/`; open a pull
   request with that folder.
""")

st.header("Submit a prediction folder")
st.markdown("""
No model to run here? Score the outputs you already have:
`bench score --dataset synthscars --data-root DATA --predictions PRED --format legion --out runs/mine`
(`legion`: LEGION's own layout, `DIR/IMAGE_FILE_NAME/mask.png` and `explanation.json`;
`native`: `masks/` or `heatmaps/` plus `predictions.jsonl`), then `bench publish runs/mine/...`.
A sample without a prediction is counted as failed, never skipped.
""")

st.header("What `bench publish` checks")
st.markdown("""
- `results.json` follows schema `bench.results/1` (its JSON Schema,
  `bench/results/results.schema.json`): required fields and types, metric values and intervals
  as fractions in [0, 1], every condition with `n`, `n_failed` and metrics, the protocol
  choices named, a sha256 dataset fingerprint;
- `samples.parquet` has a row per (sample, condition) of every condition, and the counts agree;
- no sample failed, unless `--allow-failed` (the board then flags the row);
- no metric is recorded as not computed, unless `--allow-missing-metrics` (shown as n/a, never 0);
- the gallery names only safe files and holds no symbolic links;
- it is not a duplicate of a published result (same run id, or same adapter, suite, data,
  protocol and metrics).

Every reason is listed, and the copy is atomic. The board itself reads only JSON, parquet and
JPEG/PNG thumbnails, shows text from results as text, and skips (and lists) any folder that
fails the same checks.
""")

st.header("Reported numbers")
st.markdown("""
A paper's numbers enter the board as a claims file, `results/SUITE/claims/NAME.yaml`
(format `bench.claims/1`: method, dataset, condition, metric, value, tolerance). The board shows
each claim beside the runs of the same method with the verdict `bench verify-claims NAME`
gives: *consistent* (the reported value lies inside the measured 95% interval), *inconsistent*
(and by how much), or *no run*. Reported rows are never ranked with measured ones.
""")

st.header("Static copy")
st.markdown("""
`bench leaderboard --results results --export site/` writes the same tables and robustness charts
as a self-contained static site (`index.html`, `leaderboard.csv`, `reported.csv`,
`leaderboard.md`): no server, no network, for a README, a paper or an archive.
""")
if loaded.runs:
    ui.show_problems(loaded)
