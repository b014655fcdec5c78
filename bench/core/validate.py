"""Input checks that run before any work: one-line errors naming the file, line or key and the fix.

Everything a user types or writes (suite files, ``--config``, ``--condition``, ``--limit``,
``--out``, metric names) is checked here, or by a function here, before a dataset is opened or a
model is loaded, so a bad input never yields a plausible wrong table. Errors are
:class:`InputError` (a :class:`~bench.errors.BenchError`: the command prints
``bench: error: <message>`` and exits 2; also a ``ValueError`` for library callers).

This module imports only the standard library, ``yaml`` and :mod:`bench.errors` at the top, so
the core types can use it; the checks of adapter configs and metric names use the registries.
The checks of a suite's names are the engine's (:func:`bench.engine.plan.check_suite_names`).
"""

from __future__ import annotations

import argparse
import difflib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from bench.errors import BenchError


class InputError(BenchError, ValueError):
    """A bad input found before any work; the message names where and how to fix it."""


# -- names ----------------------------------------------------------------------------------

def did_you_mean(name: Any, choices: Iterable[str], n: int = 1) -> str:
    """``"; did you mean 'x'?"`` for the closest choices, or ``""``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=n, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def unknown_name(what: str, name: Any, choices: Iterable[str], where: str = "") -> InputError:
    """``"<where>: unknown <what> 'x'; did you mean 'y'? (choices: a, b)"``."""
    choices = sorted({str(c) for c in choices})
    prefix = f"{where}: " if where else ""
    listing = f" (choices: {', '.join(choices)})" if choices else ""
    return InputError(f"{prefix}unknown {what} {name!r}{did_you_mean(name, choices)}{listing}")


# -- numbers on the command line -----------------------------------------------------------

def positive_int(text: str) -> int:
    """argparse ``type=``: an integer >= 1 (``--limit 0`` must not mean "all")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (1 or more), got {value}")
    return value


# -- YAML files -------------------------------------------------------------------------------

class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice (PyYAML keeps the last one)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            continue  # the base constructor reports unhashable keys
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None,
                f"key {key!r} appears twice in one mapping (first on line {seen[key] + 1}); keep one",
                key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def yaml_error_line(source: str, exc: yaml.YAMLError) -> str:
    """``"<file>:<line>:<col>: <problem>"`` in one line for a PyYAML error."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    text = " ".join(str(problem).split())
    cmark = getattr(exc, "context_mark", None)
    if context and cmark is not None and mark is not None and cmark.line != mark.line:
        what = str(context).replace("while parsing ", "").replace("while scanning ", "")
        text += f" ({what} opened on line {cmark.line + 1})"
    return f"{where}: not valid YAML: {text}"


def load_yaml_text(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """Parse YAML text: (data, root node for line numbers); :class:`InputError` in one line
    for a syntax error or a key given twice."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise InputError(yaml_error_line(source, exc)) from None
    return data, node


def read_text_file(path: Path | str, what: str = "file", encoding: str = "utf-8") -> str:
    """A user's text file (suite, claims, id list ...), every way it can fail a one-line
    :class:`InputError` naming the file and ``what`` it should be."""
    p = Path(path).expanduser()
    try:
        return p.read_bytes().decode(encoding)
    except FileNotFoundError:
        raise InputError(f"{p}: {what} not found") from None
    except IsADirectoryError:
        raise InputError(f"{p}: is a folder; give the {what}'s path") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: {what} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read the {what}: {exc.strerror or exc}") from None


def load_yaml_file(path: Path | str, what: str = "file") -> tuple[Any, yaml.Node | None]:
    return load_yaml_text(read_text_file(path, what), str(Path(path).expanduser()))


def node_line(root: yaml.Node | None, path: Sequence[Any], key_itself: bool = False) -> int | None:
    """1-based line of the value at ``path`` (keys and list indices) in a composed YAML tree;
    ``key_itself``: the line of the last key rather than its value. None when not found."""
    node = root
    if node is None:
        return None
    line = node.start_mark.line
    for i, step in enumerate(path):
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(step):
                    line = (k if key_itself and i == len(path) - 1 else v).start_mark.line
                    node = v
                    break
            else:
                return line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
            node = node.value[step]
            line = node.start_mark.line
        else:
            return line + 1
    return line + 1


# -- JSON Schema ------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def load_schema(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


_TYPE_WORDS = {"integer": "an integer", "number": "a number", "string": "text", "boolean": "true or false",
               "array": "a list", "object": "a mapping", "null": "null"}


