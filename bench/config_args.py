"""``--config KEY=VALUE`` arguments, shared by `bench run`, `check-adapter` and `predict`."""

from __future__ import annotations

from typing import Any, Sequence

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


def parse_pairs(items: Sequence[str] | None) -> dict[str, Any]:
    """``["K=V", ...]`` -> {K: parse_value(V)}; a malformed item is a BenchError naming it."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BenchError(f"--config {item!r} is not KEY=VALUE")
        out[key.strip()] = parse_value(value)
    return out
