"""Parameter checking and registration for the built-in perturbations.

Each built-in perturbation declares its parameters with :class:`Param`; the
:func:`perturbation` decorator wraps it so that every call checks the parameters (unknown
names, missing ones, wrong types, out-of-range values raise ``ValueError`` naming the
perturbation and the parameter) and the image (RGB uint8 H x W x 3), then registers it in
``bench.core.registry.PERTURBATIONS`` with ``params``, ``stochastic`` and ``summary`` info.

:func:`canonical_condition` checks a whole condition before a run starts and gives every
parameter its declared type (``sigma=1`` -> ``sigma=1.0``), so one condition has one key —
and therefore one random stream — however a suite spelled it.
"""

from __future__ import annotations

import difflib
import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

import numpy as np

from bench.core.conditions import Condition, Step
from bench.core.registry import PERTURBATIONS, register_perturbation


@dataclass(frozen=True)
class Param:
    """One numeric parameter: its type, allowed range and description."""

    kind: Literal["int", "float"]
    doc: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: value must be > low (else >= low)
    odd: bool = False  # ints only: must be odd
    required: bool = True

    def describe(self) -> str:
        rng = []
        if self.low is not None:
            rng.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            rng.append(f"<= {self.high:g}")
        extra = ", odd" if self.odd else ""
        bounds = f" ({', '.join(rng)}{extra})" if rng or extra else ""
        return f"{self.kind}{bounds}: {self.doc}"

    def check(self, pert: str, name: str, value: Any) -> int | float:
        """Return the value in its canonical type or raise ``ValueError``."""
        where = f"perturbation {pert!r}: parameter {name!r}"
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"{where} must be a number, got {value!r}")
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"{where} must be finite, got {value!r}")
        if self.kind == "int":
            if not v.is_integer():
                raise ValueError(f"{where} must be an integer, got {value!r}")
            out: int | float = int(v)
        else:
            out = v
        if self.low is not None and (v <= self.low if self.low_open else v < self.low):
            raise ValueError(f"{where} must be {'>' if self.low_open else '>='} {self.low:g}, got {value!r}")
        if self.high is not None and v > self.high:
            raise ValueError(f"{where} must be <= {self.high:g}, got {value!r}")
        if self.odd and int(out) % 2 == 0:
            raise ValueError(f"{where} must be odd, got {value!r}")
        return out


def check_params(
    pert: str, specs: Mapping[str, Param], given: Mapping[str, Any], exactly_one_of: tuple[str, ...] = ()
) -> dict[str, int | float]:
    """Check ``given`` against ``specs``; return the parameters in canonical types."""
    unknown = [k for k in given if k not in specs]
    if unknown:
        k = unknown[0]
        close = difflib.get_close_matches(k, list(specs), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"perturbation {pert!r}: unknown parameter {k!r}{hint} (parameters: {', '.join(specs)})"
        )
    if exactly_one_of:
        present = [k for k in exactly_one_of if k in given]
        if len(present) != 1:
            raise ValueError(
                f"perturbation {pert!r}: give exactly one of the parameters "
                f"{' or '.join(repr(k) for k in exactly_one_of)}, got {present or 'none'}"
            )
    out: dict[str, int | float] = {}
    for name, spec in specs.items():
        if name not in given:
            if spec.required and name not in exactly_one_of:
                raise ValueError(f"perturbation {pert!r}: missing parameter {name!r} ({spec.describe()})")
            continue
        out[name] = spec.check(pert, name, given[name])
    return out


def check_image(pert: str, image: Any) -> None:
    """Refuse anything but an RGB uint8 H x W x 3 array with at least one pixel."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"perturbation {pert!r}: expected an RGB uint8 H x W x 3 image, got {got}")


def perturbation(
    name: str,
    *,
    params: Mapping[str, Param],
    stochastic: bool,
    summary: str,
    exactly_one_of: tuple[str, ...] = (),
) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]]:
    """Decorator: wrap ``fn(image, *, rng, **params)`` with checks and register it as ``name``.

    The wrapper has ``.validate(params) -> dict`` (canonical parameters), ``.stochastic``
    and ``.param_specs``; the registry info has ``params`` (name -> description), ``stochastic``
    and ``summary``.
    """

    def validate(given: Mapping[str, Any]) -> dict[str, int | float]:
        return check_params(name, params, given, exactly_one_of)

    def deco(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        @functools.wraps(fn)
        def wrapper(image: np.ndarray, *, rng: np.random.Generator | None = None, **given: Any) -> np.ndarray:
            p = validate(given)
            check_image(name, image)
            if stochastic and rng is None:
                raise ValueError(f"perturbation {name!r} is stochastic and needs rng (see bench.core.conditions.rng_for)")
            return fn(image, rng=rng, **p)

        wrapper.validate = validate  # type: ignore[attr-defined]
        wrapper.stochastic = stochastic  # type: ignore[attr-defined]
        wrapper.param_specs = dict(params)  # type: ignore[attr-defined]
        wrapper.summary = summary  # type: ignore[attr-defined]
        register_perturbation(
            name,
            params={k: p.describe() for k, p in params.items()},
            stochastic=stochastic,
            summary=summary,
        )(wrapper)
        return wrapper

    return deco


def canonical_condition(condition: Condition | str) -> Condition:
    """Check every step of ``condition`` and return it with canonical parameter types.

    Raises ``UnknownNameError`` for an unregistered perturbation and ``ValueError`` for bad
    parameters. Perturbations registered by plugins without a ``validate`` attribute are kept
    as given.
    """
    cond = Condition.parse(condition) if isinstance(condition, str) else condition
    steps = []
    for step in cond.steps:
        fn = PERTURBATIONS.get(step.name)
        validate = getattr(fn, "validate", None)
        params = validate(step.as_dict()) if validate else step.as_dict()
        steps.append(Step.make(step.name, params))
    return Condition(tuple(steps))
