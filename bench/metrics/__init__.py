"""Metrics, registered by name. Three kinds, by what they are computed from:

- ``pixel``: per image, from the confusion counts (tp, fp, fn, tn) of the binary predicted mask
  against the ground truth at the original resolution; vectorised over images.
- ``text``: per image, from the predicted and reference explanation texts (batched).
- ``detection``: per dataset, from the image scores and labels (e.g. ROC-AUC).

Per-image values are averaged over images (macro mean); values are fractions in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal

from bench.errors import BenchError
from bench.core.registry import METRICS

MetricKind = Literal["pixel", "text", "detection"]


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric.

    ``applies_to``: which images it is averaged over — ``fake`` (localization is scored on fake
    images only), ``real`` (e.g. false-positive area on real images) or ``all``.
    """

    name: str
    kind: MetricKind
    task: str
    fn: Callable[..., Any]
    applies_to: Literal["fake", "real", "all"] = "all"
    higher_is_better: bool = True
    description: str = ""


def metric(name: str, *, kind: MetricKind, task: str, applies_to: str = "all",
           higher_is_better: bool = True, description: str = "") -> Callable:
    """Decorator registering ``fn`` as a metric (see :class:`MetricSpec`)."""

    def deco(fn: Callable) -> Callable:
        spec = MetricSpec(name, kind, task, fn, applies_to, higher_is_better,  # type: ignore[arg-type]
                          description or (fn.__doc__ or "").strip().split("\n")[0])
        METRICS.add(name, spec, kind=kind, task=task, applies_to=applies_to,
                    summary=spec.description)
        return fn

    return deco


def get_metric(name: str) -> MetricSpec:
    return METRICS.get(name)


class MetricUnavailable(BenchError):
    """A metric that cannot be computed on this machine or from these predictions (e.g. the CSS
    model is not in the local cache, a prediction folder holds no explanations). The run
    records the metric as not computed (``status: not_computed`` with ``reason`` and ``fix``)
    and scores everything else; nothing is substituted."""

    def __init__(self, reason: str, fix: str | None = None):
        self.reason, self.fix = reason, fix
        super().__init__(reason + (f" Fix: {fix}" if fix else ""))


def select_metrics(spec: str | Iterable[str], default: Iterable[str] = ()) -> list[str]:
    """Metric names from ``--metrics`` (comma-separated or a list), checked against the
    registry (unknown names fail with suggestions), duplicates dropped, order kept; empty ->
    ``default``."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [str(n).strip() for n in items if str(n).strip()]
    if not names:
        return list(default)
    for n in names:
        get_metric(n)  # UnknownNameError (a BenchError) names close matches
    return list(dict.fromkeys(names))


# Built-in metric modules register on import.
# (explanation's model libraries are imported when a metric first needs them.)
from bench.metrics import detection, explanation, localization  # noqa: E402,F401
