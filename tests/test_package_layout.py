"""The project is ONE import package, ``bench``: the repository's top-level folders adapters/,
perturbations/ and leaderboards/ are its sub-packages (pyproject ``package-dir``), and their
bare names (taken on PyPI by other projects) are never importable on their own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["adapters", "perturbations", "leaderboards"])
def test_bare_folder_names_are_not_importable(name):
    # from the repository root, where the folder itself is on sys.path ('' = the current folder)
    out = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0
    assert f"import bench.{name}" in out.stderr


@pytest.mark.parametrize("name", ["adapters", "perturbations", "leaderboards"])
def test_folders_are_sub_packages_of_bench(name):
    import importlib

    mod = importlib.import_module(f"bench.{name}")
    assert Path(mod.__file__).resolve().parent == ROOT / name


def test_every_builtin_adapter_module_registers():
    """Each built-in module is imported by bench.adapters (a broken one is an error, never
    silently absent) and registers at least one adapter defined in it."""
    import bench.adapters as pkg
    from bench.core.registry import ADAPTERS

    modules = {e.obj.__module__ for e in ADAPTERS.entries() if e.source == "built-in"}
    assert modules == {f"bench.adapters.{m}" for m in pkg.BUILTIN_MODULES}


def test_results_record_the_checkout_commit():
    """harness.git_commit names this checkout's HEAD (it moved with the module once)."""
    import subprocess

    from bench.core.environment import git_commit

    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert git_commit() is not None and git_commit().split("-")[0] == head
