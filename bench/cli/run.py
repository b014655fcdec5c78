"""`bench run --suite NAME [--adapter A,B] [--data-root DIR] [--perturb PRESET] ...`"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.errors import BenchError


def parse_configs(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """``ADAPTER.KEY=VALUE`` items -> {adapter: {key: value}} (values as in
    :func:`bench.core.config_args.parse_value`: ``8``, ``true``, ``[512, 512]``, text). A key given
    twice for one adapter is an error (the later value would silently win)."""
    from bench.core.config_args import parse_value

    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        lhs, sep, value = item.partition("=")
        adapter, dot, key = lhs.strip().partition(".")
        if not sep or not dot or not adapter.strip() or not key.strip():
            raise BenchError(f"--config {item!r}: expected ADAPTER.KEY=VALUE, e.g. pal4vst.weights=/w/end2end.pt")
        adapter, key = adapter.strip(), key.strip()
        cfg = out.setdefault(adapter, {})
        if key in cfg:
            raise BenchError(f"--config {adapter}.{key} is given twice; give it once")
        cfg[key] = parse_value(value)
    return out


def split_names(values: list[str] | None) -> list[str]:
    return [n.strip() for v in values or [] for n in v.split(",") if n.strip()]


def run(args: argparse.Namespace) -> int:
    from bench.core.registry import ADAPTERS
    from bench.results.report import print_summary
    from bench.engine.runner import RunOptions, command_line, run_suite
    from bench.suites import get_suite

    suite = get_suite(args.suite)  # a bad suite file stops here, naming the file and line
    if args.metrics:
        from bench.metrics import select_metrics

        suite = suite.with_overrides(metrics=select_metrics(args.metrics, suite.metrics))
    adapters = list(dict.fromkeys(split_names(args.adapter) or suite.adapters or default_adapters()))
    for name in adapters:
        ADAPTERS.entry(name)
    opts = RunOptions(
        out_dir=Path(args.out or f"runs/{suite.name}"),
        data_root=Path(args.data_root) if args.data_root else None,
        split=args.split,
        perturb=args.perturb,
        extra_conditions=args.condition or [],
        adapter_configs=parse_configs(args.config),
        workers=args.workers,
        executor=args.executor,
        ray_address=args.address,
        phase=args.phase,
        retry_failed=args.retry_failed,
        limit=args.limit,
        device=args.device,
        progress=not args.no_progress,
        command=command_line(),
    )
    runs = run_suite(suite, adapters, opts)
    results = [r.results for r in runs if r.results]
    if results:
        print_summary(results)
        print(f"\nresults in {opts.out_dir}/<adapter>/results.json and samples.parquet")
    else:
        for r in runs:
            rep = r.infer
            print(f"{r.adapter}: {rep.n_inferred} inferred, {rep.n_cached} cached, {rep.n_failed} failed")
    from bench.results.report import finish_runs

    return finish_runs(runs, strict=args.strict, phase=args.phase)


def default_adapters() -> list[str]:
    """Every built-in adapter that runs without weights or services (``needs_setup`` unset)."""
    from bench.core.registry import ADAPTERS

    return [e.name for e in ADAPTERS.entries() if e.source == "built-in"
            and not (getattr(e.obj, "requirements", {}) or {}).get("needs_setup")]


def add_parser(sub: argparse._SubParsersAction) -> None:
    from bench.core.validate import positive_int

    p = sub.add_parser("run", help="run adapters on a suite and score them")
    p.add_argument("--suite", required=True, help="suite name (`bench ls suites`) or a suite YAML file")
    p.add_argument("--adapter", action="append", help="adapter name(s), comma-separated or repeated; "
                   "default: every built-in adapter that needs no weights")
    p.add_argument("--config", action="append", metavar="ADAPTER.KEY=VALUE",
                   help="adapter option, e.g. noise.block=16 (repeatable); the adapter must be in the run")
    p.add_argument("--data-root", help="dataset folder (see README: datasets)")
    p.add_argument("--split", help="dataset split (default: the suite's)")
    p.add_argument("--perturb", help="perturbation preset: legion | imagenet-c")
    p.add_argument("--condition", action="append",
                   help="extra condition (repeatable), e.g. 'jpeg(quality=75)' or 'resize(scale=0.5)+jpeg(quality=75)'")
    p.add_argument("--out", help="output folder (default runs/<suite>)")
    p.add_argument("--workers", type=positive_int, help="CPU worker processes (default: all cores)")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="where inference runs: local (this machine, worker processes) or ray (a Ray "
                   "cluster; the cache folder must be on storage every node sees); default local")
    p.add_argument("--address", help="Ray cluster address (with --executor ray)")
    p.add_argument("--phase", choices=["all", "infer", "score"], default="all",
                   help="all (default): infer then score; infer: only fill the prediction cache; "
                   "score: only score what the cache holds")
    p.add_argument("--retry-failed", action="store_true", help="retry samples that failed before")
    p.add_argument("--limit", type=positive_int, metavar="N",
                   help="only the first N samples, N >= 1 (smoke test; recorded in results)")
    p.add_argument("--device", default="cpu",
                   help="cpu | cuda | cuda:N | cuda:0,cuda:1 (one model process per GPU) | auto (every GPU)")
    p.add_argument("--metrics", metavar="M1,M2", help="metrics to compute, comma-separated (default: the suite's)")
    p.add_argument("--strict", action="store_true",
                   help="exit 3 when any sample failed (default: only when an adapter failed on every sample)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (they show only on a terminal anyway)")
    p.set_defaults(func=run)
