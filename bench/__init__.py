"""bench: a benchmark harness for synthetic-image artifact detection, localization and explanation."""

__version__ = "0.1.0"
