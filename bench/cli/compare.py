"""`bench compare RUN_A RUN_B`: per metric and condition, A, B, A - B with its paired 95% interval."""

from __future__ import annotations

import argparse
import json


def run(args: argparse.Namespace) -> int:
    from bench.results.compare import compare_runs, fmt_points, print_table  # here: `bench --help` needs no pandas
    from bench.results.reader import load_run

    a, b = load_run(args.run_a), load_run(args.run_b)
    rows, notes = compare_runs(a, b, n_resamples=args.n_resamples, seed=args.seed,
                               metrics=args.metric or None, conditions=args.condition or None)
    boot = a.protocol.get("bootstrap") or {}
    n_boot = args.n_resamples if args.n_resamples is not None else boot.get("n", 1000)
    seed = args.seed if args.seed is not None else boot.get("seed", 0)
    if args.json:
        print(json.dumps({
            "a": {"path": str(a.path), "adapter": a.adapter}, "b": {"path": str(b.path), "adapter": b.adapter},
            "dataset": {"name": a.dataset, "fingerprint": a.fingerprint},
            "bootstrap": {"n": n_boot, "seed": seed, "paired": True},
            "rows": [r.to_json() for r in rows], "notes": notes,
        }, indent=2))
        return 0
    title = (f"A = {a.adapter} ({a.path})\nB = {b.adapter} ({b.path})\n"
             f"dataset {a.dataset} [{(a.fingerprint or '')[:12]}], paired bootstrap n={n_boot} seed={seed}; "
             "values x100")
    table = [[r.condition, r.metric, fmt_points(r.value_a), fmt_points(r.value_b), fmt_points(r.diff, True),
              f"[{fmt_points(r.lo, True)}, {fmt_points(r.hi, True)}]", str(r.n),
              "yes" if r.excludes_zero else "no", r.better, r.note]
             for r in rows]
    print_table(title, ["condition", "metric", "A", "B", "A-B", "95% CI (paired)", "n", "excl. 0", "better", "note"],
                table, plain=args.plain)
    for n in notes:
        print(f"note: {n}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from bench.core.validate import positive_int

    p = sub.add_parser(
        "compare", help="compare two runs: differences with paired bootstrap 95%% intervals",
        description="Compare two run folders (results.json + samples.parquet) on the same dataset "
                    "and protocol: for each condition and metric, both values, A - B and its paired "
                    "bootstrap 95% interval (the same images resampled for both runs). Refuses runs "
                    "whose dataset fingerprint or protocol differ and names the field.")
    p.add_argument("run_a", metavar="RUN_A", help="run folder (holding results.json and samples.parquet)")
    p.add_argument("run_b", metavar="RUN_B", help="run folder to compare against")
    p.add_argument("--metric", action="append", help="only this metric (repeatable; `bench ls metrics`)")
    p.add_argument("--condition", action="append", help="only this condition key (repeatable)")
    p.add_argument("--n-resamples", type=positive_int, default=None, help="bootstrap resamples (default: run A's protocol)")
    p.add_argument("--seed", type=int, default=None, help="bootstrap seed (default: run A's protocol)")
    p.add_argument("--plain", action="store_true", help="plain-text table instead of rich")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)
