"""Reference-text cleaning for LOKI's machine-translated descriptions.

LOKI's ``open_ended_vqa.json`` descriptions were machine-translated from Chinese, and 93 of the
229 global and 112 of the 687 regional descriptions kept the translator's chatter around the
translation, e.g.::

    Certainly! Here are the translations of the text descriptions into English:\\n\\n1. ...
    The text translates to: "There is an unexpectedly large gap between the lines."
    The text "配图有水印" translates to "The image has a watermark" in English.

:func:`clean_loki_text` keeps only the translation. The rules below were enumerated from every
boilerplate text in the released file; each is anchored to the whole text, and at most one
applies (the first that matches, in this order):

1. ``preamble``: ``Certainly! / Sure, here is|are the translation(s) of the text
   (descriptions) (into English):`` or ``(Certainly!) The translation of the text is:`` at the
   start -> drop it, keep the rest.
2. ``translates_to``: ``The text|description|sentence|text description ["<source>"]
   translates to|can be translated into [English] [as][:] "<T>" [or "<alt>"] [in English][.]``
   -> ``<T>`` (the first translation when two alternatives are given).
3. ``translation_of``: ``The English translation of "<source>" is "<T>".`` and
   ``The translation of "<source>" into English is "<T>".`` -> ``<T>``.
4. ``describes_issue``: ``The text describes an issue where ... The translation is: "<T>"``
   -> ``<T>``.
5. ``chinese_note``: ``The text descriptions you provided are in Chinese, and they say that
   <T>. If you have specific text that you would like translated, ...`` -> ``<T>.`` with its
   first letter upper-cased.

Then, for every text: a remainder wholly wrapped in one pair of double quotes (``"..."`` or
``“...”``, no other double quote inside) loses the quotes, and runs of whitespace (newlines
included) become one space; leading/trailing whitespace is stripped. Nothing else changes:
list markers ("1.", "-") stay, Chinese characters outside the boilerplate stay, no
punctuation is added. The rule set is versioned by :data:`LOKI_CLEANING`; results record it.
"""

from __future__ import annotations

import re
from typing import Callable

#: Name + version of the cleaning below. Change it whenever a rule changes what comes out.
LOKI_CLEANING = "loki-boilerplate-v1"

_Q = r'"(?P<t>[^"]*)"'  # a double-quoted translation without inner double quotes

_Rule = tuple[str, "re.Pattern[str]", Callable[["re.Match[str]"], str]]

_RULES: tuple[_Rule, ...] = (
    (
        "preamble",
        re.compile(
            r"^(?:(?:Certainly!|Sure,)\s*here (?:is|are) the translations? of the text"
            r"(?: descriptions?)?(?: into English)?:"
            r"|(?:Certainly!\s*)?The translation of the text is:)\s*(?P<t>.*)$",
            re.IGNORECASE | re.DOTALL,
        ),
        lambda m: m.group("t"),
    ),
    (
        "translates_to",
        re.compile(
            r'^The (?:text description|text|description|sentence)(?: "[^"]*")?'
            r" (?:translates to|can be translated into)(?: English)?(?: as)?:?\s*"
            + _Q
            + r'(?:\s+or\s+"[^"]*")?(?:\s+in English)?\s*\.?\s*$',
            re.DOTALL,
        ),
        lambda m: m.group("t"),
    ),
    (
        "translation_of",
        re.compile(
            r'^The (?:English translation of "[^"]*" is|translation of "[^"]*" into English is)\s*'
            + _Q
            + r"\s*\.?\s*$",
            re.DOTALL,
        ),
        lambda m: m.group("t"),
    ),
    (
        "describes_issue",
        re.compile(r"^The text describes an issue where .*?The translation is:\s*" + _Q + r"\s*$", re.DOTALL),
        lambda m: m.group("t"),
    ),
    (
        "chinese_note",
        re.compile(
            r"^The text descriptions you provided are in Chinese, and they say that (?P<t>.*?)\.?\s*"
            r"If you have specific text that you would like translated\b.*$",
            re.DOTALL,
        ),
        lambda m: m.group("t")[:1].upper() + m.group("t")[1:] + ".",
    ),
)

_WRAPPED = re.compile(r'^\s*(?:"(?P<a>[^"]*)"|\u201c(?P<b>[^\u201c\u201d"]*)\u201d)\s*$', re.DOTALL)
_SPACE = re.compile(r"\s+")


def loki_boilerplate_rule(text: str) -> str | None:
    """The name of the cleaning rule that applies to ``text``, or None (no boilerplate)."""
    stripped = text.strip()
    for name, pattern, _ in _RULES:
        if pattern.match(stripped):
            return name
    return None


def clean_loki_text(text: str | None) -> str:
    """``text`` without LOKI's translation boilerplate, unwrapped from quotes, whitespace
    collapsed (see the module docstring for the exact rules). ``None`` gives ``""``."""
    if not text:
        return ""
    out = text.strip()
    for _, pattern, keep in _RULES:
        m = pattern.match(out)
        if m:
            out = keep(m).strip()
            break
    wrapped = _WRAPPED.match(out)
    if wrapped:
        out = wrapped.group("a") if wrapped.group("a") is not None else wrapped.group("b")
    return _SPACE.sub(" ", out).strip()


def join_reference(parts: list[str]) -> str:
    """Non-empty cleaned parts joined by one space (LOKI reference: global, then regional)."""
    return " ".join(p for p in parts if p)
