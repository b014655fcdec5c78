"""Validating a run folder and publishing it into ``results/`` (``bench publish``).

A run folder holds ``results.json`` (schema ``bench.results/1``), ``samples.parquet`` and an
optional ``gallery/``. Publishing checks it thoroughly: ``results.json`` against the schema
(:func:`~bench.results.validation.validate_results`: types, fractions in [0, 1],
fingerprints ...), the per-sample table against it (every condition present, the counts
agree), the gallery's names, no failed samples and no metric recorded as not computed unless
allowed. It refuses duplicates, and copies the folder atomically (temporary folder + rename)
to ``<results>/<suite>/<adapter>__<run_id>/`` with a ``publish.json`` beside the files
recording how it was published. Nothing is executed or unpickled: JSON and parquet only, read
with the reader's limits (:mod:`bench.results.reader`).

The leaderboard shows only what the same schema check accepts (:func:`bench.results.reader.load_runs`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.io.paths import safe_name
from bench.results.reader import MAX_JSON_BYTES, PUBLISHED_DEPTH, is_safe_component, read_json, run_folders
from bench.results.schema import GALLERY_DIR, GALLERY_INDEX, PUBLISH_FILE, RESULTS_FILE, SAMPLES_FILE
from bench.results.validation import validate_results

__all__ = ["MAX_JSON_BYTES", "CheckedRun", "PublishError", "check_run", "find_duplicate", "is_safe_component",
           "not_computed_metrics", "publish", "slug", "validate_gallery", "validate_results", "validate_samples"]

#: Per-sample columns every samples.parquet must have.
REQUIRED_SAMPLE_COLUMNS = ("sample_id", "condition", "label", "status")


class PublishError(BenchError):
    """A run folder that cannot be published; ``problems`` lists every reason found."""

    def __init__(self, where: str, problems: list[str]):
        self.where = where
        self.problems = list(problems)
        listed = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{where}: cannot publish:\n{listed}")


def slug(text: str, max_len: int = 80) -> str:
    """A published folder name for ``text``: :func:`bench.io.paths.safe_name` capped at ``max_len``."""
    return safe_name(text, max_len)


# -- the run folder's files -----------------------------------------------------------------

def validate_samples(path: Path, data: dict) -> tuple[list[str], int]:
    """Problems with ``samples.parquet`` against ``results.json``, and the number of failed rows."""
    import pyarrow.parquet as pq

    p: list[str] = []
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        return [f"{SAMPLES_FILE} is missing"], 0
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError ...
        return [f"{SAMPLES_FILE} cannot be read as parquet: {exc}"], 0
    cols = set(table.column_names)
    missing = [c for c in REQUIRED_SAMPLE_COLUMNS if c not in cols]
    if missing:
        return [f"{SAMPLES_FILE} lacks columns {', '.join(missing)}"], 0
    df = table.select(list(REQUIRED_SAMPLE_COLUMNS)).to_pandas()
    bad_status = sorted(set(df["status"].astype(str)) - {"ok", "failed"})
    if bad_status:
        p.append(f"{SAMPLES_FILE}: status values {bad_status[:5]} are not 'ok'/'failed'")
    counts = df.groupby("condition").size().to_dict()
    failed = df[df["status"] == "failed"].groupby("condition").size().to_dict()
    keys = [c.get("key") for c in data.get("conditions", []) if isinstance(c, dict)]
    for c in data.get("conditions", []):
        if not isinstance(c, dict) or not isinstance(c.get("key"), str):
            continue
        key = c["key"]
        if key not in counts:
            p.append(f"condition {key!r} has no rows in {SAMPLES_FILE}")
            continue
        if isinstance(c.get("n"), int) and counts[key] != c["n"]:
            p.append(f"condition {key!r}: results.json says n = {c['n']} but {SAMPLES_FILE} has {counts[key]} rows")
        if isinstance(c.get("n_failed"), int) and failed.get(key, 0) != c["n_failed"]:
            p.append(f"condition {key!r}: results.json says n_failed = {c['n_failed']} but "
                     f"{SAMPLES_FILE} has {failed.get(key, 0)} failed rows")
    extra = sorted(set(counts) - set(keys))
    if extra:
        p.append(f"{SAMPLES_FILE} has rows for conditions not in results.json: {extra[:5]}")
    dup = df.duplicated(["sample_id", "condition"]).sum()
    if dup:
        p.append(f"{SAMPLES_FILE} has {dup} duplicate (sample_id, condition) rows")
    return p, int(sum(failed.values()))


def validate_gallery(run_dir: Path) -> list[str]:
    """Problems with an optional ``gallery/``: index shape, safe names, files inside the run
    folder, no symlinks."""
    gdir = run_dir / GALLERY_DIR
    if not gdir.exists():
        return []
    p: list[str] = []
    if gdir.is_symlink() or not gdir.is_dir():
        return [f"{GALLERY_DIR} is not a plain folder"]
    for f in gdir.rglob("*"):
        if f.is_symlink():
            p.append(f"{f.relative_to(run_dir)} is a symbolic link; only plain files are published")
    try:
        index = read_json(gdir / GALLERY_INDEX, MAX_JSON_BYTES)
    except ValueError as exc:
        return p + [f"{GALLERY_DIR}/{GALLERY_INDEX}: {exc}"]
    if not isinstance(index, dict) or not isinstance(index.get("samples"), list) \
            or not isinstance(index.get("conditions"), dict):
        return p + [f"{GALLERY_DIR}/index.json should be {{samples: [...], conditions: {{...}}}}"]
    for s in index["samples"]:
        if not isinstance(s, dict) or not isinstance(s.get("sample_id"), str) or not is_safe_component(s.get("safe_id")):
            p.append(f"{GALLERY_DIR}/index.json: sample entry {str(s)[:80]!r} needs a sample_id and a safe_id "
                     "(letters, digits, _ . -)")
    for key, cslug in index["conditions"].items():
        if not is_safe_component(cslug):
            p.append(f"{GALLERY_DIR}/index.json: condition {key!r} has an unsafe folder name {str(cslug)[:80]!r}")
    return p


# -- identity and duplicates ----------------------------------------------------------------

def metrics_signature(data: dict) -> list:
    """Every condition's key, n, n_failed and metric values/intervals, in a canonical order."""
    out = []
    for c in sorted(data.get("conditions", []), key=lambda c: str(c.get("key"))):
        ms = c.get("metrics", {}) or {}
        out.append([c.get("key"), c.get("n"), c.get("n_failed"),
                    sorted((k, m.get("value"), m.get("ci95")) for k, m in ms.items() if isinstance(m, dict))])
    return out


