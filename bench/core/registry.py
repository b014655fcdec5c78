"""Name registries for adapters, datasets, suites, perturbations and metrics.

Modelled on timm's ``register_model`` / ``create_model`` / ``list_models`` and on
lm-evaluation-harness's typed ``Registry(base_cls=...)``: built-ins register themselves when
their module is imported; other installed packages add theirs through Python entry points
(groups ``bench.adapters``, ``bench.datasets``, ``bench.suites``, ``bench.perturbations``,
``bench.metrics``). An entry point may name an object (registered under the entry point's
name) or a module (importing it registers).

Each registry holds one kind of object and refuses anything else (``TypeError`` naming the
registry and what it expects):

- ``adapter``: a subclass of :class:`bench.core.types.Adapter`;
- ``dataset``: a subclass of :class:`bench.core.types.Dataset`;
- ``metric``: a :class:`bench.metrics.MetricSpec` (register with ``@bench.metrics.metric``);
- ``suite``: a :class:`bench.suites.Suite` (a plugin's entry point may name a YAML path: it is
  read when the plugin is loaded);
- ``perturbation``: a function ``fn(image, *, rng, **params) -> image``.

A name is stated once. Adapters, datasets, metrics and suites carry their own ``name``: the
decorators (``@register_adapter``, ``@register_dataset``) take no name, and an object whose
``name`` is missing, or differs from the name it is registered or published (entry point)
under, is refused. Perturbations are functions, so ``@register_perturbation("name", ...)``
names them. A built-in module or plugin that fails to import, or a plugin entry point that
breaks these rules, is a :class:`~bench.errors.BenchError` in one line naming it (``bench ls``
exits 2 with it): nothing is dropped silently.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import types
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Iterator, Literal

from bench.errors import BenchError, UnknownNameError


@dataclass
class Entry:
    """One registered object with descriptive info (tasks, requirements, summary ...)."""

    name: str
    obj: Any
    info: dict[str, Any] = field(default_factory=dict)
    source: str = "built-in"  # or the distribution that provided it


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _describe_obj(obj: Any) -> str:
    if isinstance(obj, type):
        return f"class {obj.__module__}.{obj.__qualname__}"
    if isinstance(obj, types.FunctionType):
        return f"function {obj.__module__}.{obj.__qualname__}"
    return f"{type(obj).__name__} {obj!r:.60}"


class Registry:
    """A case-sensitive name -> object map with wildcard listing and close-name suggestions.

    ``base`` (``"module:Class"``, imported when first needed) and ``form`` say what it holds:
    ``"class"`` (subclasses of ``base``), ``"instance"`` (instances of ``base``) or
    ``"function"`` (a plain callable, not a class). ``named``: the objects carry their own
    ``name``, which must equal the registered name. ``coerce`` (``"module:function"``, imported
    when first needed, like ``base``): turns what an entry point names into the registered form
    (suites: a YAML path -> a Suite). Both are names, not objects, so this module never imports
    the layers whose classes its registries hold (docs/architecture.md).
    """

    def __init__(self, kind: str, builtin_modules: tuple[str, ...] = (), *,
                 form: Literal["class", "instance", "function"], base: str | None = None,
                 named: bool = True, coerce: str | None = None):
        if form != "function" and base is None:
            raise ValueError(f"{kind} registry: form {form!r} needs a base")
        self.kind = kind
        self.group = f"bench.{kind}s"
        self.form = form
        self.base = base
        self.named = named
        self._coerce = coerce
        self._builtin_modules = builtin_modules
        self._entries: dict[str, Entry] = {}
        self._loaded = False
        self._load_error: BenchError | None = None

    # -- the type -----------------------------------------------------------------------
    def base_class(self) -> type | None:
        return None if self.base is None else _resolve(self.base)

    @property
    def expected(self) -> str:
        base = self.base.replace(":", ".") if self.base else ""
        return {"class": f"a subclass of {base}", "instance": f"a {base} instance",
                "function": "a function fn(image, *, rng, **params)"}[self.form]

    def check(self, name: Any, obj: Any) -> None:
        """Refuse ``obj`` unless it is of this registry's type and (``named``) its own ``name``
        equals ``name`` (``TypeError`` / ``ValueError`` naming the registry)."""
        base = self.base_class()
        if self.form == "class":
            ok = isinstance(obj, type) and issubclass(obj, base) and obj is not base
        elif self.form == "instance":
            ok = isinstance(obj, base)
        else:
            ok = callable(obj) and not isinstance(obj, type)
        if not ok:
            raise TypeError(f"{self.kind} registry: cannot register {name!r}: expected {self.expected}, "
                            f"got {_describe_obj(obj)}")
        if self.named:
            own = getattr(obj, "name", None)
            if not isinstance(own, str) or not own:
                raise TypeError(f"{self.kind} registry: {_describe_obj(obj)} has no `name` "
                                f"(set its class attribute name = \"...\"; it is the registered name)")
            if own != name:
                raise ValueError(f"{self.kind} registry: cannot register {_describe_obj(obj)} as {name!r}: "
                                 f"its name is {own!r} (a name is stated once, in the object)")

    # -- registration -------------------------------------------------------------------
    def register(self, obj: Any = None, /, **info: Any) -> Any:
        """Decorator. Named kinds: ``@REG.register`` or ``@REG.register(**info)`` registers the
        decorated object under its own ``name``; a name argument is refused (state it once).
        Perturbations: ``@REG.register("name", **info)``."""
        if not self.named:
            if not isinstance(obj, str):
                raise TypeError(f"{self.kind} registry: register needs the name: "
                                f"@register_{self.kind}(\"name\", ...)")
            name = obj

            def deco_named(o: Any) -> Any:
                self.add(name, o, **info)
                return o

            return deco_named
        if isinstance(obj, str):
            raise TypeError(f"{self.kind} registry: register takes no name ({obj!r}): set the class "
                            f"attribute name = {obj!r} and decorate with a bare @register_{self.kind}")

        def deco(o: Any) -> Any:
            self.add(getattr(o, "name", None), o, **info)
            return o

        return deco if obj is None else deco(obj)

    def add(self, name: str, obj: Any, *, source: str | None = None, **info: Any) -> None:
        """Register ``obj`` as ``name``. ``source``: the distribution that provided it; default
        ``built-in`` for objects defined in the ``bench`` package, else their module's name."""
        self.check(name, obj)
        if source is None:
            module = str(getattr(obj, "__module__", "") or "")
            source = "built-in" if module == "bench" or module.startswith("bench.") else module or "?"
        if not isinstance(name, str) or not name or any(c in name for c in "*?[] "):
            raise ValueError(f"invalid {self.kind} name {name!r}")
        old = self._entries.get(name)
        if old is not None and old.obj is not obj:
            raise ValueError(
                f"{self.kind} {name!r} is registered twice ({old.source} and {source})"
            )
        self._entries[name] = Entry(name, obj, dict(info), source)

    # -- loading ------------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._load_error is not None:
            raise self._load_error
        if self._loaded:
            return
        self._loaded = True
        try:
            self._load()
        except BenchError as exc:
            self._load_error = exc
            raise

    def _load(self) -> None:
        for mod in self._builtin_modules:
            try:
                importlib.import_module(mod)
            except BenchError:
                raise
            except Exception as exc:
                raise BenchError(f"built-in {self.kind} module {mod!r} failed to import: "
                                 f"{_one_line(exc)}") from exc
        for ep in entry_points(group=self.group):
            dist = getattr(ep.dist, "name", None) or "?"
            where = f"{self.kind} plugin {ep.name!r} ({ep.value}) from distribution {dist!r}"
            try:
                obj = ep.load()
            except Exception as exc:
                raise BenchError(f"{where} failed to import: {_one_line(exc)}") from exc
            if isinstance(obj, types.ModuleType):  # importing the module registered its objects
                continue
            try:
                if self._coerce is not None:
                    obj = _resolve(self._coerce)(obj)
                if self.named and isinstance(getattr(obj, "name", None), str) and obj.name != ep.name:
                    raise ValueError(f"entry point name {ep.name!r} differs from the name of "
                                     f"{_describe_obj(obj)}, {obj.name!r}; they must be the same")
                old = self._entries.get(ep.name)
                if old is not None and old.obj is obj:  # the plugin's module registered it itself
                    continue
                info = dict(getattr(obj, "registry_info", {}) or {})
                self.add(ep.name, obj, source=dist, **info)
            except BenchError:
                raise
            except Exception as exc:
                raise BenchError(f"{where}: {' '.join(str(exc).split())}") from exc

    # -- lookup -------------------------------------------------------------------------
    def get(self, name: str) -> Any:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry:
        self._ensure_loaded()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (`bench ls {self.kind}s` lists them)"

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a shell-style wildcard (``*``, ``?``, ``[..]``)."""
        self._ensure_loaded()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def entries(self, pattern: str = "*") -> Iterator[Entry]:
        for n in self.names(pattern):
            yield self._entries[n]

    def __contains__(self, name: str) -> bool:
        self._ensure_loaded()
        return name in self._entries


def _resolve(ref: str) -> Any:
    """``"module:attr"`` -> the object."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


