"""`bench cache ls|du|gc`: show and trim the prediction cache."""

from __future__ import annotations

import argparse
import re

from bench.errors import BenchError


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``45m``, ``90s`` -> seconds."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if not m:
        raise BenchError(f"--older-than {text!r}: use a number with s, m, h or d (e.g. 30d)")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def run(args: argparse.Namespace) -> int:
    from bench.engine.cache import PredictionCache

    # an existing cache only: a mistyped --cache-dir is an error, never a new empty cache
    cache = PredictionCache(args.cache_dir or None, create=False)
    if args.action in ("ls", "du"):
        rows = cache.summary()
        total = sum(r[3] for r in rows)
        if args.action == "ls":
            print(f"{'adapter':<28} {'status':<8} {'entries':>8} {'size':>10}")
            for adapter, status, n, b in rows:
                print(f"{adapter:<28} {status:<8} {n:>8} {_human(b):>10}")
        print(f"{cache.root}: {sum(r[2] for r in rows)} entries, {_human(total)}")
        return 0
    older = parse_age(args.older_than) if args.older_than else None
    if not (args.adapter or older is not None or args.failed or args.all):
        raise BenchError("bench cache gc: say what to remove (--adapter, --older-than, --failed or --all)")
    n, b = cache.gc(adapter=args.adapter, older_than_s=older, failed_only=args.failed, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {n} entries, {_human(b)}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="show and trim the prediction cache")
    p.add_argument("action", choices=["ls", "du", "gc"],
                   help="ls: entries per adapter; du: disk use; gc: remove entries (see the gc options)")
    p.add_argument("--cache-dir", help="prediction cache folder (default: $BENCH_CACHE/predictions)")
    p.add_argument("--adapter", help="gc: only this adapter (wildcards allowed)")
    p.add_argument("--older-than", help="gc: entries not used for this long, e.g. 30d")
    p.add_argument("--failed", action="store_true", help="gc: only recorded failures")
    p.add_argument("--all", action="store_true", help="gc: everything")
    p.add_argument("--dry-run", action="store_true", help="gc: say what would be removed, remove nothing")
    p.set_defaults(func=run)
