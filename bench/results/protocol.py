"""The comparability rule: when two results may be compared or ranked together.

Every result records its scoring choices in ``protocol`` (``bench.results/1``). This module
says, once, what those choices mean for comparison:

- **scope** (:data:`PROTOCOL_SCOPE`): which metrics a protocol key affects. A key this module
  does not know affects every metric (the safe side); a key with an empty scope (``bootstrap``)
  changes intervals only, never a value.
- **informational** (:data:`INFORMATIONAL`): sub-fields that describe one machine, not a
  choice (``css_model_info.path``, where the model lies on disk).
- **recorded when computed** (:data:`RECORDED_WHEN_COMPUTED`): blocks a run writes only when it
  computed the metric that needs them (the writer adds ``css_model_info`` only to runs that
  scored CSS).

Two callers apply the rule at two grains, on purpose:

- :func:`protocol_differences` / :func:`comparability_problems` (``bench compare``,
  ``bench verify-claims``): **run-level**. Two runs are paired only when they scored the same
  images (``dataset.fingerprint``) and agree on every protocol field that can change any value;
  a paired comparison covers all their metrics at once, so one differing choice refuses the
  pair. Fields that never change a value (empty scope, informational) are ignored, and a
  recorded-when-computed block is compared only when both runs have it.
- :func:`metric_protocol` (the leaderboard's columns, ``bench.leaderboards.tables``):
  **metric-level**. A table shows many runs; a choice splits only the columns of the metrics
  in its scope (a different ROUGE implementation gives ``rouge_l`` two columns and leaves
  ``miou`` one), so results that agree on what a metric depends on are ranked together.

Both grains share the scope, the informational fields and :func:`flatten`; they differ only in
whether the scope narrows the fields compared, and that difference is the one between pairing
two runs and filling one column.
"""

from __future__ import annotations

from typing import Any

#: Which metrics a protocol key affects: metric kinds (``pixel``, ``text``, ``detection``)
#: and/or metric names. An empty set: affects no value (bootstrap: intervals only). Keys not
#: listed here affect every metric.
PROTOCOL_SCOPE: dict[str, frozenset[str]] = {
    "mask_threshold": frozenset({"pixel"}),
    "localization_images": frozenset({"pixel"}),
    "reference_field": frozenset({"text"}),
    "text_cleaning": frozenset({"text"}),
    "rouge_impl": frozenset({"rouge_l"}),
    "css_model": frozenset({"css"}),
    "css_model_info": frozenset({"css"}),
    "bootstrap": frozenset(),
}
#: Dotted protocol fields that describe one machine, not a protocol choice.
INFORMATIONAL = frozenset({"css_model_info.path"})
#: Protocol blocks a run records only when it computed the metric that needs them; a run-level
#: comparison compares them only when both runs have them.
RECORDED_WHEN_COMPUTED = frozenset({"css_model_info"})
#: Dataset fields that identify the scored images (the leaderboard's tables split on them).
DATASET_KEYS = ("name", "split", "fingerprint", "n_samples", "limit")


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted paths.

    Parameters
    ----------
    d : Any
        A mapping (nested mappings are descended into) or any other value.
    prefix : str, optional
        Prepended to every path, ending in ``.`` (used by the recursion).

    Returns
    -------
    flat : dict
        ``{dotted path: leaf value}``. An empty mapping below the top is a leaf (``{}``); an
        empty mapping at the top gives ``{}``; a non-mapping at the top gives ``{"": d}``.
    """
    if not isinstance(d, dict) or (not d and prefix):
        return {prefix[:-1]: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}."))
    return out


def changes_no_value(path: str) -> bool:
    """True if the dotted protocol field ``path`` can change no metric value.

    That is: it is, or lies below, an informational field or a key of empty scope.
    """
    key = path.split(".", 1)[0]
    if PROTOCOL_SCOPE.get(key) == frozenset():
        return True
    return any(path == ig or path.startswith(ig + ".") for ig in INFORMATIONAL)


def affects(key: str, metric: str, kind: str) -> bool:
    """True if protocol ``key`` can change the values of ``metric`` (of metric ``kind``)."""
    scope = PROTOCOL_SCOPE.get(key)
    return scope is None or kind in scope or metric in scope


def metric_protocol(protocol: dict[str, Any], metric: str, kind: str) -> dict[str, Any]:
    """The choices of ``protocol`` that affect ``metric`` (the metric-level rule).

    Parameters
    ----------
    protocol : dict
        A result's ``protocol`` block.
    metric : str
        The metric's name, e.g. ``rouge_l``.
    kind : str
        The metric's kind (``pixel``, ``text``, ``detection``; ``?`` when unknown).

    Returns
    -------
    choices : dict
        The keys in the metric's scope, with informational sub-fields left out; results of
        ``metric`` may share a leaderboard column only when these are equal.
    """
    out: dict[str, Any] = {}
    for k, v in protocol.items():
        if not affects(k, metric, kind):
            continue
        if isinstance(v, dict):
            v = {sk: sv for sk, sv in v.items() if not changes_no_value(f"{k}.{sk}")}
        out[k] = v
    return out


def protocol_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The protocol fields in which two runs differ (the run-level rule).

    Parameters
    ----------
    a, b : dict
        The ``protocol`` blocks of run A and run B.

    Returns
    -------
    lines : list of str
        One ``"protocol.X: A=.. B=.."`` line per differing dotted field, sorted; a field one
        run lacks shows as ``'<absent>'``. Fields that change no value are left out, and so is
        a recorded-when-computed block unless both runs have it.
    """
    a, b = dict(a), dict(b)
    for key in RECORDED_WHEN_COMPUTED:
        if not a.get(key) or not b.get(key):
            a.pop(key, None)
            b.pop(key, None)
    fa, fb = flatten(a), flatten(b)
    out = []
    for key in sorted(set(fa) | set(fb)):
        if changes_no_value(key):
            continue
        va, vb = fa.get(key, "<absent>"), fb.get(key, "<absent>")
        if va != vb:
            out.append(f"protocol.{key}: A={va!r} B={vb!r}")
    return out


def comparability_problems(a: Any, b: Any) -> list[str]:
    """Why two runs cannot be paired (empty when they can).

    Parameters
    ----------
    a, b : bench.results.reader.Run
        The runs (anything with ``fingerprint``, ``dataset`` and ``protocol``).

    Returns
    -------
    problems : list of str
        ``dataset.fingerprint`` when the fingerprints differ or are unknown, then the lines of
        :func:`protocol_differences`.
    """
    problems = []
    if a.fingerprint != b.fingerprint or a.fingerprint is None:
        problems.append(f"dataset.fingerprint: A={a.fingerprint!r} ({a.dataset}) "
                        f"B={b.fingerprint!r} ({b.dataset})")
    problems.extend(protocol_differences(a.protocol, b.protocol))
    return problems


def dataset_identity(results: dict[str, Any]) -> dict[str, Any]:
    """The :data:`DATASET_KEYS` of a result's ``dataset`` block (None where absent)."""
    ds = results.get("dataset") or {}
    return {k: ds.get(k) for k in DATASET_KEYS}
