"""Small shared test utilities (import as ``from helpers import ...``; tests/ is on sys.path)."""

from __future__ import annotations

from pathlib import Path

import pytest

#: ``../shared/data/real`` beside the repository (CI clones the repo with shared/ next to it).
SHARED_REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def shared_real_dir() -> Path | None:
    """The shared real-data folder, or None when it is absent."""
    return SHARED_REAL if SHARED_REAL.is_dir() else None


def shared_real_file(name: str) -> Path:
    """A file in the shared real-data folder; skips the calling test when it is absent."""
    path = SHARED_REAL / name
    if not path.is_file():
        pytest.skip(f"shared data file {path} not present")
    return path


#: Marker for tests that need the shared real-data folder at all.
skip_without_shared = pytest.mark.skipif(
    shared_real_dir() is None, reason=f"shared data folder {SHARED_REAL} not present"
)