def _identity(data: dict) -> str:
    ad = data.get("adapter", {})
    ds = data.get("dataset", {})
    return json.dumps({
        "adapter": [ad.get("name"), ad.get("version"), ad.get("config"), ad.get("weights_sha256")],
        "suite": data.get("suite", {}).get("name"),
        "dataset": [ds.get("name"), ds.get("split"), ds.get("fingerprint"), ds.get("n_samples"), ds.get("limit")],
        "protocol": data.get("protocol"),
        "metrics": metrics_signature(data),
    }, sort_keys=True, default=str)


def find_duplicate(data: dict, results_dir: Path) -> str | None:
    """Why ``data`` duplicates a published result (or None): the same run_id, or the same
    adapter (name, version, config, weights), suite, dataset, protocol and identical metrics."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        return None
    mine = _identity(data)
    for folder in run_folders(results_dir, PUBLISHED_DEPTH):
        try:
            other = read_json(folder / RESULTS_FILE, MAX_JSON_BYTES)
        except ValueError:
            continue
        if not isinstance(other, dict):
            continue
        where = folder.relative_to(results_dir)
        if other.get("run_id") == data.get("run_id"):
            return f"run_id {data.get('run_id')!r} is already published at {where}"
        if _identity(other) == mine:
            return (f"{where} already holds the same adapter (name, version, config, weights) on the same "
                    "suite, dataset fingerprint and protocol with identical metrics")
    return None


# -- publishing ---------------------------------------------------------------------------

@dataclass
class CheckedRun:
    """A run folder that passed validation."""

    run_dir: Path
    data: dict
    n_failed: int
    warnings: list[str] = field(default_factory=list)

    @property
    def dest_name(self) -> tuple[str, str]:
        """(suite folder, run folder) under the results folder."""
        return (slug(self.data["suite"]["name"]),
                f"{slug(self.data['adapter']['name'])}__{slug(self.data['run_id'])}")


def not_computed_metrics(data: dict) -> dict[str, dict[str, Any]]:
    """{metric: {reason, fix, conditions}} for the metrics ``data`` records as not computed."""
    out: dict[str, dict[str, Any]] = {}
    for c in data.get("conditions") or []:
        if not isinstance(c, dict):
            continue
        for name, m in (c.get("metrics") or {}).items():
            if isinstance(m, dict) and m.get("status") == "not_computed":
                e = out.setdefault(name, {"reason": m.get("reason"), "fix": m.get("fix"), "conditions": []})
                e["conditions"].append(c.get("key"))
    return out


def check_run(run_dir: Path | str, allow_failed: bool = False,
              allow_missing_metrics: bool = False) -> CheckedRun:
    """Validate a run folder; raise :class:`PublishError` listing every problem. A metric
    recorded as not computed is refused unless ``allow_missing_metrics`` (the board then
    shows it as "n/a (not computed)")."""
    run_dir = Path(run_dir)
    where = str(run_dir)
    if not run_dir.is_dir():
        raise PublishError(where, ["not a folder"])
    try:
        data = read_json(run_dir / RESULTS_FILE, MAX_JSON_BYTES)
    except ValueError as exc:
        raise PublishError(where, [str(exc)]) from None
    problems = validate_results(data)
    if problems:
        raise PublishError(where, problems)
    sample_problems, n_failed = validate_samples(run_dir / SAMPLES_FILE, data)
    problems += sample_problems
    problems += validate_gallery(run_dir)
    n_failed_cond = sum(c["n_failed"] for c in data["conditions"])
    n_failed = max(n_failed, n_failed_cond)
    if n_failed and not allow_failed:
        per = ", ".join(f"{c['key']}: {c['n_failed']}" for c in data["conditions"] if c["n_failed"])
        problems.append(f"{n_failed} failed sample(s) ({per}); fix them, or publish with --allow-failed "
                        "(the board then flags the row)")
    missing = not_computed_metrics(data)
    if missing and not allow_missing_metrics:
        for name, e in missing.items():
            fix = f"; fix: {e['fix']} and score again" if e.get("fix") else ""
            problems.append(f"metric {name} was not computed ({e['reason']}){fix}; or publish with "
                            "--allow-missing-metrics (the board then shows it as n/a (not computed))")
    if problems:
        raise PublishError(where, problems)
    return CheckedRun(run_dir, data, n_failed)


def _copy_tree(src: Path, dst: Path) -> None:
    """Copy the run's files (results.json, samples.parquet, gallery/) as plain files only."""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / RESULTS_FILE, dst / RESULTS_FILE)
    shutil.copyfile(src / SAMPLES_FILE, dst / SAMPLES_FILE)
    gsrc = src / GALLERY_DIR
    if gsrc.is_dir():
        for f in sorted(gsrc.rglob("*")):
            if f.is_symlink() or not f.is_file():
                continue
            rel = f.relative_to(src)
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dst / rel)


