"""The one reader of run folders (``bench.results/1``): :class:`Run`, and where runs are found.

A run folder holds ``results.json``, ``samples.parquet`` and optionally ``gallery/`` and
``publish.json`` (:mod:`bench.results.schema`). Runs are found in any of three layouts: the
published one ``<root>/<suite>/<run>/results.json`` (``results/``), a folder of runs
``<root>/<run>/results.json`` (``bench run --out``), or a single run folder.

Two ways in, for two kinds of input:

- :func:`load_run` and :func:`find_runs` read folders a user names on the command line
  (``bench compare``, ``bench verify-claims``): only the schema string is checked, and an
  unreadable run is a :class:`~bench.errors.BenchError` naming the file.
- :func:`load_runs` reads a results folder written by others (the leaderboard). Every run is
  validated against the schema (:mod:`bench.results.validation`) and one that fails is
  reported, not shown. Only JSON and parquet are read, nothing is unpickled or executed; JSON
  files have a size limit (:data:`MAX_JSON_BYTES`); every file opened lies inside the results
  folder after resolving symbolic links (:func:`contained`); and no text from a result
  becomes a path unless it passes :func:`is_safe_component` (:func:`run_file`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from bench.core.conditions import Condition
from bench.errors import BenchError
from bench.results.schema import PUBLISH_FILE, RESULTS_FILE, RESULTS_SCHEMA, SAMPLES_FILE
from bench.results.validation import validate_results

if TYPE_CHECKING:  # pandas loads with the first per-sample table, not with the reader
    import pandas as pd

#: JSON files larger than this are refused unread (a result is a few hundred KB at most).
MAX_JSON_BYTES = 32 * 1024 * 1024
#: What a file name taken from a result (gallery ids, condition folders) may look like: no
#: separators, no leading dot.
SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}$")
#: The run folders the leaderboard searches: ``<root>/<suite>/<run>`` is two levels down.
PUBLISHED_DEPTH = 2


# -- safe reading ---------------------------------------------------------------------------

def read_json(path: Path | str, max_bytes: int | None = None) -> Any:
    """Parse a UTF-8 JSON file, refusing one that is too large.

    Parameters
    ----------
    path : Path or str
        The file.
    max_bytes : int, optional
        The size limit; :data:`MAX_JSON_BYTES` by default.

    Returns
    -------
    data : Any
        The parsed document; ``NaN``/``Infinity`` literals (Python's json writes them) are
        read as floats.

    Raises
    ------
    ValueError
        With the reason: unreadable, over the limit, not UTF-8, not valid JSON.
    """
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


def is_safe_component(name: Any) -> bool:
    """True if ``name`` can be used as one path component as it is (:data:`SAFE_COMPONENT`)."""
    return isinstance(name, str) and bool(SAFE_COMPONENT.match(name))


def contained(root: Path, path: Path) -> bool:
    """True if ``path``, symbolic links resolved, lies inside ``root`` (resolved)."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # symlink loops
        return False


def read_samples(path: Path) -> pd.DataFrame:
    """A ``samples.parquet`` file as a table (parquet only, nothing unpickled).

    Raises
    ------
    BenchError
        When the file cannot be read, naming it.
    """
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pandas()
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError ...
        raise BenchError(f"{path}: cannot read: {exc}") from None


# -- conditions -----------------------------------------------------------------------------

def canonical_condition(key: str) -> str:
    """The canonical key of a condition text (``none`` -> ``clean``; parameters sorted); a
    text that does not parse is returned stripped."""
    try:
        return Condition.parse(str(key)).key
    except ValueError:
        return str(key).strip()


def condition_key(entry: dict[str, Any]) -> str:
    """A results.json condition's key: its ``key``, else rebuilt from perturbation + params."""
    if entry.get("key"):
        return str(entry["key"])
    pert = entry.get("perturbation") or "clean"
    if pert == "clean":
        return "clean"
    params = entry.get("params") or {}
    if isinstance(params, list):  # a chain: [{"name": .., params..}, ..]
        return Condition.from_spec([{p["name"]: {k: v for k, v in p.items() if k != "name"}} for p in params]).key
    return Condition.from_spec({"perturbation": pert, "params": params}).key


# -- the run --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    """One (adapter, suite) run folder: its ``results.json`` and, read when first asked for,
    its ``samples.parquet``.

    Parameters
    ----------
    root : Path
        The folder the run was found under (the run folder itself when opened alone); files
        read through :func:`run_file` must lie inside it.
    path : Path
        The run folder.
    results : dict
        The parsed ``results.json``.
    published : dict, optional
        The parsed ``publish.json`` of a published run; ``{}`` if none.

    Notes
    -----
    The accessors read the results leniently (``"?"`` or empty where a field is absent), so a
    run that was only checked for its schema string can be described; :func:`load_runs`
    returns only validated runs.
    """

    root: Path
    path: Path
    results: dict
    published: dict = field(default_factory=dict)

    def _section(self, name: str) -> dict[str, Any]:
        block = self.results.get(name)
        return block if isinstance(block, dict) else {}

    @property
    def data(self) -> dict:
        """The parsed ``results.json`` (the leaderboard's name for :attr:`results`)."""
        return self.results

    @property
    def dir(self) -> Path:
        """The run folder (the leaderboard's name for :attr:`path`)."""
        return self.path

    @property
    def rel(self) -> str:
        """The run folder relative to :attr:`root` (its own name when it is the root)."""
        rel = self.path.relative_to(self.root).as_posix()
        return rel if rel != "." else self.path.name

    @property
    def run_id(self) -> str:
        return str(self.results.get("run_id", "?"))

    @property
    def adapter(self) -> str:
        return str(self._section("adapter").get("name", "?"))

    @property
    def dataset(self) -> str:
        return str(self._section("dataset").get("name", "?"))

    @property
    def suite(self) -> str:
        return str(self._section("suite").get("name", "?"))

    @property
    def fingerprint(self) -> str | None:
        return self._section("dataset").get("fingerprint")

    @property
    def protocol(self) -> dict[str, Any]:
        """A copy of the ``protocol`` block."""
        return dict(self._section("protocol"))

    @property
    def created(self) -> str:
        return str(self.results.get("created") or "")

    @property
    def flags(self) -> dict[str, Any]:
        """The adapter's flags (``finetuned_on``, ``external`` ...); ``{}`` if none."""
        f = self._section("adapter").get("flags") or {}
        return f if isinstance(f, dict) else {}

    @property
    def tasks(self) -> list[str]:
        t = self._section("adapter").get("tasks") or []
        return [str(x) for x in t] if isinstance(t, list) else []

    @property
    def conditions(self) -> list[dict]:
        """The condition entries, as stored."""
        return list(self.results.get("conditions") or [])

    @property
    def n_failed(self) -> int:
        """Failed samples over all conditions."""
        return int(sum(int(c.get("n_failed") or 0) for c in self.conditions))

    def by_condition(self) -> dict[str, dict[str, Any]]:
        """Canonical condition key -> the condition's entry (:func:`canonical_condition`)."""
        return {canonical_condition(condition_key(c)): c for c in self.conditions}

    def metric(self, condition: str, name: str) -> dict[str, Any] | None:
        """The ``{value, ci95, n ...}`` entry of metric ``name`` under ``condition`` (any
        spelling of the key), or None."""
        cond = self.by_condition().get(canonical_condition(condition))
        if cond is None:
            return None
        return (cond.get("metrics") or {}).get(name)

    @property
    def has_samples(self) -> bool:
        return "samples" in self.__dict__ or (self.path / SAMPLES_FILE).is_file()

    @cached_property
    def samples(self) -> pd.DataFrame:
        """The per-sample table, condition keys made canonical and sample ids text.

        Raises
        ------
        BenchError
            When the file is missing, unreadable or lacks ``sample_id``, ``condition`` or
            ``status``.
        """
        p = self.path / SAMPLES_FILE
        if not p.is_file():
            raise BenchError(f"{p}: not found (per-sample values are needed for paired intervals)")
        df = read_samples(p)
        missing = {"sample_id", "condition", "status"} - set(df.columns)
        if missing:
            raise BenchError(f"{p}: missing column(s) {', '.join(sorted(missing))}")
        df = df.copy()
        keys = {k: canonical_condition(k) for k in df["condition"].unique()}
        df["condition"] = df["condition"].map(keys)
        df["sample_id"] = df["sample_id"].astype(str)
        return df

    def describe(self) -> str:
        return f"{self.adapter} ({self.path})"


def run_file(run: Run, *parts: str) -> Path | None:
    """``run.path / parts...`` if every part is a safe name (:func:`is_safe_component`) and
    the result, symbolic links resolved, stays inside both the run folder and ``run.root``;
    else None."""
    if not parts or not all(is_safe_component(p) for p in parts):
        return None
    path = run.path.joinpath(*parts)
    if not (contained(run.root, path) and contained(run.path, path)):
        return None
    return path


# -- finding runs ---------------------------------------------------------------------------

def run_folders(root: Path, max_depth: int | None = None) -> list[Path]:
    """The run folders (those holding ``results.json``) at or below ``root``.

    Parameters
    ----------
    root : Path
        Where to look; it may itself be a run folder.
    max_depth : int, optional
        How many levels below ``root`` to look (:data:`PUBLISHED_DEPTH` for the published
        layout); unlimited by default.

    Returns
    -------
    folders : list of Path
        In depth-first order, names sorted. The search does not go below a run folder (its
        ``gallery/`` holds no runs) nor into hidden folders (``publish`` writes its temporary
        copies there); symbolic links to folders are followed, each real folder once, and a
        linked run folder is listed so that a reader can refuse it.
    """
    out: list[Path] = []
    seen: set[Path] = set()

    def walk(folder: Path, depth: int) -> None:
        if (folder / RESULTS_FILE).is_file():
            out.append(folder)
            return
        real = folder.resolve()
        if real in seen or (max_depth is not None and depth >= max_depth):
            return
        seen.add(real)
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return
        for child in children:
            walk(child, depth + 1)

    walk(Path(root), 0)
    return out


def load_run(path: Path | str) -> Run:
    """The run in a folder a user named (or in the folder of its ``results.json``).

    Raises
    ------
    BenchError
        Naming the file: no ``results.json``, unreadable, or another schema than
        ``bench.results/1``.
    """
    p = Path(path).expanduser()
    if p.is_file():
        p = p.parent
    rf = p / RESULTS_FILE
    if not rf.is_file():
        raise BenchError(f"{p}: no {RESULTS_FILE} here (pass a run folder written by `bench run`)")
    try:
        results = read_json(rf)
    except ValueError as exc:
        raise BenchError(f"{rf}: cannot read results: {exc}") from None
    if not isinstance(results, dict) or results.get("schema") != RESULTS_SCHEMA:
        schema = results.get("schema") if isinstance(results, dict) else None
        raise BenchError(f"{rf}: schema is {schema!r}, expected {RESULTS_SCHEMA!r}")
    return Run(p, p, results)


def find_runs(paths: Iterable[Path | str]) -> list[Run]:
    """Every run under ``paths`` (run folders, ``results.json`` files, or folders holding
    runs at any depth), each once; :class:`BenchError` for a path that does not exist."""
    runs: list[Run] = []
    seen: set[Path] = set()
    for path in paths:
        p = Path(path).expanduser()
        if not p.exists():
            raise BenchError(f"{p}: no such file or folder")
        for d in [p.parent] if p.is_file() else run_folders(p):
            d = d.resolve()
            if d not in seen:
                seen.add(d)
                runs.append(load_run(d))
    return runs


@dataclass
class Loaded:
    """What :func:`load_runs` found: the valid runs, and the folders skipped with the reason."""

    root: Path
    runs: list[Run]
    problems: list[tuple[str, str]]  # (folder relative to root, reason)


def _open_checked(root: Path, folder: Path) -> Run:
    """The run in ``folder`` under ``root``, contained and validated; ValueError with the
    reason otherwise."""
    rj = folder / RESULTS_FILE
    if not contained(root, folder) or not contained(root, rj):
        raise ValueError("points outside the results folder (symbolic link); skipped")
    data = read_json(rj)
    errs = validate_results(data)
    if errs:
        raise ValueError("; ".join(errs[:3]) + (f" (+{len(errs) - 3} more)" if len(errs) > 3 else ""))
    return Run(root, folder.resolve(), data, _published(root, folder / PUBLISH_FILE))


def _published(root: Path, path: Path) -> dict:
    """A run's ``publish.json``; ``{}`` when absent, outside ``root`` or unreadable."""
    if not (path.is_file() and contained(root, path)):
        return {}
    try:
        meta = read_json(path)
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def load_runs(results_dir: Path | str) -> Loaded:
    """Every valid run in a results folder written by others (module docstring).

    Parameters
    ----------
    results_dir : Path or str
        The results folder, in any of the three layouts, searched :data:`PUBLISHED_DEPTH`
        levels down.

    Returns
    -------
    loaded : Loaded
        The runs (``root`` and folders resolved), and ``(folder, reason)`` for each folder
        that holds a ``results.json`` but was not read: outside the folder, unreadable, too
        large, or invalid (the first three schema problems).
    """
    root = Path(results_dir).resolve()
    if not root.is_dir():
        return Loaded(root, [], [(str(results_dir), "results folder not found")])
    runs: list[Run] = []
    problems: list[tuple[str, str]] = []
    for d in run_folders(root, PUBLISHED_DEPTH):
        try:
            runs.append(_open_checked(root, d))
        except ValueError as exc:
            problems.append((d.relative_to(root).as_posix() if d != root else ".", str(exc)))
    return Loaded(root, runs, problems)
