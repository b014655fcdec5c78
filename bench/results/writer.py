"""The one writer of ``bench.results/1``: :func:`build_results` assembles ``results.json`` from
what a run measured, :func:`write_run` writes it with ``samples.parquet`` into a run folder.

Both ``bench run`` (:mod:`bench.engine.runner`) and ``bench score`` (:mod:`bench.cli.score`)
write through here; the fields are documented, and checked on publish, by
``bench/results/results.schema.json``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from bench.core.conditions import Condition
from bench.core.environment import environment, harness
from bench.core.types import Adapter, adapter_code_sha256
from bench.io.paths import atomic_path, write_json_atomic
from bench.results.robustness import robustness_summary
from bench.results.schema import RESULTS_FILE, RESULTS_SCHEMA, SAMPLES_FILE


def build_results(*, suite: Any, dataset: Any, n_samples: int, adapter: Any, conditions: Sequence[Condition],
                  per_condition: dict[str, Any], used_metrics: Sequence[str], timing: dict[str, float],
                  scoring_code_sha256: str | None, limit: int | None = None, command: str | None = None,
                  extra_protocol: dict[str, Any] | None = None) -> dict[str, Any]:
    """The results dict of one (adapter, suite) run.

    ``suite``: the run's :class:`~bench.suites.Suite` (name, version, seed, protocol);
    ``dataset``: the opened dataset (name, split, fingerprint); ``adapter``: the adapter (or
    what stands for a prediction folder: ``identity()``, ``tasks``, ``flags``);
    ``per_condition``: ``{condition key: {n, n_failed, metrics}}`` from the scoring phase;
    ``scoring_code_sha256``: the hash of the code that turned predictions into these numbers.
    """
    from bench.perturbations import perturbation_provenance

    now = datetime.now(timezone.utc)
    conds_out = []
    for c in conditions:
        agg = per_condition.get(c.key, {"n": 0, "n_failed": 0, "metrics": {}})
        conds_out.append({"key": c.key, "perturbation": c.perturbation, "params": c.params, **agg})
    result: dict[str, Any] = {
        "schema": RESULTS_SCHEMA,
        "run_id": f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}",
        "created": now.isoformat(timespec="seconds"),
        "harness": {**harness(), "scoring_code_sha256": scoring_code_sha256},
        "suite": {"name": suite.name, "version": suite.version},
        "dataset": {"name": dataset.name, "split": dataset.split, "fingerprint": dataset.fingerprint(),
                    "n_samples": n_samples, "limit": limit},
        "adapter": {**adapter.identity(),
                    "code_sha256": adapter_code_sha256(type(adapter)) if isinstance(adapter, Adapter) else None,
                    "tasks": sorted(adapter.tasks), "flags": dict(adapter.flags), "card": adapter_card(adapter)},
        "protocol": _protocol(suite.protocol, extra_protocol, used_metrics),
        "metrics_used": list(used_metrics),
        "perturbation_provenance": {"seed": suite.seed, **perturbation_provenance()},
        "conditions": conds_out,
        "environment": environment(),
        "timing": timing,
        "command": command,
    }
    if len(conditions) > 1:
        result["robustness"] = robustness_summary(
            {c["key"]: {m: v["value"] for m, v in c["metrics"].items()} for c in conds_out})
    return result


def adapter_card(adapter: Any) -> dict[str, str | None]:
    """What is known about the model (``Adapter.card``), every key of ``Adapter.card_keys``
    present; unknown ones None (never guessed)."""
    card = getattr(adapter, "card", None) or {}
    return {k: (str(card[k]) if card.get(k) is not None else None) for k in Adapter.card_keys}


def _protocol(base: dict[str, Any], extra: dict[str, Any] | None, used_metrics: Sequence[str]) -> dict[str, Any]:
    """The suite's protocol choices, plus the CSS model's identity when CSS was scored."""
    protocol = {**base, **(extra or {})}
    if "css" in used_metrics:
        try:
            from bench.metrics.explanation import css_model_info

            info = dict(css_model_info(protocol["css_model"]))
            info.pop("path", None)  # where the files sit on this machine: not a protocol fact
            protocol["css_model_info"] = info
        except Exception:  # recorded as unknown rather than failing the write
            protocol["css_model_info"] = None
    return protocol


def write_run(out: Path, results: dict[str, Any], samples: Any) -> None:
    """``out/samples.parquet`` (the per-sample table, a DataFrame) then ``out/results.json``,
    each written atomically; NaN becomes ``null`` in the JSON."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / SAMPLES_FILE) as tmp:
        samples.to_parquet(tmp, index=False)
    write_json_atomic(out / RESULTS_FILE, results)
