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

The format is the JSON Schema ``bench/suites/schema.json`` (types, ranges, allowed keys); a
file that breaks it, is not valid YAML or gives a key twice is refused when it is read, in one
line naming the file, the line and the key (:class:`bench.core.validate.InputError`). Names only the
registries know (dataset, metrics, preset, perturbations) are checked when a run starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.core.registry import SUITES
from bench.core.validate import InputError, check_schema, load_yaml_file

SUITE_DIR = Path(__file__).parent
SCHEMA_PATH = SUITE_DIR / "schema.json"

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
    def from_mapping(cls, data: dict[str, Any], source: str = "", node: Any = None) -> "Suite":
        """A suite from its YAML mapping, checked against ``schema.json`` (:class:`InputError`,
        also a ``ValueError``, naming ``source``, the line when ``node`` is the composed YAML,
        and the key)."""
        if not isinstance(data, dict):
            raise InputError(f"{source or 'suite'}: a suite must be a mapping of keys "
                             f"(name, version, dataset, ...), got {type(data).__name__}")
        check_schema(data, SCHEMA_PATH, source or f"suite {data.get('name', '?')!r}", node)
        suite = cls(**{**data, "source": source})
        suite.protocol = merge_protocol(DEFAULT_PROTOCOL, suite.protocol or {})
        return suite

    @classmethod
    def from_yaml(cls, path: Path | str) -> "Suite":
        data, node = load_yaml_file(path, "suite file")
        if not isinstance(data, dict):
            raise InputError(f"{path}: a suite file must be a YAML mapping (name: ..., version: ..., dataset: ...)")
        return cls.from_mapping(data, source=str(path), node=node)

    def with_overrides(self, **changes: Any) -> "Suite":
        return replace(self, **changes)


def merge_protocol(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        out[k] = {**out[k], **v} if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def suite_from_entry_point(obj: Any) -> Any:
    """What a ``bench.suites`` entry point names: a YAML path is read into a :class:`Suite`."""
    if isinstance(obj, (str, os.PathLike)):
        return Suite.from_yaml(obj)
    return obj


def _register_builtin() -> None:
    for path in sorted(SUITE_DIR.glob("*.yaml")):
        suite = Suite.from_yaml(path)
        SUITES.add(suite.name, suite, dataset=suite.dataset, summary=suite.description)


def get_suite(name_or_path: str) -> Suite:
    """A registered suite by name, or a suite YAML file by path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or "/" in str(name_or_path) or p.is_file():
        if p.is_dir():
            raise InputError(f"--suite {p}: is a folder; give a suite name (`bench ls suites`) or a .yaml file")
        if not p.exists():
            raise InputError(f"--suite {p}: no such suite file (built-in suites: {', '.join(SUITES.names())})")
        return Suite.from_yaml(p)
    return SUITES.get(name_or_path)  # always a Suite (a plugin's YAML path is read when loaded)


_register_builtin()
