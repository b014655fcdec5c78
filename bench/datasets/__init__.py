"""Dataset loaders, registered by name (``bench ls datasets``)."""

from __future__ import annotations

from bench.datasets import demo, synthscars  # noqa: F401  (register on import)

for _optional in ("loki", "richhf", "manifest"):
    try:
        __import__(f"bench.datasets.{_optional}")
    except ModuleNotFoundError as exc:  # module not written yet / optional dependency missing
        if exc.name != f"bench.datasets.{_optional}":
            raise
