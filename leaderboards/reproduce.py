"""The command that reproduces a result, rebuilt from the fields it records (never from its
stored free-text ``command``, which a published result could set to any shell line).

From ``results.json``: the suite (name, version), the dataset split and ``limit``, the adapter
(name and config), the conditions, the metrics and the protocol. When the run's suite is a
registered one of the same version, its recorded conditions are a preset's grid (plus the
suite's own) and its protocol equals the suite's, the answer is one ``bench run --suite NAME``
line; otherwise it is a suite file written from the recorded fields plus the line that runs
it. Every word is shell-quoted (:func:`shlex.quote`), so text from a result can never become
shell syntax.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any

import yaml

#: Protocol blocks the runner derives itself (the CSS model's identity): not a choice to pass on.
DERIVED_PROTOCOL = frozenset({"css_model_info"})


@dataclass
class Reproduction:
    """``command``: the ``bench run`` line; ``suite_file``: the YAML it needs (or None) and the
    name to save it under; ``notes``: what the recorded fields cannot say (a data folder ...)."""

    command: str
    suite_file: str | None = None
    suite_file_name: str | None = None
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        """Everything to copy, as one shell snippet (the suite file as a here-document)."""
        parts = [f"# {n}" for n in self.notes]
        if self.suite_file is not None:
            parts.append(f"cat > {shlex.quote(self.suite_file_name or 'suite.yaml')} <<'EOF'\n"
                         f"{self.suite_file.rstrip()}\nEOF")
        parts.append(self.command)
        return "\n".join(parts)


def _config_word(adapter: str, key: str, value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return f"{adapter}.{key}={text}"


def _default_config(adapter: str) -> dict[str, Any] | None:
    """The config the registered adapter fills in by itself (None if it cannot be built bare)."""
    from bench.core.registry import ADAPTERS

    try:
        return dict(ADAPTERS.get(adapter)().config)
    except Exception:  # unknown here (a plugin), or needs options to build: pass every key
        return None


def _suite(name: str):
    from bench.core.registry import SUITES

    try:
        return SUITES.get(name) if name in SUITES else None
    except Exception:  # a plugin suite that does not load here
        return None


def _conditions_of(suite: Any, perturb: str | None) -> list[str]:
    from bench.core.conditions import Condition
    from bench.perturbations import canonical_condition
    from bench.perturbations.presets import preset_conditions

    keys = ["clean"]
    if perturb or suite.perturb:
        keys += [c.key for c in preset_conditions(perturb or suite.perturb)]
    for spec in suite.conditions:
        keys.append(canonical_condition(Condition.from_spec(spec)).key)
    return list(dict.fromkeys(keys))


def _preset_for(suite: Any, recorded: list[str]) -> tuple[bool, str | None, list[str]]:
    """(expressible, --perturb preset, extra --condition keys) for the recorded conditions."""
    from bench.perturbations.presets import PRESETS

    best: tuple[bool, str | None, list[str]] = (False, None, [])
    for preset in [None, *sorted(PRESETS)]:
        base = _conditions_of(suite, preset)
        if base == recorded[:len(base)] and (not best[0] or len(recorded) - len(base) < len(best[2])):
            best = (True, preset if preset != suite.perturb else None, recorded[len(base):])
    return best


def _protocol_overrides(recorded: dict[str, Any], suite_protocol: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in recorded.items() if k not in DERIVED_PROTOCOL and suite_protocol.get(k) != v}


def reproduce(data: dict[str, Any]) -> Reproduction:
    """The reproduction of one result (its parsed ``results.json``)."""
    suite_rec = data.get("suite") or {}
    ds = data.get("dataset") or {}
    ad = data.get("adapter") or {}
    name = str(ad.get("name", "?"))
    conds = [str(c.get("key")) for c in data.get("conditions") or [] if isinstance(c, dict)]
    protocol = {k: v for k, v in (data.get("protocol") or {}).items() if k not in DERIVED_PROTOCOL}
    metrics = [str(m) for m in data.get("metrics_used") or []]
    notes: list[str] = []

    words = ["bench", "run"]
    suite = _suite(str(suite_rec.get("name", "")))
    same_version = suite is not None and str(suite.version) == str(suite_rec.get("version"))
    expressible, perturb, extra = _preset_for(suite, conds) if same_version else (False, None, [])
    overrides = _protocol_overrides(protocol, suite.protocol) if same_version else protocol
    seed = (data.get("perturbation_provenance") or {}).get("seed")
    if same_version and seed is not None and seed != suite.seed:
        expressible = False
    suite_file = file_name = None
    if same_version and expressible and not overrides:
        words += ["--suite", suite.name]
        if perturb:
            words += ["--perturb", perturb]
        for c in extra:
            words += ["--condition", c]
        if ds.get("split") and ds.get("split") != suite.split:
            words += ["--split", str(ds["split"])]
        needs_root = suite.needs_data_root
        wanted = [m for m in suite.metrics if m in metrics]
        if metrics and set(metrics) != set(wanted):
            words += ["--metrics", ",".join(metrics)]
    else:
        mapping: dict[str, Any] = {
            "name": str(suite_rec.get("name", "suite")), "version": suite_rec.get("version", 1),
            "dataset": str(ds.get("name", "?")), "split": str(ds.get("split", "test")),
        }
        if suite is not None and same_version:
            mapping["description"] = f"the built-in suite {suite.name} with the protocol this result records"
            if suite.dataset_options:
                mapping["dataset_options"] = suite.dataset_options
            mapping["needs_data_root"] = suite.needs_data_root
            needs_root = suite.needs_data_root
        else:
            notes.append(f"suite {mapping['name']!r} (version {mapping['version']}) is not a built-in suite here: "
                         "this file is rebuilt from the result; its dataset options are not recorded")
            needs_root = ds.get("name") != "demo"
            mapping["needs_data_root"] = needs_root
        if seed is not None:
            mapping["seed"] = seed
        mapping["conditions"] = conds or ["clean"]
        mapping["metrics"] = metrics
        mapping["protocol"] = protocol
        suite_file = yaml.safe_dump(mapping, sort_keys=False, allow_unicode=True)
        file_name = f"{_file_stem(mapping['name'])}-reproduce.yaml"
        words += ["--suite", file_name]
        if overrides and same_version:
            notes.append("protocol differs from the built-in suite in: "
                         + ", ".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in sorted(overrides.items())))
    if needs_root:
        words += ["--data-root", "DATA_ROOT"]
        notes.append(f"DATA_ROOT: your copy of the {ds.get('name', '?')} data (not recorded: it is a path on one machine)")
    words += ["--adapter", name]
    defaults = _default_config(name)
    for k, v in sorted((ad.get("config") or {}).items()):
        if defaults is None or k not in defaults or defaults[k] != v:
            words += ["--config", _config_word(name, str(k), v)]
    if ds.get("limit"):
        words += ["--limit", str(ds["limit"])]
    if ad.get("weights_sha256"):
        notes.append(f"weights sha256 {ad['weights_sha256']}: use the same files")
    return Reproduction(" ".join(shlex.quote(str(w)) for w in words), suite_file, file_name, notes)


def _file_stem(name: str) -> str:
    from bench.io.paths import safe_name

    return safe_name(name)
