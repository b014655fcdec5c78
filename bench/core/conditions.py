"""Conditions: a chain of perturbation steps applied to the image (``clean`` = no step).

A condition's ``key`` is its canonical text, e.g. ``clean``, ``jpeg(quality=50)`` or
``resize(scale=0.5)+jpeg(quality=75)``; parameters are sorted by name and formatted with
``repr`` so the key is stable across processes and platforms. The random state of a
stochastic step comes only from (suite seed, sample id, condition key): see :func:`rng_for`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

_STEP_RE = re.compile(r"^\s*([A-Za-z_][\w\-]*)\s*(?:\((.*)\))?\s*$")


def _fmt(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return repr(v)  # 1.0 stays "1.0": an int and a float parameter are different conditions
    return repr(v) if not isinstance(v, str) else v


@dataclass(frozen=True)
class Step:
    """One perturbation with its exact parameters."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def make(cls, name: str, params: Mapping[str, Any] | None = None) -> "Step":
        return cls(name, tuple(sorted((params or {}).items())))

    @property
    def key(self) -> str:
        if not self.params:
            return self.name
        return f"{self.name}({','.join(f'{k}={_fmt(v)}' for k, v in self.params)})"

    def as_dict(self) -> dict[str, Any]:
        return dict(self.params)


@dataclass(frozen=True)
class Condition:
    """A chain of steps; the empty chain is the ``clean`` condition."""

    steps: tuple[Step, ...] = ()

    @property
    def key(self) -> str:
        return "+".join(s.key for s in self.steps) if self.steps else "clean"

    @property
    def is_clean(self) -> bool:
        return not self.steps

    @property
    def perturbation(self) -> str:
        """The perturbation name(s): ``clean``, ``jpeg``, ``resize+jpeg``."""
        return "+".join(s.name for s in self.steps) if self.steps else "clean"

    @property
    def params(self) -> dict[str, Any] | list[dict[str, Any]]:
        """Parameters as recorded in results: a dict for one step, a list of dicts for a chain."""
        if len(self.steps) == 1:
            return self.steps[0].as_dict()
        return [{"name": s.name, **s.as_dict()} for s in self.steps]

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "perturbation": self.perturbation, "params": self.params}

    @classmethod
    def clean(cls) -> "Condition":
        return cls(())

    @classmethod
    def parse(cls, text: str) -> "Condition":
        """Parse a key such as ``jpeg(quality=50)`` or ``resize(scale=0.5)+jpeg(quality=75)``.

        Values are parsed as int, then float, then kept as text. A malformed key (unbalanced
        parentheses, a parameter that is not NAME=VALUE, a parameter given twice) raises
        ``ValueError`` naming the part and the expected form.
        """
        text = str(text).strip()
        if text in ("", "clean", "none"):
            return cls.clean()
        form = "expected NAME or NAME(PARAM=VALUE,...), steps joined by '+', e.g. jpeg(quality=50)"
        steps = []
        for part in text.split("+"):
            m = _STEP_RE.match(part)
            if not m or "(" in (m.group(2) or "") or ")" in (m.group(2) or ""):
                what = "empty step" if not part.strip() else f"step {part.strip()!r}"
                raise ValueError(f"cannot parse {what} in condition {text!r}: {form}")
            params: dict[str, Any] = {}
            if m.group(2):
                for kv in m.group(2).split(","):
                    if not kv.strip():
                        continue
                    if "=" not in kv:
                        raise ValueError(f"parameter {kv.strip()!r} in condition {text!r} is not NAME=VALUE, "
                                         f"e.g. {m.group(1)}({kv.strip()}=...)")
                    k, v = (s.strip() for s in kv.split("=", 1))
                    if not k or not v:
                        raise ValueError(f"parameter {kv.strip()!r} in condition {text!r} needs a name and a value "
                                         "(NAME=VALUE)")
                    if k in params:
                        raise ValueError(f"parameter {k!r} given twice in condition {text!r}; give it once")
                    params[k] = parse_value(v)
            steps.append(Step.make(m.group(1), params))
        return cls(tuple(steps))

    @classmethod
    def from_spec(cls, spec: Any) -> "Condition":
        """From a suite-YAML entry: a key string, ``{name: params}``, ``{perturbation, params}``
        or a list of those (a chain)."""
        if isinstance(spec, Condition):
            return spec
        if isinstance(spec, str):
            return cls.parse(spec)
        if isinstance(spec, list):
            steps: list[Step] = []
            for item in spec:
                steps.extend(cls.from_spec(item).steps)
            return cls(tuple(steps))
        if isinstance(spec, Mapping):
            if "perturbation" in spec:
                params = spec.get("params") or {}
                if isinstance(params, Mapping):
                    return cls((Step.make(str(spec["perturbation"]), params),))
            elif len(spec) == 1:
                (name, params), = spec.items()
                if isinstance(params, Mapping) or params is None:
                    return cls((Step.make(str(name), params or {}),))
        raise ValueError(f"cannot read condition from {spec!r}: give a key such as 'jpeg(quality=50)', "
                         "{jpeg: {quality: 50}} or {perturbation: jpeg, params: {quality: 50}}")


def parse_value(v: str) -> Any:
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


def seed_for(suite_seed: int, sample_id: str, condition_key: str) -> int:
    """A 64-bit seed from (suite seed, sample id, condition key) only: the same in any process,
    any order, any worker count (sha256, not Python's salted ``hash``)."""
    digest = hashlib.sha256(f"{suite_seed}\0{sample_id}\0{condition_key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def rng_for(suite_seed: int, sample_id: str, condition_key: str) -> np.random.Generator:
    """numpy PCG64 generator seeded by :func:`seed_for`."""
    return np.random.default_rng(seed_for(suite_seed, sample_id, condition_key))
