"""Text preparation for explanation metrics: cleaning of predicted text, choice of reference text.

Both are protocol choices recorded in every result (``protocol.text_cleaning`` and
``protocol.reference_field``):

- :data:`TEXT_CLEANINGS` maps a cleaning name to a ``str -> str`` function applied to each
  predicted explanation before scoring: ``none`` (identity) or ``legion`` (LEGION's own
  post-processing of raw MLLM output, :func:`clean_legion_output`).
- :data:`REFERENCE_FIELDS` maps a field name to a ``Sample -> str | None`` function choosing the
  reference text: ``caption`` (the record's full explanation, ``Sample.reference``),
  ``regions`` (the region explanations joined by a space) or ``regions_with_phrases``
  (``"<phrase>: <explanation>"`` per region, joined by a space).
"""

from __future__ import annotations

import re
from typing import Callable

from bench.errors import BenchError
from bench.core.types import Sample

_TAG_RE = re.compile(r"<.*?>")


def clean_legion_output(text: str) -> str:
    """LEGION's cleaning of a raw decoded answer (``scripts/loc_exp/infer.py``), same order:

    1. remove every ``"\\n"``, then replace each ``"  "`` (two spaces) by one space (one pass,
       as ``str.replace`` does: four spaces become two);
    2. keep the part after the LAST ``"ASSISTANT: "`` (the whole text when absent);
    3. remove every ``<...>`` tag (shortest match: ``<p>``, ``</p>``, ``</s>`` ...);
    4. remove every ``[SEG]`` token;
    5. collapse runs of whitespace to one space (``" ".join(s.split())``), strip single
       quotes ``'`` from both ends, then strip whitespace.

    Note step 3 runs before step 4, so ``<[SEG]>`` disappears as a tag, and quotes are only
    single quotes (LEGION's ``.strip("'")``); double quotes are kept.
    """
    if text is None:
        return ""
    s = text.replace("\n", "").replace("  ", " ")
    s = s.split("ASSISTANT: ")[-1]
    s = _TAG_RE.sub("", s)
    s = s.replace("[SEG]", "")
    s = " ".join(s.split()).strip("'")
    return s.strip()


def clean_none(text: str | None) -> str:
    """No cleaning; ``None`` becomes the empty string."""
    return "" if text is None else text


#: Cleaning name -> function applied to every predicted explanation before scoring.
TEXT_CLEANINGS: dict[str, Callable[[str], str]] = {
    "none": clean_none,
    "legion": clean_legion_output,
}


def get_cleaning(name: str) -> Callable[[str], str]:
    """The cleaning function registered as ``name``; :class:`BenchError` if unknown."""
    try:
        return TEXT_CLEANINGS[name]
    except KeyError:
        raise BenchError(
            f"unknown text cleaning {name!r} (protocol.text_cleaning); known: {', '.join(TEXT_CLEANINGS)}"
        ) from None


def clean_texts(texts: list[str | None], name: str) -> list[str]:
    """Apply the named cleaning to each text (``None`` counts as empty)."""
    fn = get_cleaning(name)
    return [fn("" if t is None else t) for t in texts]


def _caption(sample: Sample) -> str | None:
    return sample.reference


def _regions(sample: Sample) -> str | None:
    parts = [r.explanation.strip() for r in sample.regions if r.explanation and r.explanation.strip()]
    return " ".join(parts) if parts else None


def _regions_with_phrases(sample: Sample) -> str | None:
    parts = []
    for r in sample.regions:
        expl = (r.explanation or "").strip()
        phrase = (r.phrase or "").strip()
        if expl and phrase:
            parts.append(f"{phrase}: {expl}")
        elif expl or phrase:
            parts.append(expl or phrase)
    return " ".join(parts) if parts else None


#: Reference-field name -> function choosing the reference text of a sample (None = no reference).
REFERENCE_FIELDS: dict[str, Callable[[Sample], str | None]] = {
    "caption": _caption,
    # LOKI: the loader builds Sample.reference from the cleaned global + regional descriptions
    "global+regional": _caption,
    "regions": _regions,
    "regions_with_phrases": _regions_with_phrases,
}


def reference_text(sample: Sample, field: str = "caption") -> str | None:
    """The reference explanation of ``sample`` under the protocol's ``reference_field``.

    Returns None when the sample has no such text (the text metrics then give NaN: not
    applicable, not zero). Unknown field -> :class:`BenchError`.
    """
    try:
        fn = REFERENCE_FIELDS[field]
    except KeyError:
        raise BenchError(
            f"unknown reference field {field!r} (protocol.reference_field); known: {', '.join(REFERENCE_FIELDS)}"
        ) from None
    text = fn(sample)
    if text is None or not text.strip():
        return None
    return text
