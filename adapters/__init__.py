"""Built-in adapters, one module per model family. Importing this package registers them.

Third-party adapters register through the ``bench.adapters`` entry-point group.
"""

from __future__ import annotations

if __name__ != "bench.adapters":  # this folder is the sub-package bench.adapters (pyproject package-dir)
    raise ImportError(f"{__name__!r} is not a package of its own: import bench.adapters")

import importlib
import logging

from bench.core.registry import register_adapter  # noqa: F401  (re-exported for adapter modules)

log = logging.getLogger(__name__)

#: Modules that define built-in adapters. Each imports its heavy dependencies (torch, ...) lazily
#: inside ``load()``, so listing adapters stays fast.
BUILTIN_MODULES = (
    "reference",
    "forensic",
    "template_explainer",
    "external",
    "legion",
    "pal4vst",
    "hifinet",
    "trufor",
    "generic",
    "openai_chat",
    "predictions",
)

for _name in BUILTIN_MODULES:  # a built-in that fails to import is an error, never silently absent
    importlib.import_module(f"{__name__}.{_name}")
