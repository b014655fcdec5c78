"""Checking a parsed ``results.json`` against ``bench.results/1``.

The structure is checked by JSON Schema (``bench/results/results.schema.json``, draft 2020-12,
which also documents every field); each schema error becomes one line naming the field the
way a person would look for it (``dataset.fingerprint``, ``condition 'clean': metric 'miou':
value``). What a schema cannot state is checked here, by small functions:

- no condition key appears twice;
- ``n_failed <= n``;
- a ``ci95`` is ``[lo, hi]`` with ``lo <= hi``, or wholly undefined (``[null, null]``);
- a metric with ``status: not_computed`` has null ``value`` and ``ci95`` and gives a reason.

``NaN`` (Python's json reads the literal) counts as null, as the writer stores it.
"""

from __future__ import annotations

import math
from datetime import datetime
from functools import lru_cache
from typing import Any, Iterator, Sequence

from bench.core.validate import load_schema
from bench.results.schema import RESULTS_SCHEMA, SCHEMA_PATH

#: Keyword sets of :data:`WORDING`: ``*`` stands for every keyword but ``required`` (the value
#: is wrong), ``_ALL`` adds ``required`` (the field is missing).
_VALUE = frozenset({"*"})
_ALL = frozenset({"*", "required"})
#: A wildcard step of a wording pattern, and the tail "this field or anything below it".
_ANY, _BELOW = "*", "**"
_FRACTION_NOTE = "(values are stored as fractions; the leaderboard multiplies by 100)"
_METRIC = ("conditions", _ANY, "metrics", _ANY)

#: How a failed field is worded, first match wins: (field path pattern, schema keywords,
#: template). ``*`` matches one step; a trailing ``**`` also matches every field below,
#: whatever its keyword, and words it as the field itself. Templates get ``field`` (the field
#: as named to people), ``value`` (its repr, shortened), ``low`` (the schema's minimum) and
#: ``choices`` (an enum's values). Fields with no rule get the generic wording of
#: :func:`_generic`.
WORDING: tuple[tuple[tuple[Any, ...], frozenset[str], str], ...] = (
    (("schema",), _ALL, "{field} is {value}, expected " + repr(RESULTS_SCHEMA)),
    (("created",), frozenset({"format"}), "{field} {value} is not an ISO 8601 time"),
    (("dataset", "fingerprint"), frozenset({"pattern"}), "{field} {value} is not a sha256 hex digest"),
    (("dataset", "n_samples"), frozenset({"minimum"}), "{field} is {value}; a result needs at least one sample"),
    (("adapter", "weights_sha256"), frozenset({"required"}), "{field} is missing (null for a weight-free adapter)"),
    (("adapter", "weights_sha256"), _VALUE, "{field} {value} is neither null nor a sha256 hex digest"),
    (("adapter", "tasks", _BELOW), _VALUE, "{field} should be a list of strings"),
    (("adapter", "flags"), _VALUE, "{field} should be an object"),
    (("protocol", "mask_threshold"), _VALUE, "{field} {value} is not a number in [0, 1]"),
    (("protocol", "bootstrap", _BELOW), _VALUE, "{field} should be {{n: integer, seed: integer}}"),
    (("conditions", _ANY, "params"), _VALUE, "{field} should be an object (or a list for a chain)"),
    (("conditions", _ANY, "n"), frozenset({"minimum"}), "{field} is {value}; no sample was scored"),
    (("conditions", _ANY, "n_failed"), frozenset({"minimum"}), "{field} {value} is negative"),
    (_METRIC, frozenset({"type"}), "{field} should be an object {{value, ci95, n}}"),
    ((*_METRIC, "value"), _VALUE, "{field} {value} is not a fraction in [{low}, 1] " + _FRACTION_NOTE),
    ((*_METRIC, "ci95"), _VALUE, "{field} should be [lo, hi]"),
    ((*_METRIC, "ci95", _BELOW), _VALUE, "{field} {value} is not two fractions in [{low}, 1]"),
    ((*_METRIC, "status"), _VALUE, "{field} {value} is not one of {choices}"),
    ((*_METRIC, "n"), _VALUE, "{field} {value} is not a count"),
)

