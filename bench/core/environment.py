"""Provenance of a run: harness version and git commit, Python, platform, package versions."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import __version__

#: Packages whose versions can change numbers; recorded in every result.
TRACKED_PACKAGES = (
    "numpy", "opencv-python-headless", "opencv-python", "pillow", "albumentations", "scipy",
    "pandas", "pyarrow", "rouge-score", "sentence-transformers", "transformers", "torch",
    "torchvision", "timm", "onnxruntime", "scikit-learn", "ray", "streamlit", "nltk",
)


def git_commit() -> str | None:
    """The commit of the harness checkout (with ``-dirty`` when modified), or None."""
    root = Path(__file__).resolve().parents[2]  # bench/core/environment.py -> the checkout
    if not (root / ".git").exists():
        return None
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def environment() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": package_versions(),
    }


def harness() -> dict[str, Any]:
    return {"version": __version__, "git_commit": git_commit()}
