"""Small file helpers shared by the dataset loaders: JSON text encoding detection, id lists."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bench.errors import BenchError, DataMissingError

#: Byte-order marks, longest first (the UTF-32 LE mark starts with the UTF-16 LE one).
_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xfe\xff", "utf-16-be"),
    (b"\xff\xfe", "utf-16-le"),
)


def detect_json_encoding(raw: bytes) -> tuple[str, str]:
    """(codec, how) for JSON text ``raw``: from the byte-order mark if there is one, else from
    the pattern of zero bytes in the first four (JSON text starts with an ASCII character,
    RFC 4627 §3 — the same rule as the standard library's ``json.detect_encoding``), else
    UTF-8. ``how`` says which ("BOM" / "zero-byte pattern" / "no BOM, default").

    The codec for a BOM-marked file keeps the BOM out of the text (``utf-8-sig``; for UTF-16/32
    the caller drops a leading U+FEFF).
    """
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            return codec, "BOM"
    head = raw[:4]
    if len(head) >= 4:
        z = [b == 0 for b in head]
        if z == [True, True, True, False]:
            return "utf-32-be", "zero-byte pattern"
        if z == [False, True, True, True]:
            return "utf-32-le", "zero-byte pattern"
    if len(head) >= 2:
        if head[0] == 0 and head[1] != 0:
            return "utf-16-be", "zero-byte pattern"
        if head[0] != 0 and head[1] == 0:
            return "utf-16-le", "zero-byte pattern"
    return "utf-8", "no BOM, default"


def read_json_text(path: Path) -> tuple[Any, str]:
    """Parse a JSON file whose encoding is detected (never assumed); returns (data, codec).

    Raises :class:`DataMissingError` if the file cannot be read and :class:`BenchError` naming
    the file if it does not decode in the detected encoding or is not valid JSON.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataMissingError(f"{path}: cannot read annotation file: {exc.strerror or exc}") from None
    codec, how = detect_json_encoding(raw)
    try:
        text = raw.decode(codec)  # strict: an undecodable byte is an error, never replaced
    except UnicodeDecodeError as exc:
        raise BenchError(
            f"{path}: not valid {codec} text (encoding from {how}): {exc.reason} at byte "
            f"{exc.start}; re-save the file as UTF-8 or UTF-16 with a byte-order mark"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return json.loads(text), codec
    except json.JSONDecodeError as exc:
        raise BenchError(
            f"{path}: not valid JSON after decoding as {codec} (encoding from {how}): "
            f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None


_INLINE_COMMENT = re.compile(r"\s+#.*$")


def read_id_list(path: Path | str) -> list[str]:
    """Ids from a text file: one per line, blank lines and ``#`` comments (a line starting
    with ``#``, or whitespace + ``#`` to the end of a line) ignored; order kept, repeats dropped."""
    from bench.core.validate import read_text_file

    text = read_text_file(path, "id list file", encoding="utf-8-sig")
    ids: list[str] = []
    seen: set[str] = set()
    for line in text.splitlines():
        line = _INLINE_COMMENT.sub("", line).strip()
        if not line or line.startswith("#") or line in seen:
            continue
        seen.add(line)
        ids.append(line)
    return ids


def json_type(v: Any) -> str:
    """JSON type name of a parsed value, for error messages."""
    if v is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean",
            int: "number", float: "number"}.get(type(v), type(v).__name__)


def is_number(v: Any) -> bool:
    """A JSON number (int or float, not a boolean)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)