_TYPE_WORDS = {"object": "an object", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "a boolean", "null": "null"}
#: Which of two wordings of one field is kept: a missing field, then a wrong type, then empty.
_RANK = {"required": 0, "type": 1, "minLength": 2, "minItems": 2}


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    formats = jsonschema.FormatChecker(formats=())
    formats.checks("date-time", raises=ValueError)(lambda text: bool(datetime.fromisoformat(text)))
    return jsonschema.Draft202012Validator(load_schema(str(SCHEMA_PATH)), format_checker=formats)


def validate_results(data: Any) -> list[str]:
    """Every problem with a parsed ``results.json``.

    Parameters
    ----------
    data : Any
        The parsed file.

    Returns
    -------
    problems : list of str
        One line per problem, each naming its field; empty when the result is valid.
    """
    if not isinstance(data, dict):
        return [f"results.json should hold an object, got {type(data).__name__}"]
    clean = _nan_to_none(data)
    problems = _schema_problems(clean, data)
    problems += _duplicate_keys(clean)
    for i, cond in enumerate(clean.get("conditions") or []):
        if isinstance(cond, dict):
            problems += _condition_problems(data, i, cond)
    return list(dict.fromkeys(problems))


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    return obj


# -- schema errors as lines -----------------------------------------------------------------

def _schema_problems(clean: dict, data: dict) -> list[str]:
    """The schema's errors on ``clean`` (``data`` with NaN as null), one line per field."""
    best: dict[tuple, tuple[int, str]] = {}
    for err in _validator().iter_errors(clean):
        for path, keyword in _failed_fields(err):
            field, text = _wording(path, keyword, err, data)
            rank = _RANK.get(keyword, 3)
            if field not in best or rank < best[field][0]:
                best[field] = (rank, text)
    return [text for _, text in best.values()]


def _failed_fields(err: Any) -> Iterator[tuple[tuple, str]]:
    """(field path, keyword) of a schema error; a ``required`` error names each missing field."""
    path = tuple(err.absolute_path)
    if err.validator == "required":
        for name in err.validator_value:
            if isinstance(err.instance, dict) and name not in err.instance:
                yield (*path, name), "required"
    else:
        yield path, str(err.validator)


def _wording(path: tuple, keyword: str, err: Any, data: dict) -> tuple[tuple, str]:
    """(the field the line is about, the line) for one failed field."""
    for pattern, keywords, template in WORDING:
        field = _match(pattern, path)
        if field is None or (field == path and not _names(keywords, keyword)):
            continue
        return field, template.format(field=label(field, data), value=_short(_at(data, field)),
                                      low=f"{err.schema.get('minimum', 0):g}",
                                      choices=", ".join(map(str, err.schema.get("enum", ()))))
    return path, _generic(path, keyword, err, data)


def _names(keywords: frozenset[str], keyword: str) -> bool:
    """True if the keyword set of a :data:`WORDING` rule takes ``keyword``."""
    return keyword in keywords or ("*" in keywords and keyword != "required")


def _match(pattern: Sequence[Any], path: tuple) -> tuple | None:
    """The part of ``path`` that ``pattern`` names, or None when it does not match."""
    below = bool(pattern) and pattern[-1] == _BELOW
    steps = pattern[:-1] if below else pattern
    if len(path) < len(steps) or (len(path) > len(steps) and not below):
        return None
    if any(s != _ANY and s != p for s, p in zip(steps, path)):
        return None
    return path[:len(steps)]


def _generic(path: tuple, keyword: str, err: Any, data: dict) -> str:
    """The wording of a field no rule of :data:`WORDING` names."""
    field = label(path, data)
    if keyword == "required":
        return f"{field} is missing"
    if keyword == "type":
        types = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        want = " or ".join(_TYPE_WORDS.get(t, t) for t in types)
        got = "not a boolean" if isinstance(err.instance, bool) else f"got {type(err.instance).__name__}"
        return f"{field} should be {want}, {got}"
    if keyword in ("minLength", "minItems") and not err.instance:
        return f"{field} is empty"
    return f"{field} {_short(_at(data, path))}: {err.message}"