def publish(run_dir: Path | str, results_dir: Path | str = "results", allow_failed: bool = False,
            allow_missing_metrics: bool = False) -> Path:
    """Validate ``run_dir`` and copy it to ``<results_dir>/<suite>/<adapter>__<run_id>/``.

    Raises :class:`PublishError` when the run is invalid or duplicates a published one.
    Returns the new folder. The copy is atomic: files are written to a temporary folder beside
    the destination, which is then renamed into place.
    """
    checked = check_run(run_dir, allow_failed, allow_missing_metrics)
    results_dir = Path(results_dir)
    dup = find_duplicate(checked.data, results_dir)
    if dup:
        raise PublishError(str(run_dir), [f"duplicate: {dup}"])
    suite_slug, run_slug = checked.dest_name
    suite_dir = results_dir / suite_slug
    dest = suite_dir / run_slug
    if dest.exists():
        raise PublishError(str(run_dir), [f"duplicate: {dest} already exists"])
    suite_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{run_slug}.", suffix=".tmp", dir=suite_dir))
    try:
        _copy_tree(Path(run_dir), tmp)
        meta = {
            "published": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "allow_failed": bool(allow_failed),
            "allow_missing_metrics": bool(allow_missing_metrics),
            "not_computed": sorted(not_computed_metrics(checked.data)),
            "n_failed": checked.n_failed,
            "results_sha256": hashlib.sha256((tmp / RESULTS_FILE).read_bytes()).hexdigest(),
        }
        (tmp / PUBLISH_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        os.rename(tmp, dest)  # atomic on one file system; fails if dest appeared meanwhile
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
