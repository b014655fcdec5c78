"""The example plugin package installs, is found by name through the `bench.adapters` entry
point, and runs (installed with pip into a temporary target: offline, no build isolation)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "bench-example-plugin"
BENCH = Path(sys.executable).with_name("bench")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    source = build / "plugin"  # setuptools builds in the source tree: keep the repository clean
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300, cwd=build,
        env=dict(os.environ, PIP_NO_CACHE_DIR="1", TMPDIR=str(build)),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert list(target.glob("bench_example_plugin-*.dist-info"))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def test_ls_finds_the_plugin_by_name(installed):
    out = subprocess.run([str(BENCH), "ls", "adapters", "example*"], capture_output=True, text=True,
                         env=installed, timeout=120)
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if "example-highpass" in line)
    assert "[bench-example-plugin]" in line and "tasks=detect,localize" in line
    # and without the package on the path it is not there
    bare = subprocess.run([str(BENCH), "ls", "adapters"], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert "example-highpass" not in bare.stdout


def test_plugin_passes_check_adapter(installed):
    out = subprocess.run([str(BENCH), "check-adapter", "example-highpass", "--synthetic", "--n", "4"],
                         capture_output=True, text=True, env=installed, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "RESULT: PASS" in out.stdout


def test_plugin_outputs(installed):
    code = textwrap.dedent('''
        import numpy as np
        from bench.core.registry import create_adapter
        from bench.core.types import ModelInput
        a = create_adapter("example-highpass", radius=1.5)
        a.load("cpu")
        flat = np.full((20, 30, 3), 90, np.uint8)
        edge = flat.copy(); edge[:, 15:] = 200
        p_flat, p_edge = a.predict([ModelInput("f", flat, "f.png"), ModelInput("e", edge, "e.png")])
        assert p_flat.heatmap.shape == (20, 30) and not p_flat.heatmap.any() and p_flat.score == 0.0
        h = p_edge.heatmap
        assert h.max() == 1.0 and h[:, 13:17].mean() > 0.3 and h[:, :8].max() == 0.0 and h[:, 23:].max() == 0.0
        print("ok")
    ''')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=installed, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
