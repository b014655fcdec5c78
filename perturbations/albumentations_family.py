"""``albumentations(transform=NAME, ...)``: any pixel-level albumentations transform as a condition.

Key syntax (what the condition parser, ``bench.core.conditions``, reads as it is)::

    albumentations(transform=GaussNoise,std_range=[0.1;0.1])
    albumentations(transform=ImageCompression,quality_range=[50;50])
    albumentations(transform=RandomBrightnessContrast,brightness_limit=[0.2;0.2],p=0.5)

``transform`` names a class exported by the ``albumentations`` package; every other parameter
goes to that class's constructor. Values: numbers; ``True`` / ``False`` / ``None`` (any case);
lists (albumentations' tuples) in brackets with ``;`` between items, since ``,`` separates
parameters in a key (``[0.1;0.1]``, nested ``[[1;2];[3;4]]``); anything else is text
(``compression_type=webp``). In a suite file the mapping form takes real lists:
``{albumentations: {transform: GaussNoise, std_range: [0.1, 0.1]}}``. The canonical key
(:func:`validate`) writes lists as ``[a;b]``, drops ``p`` when it is 1 (the default here) and
sorts parameters by name, so one condition has one key and one random stream.

Rules:

- ``p`` (albumentations' probability of applying) is 1.0 unless given, so the condition is
  always applied; with ``p < 1`` whether it applies is drawn from the per-sample stream too.
- Only pixel-level transforms (subclasses of ``albumentations.ImageOnlyTransform``) that keep
  an RGB uint8 H x W x 3 image's shape and dtype are accepted. Spatial-level ones
  (``DualTransform``: flips, crops, affine, elastic, dropouts — albumentations applies them to
  masks too) are refused: the ground-truth mask is not transformed, so they would move or
  erase pixels against it. ``Normalize``, ``ToFloat``, ``ToGray(num_output_channels=1)``
  and the like are refused because they change dtype or shape (found by a probe, below).
- Checked before any work (:func:`validate`, called by ``canonical_condition``): the name
  (unknown -> close names suggested), the parameter names, albumentations' own validation
  (``strict=True`` where the class supports it; a warning it gives while building the transform,
  such as "Range (4, 4) automatically adjusted to (5, 5)", is an error too) and one probe application to a 64 x 64
  test image, which must come back uint8 64 x 64 x 3. Errors are one line.
- Seeding: each application builds a fresh transform and calls
  ``transform.set_random_seed(int(rng.integers(2**63)))`` (albumentations 2.x
  ``BasicTransform.set_random_seed``: ``np.random.default_rng(seed)`` and
  ``random.Random(seed)``, the transform's only random sources), where ``rng`` is the
  generator the harness derives from (suite seed, sample id, condition key). So one
  (seed, sample, condition) gives the same bytes in any process; ``A.Compose([t],
  seed=s)`` gives the same as ``t.set_random_seed(s)`` for one transform. albumentations'
  random streams may change between its versions: results record its version
  (``perturbation_provenance``).
- albumentations is imported only when such a condition is checked or applied
  (``NO_ALBUMENTATIONS_UPDATE=1`` is set first, unless set already, so importing it does not
  ask PyPI for a newer version); missing, it is a one-line error saying how to install it.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import os
import re
import warnings
from typing import Any, Mapping

import numpy as np

from bench.core.registry import register_perturbation
from bench.errors import BenchError, UnknownNameError
from bench.perturbations.params import check_image

NAME = "albumentations"
TRANSFORM = "transform"
_RESERVED = {"strict": "the harness always validates strictly", "seed": "the seed comes from the harness's "
             "per-sample generator (suite seed, sample id, condition key)"}
#: Characters a text value may not hold: they separate parameters, steps or list items in a key.
_SEPARATORS = set(",()+[];=")
_PROBE_SHAPE = (64, 64, 3)
INSTALL_HINT = "pip install albumentations (or pip install 'synth-artifact-bench[albumentations]')"


class UnknownTransformError(UnknownNameError, ValueError):
    """No albumentations transform of that name (a bad parameter value and an unknown name)."""


def _where(transform: str | None = None) -> str:
    return f"perturbation {NAME!r}" + (f": transform {transform!r}" if transform else "")


def albumentations_module() -> Any:
    """``import albumentations`` (lazily; without its PyPI update check) or a one-line BenchError."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    try:
        import albumentations
    except ImportError as exc:
        raise BenchError(f"{_where()} needs the albumentations package, which cannot be imported "
                         f"({' '.join(str(exc).split())}): {INSTALL_HINT}") from None
    return albumentations


