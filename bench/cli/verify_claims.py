"""`bench verify-claims CLAIMS --runs DIR...`: is each claimed number inside the measured 95% CI?

CLAIMS is a claims YAML file or the name of one under ``results/<suite>/claims/`` (``NAME`` or
``SUITE/NAME``, e.g. ``legion_table10_robustness``: the LEGION paper's Table 10)."""

from __future__ import annotations

import argparse
import json

import math


def _fmt(x: float, scale: float, signed: bool = False) -> str:
    if not math.isfinite(x):
        return "-"
    return f"{x * scale:+.2f}" if signed else f"{x * scale:.2f}"


def run(args: argparse.Namespace) -> int:
    from bench.results.claims import load_claims, verify_claims  # here: `bench --help` needs no pandas
    from bench.results.compare import print_table
    from bench.results.reader import find_runs

    cf = load_claims(args.claims)
    runs = find_runs(args.runs) if args.runs else []
    verdicts = verify_claims(cf, runs, n_resamples=args.n_resamples, seed=args.seed)
    counts = {s: sum(v.status == s for v in verdicts) for s in ("consistent", "inconsistent", "no run")}
    if args.json:
        print(json.dumps({"claims_file": str(cf.path), "title": cf.title, "source": cf.source,
                          "n_runs": len(runs), "counts": counts,
                          "verdicts": [v.to_json() for v in verdicts]}, indent=2))
    else:
        rows = []
        for i, v in enumerate(verdicts, 1):
            c = v.claim
            signed = c.relative
            rows.append([
                c.id or str(i), c.text(),
                _fmt(v.measured, c.scale, signed),
                f"[{_fmt(v.lo, c.scale, signed)}, {_fmt(v.hi, c.scale, signed)}]" if math.isfinite(v.lo) else "-",
                v.status, f"{v.distance:.2f}" if v.status == "inconsistent" else "",
                v.runs, v.note,
            ])
        title = f"{cf.title or cf.path.name}" + (f" — {cf.source}" if cf.source else "") + \
            f"\n{len(runs)} run(s); measured values in the claims' scale (x100 unless the claim says otherwise)"
        print_table(title, ["#", "claim", "measured", "95% CI", "verdict", "off by", "run", "note"], rows,
                    plain=args.plain)
        print(f"{counts['consistent']} consistent, {counts['inconsistent']} inconsistent, "
              f"{counts['no run']} without a run")
    return 1 if args.strict and counts["inconsistent"] else 0


def _names() -> str:
    from bench.results.claims import claims_listing

    return claims_listing()


def add_parser(sub: argparse._SubParsersAction) -> None:
    from bench.core.validate import positive_int

    p = sub.add_parser(
        "verify-claims", help="check a paper's claimed numbers against measured runs",
        description="For each claim in CLAIMS (method, dataset/suite, condition, metric, value; or "
                    "'A beats B by X'), say whether the value lies inside the measured 95% interval of "
                    "a matching run. Exit 0 unless the file is malformed, or --strict and some claim is "
                    "inconsistent. Example: bench verify-claims legion_table10_robustness --runs runs/")
    p.add_argument("claims", metavar="CLAIMS",
                   help="claims YAML file, or the name of one in results/<suite>/claims/: " + _names())
    p.add_argument("--runs", nargs="+", metavar="DIR", default=[],
                   help="run folders, or folders searched recursively for results.json")
    p.add_argument("--strict", action="store_true", help="exit 1 when any claim is inconsistent")
    p.add_argument("--n-resamples", type=positive_int, default=None,
                   help="bootstrap resamples for relative claims (default: the run's protocol)")
    p.add_argument("--seed", type=int, default=None, help="bootstrap seed for relative claims")
    p.add_argument("--plain", action="store_true", help="plain-text table instead of rich")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)
