"""Name registries for adapters, datasets, suites, perturbations and metrics.

Modelled on timm's ``register_model`` / ``create_model`` / ``list_models``: built-ins register
themselves with a decorator when their module is imported; other installed packages add theirs
through Python entry points (groups ``bench.adapters``, ``bench.datasets``, ``bench.suites``,
``bench.perturbations``, ``bench.metrics``). An entry point may name an object (registered under
the entry point's name, or its own ``name`` attribute) or a module (importing it registers).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Iterator

from bench.errors import UnknownNameError

log = logging.getLogger(__name__)


@dataclass
class Entry:
    """One registered object with descriptive info (tasks, requirements, summary ...)."""

    name: str
    obj: Any
    info: dict[str, Any] = field(default_factory=dict)
    source: str = "built-in"  # or the distribution that provided it


class Registry:
    """A case-sensitive name -> object map with wildcard listing and close-name suggestions."""

    def __init__(self, kind: str, builtin_modules: tuple[str, ...] = ()):
        self.kind = kind
        self.group = f"bench.{kind}s"
        self._builtin_modules = builtin_modules
        self._entries: dict[str, Entry] = {}
        self._loaded = False

    # -- registration -------------------------------------------------------------------
    def register(self, name: str | None = None, **info: Any) -> Callable[[Any], Any]:
        """Decorator: ``@REG.register("name", tasks=...)`` registers the decorated object."""

        def deco(obj: Any) -> Any:
            self.add(name or getattr(obj, "name", None) or obj.__name__, obj, **info)
            return obj

        return deco

    def add(self, name: str, obj: Any, *, source: str = "built-in", **info: Any) -> None:
        if not name or any(c in name for c in "*?[] "):
            raise ValueError(f"invalid {self.kind} name {name!r}")
        old = self._entries.get(name)
        if old is not None and old.obj is not obj:
            raise ValueError(
                f"{self.kind} {name!r} is registered twice ({old.source} and {source})"
            )
        self._entries[name] = Entry(name, obj, dict(info), source)

    # -- loading ------------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for mod in self._builtin_modules:
            importlib.import_module(mod)
        for ep in entry_points(group=self.group):
            dist = getattr(ep.dist, "name", "?") if ep.dist else "?"
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not break the harness
                log.warning("could not load %s plugin %r from %s: %s", self.kind, ep.name, dist, exc)
                continue
            if isinstance(obj, type(importlib)):  # a module: importing it registered its objects
                continue
            if ep.name not in self._entries:
                info = dict(getattr(obj, "registry_info", {}) or {})
                self.add(ep.name, obj, source=dist, **info)

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


ADAPTERS = Registry("adapter", ("bench.adapters",))
DATASETS = Registry("dataset", ("bench.datasets",))
PERTURBATIONS = Registry("perturbation", ("bench.perturbations",))
METRICS = Registry("metric", ("bench.metrics",))
SUITES = Registry("suite", ("bench.suites",))

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
register_metric = METRICS.register


def list_adapters(pattern: str = "*") -> list[str]:
    return ADAPTERS.names(pattern)


def create_adapter(name: str, /, **config: Any) -> Any:
    """Instantiate a registered adapter class with its config (not yet loaded)."""
    return ADAPTERS.get(name)(**config)


def create_dataset(name: str, /, **options: Any) -> Any:
    return DATASETS.get(name)(**options)
