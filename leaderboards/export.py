"""``bench leaderboard --export DIR``: the board as a self-contained static site.

Writes ``index.html`` (the leaderboard tables of every suite, the reported numbers with their
verdicts, what is known about each adapter, and the robustness charts), ``leaderboard.csv``
(every measured cell, all conditions, with intervals), ``reported.csv`` (every claim with its
verdict) and ``leaderboard.md`` (the tables as Markdown, for a README). The tables are the
app's own (:mod:`bench.leaderboards.board`, :mod:`bench.leaderboards.reported`) in its default
view (condition ``clean``, every metric), so the numbers are the board's.

No server and no network: the page has no script and loads nothing. The charts are the app's
Altair specs rendered to SVG by Vega itself (``vl-convert-python``, which bundles Vega) and
inlined, so they need no JavaScript either. Text from results is HTML-escaped. The folder is
written atomically: built beside ``DIR`` and renamed into place; an existing ``DIR`` is
replaced only when it is an earlier export (it holds :data:`MARKER`).
"""

from __future__ import annotations

import html
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from bench.errors import BenchError
from bench.leaderboards import board as B
from bench.leaderboards import reported as R
from bench.leaderboards import tables as T

#: The file that marks a folder as an export (so ``--export`` may replace it).
MARKER = ".bench-leaderboard-export"
#: The default view the export reproduces.
CONDITIONS = ("clean",)

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1300px;
padding:0 1rem;color:#222}
h1{margin-bottom:.2rem} h2{margin-top:2.5rem;border-bottom:1px solid #ddd} h3{margin-top:1.5rem}
.meta,.caption{color:#666;font-size:.9rem}
table{border-collapse:collapse;margin:.6rem 0 1.2rem;font-size:.85rem}
th,td{border:1px solid #ddd;padding:.3rem .5rem;text-align:right;white-space:nowrap}
th{background:#f6f6f6} td:nth-child(-n+2){text-align:left}
table.reported td,table.cards td{text-align:left;white-space:normal}
.badge{background:#fff3cd;padding:.1rem .4rem;border-radius:.3rem;font-size:.8rem}
figure{margin:1rem 0} figcaption{font-weight:600}
"""


@dataclass
class Exported:
    """What was written: the folder and its files, and how many suites, results and claims."""

    out: Path
    files: list[str]
    n_suites: int
    n_runs: int
    n_claims_files: int


def _say(progress: Callable[[str], None] | None, msg: str) -> None:
    if progress is not None:
        progress(msg)


def _table_html(display: pd.DataFrame, css_class: str = "board") -> str:
    """A frame of text (MultiIndex columns allowed) as an escaped HTML table, no index."""
    return display.to_html(index=False, escape=True, na_rep=B.NA_TEXT, classes=css_class, border=0)


def _cards_html(cards: pd.DataFrame) -> str:
    """The adapters table with links (only plain http(s) addresses, already checked)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cards.columns)
    rows = []
    for _, r in cards.iterrows():
        cells = []
        for c in cards.columns:
            v = r[c]
            if c in ("paper link", "code") and isinstance(v, str) and B.safe_url(v):
                cells.append(f'<td><a href="{html.escape(v, quote=True)}" rel="noopener noreferrer">'
                             f'{html.escape("paper" if c == "paper link" else "code")}</a></td>')
            else:
                cells.append(f"<td>{html.escape('' if v is None or pd.isna(v) else str(v))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="cards"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _chart_svg(chart: Any) -> str:
    """An Altair chart as inline SVG, drawn by Vega (vl-convert); a one-line error if missing."""
    try:
        import vl_convert as vlc
    except ImportError:
        raise BenchError("--export draws the robustness charts with vl-convert-python, which is not installed: "
                         "pip install vl-convert-python (or pip install -e '.[test]')") from None
    svg = vlc.vegalite_to_svg(chart.to_dict())
    return svg[svg.index("<svg"):] if "<svg" in svg else svg


def build(results_dir: Path | str,
          progress: Callable[[str], None] | None = None) -> tuple[dict[str, str | bytes], tuple[int, int, int]]:
    """The export's files (name -> content) for the results folder, without writing them, and
    (suites, results, claims files)."""
    from bench.results.reader import load_runs

    loaded = load_runs(results_dir)
    reps, claim_problems = R.load_reported(loaded.root, loaded.runs)
    runs = loaded.runs
    _say(progress, f"export: {len(runs)} result(s), {len(reps)} claims file(s) from {loaded.root}")
    long = T.long_table(runs)
    suites = sorted(set(long["suite"]) | {r.suite for r in reps})
    metrics = T.order_metrics(set(long["metric"]))
    failed = B.failed_counts(runs)
    updated = B.last_updated(runs) or "never"
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")

    body: list[str] = [f"<h1>Leaderboard</h1><p class='meta'>Last updated {html.escape(updated)} · "
                       f"{len(runs)} result(s) · exported {html.escape(generated)} by "
                       "<code>bench leaderboard --export</code>. Values x100 with 95% bootstrap intervals "
                       "[lo, hi]; n: images each metric averages over; failed: samples that failed; n/a: a task "
                       "the adapter does not do. Runs that differ in data or in a protocol choice are in separate "
                       "tables and never ranked together; reported numbers are never ranked.</p>"]
    md: list[str] = [f"Leaderboard (values x100; condition clean; last updated {updated}). "
                     "95% intervals in `leaderboard.csv`.", ""]
    csv_parts: list[pd.DataFrame] = []
    rep_parts: list[pd.DataFrame] = []
    for suite in suites:
        _say(progress, f"export: suite {suite}")
        sdf_all = long[long["suite"] == suite]
        sdf = sdf_all[sdf_all["condition"].isin(CONDITIONS)]
        body.append(f"<h2>Suite {html.escape(suite)}</h2>")
        md += [f"### Suite {suite}", ""]
        groups = B.suite_groups(sdf, metrics, list(CONDITIONS), sort_metric=metrics[0] if metrics else None,
                                with_ci=True, failed=failed) if not sdf.empty else []
        for g in groups:
            body.append(f"<h3>{html.escape(g.title)}</h3>")
            for tb in g.tables:
                if tb.title:
                    body.append(f"<p class='caption'><span class='badge'>{html.escape(tb.title)}</span> ranked only "
                                "among themselves.</p>")
                body.append(_table_html(tb.display))
                plain = B.board_table(tb.long, metrics, list(CONDITIONS), sort_metric=tb.sort_metric, with_ci=False,
                                      failed=failed, title=tb.title)
                md += [f"{g.title}" + (f" — {tb.title}" if tb.title else ""), "",
                       B.markdown_table(plain.flat_display()), ""]
        for g_all in sorted(dict.fromkeys(sdf_all["group"])):
            gdf = sdf_all[sdf_all["group"] == g_all]
            csv_parts.append(gdf.assign(group_label=B.group_title(g_all), column=gdf["metric"]))
        for rep in (r for r in reps if r.suite == suite):
            lines = R.reported_lines(rep)
            c = R.counts(rep)
            body.append(f"<h3>Reported in {html.escape(rep.source)}</h3><p class='caption'>"
                        f"{html.escape(rep.title)} · {html.escape(rep.rel)} · not ranked; verdicts of "
                        f"<code>bench verify-claims</code>: {c['consistent']} consistent, {c['inconsistent']} "
                        f"inconsistent, {c['no run']} without a run.</p>")
            body.append(_table_html(R.reported_table(R.reported_lines(rep, conditions=list(CONDITIONS))),
                                    "reported"))
            rep_parts.append(lines.assign(suite=suite, claims_file=rep.rel))
            shown = R.reported_table(R.reported_lines(rep, conditions=list(CONDITIONS)))
            if not shown.empty:
                flat = shown.copy()
                flat.columns = [" ".join(x for x in c if x) for c in flat.columns]
                md += [f"Reported in {rep.source} (not ranked; verdicts of `bench verify-claims`)", "",
                       B.markdown_table(flat.drop(columns=["run", "note"])), ""]
        cards = B.cards_table([r for r in runs if r.suite == suite])
        if not cards.empty:
            body.append("<h3>Adapters</h3>" + _cards_html(cards))
        suite_runs = [r for r in runs if r.suite == suite]
        body += _robustness_html(suite_runs, progress)
    if loaded.problems or claim_problems:
        items = "".join(f"<li>{html.escape(a)}: {html.escape(b)}</li>" for a, b in [*loaded.problems, *claim_problems])
        body.append(f"<h2>Skipped</h2><ul>{items}</ul>")
    page = ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'; "
            "img-src data:\">"
            f"<title>Leaderboard</title><style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n")
    files: dict[str, str | bytes] = {
        "index.html": page,
        "leaderboard.md": "\n".join(md).rstrip() + "\n",
        "leaderboard.csv": T.export_csv(csv_parts) if csv_parts else b"",
        "reported.csv": T.csv_safe(pd.concat(rep_parts)).to_csv(index=False).encode("utf-8") if rep_parts else b"",
        MARKER: f"bench leaderboard --export, {generated}\n",
    }
    return files, (len(suites), len(runs), len(reps))


def _robustness_html(runs: Sequence[Any], progress: Callable[[str], None] | None) -> list[str]:
    """The Robustness page's default view of a suite: its main dataset group, the default
    metric variant, every run; one SVG chart per perturbation family."""
    perturbed = [r for r in runs if B.perturbed(r)]
    if not perturbed:
        return []
    group = B.robustness_groups(runs)[0]
    group_runs = [r for r in runs if T.dataset_key(r) == group]
    variants = T.metric_variants(group_runs)
    choice = B.default_variant(group_runs, variants)
    if choice is None:
        return []
    metric, variant = variants[choice]
    chosen = T.in_variant(group_runs, metric, variant)
    curves = B.run_curves(chosen, metric, variant, B.run_labels(chosen))
    if curves.empty:
        return []
    out = [f"<h3>Robustness: {html.escape(choice)} x100, {html.escape(B.group_title(group))}</h3>"]
    for fam in sorted(curves["perturbation"].unique()):
        _say(progress, f"export: chart {fam}")
        svg = _chart_svg(B.robustness_chart(curves[curves["perturbation"] == fam], fam, metric).properties(width=900))
        out.append(f"<figure><figcaption>{html.escape(fam)}</figcaption>{svg}</figure>")
    return out


def export_site(results_dir: Path | str, out: Path | str,
                progress: Callable[[str], None] | None = None) -> Exported:
    """Build the site for ``results_dir`` and write it to ``out`` atomically (module docstring)."""
    out = Path(out)
    if out.exists() and not (out.is_dir() and (out / MARKER).is_file()):
        raise BenchError(f"--export {out}: exists and is not an earlier leaderboard export (no {MARKER}); "
                         "choose a new folder or remove it")
    files, (n_suites, n_runs, n_claims) = build(results_dir, progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for name, content in files.items():
            data = content.encode("utf-8") if isinstance(content, str) else content
            (tmp / name).write_bytes(data)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.rename(out, old)
        os.rename(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    written = sorted(n for n in files if n != MARKER)
    _say(progress, f"export: wrote {', '.join(written)} to {out}")
    return Exported(out, written, n_suites, n_runs, n_claims)


def stderr_progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
