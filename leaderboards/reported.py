"""Numbers papers report, on the board beside the numbers measured here.

A claims file (format ``bench.claims/1``, :mod:`bench.results.claims`) under
``<results>/<suite>/claims/*.yaml`` is board content: each claim becomes one *reported* line
of that suite, with the verdict ``bench verify-claims`` gives it against the board's runs —
computed by :func:`bench.results.claims.verify_claims` itself, never re-implemented here.
Reported lines are never ranked with measured rows: they live in their own tables, marked
"reported in <source>".

Pure pandas (no Streamlit): the app and the static export share it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from bench.results.claims import ClaimsFile, Verdict, claims_files, load_claims, verify_claims
from bench.results.reader import contained

#: Columns of a reported table (one line per claim).
REPORTED_COLUMNS = ["method", "reported in", "where", "condition", "metric", "reported", "measured",
                    "95% CI", "verdict", "run", "note"]


@dataclass
class Reported:
    """One claims file found under the results folder: its suite folder, the parsed file and
    the verdict of each claim against the board's runs."""

    suite: str
    rel: str                 # the file, relative to the results folder
    claims: ClaimsFile
    verdicts: list[Verdict]

    @property
    def title(self) -> str:
        return self.claims.title or Path(self.rel).stem

    @property
    def source(self) -> str:
        return self.claims.source or self.title


def load_reported(root: Path | str, runs: Sequence[Any]) -> tuple[list[Reported], list[tuple[str, str]]]:
    """Every claims file under ``root`` with its verdicts against ``runs`` (reader runs), and
    ``(file, reason)`` for files that were skipped (outside the folder, malformed)."""
    root = Path(root).resolve()
    out: list[Reported] = []
    problems: list[tuple[str, str]] = []
    for f in claims_files(root):
        rel = f.relative_to(root).as_posix() if f.is_relative_to(root) else str(f)
        if not contained(root, f):
            problems.append((rel, "points outside the results folder (symbolic link); skipped"))
            continue
        try:
            cf = load_claims(f)
        except Exception as exc:  # ClaimsFileError (malformed) or unreadable: listed, not shown
            problems.append((rel, " ".join(str(exc).split())[:300]))
            continue
        out.append(Reported(f.parent.parent.name, rel, cf, verify_claims(cf, runs)))
    return out, problems


def _fmt(x: float, scale: float, signed: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return ""
    return f"{x * scale:+.2f}" if signed else f"{x * scale:.2f}"


def verdict_text(v: Verdict) -> str:
    """``consistent`` / ``inconsistent: off by 3.21 (claim above the interval)`` / ``no run``."""
    if v.status == "inconsistent":
        side = " (claim above the interval)" if "above" in v.note else \
            " (claim below the interval)" if "below" in v.note else ""
        return f"inconsistent: off by {v.distance:.2f}{side}"
    return v.status


def reported_lines(rep: Reported, *, conditions: Sequence[str] | None = None,
                   metrics: Sequence[str] | None = None, search: str = "") -> pd.DataFrame:
    """One line per claim of ``rep`` (filtered like the leaderboard: conditions, metrics, a
    case-insensitive search in the method name): what the paper reports, what was measured
    here with its 95% interval (both in the claim's scale, x100 for papers), the verdict and
    the run it was measured on. The long form: the CSV download and the export's file."""
    rows = []
    s = search.strip().lower()
    for v in rep.verdicts:
        c = v.claim
        if conditions is not None and c.condition not in set(conditions):
            continue
        if metrics is not None and c.metric not in set(metrics):
            continue
        if s and s not in c.method.lower() and s not in (c.beats or "").lower():
            continue
        where = "/".join(x for x in (c.dataset, c.suite) if x) or "any dataset"
        rel = c.relative
        reported = (f"beats {c.beats}" + (f" by {c.by:.2f}" if c.by is not None else "")) if rel else f"{c.value:.2f}"
        ci = f"[{_fmt(v.lo, c.scale, rel)}, {_fmt(v.hi, c.scale, rel)}]" if math.isfinite(v.lo) else ""
        # "no run of X" repeats the verdict; other notes (the claim's, the verifier's) are kept
        vnote = "" if v.note.startswith("no run of ") else v.note
        rows.append({"method": c.method, "reported in": rep.source, "where": where, "condition": c.condition,
                     "metric": c.metric, "reported": reported, "measured": _fmt(v.measured, c.scale, rel),
                     "95% CI": ci, "verdict": verdict_text(v), "run": v.runs,
                     "note": "; ".join(x for x in (c.note, vnote) if x)})
    return pd.DataFrame(rows, columns=REPORTED_COLUMNS)


def reported_table(lines: pd.DataFrame) -> pd.DataFrame:
    """The lines of :func:`reported_lines` as the board shows them: a row per (method, where,
    condition), per metric the reported value, the measured one with its interval, and the
    verdict (two-level columns: metric, then what); the run and the notes last."""
    keys = ["method", "where", "condition"]
    if lines.empty:
        return pd.DataFrame(columns=pd.MultiIndex.from_tuples([("", k) for k in keys]))
    metrics = list(dict.fromkeys(lines["metric"]))
    out = []
    for key, g in lines.groupby(keys, sort=False):
        row = {("", k): v for k, v in zip(keys, key)}
        for m in metrics:
            gm = g[g["metric"] == m]
            if gm.empty:
                continue
            x = gm.iloc[0]
            row[(m, "reported")] = x["reported"]
            row[(m, "measured [95% CI]")] = f"{x['measured']} {x['95% CI']}".strip()
            row[(m, "verdict")] = x["verdict"]
        row[("", "run")] = "; ".join(dict.fromkeys(r for r in g["run"] if r))
        row[("", "note")] = "; ".join(dict.fromkeys(n for n in g["note"] if n))
        out.append(row)
    cols = [("", k) for k in keys] + [(m, f) for m in metrics for f in ("reported", "measured [95% CI]", "verdict")] \
        + [("", "run"), ("", "note")]
    df = pd.DataFrame(out)
    df = df.reindex(columns=pd.MultiIndex.from_tuples(cols)).fillna("")
    return df


def counts(rep: Reported) -> dict[str, int]:
    """How many claims of the file are consistent, inconsistent, without a run."""
    return {s: sum(v.status == s for v in rep.verdicts) for s in ("consistent", "inconsistent", "no run")}
