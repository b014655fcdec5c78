"""An identical re-run costs nothing: a run folder remembers the key of the run that wrote it.

The key covers everything a run's output depends on: every (sample, condition)'s prediction
cache key and cache state (so the adapter's identity and code, the image bytes, the condition
and seed), the dataset fingerprint, the whole suite (protocol, metrics, seed), the harness's own
source (every ``.py`` of the package: scoring, results writer, gallery), the harness version and
commit, the recorded environment (package versions), and the run options that show in the
output (gallery size, limit, command). When a finished run's key equals the new run's, its
``results.json``, ``samples.parquet`` and gallery are already what the new run would write, and
the runner reuses them without scoring, aggregating or drawing anything again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

from bench.core.environment import environment, harness
from bench.engine.cache import canonical_json
from bench.io.paths import write_json_atomic
from bench.results.schema import RESULTS_FILE, SAMPLES_FILE

MEMO_FILE = ".bench-run-key.json"

#: The code that turns predictions into rows and metrics, relative to the ``bench`` folder.
SCORING_SOURCES = ("engine/scoring.py", "io/masks.py", "core/types.py", "io/imageio.py", "metrics")


@lru_cache(maxsize=1)
def scoring_code_sha256() -> str:
    """sha256 over :data:`SCORING_SOURCES` (each file's path and bytes)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for name in SCORING_SOURCES:
        p = root / name
        files = sorted(p.glob("*.py")) if p.is_dir() else [p]
        for f in files:
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


@lru_cache(maxsize=1)
def harness_code_sha256() -> str:
    """sha256 over every ``.py`` file of ``bench``, ``bench.adapters`` and
    ``bench.perturbations`` (paths and bytes): all the code a run's output can depend on."""
    import bench
    import bench.adapters
    import bench.perturbations

    # bench.adapters and bench.perturbations live in their own folders (pyproject.toml)
    roots = [Path(p) for m in (bench, bench.adapters, bench.perturbations) for p in m.__path__]
    h = hashlib.sha256()
    for root in roots:
        for f in sorted(root.rglob("*.py")):
            h.update(f.as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def run_key(*, jobs: Sequence, status: Callable[[str], str | None], fingerprint: str, suite: Any,
            adapter: str, config_json: str, scoring_code_sha256: str, options: dict[str, Any]) -> str:
    """The key of one adapter's run (see the module docstring)."""
    h = hashlib.sha256()
    for sample, items in jobs:
        for cond, key in items:
            h.update(f"{sample.id}\t{cond}\t{key}\t{status(key)}\n".encode())
    suite_fields = {k: v for k, v in dataclasses.asdict(suite).items() if k != "source"}
    payload = {
        "predictions": h.hexdigest(), "fingerprint": fingerprint, "suite": suite_fields,
        "adapter": adapter, "config": config_json, "scoring": scoring_code_sha256,
        "code": harness_code_sha256(), "harness": harness(), "environment": environment(),
        "options": options,
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def recall(out: Path, key: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(results, failure summary fields) of the run in ``out`` if it was written under ``key``
    and its files are all there; else None."""
    try:
        memo = json.loads((out / MEMO_FILE).read_text("utf-8"))
        if memo.get("key") != key or not (out / SAMPLES_FILE).is_file():
            return None
        results = json.loads((out / RESULTS_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if results.get("run_id") != memo.get("run_id"):
        return None
    return results, memo.get("failures") or {}


def remember(out: Path, key: str, results: dict[str, Any], failures: Any) -> None:
    """Record that the run in ``out`` (just written) was made under ``key``."""
    fields = dataclasses.asdict(failures) if dataclasses.is_dataclass(failures) else {}
    write_json_atomic(out / MEMO_FILE, {"key": key, "run_id": results.get("run_id"), "failures": fields})