def albumentations_version() -> str | None:
    """The installed albumentations version from package metadata (no import), or None."""
    from importlib import metadata

    try:
        return metadata.version("albumentations")
    except metadata.PackageNotFoundError:
        return None


# -- values ---------------------------------------------------------------------------

def _split_items(inner: str, text: str) -> list[str]:
    """Split a list's inside on ``;`` at bracket depth 0."""
    items, depth, cur = [], 0, []
    for ch in inner:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ']' in {text!r}")
        if ch == ";" and depth == 0:
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise ValueError(f"unbalanced '[' in {text!r}")
    items.append("".join(cur))
    if len(items) == 1 and not items[0].strip():
        return []
    return items


def parse_text(text: str) -> Any:
    """A value as written in a key: ``[a;b]`` -> list, true/false/none -> bool/None, numbers, else text."""
    s = text.strip()
    if s.startswith("[") or s.endswith("]"):
        if not (s.startswith("[") and s.endswith("]")):
            raise ValueError(f"list value {text!r} must be written [a;b;...]")
        return [parse_text(item) for item in _split_items(s[1:-1], text)]
    low = s.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    if not s:
        raise ValueError(f"empty value in {text!r}")
    bad = sorted(set(s) & _SEPARATORS)
    if bad:
        raise ValueError(f"text value {text!r} may not contain {' '.join(bad)} (they separate parameters, "
                         "steps and list items in a condition key)")
    return s


def _scalar(v: Any) -> Any:
    if v is None or isinstance(v, (bool, np.bool_)):
        return None if v is None else bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v)
    if isinstance(v, str):
        return parse_text(v)
    if isinstance(v, (list, tuple)):
        return [_scalar(x) for x in v]
    raise ValueError(f"value {v!r} ({type(v).__name__}) is not a number, True/False/None, text or a list")


