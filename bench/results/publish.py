"""Validating a run folder and publishing it into ``results/`` (``bench publish``).

A run folder holds ``results.json`` (schema ``bench.results/1``), ``samples.parquet`` and an
optional ``gallery/``. Publishing checks it thoroughly (schema, types, fractions in [0, 1],
fingerprints, every condition present in the per-sample table, no failed samples and no
metric recorded as not computed unless allowed), refuses duplicates, and copies it atomically (temporary folder + rename) to
``<results>/<suite>/<adapter>__<run_id>/`` with a ``publish.json`` beside the files recording
how it was published. Nothing is executed or unpickled: JSON and parquet only.

The same checks are used by the leaderboard to decide which folders it shows.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.io.paths import safe_name
from bench.results.schema import GALLERY_DIR, PUBLISH_FILE, RESULTS_FILE, RESULTS_SCHEMA, SAMPLES_FILE


#: results.json files larger than this are refused unread (a result is a few hundred KB at most).
MAX_JSON_BYTES = 32 * 1024 * 1024

#: Protocol keys every result must name (None allowed where the choice does not apply,
#: e.g. ``css_model`` for an adapter that does not explain).
REQUIRED_PROTOCOL_KEYS = ("mask_threshold", "reference_field", "css_model", "bootstrap")

#: Per-sample columns every samples.parquet must have.
REQUIRED_SAMPLE_COLUMNS = ("sample_id", "condition", "label", "status")

#: What a gallery file name / id may look like (no separators, no leading dot).
SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}$")

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class PublishError(BenchError):
    """A run folder that cannot be published; ``problems`` lists every reason found."""

    def __init__(self, where: str, problems: list[str]):
        self.where = where
        self.problems = list(problems)
        listed = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{where}: cannot publish:\n{listed}")


# -- safe reading -------------------------------------------------------------------------

def read_json(path: Path | str, max_bytes: int | None = None) -> Any:
    """Parse a JSON file (UTF-8). Refuses files over ``max_bytes`` (default
    :data:`MAX_JSON_BYTES`). ``NaN``/``Infinity``
    literals (Python's json writes them) are read as floats. Raises ``ValueError`` with the
    reason on any problem."""
    path = Path(path)
    max_bytes = MAX_JSON_BYTES if max_bytes is None else max_bytes
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ValueError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    if size > max_bytes:
        raise ValueError(f"{path.name} is {size} bytes, over the {max_bytes}-byte limit")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path.name} is not UTF-8: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path.name} is not valid JSON: {exc}") from None


def slug(text: str, max_len: int = 80) -> str:
    """A published folder name for ``text``: :func:`bench.io.paths.safe_name` capped at ``max_len``."""
    return safe_name(text, max_len)


def is_safe_component(name: Any) -> bool:
    """True if ``name`` can be used as one path component as it is."""
    return isinstance(name, str) and bool(SAFE_COMPONENT.match(name))


def contained(root: Path, path: Path) -> bool:
    """True if ``path`` (after resolving symlinks) lies inside ``root`` (resolved)."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # symlink loops
        return False


# -- schema checks ------------------------------------------------------------------------

def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_fraction(x: Any, low: float = 0.0) -> bool:
    return _is_num(x) and math.isfinite(x) and low <= x <= 1.0


#: A metric's ``status`` (absent = ``ok``): ``not_computed`` = the run could not compute it
#: (value and ci95 null, with ``reason`` and ``fix``); never shown or ranked as 0.
METRIC_STATUSES = ("ok", "not_computed")

#: Metrics whose values may be negative: a cosine similarity lies in [-1, 1].
SIGNED_METRICS = frozenset({"css"})


def _is_undefined(x: Any) -> bool:
    """A metric value the run could not compute: JSON null (or a NaN a writer let through)."""
    return x is None or (isinstance(x, float) and math.isnan(x))


def _need(d: dict, key: str, types: tuple[type, ...] | type, ctx: str, problems: list[str],
          nonempty: bool = False) -> Any:
    if not isinstance(d, dict) or key not in d:
        problems.append(f"{ctx}{key} is missing")
        return None
    v = d[key]
    if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        problems.append(f"{ctx}{key} should be {_tname(types)}, not a boolean")
        return None
    if not isinstance(v, types):
        problems.append(f"{ctx}{key} should be {_tname(types)}, got {type(v).__name__}")
        return None
    if nonempty and not v:
        problems.append(f"{ctx}{key} is empty")
        return None
    return v


def _tname(types: tuple[type, ...] | type) -> str:
    ts = types if isinstance(types, tuple) else (types,)
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer",
             float: "a number", type(None): "null"}
    return " or ".join(names.get(t, t.__name__) for t in ts)


