"""Dataset loaders, registered by name (``bench ls datasets``)."""

from __future__ import annotations

# Register on import; a loader that fails to import is an error, never silently absent.
from bench.datasets import demo, loki, manifest, richhf, synthscars  # noqa: F401
