"""What a run prints at its end: the tables (rich, values x100), then on stderr the failures per
adapter with their top reasons, the metrics that could not be computed, and the exit status.

One implementation for ``bench run`` and ``bench score``: :func:`summarize_failures` turns a
per-sample table into a :class:`FailureSummary`, :func:`print_failures` and
:func:`print_not_computed` say what went wrong, :func:`exit_code` applies the policy below
(README "Exit codes"):

====  =====================================================================================
0     everything ran (some samples may have failed: they are counted, listed and recorded)
2     bad input: a wrong option, a missing dataset or folder, an unknown name (``BenchError``)
3     an adapter failed on every sample (or was stopped early), or, with ``--strict``, any
      sample failed
130   interrupted (Ctrl-C); finished work is kept and a re-run resumes
====  =====================================================================================
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any, Iterable, Sequence

from rich.console import Console
from rich.table import Table

#: Exit statuses (README "Exit codes"; a test checks the two agree).
EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_FAILED = 3
EXIT_INTERRUPTED = 130

#: How many distinct failure reasons are printed per adapter.
TOP_REASONS = 3

#: Row errors of (sample, condition) pairs the infer phase has not produced yet.
UNINFERRED_MARKERS = ("no prediction for condition", "not inferred:")


def _cell(m: dict[str, Any] | None) -> str:
    if m and m.get("status") == "not_computed":
        return "n/a (not computed)"
    if not m or m.get("value") is None:
        return "-"
    lo, hi = (m.get("ci95") or [None, None])
    if lo is None or hi is None:
        return f"{100 * m['value']:.1f}"
    return f"{100 * m['value']:.2f}\n[dim][{100 * lo:.1f},{100 * hi:.1f}][/dim]"


def summary_table(results: Sequence[dict[str, Any]], condition: str = "clean") -> Table:
    """One row per adapter, one column per metric (value x100 with its 95% interval)."""
    metrics: list[str] = []
    for r in results:
        for c in r["conditions"]:
            if c["key"] == condition:
                metrics += [m for m in c["metrics"] if m not in metrics]
    suite = results[0]["suite"]["name"] if results else ""
    table = Table(title=f"{suite} — {condition} (x100, [95% CI])")
    table.add_column("adapter", no_wrap=True)
    table.show_lines = True
    for m in metrics:
        table.add_column(m, justify="right", no_wrap=True)
    table.add_column("n (failed)", justify="right")
    for r in results:
        cond = next((c for c in r["conditions"] if c["key"] == condition), None)
        if cond is None:
            continue
        table.add_row(r["adapter"]["name"], *[_cell(cond["metrics"].get(m)) for m in metrics],
                      f"{cond['n']} ({cond['n_failed']})")
    return table


def print_summary(results: Sequence[dict[str, Any]], console: Console | None = None) -> None:
    console = console or Console(width=max(150, Console().width))
    if not results:
        return
    console.print(summary_table(results))
    if any(len(r["conditions"]) > 1 for r in results):
        from bench.results.robustness import format_robustness_table

        for r in results:
            if r.get("robustness"):
                console.print(f"\nrobustness of {r['adapter']['name']}:")
                console.print(format_robustness_table(r["robustness"]), markup=False, highlight=False)


# -- failures -----------------------------------------------------------------------------

@dataclass
class FailureSummary:
    """Failures of one adapter's run (or one scored folder): counts and the commonest reasons."""

    adapter: str
    n_rows: int = 0                # (sample, condition) pairs scored
    n_failed: int = 0              # of them failed
    #: (reason, count), commonest first; a reason met once is the row's own error text
    reasons: list[tuple[str, int]] = field(default_factory=list)
    n_reasons: int = 0             # distinct reasons in all
    n_uninferred: int = 0          # failed because the infer phase has not run for them
    n_reused: int = 0              # failures recorded in the prediction cache by an earlier run
    stopped: str | None = None     # why the adapter was stopped early, if it was

    @property
    def all_failed(self) -> bool:
        """Nothing usable: every pair failed, or the adapter was stopped."""
        return bool(self.stopped) or (self.n_rows > 0 and self.n_failed == self.n_rows)


def failure_reason(error: str, sample_id: str | None = None, file_name: str | None = None) -> str:
    """The reason of a row's error with the sample's own name taken out, so that one problem
    hitting many samples is counted once: a leading ``<image path>: `` is dropped and other
    mentions of the sample become ``<sample>``. Messages that name another file (a
    prediction file and line) keep it."""
    text = " ".join(str(error).split())
    names = [n for n in {str(sample_id or ""), str(file_name or "")} if n]
    stems = [n.rsplit(".", 1)[0] for n in names if "." in n and len(n.rsplit(".", 1)[0]) >= 3]
    for _ in range(4):  # "img1.png [clean]: /data/img1.png: problem" -> "problem"
        head, sep, rest = text.partition(": ")
        if not sep or not any(n in head for n in names) or "predictions.jsonl" in head \
                or "explanation.json" in head or "mask.png" in head:
            break
        text = rest
    for n in sorted({n for n in names + stems if len(n) >= 3}, key=len, reverse=True):  # "1" is no name
        text = re.sub(rf"(?<![\w.-]){re.escape(n)}(?![\w-])", "<sample>", text)
    return text


