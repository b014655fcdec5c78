"""`bench publish RUN_DIR [--results DIR] [--allow-failed] [--allow-missing-metrics]`: validate a run
and copy it into results/."""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from bench.results.publish import publish  # here: `bench --help` needs no pandas

    dest = publish(Path(args.run_dir), Path(args.results), allow_failed=args.allow_failed,
                   allow_missing_metrics=args.allow_missing_metrics)
    print(f"published {args.run_dir} -> {dest}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "publish",
        help="validate a run folder and copy it into the results folder the leaderboard reads",
        description="Validate a run folder (results.json schema, fingerprints, every condition in "
        "samples.parquet, no failed samples unless --allow-failed, no metric recorded as not computed "
        "unless --allow-missing-metrics) and copy it atomically to "
        "RESULTS/<suite>/<adapter>__<run_id>/. Duplicates are refused with the reason.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by `bench run` (holds results.json)")
    p.add_argument("--results", default="results", metavar="DIR", help="results folder (default: results)")
    p.add_argument("--allow-failed", action="store_true",
                   help="publish even with failed samples; the leaderboard flags the row")
    p.add_argument("--allow-missing-metrics", action="store_true",
                   help="publish even when a metric was not computed (e.g. its model was not in the local "
                   "cache); the leaderboard shows it as n/a (not computed), never as 0")
    p.set_defaults(func=run)
