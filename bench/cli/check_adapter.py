"""`bench check-adapter NAME [--config K=V ...] [--n 8]`: run an adapter on a few demo samples
and check its contract (sizes, dtypes, ranges, NaN, determinism, order, identity, time)."""

from __future__ import annotations

import argparse
import json

from bench.errors import BenchError


def run(args: argparse.Namespace) -> int:
    from bench.engine.adapter_check import check_adapter, default_inputs, parse_config_pairs
    from bench.core.registry import ADAPTERS
    from bench.core.validate import check_adapter_config

    config = _own_keys(args.name, parse_config_pairs(args.config))  # BenchError names a malformed item
    if args.n < 1:
        raise BenchError("--n must be at least 1")
    ADAPTERS.entry(args.name)  # unknown names: suggestions
    check_adapter_config(args.name, config)  # unknown keys, bad values: before any sample is made
    inputs, label = default_inputs(args.n, synthetic=args.synthetic)
    report = check_adapter(args.name, config, inputs=inputs, inputs_label=label, device=args.device,
                           tolerance=args.tolerance)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.render())
    return 0 if report.ok else 1


def _own_keys(name: str, config: dict) -> dict:
    """Accept ``bench run``'s ``NAME.KEY=V`` spelling too: ``trufor.repo=/x`` is ``repo=/x`` for
    ``check-adapter trufor``; a prefix naming another adapter is an error."""
    out = {}
    for key, value in config.items():
        head, dot, rest = key.partition(".")
        if dot and head == name:
            key = rest
        elif dot:
            raise BenchError(f"--config {key}=...: check-adapter {name} takes KEY=V or {name}.KEY=V, "
                             f"not an option of adapter {head!r}")
        if key in out:
            raise BenchError(f"--config {key} is given twice; give it once")
        out[key] = value
    return out


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check-adapter",
        help="run an adapter on demo samples and check its output contract",
        description="Run an adapter on a few demo samples (or synthetic images) and check the "
        "contract the runner relies on. Exits 1 when a check fails.",
    )
    p.add_argument("name", help="registered adapter name (`bench ls adapters`)")
    p.add_argument("--config", action="append", metavar="K=V", default=[],
                   help="adapter option KEY=V or NAME.KEY=V (repeatable); values parsed as YAML: 3, true, [1,2], null")
    p.add_argument("--n", type=int, default=8, help="number of samples (default 8)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default cpu)")
    p.add_argument("--synthetic", action="store_true", help="use synthetic images instead of the demo dataset")
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="allowed heatmap/score difference between repeated calls (default 0: exact)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)