def _item_text(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ";".join(_item_text(x) for x in v) + "]"
    if v is None or isinstance(v, bool):
        return repr(v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


def canonical_value(v: Any) -> Any:
    """The value as a condition key holds it: lists as canonical ``[a;b]`` text, scalars typed."""
    s = _scalar(v)
    return _item_text(s) if isinstance(s, list) else s


def python_value(v: Any) -> Any:
    """The value given to albumentations: lists (from ``[a;b]`` text or YAML) as tuples."""
    s = _scalar(v)

    def tup(x: Any) -> Any:
        return tuple(tup(i) for i in x) if isinstance(x, list) else x

    return tup(s)


# -- transforms -----------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _catalogue() -> tuple[dict[str, type], tuple[str, ...]]:
    """(every transform class albumentations exports by name, the pixel-level ones' names)."""
    A = albumentations_module()
    classes = {n: o for n, o in vars(A).items()
               if inspect.isclass(o) and issubclass(o, A.BasicTransform) and not n.startswith("_")}
    pixel = tuple(sorted(n for n, c in classes.items() if _is_pixel_level(A, c)))
    return classes, pixel


def _is_pixel_level(A: Any, cls: type) -> bool:
    return issubclass(cls, A.ImageOnlyTransform) and not issubclass(cls, A.DualTransform) \
        and cls is not A.ImageOnlyTransform


def transform_class(name: Any) -> type:
    """The pixel-level albumentations class called ``name``, or a one-line error."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{_where()}: parameter {TRANSFORM!r} must name an albumentations transform, "
                         f"e.g. {TRANSFORM}=GaussNoise, got {name!r}")
    A = albumentations_module()
    classes, pixel = _catalogue()
    cls = classes.get(name)
    if cls is None and name in vars(A) and not name.startswith("_"):
        raise ValueError(f"{_where(name)} is refused: albumentations.{name} is not one transform; give one "
                         "transform per step and chain steps with '+'")
    if cls is None:
        lower = {n.lower(): n for n in classes}
        close = [lower[c] for c in difflib.get_close_matches(name.lower(), list(lower), n=3, cutoff=0.6)]
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownTransformError(
            f"{_where()}: unknown albumentations transform {name!r}{hint} (albumentations "
            f"{getattr(A, '__version__', '?')} pixel-level transforms: {', '.join(pixel)})")
    if issubclass(cls, A.DualTransform):
        raise ValueError(f"{_where(name)} is refused: it is a spatial-level transform (albumentations applies "
                         "it to masks too), so it would move or erase pixels against the ground-truth mask; "
                         "only pixel-level transforms (albumentations.ImageOnlyTransform) are accepted")
    if cls is A.ImageOnlyTransform or cls is A.BasicTransform:
        raise ValueError(f"{_where(name)} is refused: it is albumentations' abstract base class, not a transform")
    if not _is_pixel_level(A, cls):
        raise ValueError(f"{_where(name)} is refused: it is not a pixel-level image transform "
                         "(albumentations.ImageOnlyTransform); only those are accepted")
    return cls


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    text = re.sub(r"\s*For further information visit \S+", "", text)  # pydantic's help links
    text = " ".join(text.split())
    return text or type(exc).__name__


def _check_names(name: str, cls: type, kwargs: Mapping[str, Any]) -> None:
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # albumentations' own check (strict) is all there is
    valid = sorted(k for k, p in params.items() if k not in ("self", "strict")
                   and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))
    for k in kwargs:
        if k not in valid:
            close = difflib.get_close_matches(k, valid, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{_where(name)}: argument {k!r} is not valid for transform {name}{hint} "
                             f"({name} takes: {', '.join(valid) or 'nothing'})")


def build_transform(name: str, params: Mapping[str, Any]) -> Any:
    """A new ``name`` instance with ``params`` (key values; ``p`` 1.0 unless given), or a one-line error."""
    cls = transform_class(name)
    kwargs = {k: python_value(v) for k, v in params.items()}
    kwargs.setdefault("p", 1.0)
    _check_names(name, cls, kwargs)
    if "InitSchema" in cls.__dict__:  # albumentations validates these; strict: unknown arguments are errors
        kwargs["strict"] = True
    try:
        return cls(**kwargs)
    except Exception as exc:  # pydantic ValidationError -> ValueError, TypeError, ...
        given = ",".join(f"{k}={_item_text(_scalar(v))}" for k, v in sorted(params.items()))
        raise ValueError(f"{_where(name)}: albumentations {getattr(albumentations_module(), '__version__', '?')} "
                         f"rejects {name}({given}): {_one_line(exc)}") from None


def _run(transform: Any, image: np.ndarray, seed: int) -> Any:
    transform.set_random_seed(seed)
    return transform(image=image.copy())["image"]


def _shape_problem(name: str, out: Any, shape: tuple[int, ...]) -> str | None:
    if not isinstance(out, np.ndarray):
        return f"{_where(name)} returned {type(out).__name__}, not an image"
    if out.dtype != np.uint8 or out.shape != shape:
        return (f"{_where(name)} is refused: it turns a uint8 {'x'.join(map(str, shape))} image into "
                f"{out.dtype} {'x'.join(map(str, out.shape))}; only transforms that keep an RGB uint8 "
                "image's shape and dtype are accepted")
    return None


# -- the perturbation -----------------------------------------------------------------

def validate(given: Mapping[str, Any]) -> dict[str, Any]:
    """Check a condition's parameters before any work; return them canonical (see the module doc)."""
    params = dict(given)
    if TRANSFORM not in params:
        raise ValueError(f"{_where()}: missing parameter {TRANSFORM!r}, the albumentations transform, e.g. "
                         f"{NAME}({TRANSFORM}=GaussNoise,std_range=[0.1;0.1])")
    name = params.pop(TRANSFORM)
    for k, why in _RESERVED.items():
        if k in params:
            raise ValueError(f"{_where(name if isinstance(name, str) else None)}: parameter {k!r} cannot be "
                             f"given ({why})")
    canon: dict[str, Any] = {}
    for k, v in params.items():
        try:
            canon[k] = canonical_value(v)
        except ValueError as exc:
            raise ValueError(f"{_where(name if isinstance(name, str) else None)}: parameter {k!r}: {exc}") from None
    p = canon.get("p")
    if isinstance(p, (int, float)) and not isinstance(p, bool):
        if p == 1:
            del canon["p"]  # the default here: p=1 and no p are one condition
        elif math.isfinite(p):
            canon["p"] = float(p)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        transform = build_transform(name, canon)
    if caught:  # e.g. blur_limit=[4;4] "automatically adjusted to (5, 5)": the key would not say what ran
        raise ValueError(f"{_where(name)}: albumentations {getattr(albumentations_module(), '__version__', '?')} "
                         f"warns about these parameters: {_one_line(caught[0].message)} (give values it "
                         "uses as they are, so the condition key says what is applied)")
    probe = np.random.default_rng(0).integers(0, 256, _PROBE_SHAPE, dtype=np.uint8)
    try:
        out = _run(transform, probe, 0)
    except Exception as exc:
        raise ValueError(f"{_where(name)}: albumentations could not apply it to a "
                         f"{'x'.join(map(str, _PROBE_SHAPE))} uint8 RGB test image: {_one_line(exc)}") from None
    problem = _shape_problem(name, out, _PROBE_SHAPE)
    if problem:
        raise ValueError(problem)
    return {TRANSFORM: name, **canon}


def albumentations(image: np.ndarray, *, rng: np.random.Generator | None = None, **params: Any) -> np.ndarray:
    """Apply ``albumentations.<transform>(**params)`` (p 1.0 unless given), seeded from ``rng``."""
    check_image(NAME, image)
    if rng is None:
        raise ValueError(f"perturbation {NAME!r} is stochastic and needs rng (see bench.core.conditions.rng_for)")
    params = dict(params)
    name = params.pop(TRANSFORM, None)
    if name is None:
        raise ValueError(f"{_where()}: missing parameter {TRANSFORM!r}")
    transform = build_transform(name, params)
    out = _run(transform, image, int(rng.integers(2**63)))
    problem = _shape_problem(name, out, image.shape)
    if problem:
        raise ValueError(problem)
    return np.ascontiguousarray(out)


albumentations.validate = validate  # type: ignore[attr-defined]
albumentations.stochastic = True  # type: ignore[attr-defined]
albumentations.summary = (  # type: ignore[attr-defined]
    "any pixel-level albumentations transform, e.g. albumentations(transform=GaussNoise,std_range=[0.1;0.1]); "
    "p=1 unless given, seeded per sample")
register_perturbation(
    NAME,
    params={
        TRANSFORM: "name of a pixel-level albumentations transform (ImageOnlyTransform), e.g. GaussNoise",
        "...": "the transform's own parameters: numbers, True/False/None, text, lists as [a;b]; p is 1.0 unless given",
    },
    stochastic=True,
    summary=albumentations.summary,  # type: ignore[attr-defined]
)(albumentations)
