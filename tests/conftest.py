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
