"""Named grids of conditions (``bench run --perturb NAME``, suite key ``perturb: NAME``).

- ``legion`` (LEGION ICCV 2025, appendix Table 10; docs/protocol.md §3), 10 conditions:
  clean; jpeg quality 50/35/20; gaussian_noise sigma 0.1/0.2/0.3; gaussian_blur kernel 5/9/15.
- ``imagenet-c`` (Hendrycks & Dietterich; values of the ``imagecorruptions`` package),
  16 conditions: clean; severities 1..5 of gaussian_noise sigma .08/.12/.18/.26/.38,
  gaussian_blur sigma 1/2/3/4/6, jpeg quality 25/18/15/10/7.

Each preset is a list of :class:`Ladder` s (one perturbation, one parameter, its levels from
mildest to strongest); :func:`severity_of` maps a condition back to (perturbation, level, value)
for robustness curves.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from bench.core.conditions import Condition, Step
from bench.errors import UnknownNameError


@dataclass(frozen=True)
class Ladder:
    """Levels of one perturbation parameter, mildest first (level 1 = ``values[0]``)."""

    perturbation: str
    param: str
    values: tuple[Any, ...]

    def conditions(self) -> list[Condition]:
        return [Condition((Step.make(self.perturbation, {self.param: v}),)) for v in self.values]


#: Preset name -> ladders, in the order their conditions run (after ``clean``).
LADDERS: dict[str, tuple[Ladder, ...]] = {
    "legion": (
        Ladder("jpeg", "quality", (50, 35, 20)),
        Ladder("gaussian_noise", "sigma", (0.1, 0.2, 0.3)),
        Ladder("gaussian_blur", "kernel", (5, 9, 15)),
    ),
    "imagenet-c": (
        Ladder("gaussian_noise", "sigma", (0.08, 0.12, 0.18, 0.26, 0.38)),
        Ladder("gaussian_blur", "sigma", (1.0, 2.0, 3.0, 4.0, 6.0)),
        Ladder("jpeg", "quality", (25, 18, 15, 10, 7)),
    ),
}

PRESET_DESCRIPTIONS: dict[str, str] = {
    "legion": "LEGION Table 10: JPEG 50/35/20, noise sigma 0.1/0.2/0.3, blur kernel 5/9/15",
    "imagenet-c": "ImageNet-C severities 1-5 of gaussian noise, gaussian blur, JPEG",
}

#: Preset name -> its conditions, ``clean`` first.
PRESETS: dict[str, tuple[Condition, ...]] = {
    name: (Condition.clean(), *(c for ladder in ladders for c in ladder.conditions()))
    for name, ladders in LADDERS.items()
}


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def resolve_preset(name: str) -> str:
    """The canonical preset name (case and ``_``/``-`` ignored) or ``UnknownNameError``."""
    key = _normalise(name)
    if key in PRESETS:
        return key
    close = difflib.get_close_matches(key, list(PRESETS), n=2, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownNameError(f"unknown perturbation preset {name!r}{hint} (presets: {', '.join(PRESETS)})")


def preset_conditions(name: str) -> list[Condition]:
    """The conditions of preset ``name``, ``clean`` first."""
    return list(PRESETS[resolve_preset(name)])


def severity_of(condition: Condition | str, preset: str | None = None) -> tuple[str, int | None, Any]:
    """(perturbation name, level index, level value) of a condition, for robustness curves.

    ``clean`` -> ("clean", 0, None). A condition on a preset's ladder (searched in ``preset``,
    or in every preset) -> its 1-based level, e.g. ``jpeg(quality=35)`` -> ("jpeg", 2, 35)
    in ``legion``. Any other one-step, one-parameter condition -> (name, None, value);
    anything else (chains, several parameters) -> (perturbation, None, None).
    """
    cond = Condition.parse(condition) if isinstance(condition, str) else condition
    if cond.is_clean:
        return ("clean", 0, None)
    names = [resolve_preset(preset)] if preset is not None else list(LADDERS)
    if len(cond.steps) == 1:
        step = cond.steps[0]
        params = step.as_dict()
        for name in names:
            for ladder in LADDERS[name]:
                if step.name == ladder.perturbation and set(params) == {ladder.param}:
                    value = params[ladder.param]
                    for i, v in enumerate(ladder.values, start=1):
                        if v == value:  # 1 == 1.0: an int spelling of a float level still matches
                            return (step.name, i, v)
        if len(params) == 1:
            return (step.name, None, next(iter(params.values())))
    return (cond.perturbation, None, None)
