"""The board's parts that need no browser: reported numbers with verify-claims' verdicts, the
reproduce command rebuilt from recorded fields, adapter cards and their links, the static
export, and the gallery's perturbed thumbnails."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml
from streamlit.testing.v1 import AppTest

from bench.leaderboards import board as B
from bench.leaderboards import reported as R
from bench.leaderboards.reproduce import reproduce
from bench.results.claims import load_claims, verify_claims
from bench.results.publish import publish
from bench.results.reader import load_runs
from results_fixtures import make_run

APP = Path(__file__).resolve().parents[1] / "leaderboards" / "app.py"
ROOT = Path(__file__).resolve().parents[1]
PS = {"clean": {"miou": [0.5, 0.6, 0.7], "f1": [0.3, 0.4, 0.5]},
      "jpeg(quality=50)": {"miou": [0.4, 0.5, 0.6], "f1": [0.2, 0.3, 0.4]}}


@pytest.fixture
def board(tmp_path: Path) -> Path:
    """Two runs and a claims file about them: one claim inside the interval, one outside, one
    about a method without a run."""
    res = tmp_path / "results"
    publish(make_run(tmp_path / "a", adapter="alpha", run_id="r-a", per_sample=PS), res)
    publish(make_run(tmp_path / "b", adapter="beta", run_id="r-b", per_sample=PS), res)
    (res / "demo" / "claims").mkdir()
    (res / "demo" / "claims" / "paper.yaml").write_text(yaml.safe_dump({
        "schema": "bench.claims/1", "title": "A paper's table", "source": "Someone et al., Table 1",
        "defaults": {"dataset": "demo", "scale": 100, "tolerance": 0.005},
        "aliases": {"Alpha-Net": ["alpha"]},
        "claims": [{"method": "Alpha-Net", "metric": "miou", "value": 61.0},
                   {"method": "Alpha-Net", "metric": "f1", "value": 90.0},
                   {"method": "Gamma", "metric": "miou", "value": 50.0}]}))
    return res


def test_reported_verdicts_are_verify_claims_own(board: Path) -> None:
    runs = load_runs(board).runs
    reps, problems = R.load_reported(board, runs)
    assert not problems and [r.rel for r in reps] == ["demo/claims/paper.yaml"] and reps[0].suite == "demo"
    direct = verify_claims(load_claims(board / "demo" / "claims" / "paper.yaml"), runs)
    assert [(v.status, v.distance) for v in reps[0].verdicts] == [(v.status, v.distance) for v in direct]
    lines = R.reported_lines(reps[0]).set_index(["method", "metric"])
    assert lines.loc[("Alpha-Net", "miou"), "verdict"] == "consistent"
    assert lines.loc[("Alpha-Net", "miou"), "measured"] == "60.00"
    assert lines.loc[("Alpha-Net", "miou"), "95% CI"] == "[50.00, 70.00]"
    # 90 lies 40 above [30, 50] minus the tolerance 0.005
    assert lines.loc[("Alpha-Net", "f1"), "verdict"] == "inconsistent: off by 39.99 (claim above the interval)"
    assert lines.loc[("Gamma", "miou"), "verdict"] == "no run"
    wide = R.reported_table(R.reported_lines(reps[0]))
    assert list(wide[("", "method")]) == ["Alpha-Net", "Gamma"]
    assert wide.loc[0, ("f1", "verdict")].startswith("inconsistent")


def test_reported_rows_on_the_board_are_not_ranked(board: Path, monkeypatch) -> None:
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(board))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    frames = [d.value for d in at.dataframe]
    reported = [f for f in frames if ("", "method") in f.columns]
    assert len(reported) == 1 and ("", "#") not in reported[0].columns  # no rank column
    assert set(reported[0][("miou", "verdict")]) == {"consistent", "no run"}
    ranked = [f for f in frames if ("", "#") in f.columns]
    assert all("Alpha-Net" not in set(f[("", "adapter")]) for f in ranked)
    assert any(s.value.startswith("Reported in Someone et al") for s in at.subheader)
    # a malformed claims file is listed as skipped, not shown
    (board / "demo" / "claims" / "broken.yaml").write_text("claims: [{method: x, metric: nope, value: 1}]\n")
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert any("skipped" in e.label for e in at.expander)


def test_reproduce_rebuilt_from_recorded_fields() -> None:
    from bench.suites import Suite

    noise = json.loads(next((ROOT / "results" / "demo").glob("noise__*/results.json")).read_text())
    assert reproduce(noise).text() == "bench run --suite demo --perturb legion --adapter noise"
    d = json.loads(json.dumps(noise))
    d["command"] = "rm -rf ~"  # never used
    d["dataset"]["limit"] = 12
    d["adapter"]["config"]["block"] = 8  # differs from the adapter's default: passed on, alone
    words = shlex.split(reproduce(d).command)
    assert words[words.index("--limit") + 1] == "12" and "rm" not in words
    assert [w for i, w in enumerate(words) if i and words[i - 1] == "--config"] == ["noise.block=8"]
    d["adapter"]["name"] = "no'ise; rm -rf ~"  # a hostile name stays one quoted shell word
    words = shlex.split(reproduce(d).command)
    assert words[words.index("--adapter") + 1] == "no'ise; rm -rf ~" and "rm" not in words
    assert "no'ise; rm -rf ~.block=8" in words  # unknown adapter here: every recorded option is passed
    # a protocol override: a suite file rebuilt from the result, which the suite loader accepts
    d = json.loads(json.dumps(noise))
    d["protocol"]["mask_threshold"] = 0.3
    d["conditions"] = d["conditions"][:1]
    r = reproduce(d)
    assert r.command == "bench run --suite demo-reproduce.yaml --adapter noise"
    suite = Suite.from_mapping(yaml.safe_load(r.suite_file), source="rebuilt")
    assert suite.name == "demo" and suite.protocol["mask_threshold"] == 0.3 and suite.conditions == ["clean"]
    assert {k: v for k, v in suite.protocol.items()} == {k: v for k, v in d["protocol"].items()}
    assert any("mask_threshold=0.3" in n for n in r.notes)


def test_cards_links_and_last_updated(tmp_path: Path) -> None:
    assert B.safe_url("https://github.com/opendatalab/LEGION") == "https://github.com/opendatalab/LEGION"
    for bad in ("javascript:alert(1)", "http://x/<script>", "https://a b", "data:text/html,x", None, 3):
        assert B.safe_url(bad) is None
    from bench.results.publish import PublishError
    from bench.results.reader import Run

    res = tmp_path / "res"
    card = {"paper": "LEGION", "paper_url": "javascript:alert(1)", "code_url": "https://github.com/opendatalab/LEGION",
            "licence": None, "parameters": "~8B", "training_data": None, "finetuned_on": "SynthScars"}
    with pytest.raises(PublishError, match="paper_url"):  # the schema refuses a link that is not http(s)
        publish(make_run(tmp_path / "bad", adapter="legion", run_id="r0", card=card), res)
    publish(make_run(tmp_path / "a", adapter="legion", run_id="r1", card={**card, "paper_url": None}), res)
    publish(make_run(tmp_path / "b", adapter="noise", run_id="r2"), res)
    runs = load_runs(res).runs
    # and the board does not trust it either (a folder it reads may not have been published)
    hostile = Run(runs[0].root, runs[0].path, {**runs[0].data, "adapter": {**runs[0].data["adapter"], "card": card}})
    assert B.cards_table([hostile]).loc[0, "paper link"] is None
    cards = B.cards_table(runs).set_index("adapter")
    assert cards.loc["legion", "paper link"] is None and cards.loc["legion", "code"].startswith("https://github.com")
    assert cards.loc["legion", "fine-tuned on"] == "SynthScars" and cards.loc["legion", "card from"] == "result"
    # a result without a card (written before adapters recorded it): the adapter's own, said so
    assert cards.loc["noise", "training data"] == "none (training-free)"
    assert cards.loc["noise", "card from"].startswith("adapter code")
    assert B.last_updated(runs) == max(r.published["published"] for r in runs)[:10]


def test_adapters_record_their_card(tmp_path: Path) -> None:
    from bench.core.registry import ADAPTERS
    from bench.core.types import Adapter
    from bench.results.writer import adapter_card

    legion = adapter_card(ADAPTERS.get("legion"))
    assert set(legion) == set(Adapter.card_keys)
    assert legion["code_url"] == "https://github.com/opendatalab/LEGION" and legion["licence"] is None
    assert adapter_card(ADAPTERS.get("hifinet"))["licence"] == "MIT"
    assert adapter_card(ADAPTERS.get("pal4vst"))["finetuned_on"] is None  # the official weights
    for e in ADAPTERS.entries():  # only known keys; links are plain http(s)
        card = getattr(e.obj, "card", {}) or {}
        assert set(card) <= set(Adapter.card_keys), e.name
        for k in ("paper_url", "code_url"):
            assert card.get(k) is None or B.safe_url(card[k]), (e.name, k)


def test_static_export(board: Path, tmp_path: Path) -> None:
    from bench.errors import BenchError
    from bench.leaderboards.export import MARKER, export_site

    hostile = make_run(tmp_path / "h", adapter="<img src=x onerror=alert(1)>", run_id="r-h", per_sample=PS)
    publish(hostile, board)
    out = tmp_path / "site"
    done = export_site(board, out)
    assert done.files == ["index.html", "leaderboard.csv", "leaderboard.md", "reported.csv"] and done.n_runs == 3
    page = (out / "index.html").read_text()
    assert "<script" not in page.lower() and "src=" not in page.replace("src=x", "")  # nothing to fetch or run
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "<img src=x" not in page
    assert "default-src 'none'" in page
    assert "consistent" in page and "inconsistent: off by 39.99" in page  # the reported table
    assert page.count("<svg") == 1  # one robustness chart per perturbation family (here jpeg), with its legend
    assert "role-legend" in page
    md = (out / "leaderboard.md").read_text()
    assert "| 1 | alpha | 0 | 60.00 | 40.00 |" in md or "| 1 | beta | 0 | 60.00 | 40.00 |" in md
    # replaced atomically only when it is an earlier export
    export_site(board, out)
    assert (out / MARKER).is_file()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(BenchError, match="not an earlier leaderboard export"):
        export_site(board, other)
    assert (other / "notes.txt").read_text() == "keep"


def test_gallery_thumbnail_is_the_image_the_model_was_fed(tmp_path: Path, monkeypatch) -> None:
    """`bench run` with a perturbed condition writes, per gallery sample, the image that
    condition fed the model: apply_condition on the full image (suite seed, sample id), then
    shrunk like the clean thumbnail."""
    import cv2
    from PIL import Image

    from bench.cli import main
    from bench.core.conditions import Condition
    from bench.core.registry import create_dataset
    from bench.perturbations import apply_condition
    from bench.suites import get_suite

    out = tmp_path / "runs"
    assert main(["run", "--suite", "demo", "--adapter", "empty", "--condition", "gaussian_noise(sigma=0.2)",
                 "--limit", "2", "--out", str(out), "--no-progress", "--workers", "1"]) == 0
    g = out / "empty" / "gallery"
    index = json.loads((g / "index.json").read_text())
    slug = index["conditions"]["gaussian_noise(sigma=0.2)"]
    entry = index["samples"][0]
    seen = np.asarray(Image.open(g / "images" / slug / f"{entry['safe_id']}.jpg").convert("RGB")).astype(int)
    clean_thumb = np.asarray(Image.open(g / "images" / f"{entry['safe_id']}.jpg").convert("RGB")).astype(int)
    suite = get_suite("demo")
    ds = create_dataset(suite.dataset, split=suite.split, **suite.dataset_options)
    sample = next(s for s in ds.samples() if s.id == entry["sample_id"])
    image = sample.load_image()
    want = apply_condition(image, Condition.parse("gaussian_noise(sigma=0.2)"), suite_seed=suite.seed,
                           sample_id=sample.id)
    want = cv2.resize(want, (seen.shape[1], seen.shape[0]), interpolation=cv2.INTER_AREA).astype(int)
    other_seed = apply_condition(image, Condition.parse("gaussian_noise(sigma=0.2)"), suite_seed=suite.seed + 1,
                                 sample_id=sample.id)
    other_seed = cv2.resize(other_seed, (seen.shape[1], seen.shape[0]), interpolation=cv2.INTER_AREA).astype(int)
    clean = cv2.resize(image, (seen.shape[1], seen.shape[0]), interpolation=cv2.INTER_AREA).astype(int)

    def corr(a: np.ndarray, b: np.ndarray) -> float:  # of the noise each picture adds to the clean image
        return float(np.corrcoef((a - clean).ravel(), (b - clean).ravel())[0, 1])

    same, other = corr(seen, want), corr(seen, other_seed)
    print(f"noise correlation with the thumbnail: inference's draw {same:.2f}, another draw {other:.2f}")
    assert same > 0.5 and other < 0.2  # the draw inference made (suite seed, sample id), not another one
    assert np.abs(seen - clean_thumb).mean() > 2  # and not the clean thumbnail


def test_readme_shows_the_exported_table() -> None:
    """The README's static table is what `bench leaderboard --export` writes for results/."""
    from bench.leaderboards.export import build

    files, _ = build(ROOT / "results")
    md = files["leaderboard.md"]
    table = md[md.index("| # | adapter"):md.index("### Suite", md.index("| # | adapter"))].strip()
    assert table in (ROOT / "README.md").read_text()