def _dotted(path: Sequence[Any]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _example(schema: Mapping[str, Any]) -> str:
    ex = schema.get("examples")
    if not ex:
        return ""
    return f", e.g. {json.dumps(ex[0])}"


def _schema_message(err: Any) -> tuple[list[Any], str, bool]:
    """(path, message, points at a key) for one jsonschema error."""
    path = list(err.absolute_path)
    where = _dotted(path) or "the file"
    v, schema, value = err.validator, err.schema, err.instance
    if v == "additionalProperties":
        allowed = list((schema.get("properties") or {}))
        extras = [k for k in value if k not in allowed] if isinstance(value, dict) else []
        key = extras[0] if extras else "?"
        inside = f" in {_dotted(path)}" if path else ""
        return (path + [key], f"unknown key {key!r}{inside}{did_you_mean(key, allowed)} "
                f"(keys: {', '.join(allowed)})", True)
    if v == "required":
        missing = [k for k in schema.get("required", []) if isinstance(value, dict) and k not in value]
        key = missing[0] if missing else "?"
        inside = f" in {_dotted(path)}" if path else ""
        return path, f"missing required key {key!r}{inside}", False
    if v == "type":
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        want = " or ".join(_TYPE_WORDS.get(t, t) for t in types)
        if "array" in types and isinstance(value, str):
            return path, f"{where} must be a list: write [{value}], not {value}", False
        return path, f"{where} must be {want}, got {value!r}{_example(schema)}", False
    if v == "enum":
        choices = [str(c) for c in schema["enum"]]
        return path, (f"{where} must be one of {', '.join(choices)}, got {value!r}"
                      f"{did_you_mean(value, choices)}"), False
    bounds = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    if v in bounds:
        desc = schema.get("description", "")
        why = f" ({desc})" if desc else ""
        return path, f"{where} must be {bounds[v]} {err.validator_value}, got {value!r}{why}", False
    if v == "minItems":
        return path, f"{where} must list at least {err.validator_value} item(s){_example(schema)}", False
    if v == "uniqueItems":
        return path, f"{where} lists an item twice: {value!r}", False
    if v == "minLength":
        return path, f"{where} must not be empty", False
    if v == "pattern":
        desc = schema.get("description", "")
        return path, f"{where} {value!r} is not allowed" + (f" ({desc})" if desc else ""), False
    if v in ("anyOf", "oneOf"):
        desc = schema.get("description", "")
        return path, f"{where}: {value!r} is not a valid entry" + (f" ({desc})" if desc else "") + \
            _example(schema), False
    return path, f"{where}: {err.message}", False


def check_schema(data: Any, schema_path: Path | str, source: str, root: yaml.Node | None = None) -> None:
    """Validate ``data`` against a JSON Schema file; :class:`InputError` naming ``source``, the
    line (when ``root`` is the composed YAML) and the key of the first problem."""
    import jsonschema

    schema = load_schema(str(schema_path))
    cls = jsonschema.validators.validator_for(schema)
    errors = list(cls(schema).iter_errors(data))
    if not errors:
        return
    messages = [_schema_message(e) for e in errors]
    lines = [node_line(root, p, key) for p, _, key in messages]
    order = sorted(range(len(errors)), key=lambda i: (lines[i] or 0, -len(messages[i][0])))
    i = order[0]
    line = lines[i]
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    where = f"{source}:{line}" if line else source
    raise InputError(f"{where}: {messages[i][1]}{more}")


# -- adapter configs ----------------------------------------------------------------------

def build_adapter(name: str, config: Mapping[str, Any], flag: str = "--config") -> Any:
    """The adapter ``name`` built with ``config`` (not loaded), checked first: the keys the
    adapter declares (``Adapter.config_keys``), then construction, so adapters that check their
    config in ``__init__`` (required options, values, undeclared keys) refuse it in one line."""
    from bench.core.registry import ADAPTERS

    cls = ADAPTERS.get(name)
    try:
        check = getattr(cls, "check_config", None)
        if callable(check):
            check(dict(config))
        return cls(**dict(config))
    except (BenchError, ValueError, TypeError, KeyError) as exc:
        text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        raise InputError(f"{flag}: {_with_name(text, name)}") from None


def check_adapter_config(name: str, config: Mapping[str, Any], flag: str = "--config") -> None:
    """:func:`build_adapter`, for the check alone."""
    build_adapter(name, config, flag)


def _with_name(text: str, name: str) -> str:
    """``adapter 'x': <problem>`` once, whether or not the adapter's own message names it."""
    text = " ".join(text.split())
    if text.startswith(f"adapter {name!r}") or text.startswith(f"adapter '{name}'"):
        return text
    for prefix in (f"{name}: ", f"{name} "):
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    return f"adapter {name!r}: {text}"


def check_run_configs(configs: Mapping[str, Mapping[str, Any]], adapters: Sequence[str]) -> None:
    """``--config ADAPTER.KEY=V`` of ``bench run``: every ADAPTER must be in the run, every key
    accepted (see :func:`check_adapter_config`); adapters without a config are built too, so a
    required option that is missing fails now, not after the first adapter's whole run."""
    from bench.core.registry import ADAPTERS

    for name, config in configs.items():
        if name not in adapters:
            key = next(iter(config), "KEY")
            item = f"--config {name}.{key}=..."
            if name in ADAPTERS:
                raise InputError(f"{item}: adapter {name!r} is not in this run (adapters in the run: "
                                 f"{', '.join(adapters)}); add --adapter {name} or drop the option")
            raise InputError(f"{item}: unknown adapter {name!r}{did_you_mean(name, adapters)} "
                             f"(adapters in the run: {', '.join(adapters)})")
    for name in adapters:
        cfg = configs.get(name) or {}
        check_adapter_config(name, cfg, flag="--config" if cfg else "bench run")


def check_metric_names(names: Iterable[str], available: Iterable[str], where: str, flag: str = "--metric") -> None:
    """Every name must be a registered metric and present in ``available``."""
    from bench.core.registry import METRICS

    available = list(available)
    for name in names:
        if name not in METRICS:
            raise InputError(f"{where}: {flag} {name!r}: unknown metric{did_you_mean(name, METRICS.names())} "
                             f"(metrics: {', '.join(METRICS.names())})")
        if name not in available:
            raise InputError(f"{where}: {flag} {name!r}: not measured in these runs "
                             f"(measured: {', '.join(available) or 'none'})")