def validate_results(data: Any) -> list[str]:
    """Every problem with a parsed ``results.json`` (empty list = valid)."""
    p: list[str] = []
    if not isinstance(data, dict):
        return [f"results.json should hold an object, got {type(data).__name__}"]
    schema = data.get("schema")
    if schema != RESULTS_SCHEMA:
        p.append(f"schema is {schema!r}, expected {RESULTS_SCHEMA!r}")
    _need(data, "run_id", str, "", p, nonempty=True)
    created = _need(data, "created", str, "", p, nonempty=True)
    if created:
        try:
            datetime.fromisoformat(created)
        except ValueError:
            p.append(f"created {created!r} is not an ISO 8601 time")
    harness = _need(data, "harness", dict, "", p)
    if harness is not None:
        _need(harness, "version", str, "harness.", p, nonempty=True)
    suite = _need(data, "suite", dict, "", p)
    if suite is not None:
        _need(suite, "name", str, "suite.", p, nonempty=True)
        _need(suite, "version", (str, int), "suite.", p)
    ds = _need(data, "dataset", dict, "", p)
    if ds is not None:
        _need(ds, "name", str, "dataset.", p, nonempty=True)
        _need(ds, "split", str, "dataset.", p, nonempty=True)
        fp = _need(ds, "fingerprint", str, "dataset.", p, nonempty=True)
        if fp and not _HEX64.match(fp):
            p.append(f"dataset.fingerprint {fp[:80]!r} is not a sha256 hex digest")
        n = _need(ds, "n_samples", int, "dataset.", p)
        if n is not None and n < 1:
            p.append(f"dataset.n_samples is {n}; a result needs at least one sample")
    ad = _need(data, "adapter", dict, "", p)
    if ad is not None:
        _need(ad, "name", str, "adapter.", p, nonempty=True)
        _need(ad, "version", (str, int), "adapter.", p)
        _need(ad, "config", dict, "adapter.", p)
        if "weights_sha256" not in ad:
            p.append("adapter.weights_sha256 is missing (null for a weight-free adapter)")
        else:
            w = ad["weights_sha256"]
            if w is not None and not (isinstance(w, str) and _HEX64.match(w)):
                p.append(f"adapter.weights_sha256 {str(w)[:80]!r} is neither null nor a sha256 hex digest")
        if "tasks" in ad and not (isinstance(ad["tasks"], list) and all(isinstance(t, str) for t in ad["tasks"])):
            p.append("adapter.tasks should be a list of strings")
        if "flags" in ad and not isinstance(ad["flags"], dict):
            p.append("adapter.flags should be an object")
    proto = _need(data, "protocol", dict, "", p)
    if proto is not None:
        for key in REQUIRED_PROTOCOL_KEYS:
            if key not in proto:
                p.append(f"protocol.{key} is missing")
        mt = proto.get("mask_threshold")
        if "mask_threshold" in proto and not _is_fraction(mt):
            p.append(f"protocol.mask_threshold {mt!r} is not a number in [0, 1]")
        boot = proto.get("bootstrap")
        if "bootstrap" in proto and not (isinstance(boot, dict) and isinstance(boot.get("n"), int)
                                         and isinstance(boot.get("seed"), int)):
            p.append("protocol.bootstrap should be {n: integer, seed: integer}")
    _need(data, "environment", dict, "", p)
    _need(data, "command", str, "", p, nonempty=True)
    if "timing" in data and not isinstance(data["timing"], dict):
        p.append("timing should be an object")
    conds = _need(data, "conditions", list, "", p, nonempty=True)
    if conds:
        seen: set[str] = set()
        for i, c in enumerate(conds):
            p.extend(_validate_condition(c, i, seen))
    return p