def label(path: Sequence[Any], data: dict) -> str:
    """A field as people name it: ``dataset.fingerprint``; within a condition, by its key
    (``condition 'clean': n``, ``condition 'clean': metric 'miou': value``), or by its index
    (``conditions[0]``) when the key itself is the problem."""
    path = list(path)
    if not path:
        return "results.json"
    if path[0] != "conditions" or len(path) < 2:
        return _dotted(path)
    i, rest = path[1], path[2:]
    if not rest or rest[0] == "key":
        return _dotted(path)
    key = _at(data, ("conditions", i, "key"))
    ctx = f"condition {key!r}: " if isinstance(key, str) and key else f"conditions[{i}]: "
    if rest[0] == "metrics" and len(rest) > 1:
        ctx += f"metric {rest[1]!r}:"
        return ctx + (f" {_dotted(rest[2:])}" if len(rest) > 2 else "")
    return ctx + _dotted(rest)


def _dotted(path: Sequence[Any]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _at(doc: Any, path: Sequence[Any]) -> Any:
    """The value at ``path`` in ``doc``; None where it is absent."""
    for p in path:
        try:
            doc = doc[p]
        except (KeyError, IndexError, TypeError):
            return None
    return doc


def _short(value: Any) -> str:
    return repr(value[:80] if isinstance(value, str) else value)


# -- what a schema cannot say ---------------------------------------------------------------

def _duplicate_keys(clean: dict) -> list[str]:
    """A line for each condition key that appears again."""
    seen: set[str] = set()
    out = []
    for c in clean.get("conditions") or []:
        key = c.get("key") if isinstance(c, dict) else None
        if isinstance(key, str) and key:
            if key in seen:
                out.append(f"condition {key!r}: appears twice")
            seen.add(key)
    return out


def _condition_problems(data: dict, i: int, cond: dict) -> list[str]:
    """``n_failed <= n``, and the cross-field rules of each metric of condition ``i``."""
    out = []
    n, nf = cond.get("n"), cond.get("n_failed")
    if _is_int(n) and _is_int(nf) and 0 <= nf and nf > n:  # a negative n_failed: the schema says so
        out.append(f"{label(('conditions', i, 'n_failed'), data)} {nf} is not between 0 and n = {n}")
    metrics = cond.get("metrics")
    for name, m in (metrics.items() if isinstance(metrics, dict) else ()):
        if isinstance(m, dict):
            raw = _at(data, ("conditions", i, "metrics", name))
            out += _interval_problems(data, (i, name), m) + _not_computed_problems(data, (i, name), raw)
    return out


def _interval_problems(data: dict, where: tuple[int, str], m: dict) -> list[str]:
    """A ``ci95`` half undefined, or with ``lo > hi``."""
    ci = m.get("ci95")
    if not (isinstance(ci, list) and len(ci) == 2 and all(x is None or _is_num(x) for x in ci)):
        return []  # the schema says what is wrong with it
    path = ("conditions", where[0], "metrics", where[1], "ci95")
    low = -1.0 if where[1] in signed_metrics() else 0.0
    if (ci[0] is None) != (ci[1] is None):
        return [f"{label(path, data)} {_short(_at(data, path))} is not two fractions in [{low:g}, 1]"]
    in_range = all(x is not None and low <= x <= 1 for x in ci)  # else the schema says so
    if in_range and ci[0] > ci[1]:
        return [f"{label(path, data)} {_short(_at(data, path))} has lo > hi"]
    return []


def _not_computed_problems(data: dict, where: tuple[int, str], raw: dict) -> list[str]:
    """A metric recorded as not computed must have null value and ci95, and a reason."""
    if raw.get("status") != "not_computed":
        return []
    field = label(("conditions", where[0], "metrics", where[1]), data)
    out = []
    if raw.get("value") is not None or raw.get("ci95") is not None:
        out.append(f"{field} is not computed, so its value and ci95 must be null")
    if not (isinstance(raw.get("reason"), str) and raw["reason"].strip()):
        out.append(f"{field} is not computed but gives no reason")
    return out


def signed_metrics() -> frozenset[str]:
    """The metrics the schema lets be negative (a cosine similarity lies in [-1, 1])."""
    schema = _validator().schema
    return frozenset(schema["$defs"]["condition"]["properties"]["metrics"].get("properties", {}))


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)
