"""Tables printed at the end of a run (rich), values x100."""

from __future__ import annotations

from typing import Any, Sequence

from rich.console import Console
from rich.table import Table


def _cell(m: dict[str, Any] | None) -> str:
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
        try:
            from perturbations.robustness import format_robustness_table
        except ImportError:
            return
        for r in results:
            if r.get("robustness"):
                console.print(f"\nrobustness of {r['adapter']['name']}:")
                console.print(format_robustness_table(r["robustness"]), markup=False, highlight=False)