def _validate_condition(c: Any, i: int, seen: set[str]) -> list[str]:
    p: list[str] = []
    if not isinstance(c, dict):
        return [f"conditions[{i}] should be an object"]
    key = _need(c, "key", str, f"conditions[{i}].", p, nonempty=True)
    ctx = f"condition {key!r}: " if key else f"conditions[{i}]: "
    if key:
        if key in seen:
            p.append(f"{ctx}appears twice")
        seen.add(key)
    _need(c, "perturbation", str, ctx, p, nonempty=True)
    if "params" in c and not isinstance(c["params"], (dict, list)):
        p.append(f"{ctx}params should be an object (or a list for a chain)")
    n = _need(c, "n", int, ctx, p)
    nf = _need(c, "n_failed", int, ctx, p)
    if n is not None and n < 1:
        p.append(f"{ctx}n is {n}; no sample was scored")
    if n is not None and nf is not None and not 0 <= nf <= n:
        p.append(f"{ctx}n_failed {nf} is not between 0 and n = {n}")
    metrics = _need(c, "metrics", dict, ctx, p)
    if metrics is None:
        return p
    for name, m in metrics.items():
        mctx = f"{ctx}metric {name!r}: "
        low = -1.0 if name in SIGNED_METRICS else 0.0
        if not isinstance(m, dict):
            p.append(f"{mctx}should be an object {{value, ci95, n}}")
            continue
        status = m.get("status", "ok")
        if status not in METRIC_STATUSES:
            p.append(f"{mctx}status {str(status)[:40]!r} is not one of {', '.join(METRIC_STATUSES)}")
        elif status == "not_computed":
            if m.get("value") is not None or m.get("ci95") is not None:
                p.append(f"{mctx}is not computed, so its value and ci95 must be null")
            if not (isinstance(m.get("reason"), str) and m["reason"].strip()):
                p.append(f"{mctx}is not computed but gives no reason")
            if m.get("fix") is not None and not isinstance(m["fix"], str):
                p.append(f"{mctx}fix should be a string or null")
        if "value" not in m:
            p.append(f"{mctx}value is missing")
        elif not (_is_undefined(m["value"]) or _is_fraction(m["value"], low)):
            p.append(f"{mctx}value {m['value']!r} is not a fraction in [{low:g}, 1] (values are "
                     "stored as fractions; the leaderboard multiplies by 100)")
        ci = m.get("ci95")
        if "ci95" not in m:
            p.append(f"{mctx}ci95 is missing")
        elif ci is not None:
            if not (isinstance(ci, list) and len(ci) == 2):
                p.append(f"{mctx}ci95 should be [lo, hi]")
            elif not all(_is_undefined(x) for x in ci):
                if not all(_is_fraction(x, low) for x in ci):
                    p.append(f"{mctx}ci95 {ci!r} is not two fractions in [{low:g}, 1]")
                elif ci[0] > ci[1]:
                    p.append(f"{mctx}ci95 {ci!r} has lo > hi")
        if "n" in m and not (isinstance(m["n"], int) and not isinstance(m["n"], bool) and m["n"] >= 0):
            p.append(f"{mctx}n {m['n']!r} is not a count")
    return p


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
        index = read_json(gdir / "index.json")
    except ValueError as exc:
        return p + [f"{GALLERY_DIR}/index.json: {exc}"]
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
    for rj in sorted(results_dir.glob(f"*/*/{RESULTS_FILE}")):
        try:
            other = read_json(rj)
        except ValueError:
            continue
        if not isinstance(other, dict):
            continue
        where = rj.parent.relative_to(results_dir)
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
        data = read_json(run_dir / RESULTS_FILE)
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
