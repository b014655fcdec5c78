"""Scored tables: the per-(sample, condition) table of a run, cached by everything it depends
on, so an identical re-run neither infers nor re-scores (it only re-aggregates).

The key covers every prediction key (adapter identity and code, image bytes, condition, seed),
the dataset fingerprint (sample ids + annotation bytes), the protocol, the metric list, the
adapter's tasks, and the source of the code that turns predictions into rows and metrics
(``bench/engine/scoring.py``, ``bench/metrics/``, ``bench/io/masks.py``, ``bench/core/types.py``,
``bench/io/imageio.py``): a metric fix re-scores, never re-infers. Results record the same hash
(``harness.scoring_code_sha256``). A table
holding rows that could not find their prediction (an unfinished infer phase) is not stored.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from bench.engine.cache import canonical_json
from bench.engine.run_memo import scoring_code_sha256
from bench.io.paths import atomic_path

class ScoredTables:
    """``<cache_dir>/../scored/<key>.parquet`` (beside the prediction cache)."""

    def __init__(self, prediction_cache_dir: Path | str):
        self.root = Path(prediction_cache_dir).parent / "scored"

    def key(self, jobs: Sequence[tuple[Any, Sequence[tuple[str, str]]]], fingerprint: str,
            protocol: dict[str, Any], metrics: Sequence[str], tasks: Sequence[str],
            status: Callable[[str], str | None]) -> str:
        """``status(prediction key)`` (ok / failed / None) is part of the key: a retried failure
        that now succeeds changes the table."""
        h = hashlib.sha256()
        h.update(canonical_json({"fingerprint": fingerprint, "protocol": protocol,
                                 "metrics": list(metrics), "tasks": list(tasks),
                                 "code": scoring_code_sha256()}).encode())
        for sample, items in jobs:
            h.update(sample.id.encode("utf-8") + b"\0")
            for cond, key in items:
                h.update(f"{cond}\0{key}\0{status(key)}\0".encode("utf-8"))
        return h.hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.parquet"

    def get(self, key: str) -> pd.DataFrame | None:
        try:
            return pd.read_parquet(self._path(key))
        except FileNotFoundError:
            return None
        except Exception:  # torn or unreadable: score again
            self._path(key).unlink(missing_ok=True)
            return None

    def put(self, key: str, df: pd.DataFrame) -> None:
        errors = df["error"].fillna("")
        if errors.str.contains("no prediction for condition|not inferred:", regex=True).any():
            return  # incomplete: the next run must score what the infer phase adds
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_path(self._path(key)) as tmp:
            df.to_parquet(tmp, index=False)
