"""`bench ls [KIND] [PATTERN]`: list adapters, datasets, suites, perturbations, metrics."""

from __future__ import annotations

import argparse

from bench.errors import BenchError
from bench.core.registry import REGISTRIES


def _describe(kind: str, entry) -> str:
    obj, info = entry.obj, entry.info
    if kind == "adapters":
        tasks = ",".join(sorted(getattr(obj, "tasks", ()) or ()))
        req = getattr(obj, "requirements", {}) or {}
        need = f"gpus={req.get('num_gpus', 0)} batch={req.get('batch_size', '?')}"
        if req.get("gpu_memory_gb"):
            need += f" gpu_mem={req['gpu_memory_gb']}GB"
        flags = ",".join(k for k, v in (getattr(obj, "flags", {}) or {}).items() if v)
        return f"tasks={tasks or '-'}  {need}" + (f"  flags={flags}" if flags else "") + \
            f"  {getattr(obj, 'summary', '')}"
    if kind == "metrics":
        return f"{obj.kind:<9} task={obj.task:<8} on={obj.applies_to:<4}  {obj.description}"
    if kind == "suites":
        return f"dataset={obj.dataset} split={obj.split} v{obj.version}  {obj.description}"
    summary = info.get("summary") or getattr(obj, "summary", "") or (getattr(obj, "__doc__", "") or "").strip().split("\n")[0]
    return summary


def run(args: argparse.Namespace) -> int:
    kinds = list(REGISTRIES)
    if args.kind and args.kind not in REGISTRIES:
        singular = {k.rstrip("s"): k for k in REGISTRIES}
        if args.kind in singular:
            args.kind = singular[args.kind]
        else:
            import difflib

            close = difflib.get_close_matches(args.kind, kinds, n=2, cutoff=0.4)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise BenchError(f"unknown kind {args.kind!r}{hint} (kinds: {', '.join(kinds)})")
    pattern = args.pattern or "*"
    shown = 0
    for kind in [args.kind] if args.kind else kinds:
        reg = REGISTRIES[kind]
        entries = list(reg.entries(pattern))
        if not args.kind:
            print(f"{kind}:")
        for e in entries:
            src = "" if e.source == "built-in" else f"  [{e.source}]"
            print(f"  {e.name:<22} {_describe(kind, e)}{src}")
        shown += len(entries)
    if shown == 0:
        print(f"nothing matches {pattern!r}")
        return 1
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ls", help="list adapters, datasets, suites, perturbations, metrics")
    p.add_argument("kind", nargs="?", help="adapters | datasets | suites | perturbations | metrics")
    p.add_argument("pattern", nargs="?", help="shell-style wildcard, e.g. 'hifi*'")
    p.set_defaults(func=run)
