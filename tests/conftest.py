"""Shared pytest fixtures. Keep this file small; put helpers in tests/helpers.py."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

# Make ``from helpers import ...`` work however pytest was invoked (tests/ is not a package).
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy generator (same numbers in every run)."""
    return np.random.default_rng(20250)


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """Every test session gets its own ``$BENCH_CACHE`` (predictions, scored tables and the
    generated demo dataset, built once per session on first use), so no test reads or writes
    the developer's own ``~/.cache/bench``. A test that needs a cache of its own still sets
    ``BENCH_CACHE`` with ``monkeypatch``. Pillow's process-wide pixel limit, which
    ``BENCH_MAX_PIXELS`` sets, is put back after the session too."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCH_CACHE", str(tmp_path_factory.mktemp("bench-cache")))
        mp.delenv("BENCH_MAX_PIXELS", raising=False)
        yield
    Image.MAX_IMAGE_PIXELS = limit