ADAPTERS = Registry("adapter", ("bench.adapters",), form="class", base="bench.core.types:Adapter")
DATASETS = Registry("dataset", ("bench.datasets",), form="class", base="bench.core.types:Dataset")
PERTURBATIONS = Registry("perturbation", ("bench.perturbations",), form="function", named=False)
METRICS = Registry("metric", ("bench.metrics",), form="instance", base="bench.metrics:MetricSpec")
SUITES = Registry("suite", ("bench.suites",), form="instance", base="bench.suites:Suite",
                  coerce="bench.suites:suite_from_entry_point")

REGISTRIES: dict[str, Registry] = {
    "adapters": ADAPTERS,
    "datasets": DATASETS,
    "suites": SUITES,
    "perturbations": PERTURBATIONS,
    "metrics": METRICS,
}

register_adapter = ADAPTERS.register
register_dataset = DATASETS.register
register_perturbation = PERTURBATIONS.register
# Metrics register one way: ``@bench.metrics.metric(name, kind=..., task=...)`` (a MetricSpec).


def create_adapter(name: str, /, **config: Any) -> Any:
    """Instantiate a registered adapter class with its config (not yet loaded)."""
    return ADAPTERS.get(name)(**config)


def create_dataset(name: str, /, **options: Any) -> Any:
    return DATASETS.get(name)(**options)
