"""``KEY=VALUE`` arguments: ``--config`` of `bench run`, `check-adapter` and `predict`,
``--dataset-option`` of `bench score`, ``--option`` of `bench data`, ``--param`` of `bench perturb`."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import yaml

from bench.errors import BenchError


def parse_value(text: str) -> Any:
    """A value read as a YAML scalar or flow list (``3``, ``0.5``, ``true``, ``null``,
    ``[512, 512]``) with ``yaml.safe_load`` (never objects); anything else stays text."""
    if not text.strip():
        return ""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, dict) or (isinstance(value, str) and value != text.strip()):
        return text  # "a: b" or quoted text: keep literally
    return value


def parse_pairs(items: Sequence[str] | None, flag: str = "--config", *,
                value: Callable[[str], Any] = parse_value, unique: bool = False) -> dict[str, Any]:
    """``["K=V", ...]`` -> {K: value(V)} (K stripped; V as :func:`parse_value` reads it unless
    the caller's ``value`` keeps it otherwise, e.g. ``str`` for text as given). An item without
    ``=`` or a name is a BenchError naming ``flag`` and the item; with ``unique`` so is a name
    given twice (else the later value wins)."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BenchError(f"{flag} {item!r} is not KEY=VALUE")
        if unique and key in out:
            raise BenchError(f"{flag} {key} is given twice; give it once")
        out[key] = value(raw)
    return out
