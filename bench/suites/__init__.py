"""Suites: versioned YAML files naming a dataset, split, conditions, metrics and protocol choices.

Built-in suites are the ``*.yaml`` files in this folder; a plugin adds more through the
``bench.suites`` entry-point group (an entry point naming a YAML path or a :class:`Suite`).
Suite YAML keys::

    name: demo                   # registry name
    version: 1                   # bump when anything that changes numbers changes
    description: ...
    dataset: demo                # a registered dataset
    split: test
    dataset_options: {}          # passed to the dataset loader
    seed: 0                      # suite seed for stochastic perturbations
    perturb: null                # a preset name (`legion`, `imagenet-c`) or null
    conditions: [clean]          # extra condition keys, e.g. "jpeg(quality=50)"
    metrics: [miou, f1, ...]
    protocol: {mask_threshold: 0.5, reference_field: caption, css_model: ..., bootstrap: {n: 1000, seed: 0}}
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from bench.registry import SUITES

SUITE_DIR = Path(__file__).parent

#: Protocol defaults; a suite overrides any of them. Every result records the full protocol.
DEFAULT_PROTOCOL: dict[str, Any] = {
    "mask_threshold": 0.5,          # heatmap > threshold (strict) is artifact
    "localization_images": "fake",  # localization metrics are averaged over fake images only
    "reference_field": "caption",   # which dataset text is the explanation reference
    "text_cleaning": "none",        # cleaning applied to predicted explanations
    "rouge_impl": "rouge-score==0.1.2 rougeL F-measure, stemmer on, unicode tokenizer",
    "css_model": "sentence-transformers/paraphrase-MiniLM-L6-v2",
    "bootstrap": {"n": 1000, "seed": 0},
}


@dataclass
class Suite:
    name: str
    version: int | str
    dataset: str
    split: str = "test"
    description: str = ""
    dataset_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    perturb: str | None = None
    conditions: list[Any] = field(default_factory=lambda: ["clean"])
    metrics: list[str] = field(default_factory=list)
    protocol: dict[str, Any] = field(default_factory=dict)
    adapters: list[str] | None = None  # default adapter list for `bench run`
    needs_data_root: bool = True
    source: str = ""

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str = "") -> "Suite":
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{source or 'suite'}: unknown keys {sorted(unknown)}")
        for key in ("name", "version", "dataset"):
            if key not in data:
                raise ValueError(f"{source or 'suite'}: missing required key {key!r}")
        suite = cls(**{**data, "source": source})
        suite.protocol = merge_protocol(DEFAULT_PROTOCOL, suite.protocol or {})
        return suite

    @classmethod
    def from_yaml(cls, path: Path | str) -> "Suite":
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a suite file must be a YAML mapping")
        return cls.from_mapping(data, source=str(path))

    def with_overrides(self, **changes: Any) -> "Suite":
        return replace(self, **changes)


def merge_protocol(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        out[k] = {**out[k], **v} if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _register_builtin() -> None:
    for path in sorted(SUITE_DIR.glob("*.yaml")):
        suite = Suite.from_yaml(path)
        SUITES.add(suite.name, suite, dataset=suite.dataset, summary=suite.description)


def get_suite(name_or_path: str) -> Suite:
    """A registered suite by name, or a suite YAML file by path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return Suite.from_yaml(p)
    obj = SUITES.get(name_or_path)
    if isinstance(obj, (str, Path)):
        return Suite.from_yaml(obj)
    return obj


_register_builtin()