def summarize_failures(adapter: str, df: Any = None, *, stopped: str | None = None,
                       n_reused: int = 0, top: int = TOP_REASONS) -> FailureSummary:
    """Count the failed rows of a per-sample table (columns ``status``, ``error``, and
    ``sample_id`` / ``file_name`` when present) and group them by :func:`failure_reason`."""
    out = FailureSummary(adapter, stopped=stopped, n_reused=int(n_reused))
    if df is None or len(df) == 0:
        return out
    out.n_rows = int(len(df))
    failed = df[df["status"] == "failed"]
    out.n_failed = int(len(failed))
    if not out.n_failed:
        return out
    errors = failed["error"].fillna("(no reason recorded)").astype(str).tolist()
    ids = failed["sample_id"].astype(str).tolist() if "sample_id" in failed else [None] * len(errors)
    names = failed["file_name"].astype(str).tolist() if "file_name" in failed else [None] * len(errors)
    keys = [failure_reason(e, i, n) for e, i, n in zip(errors, ids, names)]
    counts = Counter(keys)
    first = {}
    for k, e in zip(keys, errors):
        first.setdefault(k, " ".join(e.split()))
    out.reasons = [(first[k] if n == 1 else k, n) for k, n in counts.most_common(top)]
    out.n_reasons = len(counts)
    out.n_uninferred = sum(any(m in e for m in UNINFERRED_MARKERS) for e in errors)
    return out


def _err(file: IO[str] | None) -> IO[str]:
    return file if file is not None else sys.stderr


def print_failures(summaries: Iterable[FailureSummary], file: IO[str] | None = None,
                   phase: str = "all") -> None:
    """Per adapter with failures: the count, the top reasons, reused cache failures and
    uninferred samples (stderr)."""
    f = _err(file)
    for s in summaries:
        if s.stopped:
            print(f"bench: {s.adapter}: stopped early: {s.stopped}", file=f)
        if s.n_failed:
            every = " (every one)" if s.n_failed == s.n_rows else ""
            print(f"bench: {s.adapter}: {s.n_failed} of {s.n_rows} samples failed{every}; top reasons:", file=f)
            for reason, n in s.reasons:
                print(f"  {n:>6} x {reason}", file=f)
            if s.n_reasons > len(s.reasons):
                print(f"  ... and {s.n_reasons - len(s.reasons)} other reason(s): see the error column "
                      "of samples.parquet", file=f)
        if s.n_reused:
            print(f"bench: {s.adapter}: {s.n_reused} failures reused from the cache; "
                  "--retry-failed re-runs them", file=f)
        if s.n_uninferred:
            hint = ("--phase score only reads the cache: run the infer phase first "
                    "(--phase infer, or no --phase)" if phase == "score"
                    else "run the infer phase for them (--phase infer, or no --phase)")
            print(f"bench: {s.adapter}: {s.n_uninferred} samples not inferred yet; {hint}", file=f)


def print_not_computed(results: Iterable[dict[str, Any]], file: IO[str] | None = None) -> int:
    """One warning line per (adapter, metric) not computed; returns how many were printed."""
    from bench.results.publish import not_computed_metrics

    f = _err(file)
    n = 0
    for r in results:
        adapter = (r.get("adapter") or {}).get("name", "?")
        for name, e in not_computed_metrics(r).items():
            fix = f"; fix: {e['fix']}" if e.get("fix") else ""
            print(f"bench: warning: {adapter}: metric {name} not computed: {e['reason']}{fix}", file=f)
            n += 1
    return n


def exit_code(summaries: Iterable[FailureSummary], strict: bool = False) -> int:
    """:data:`EXIT_FAILED` when an adapter failed on every sample (or was stopped), or with
    ``strict`` when any sample failed; else :data:`EXIT_OK`."""
    summaries = list(summaries)
    if any(s.all_failed for s in summaries):
        return EXIT_FAILED
    if strict and any(s.n_failed or s.stopped for s in summaries):
        return EXIT_FAILED
    return EXIT_OK


def finish(summaries: Sequence[FailureSummary], results: Sequence[dict[str, Any]] = (), *,
           strict: bool = False, phase: str = "all", file: IO[str] | None = None) -> int:
    """The end of ``bench run`` / ``bench score``: failures, not-computed metrics, and the
    exit status (:func:`exit_code`), printed after the tables."""
    print_failures(summaries, file=file, phase=phase)
    print_not_computed(results, file=file)
    code = exit_code(summaries, strict)
    if code == EXIT_FAILED:
        why = [s.adapter for s in summaries if s.all_failed]
        msg = (f"{', '.join(why)} failed on every sample" if why
               else "some samples failed and --strict is set")
        print(f"bench: exit status {EXIT_FAILED}: {msg}", file=_err(file))
    return code


def finish_runs(runs: Sequence[Any], *, strict: bool = False, phase: str = "all",
                file: IO[str] | None = None) -> int:
    """:func:`finish` for the :class:`bench.engine.runner.AdapterRun` list of ``bench run`` (their
    ``failures`` summaries and results); returns the exit status."""
    summaries = [getattr(r, "failures", None) or FailureSummary(r.adapter, stopped=r.infer.stopped)
                 for r in runs]
    return finish(summaries, [r.results for r in runs if getattr(r, "results", None)],
                  strict=strict, phase=phase, file=file)
