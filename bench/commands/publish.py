"""`bench publish RUN_DIR [--results DIR] [--allow-failed]`: validate a run and copy it into results/."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.publish import publish


def run(args: argparse.Namespace) -> int:
    dest = publish(Path(args.run_dir), Path(args.results), allow_failed=args.allow_failed)
    print(f"published {args.run_dir} -> {dest}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "publish",
        help="validate a run folder and copy it into the results folder the leaderboard reads",
        description="Validate a run folder (results.json schema, fingerprints, every condition in "
        "samples.parquet, no failed samples unless --allow-failed) and copy it atomically to "
        "RESULTS/<suite>/<adapter>__<run_id>/. Duplicates are refused with the reason.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by `bench run` (holds results.json)")
    p.add_argument("--results", default="results", metavar="DIR", help="results folder (default: results)")
    p.add_argument("--allow-failed", action="store_true",
                   help="publish even with failed samples; the leaderboard flags the row")
    p.set_defaults(func=run)
