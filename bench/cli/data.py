"""`bench data fetch NAME` and `bench data verify NAME --data-root DIR`: get the public
dataset releases, and check that a dataset's files are complete."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.datasets.fetch import RELEASES, fetch, manual_steps
from bench.datasets.verify import check_data_available, fix_command, verify_dataset  # noqa: F401
from bench.errors import DataMissingError
from bench.core.registry import create_dataset

FETCHABLE = (*RELEASES, "richhf", "models")


def run_fetch(args: argparse.Namespace) -> int:
    if args.name == "models":  # the paper's CSS embedding model, into the local HF cache
        from bench.metrics.explanation import fetch_models

        for info in fetch_models():
            print(f"{info['name']}: {info['path']} (revision {info['revision']})")
        return 0
    dest = Path(args.dest) if args.dest else Path("data") / args.name
    if args.name not in RELEASES:  # richhf: nothing can be downloaded automatically
        for line in manual_steps(args.name, dest):
            print(line)
        print(f"{args.name}: nothing downloaded")
        return 1
    fetch(args.name, dest, archive=Path(args.archive) if args.archive else None,
          keep_archive=args.keep_archive, force=args.force)
    steps = manual_steps(args.name, dest)
    if steps:
        print()
        for line in steps:
            print(line)
    print(f"\nThen check it: bench data verify {args.name} --data-root {dest}")
    return 0


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for key in ("annotations", "images", "ids"):
        value = getattr(args, key, None)
        if value is not None:
            opts[key] = value
    from bench.core.config_args import parse_pairs

    # values stay text as given, as with `bench score --dataset-option`
    return {**opts, **parse_pairs(args.option, "--option", value=str)}


def _generates_data(name: str) -> bool:
    """True for a dataset whose loader generates its files when absent (the demo)."""
    from bench.datasets.demo import DemoDataset
    from bench.core.registry import DATASETS

    try:
        cls = DATASETS.get(name)
    except Exception:  # unknown name: create_dataset reports it with suggestions
        return False
    return isinstance(cls, type) and issubclass(cls, DemoDataset)


def run_verify(args: argparse.Namespace) -> int:
    from bench.datasets.verify import demo_data_missing

    if _generates_data(args.name):  # verifying must never generate into the folder it checks
        missing = demo_data_missing(args.data_root)
        if missing:
            print(f"dataset        {args.name}")
            print(f"data root      {args.data_root}")
            print(f"missing        {missing}")
            print("status         INCOMPLETE (the demo is not generated there; verify never writes)")
            print(f"fix            bench run --suite demo --data-root {args.data_root}   "
                  "(generates it), or point --data-root at a generated demo")
            return 1
    try:
        dataset = create_dataset(args.name, data_root=args.data_root, split=args.split, **_options(args))
        report = verify_dataset(dataset, decode=args.decode, masks=not args.no_masks)
    except DataMissingError as exc:
        raise DataMissingError(f"{exc}\nFix: {fix_command(args.name, args.data_root)}") from None
    show = max(0, args.show)
    print(f"dataset        {report.dataset} (split {report.split})")
    print(f"data root      {report.data_root}")
    for path in report.annotation_files[:3]:
        print(f"annotations    {path}")
    print(f"records        {report.n_records}")
    print(f"images found   {report.n_found}")
    print(f"missing        {len(report.missing)}")
    for name in report.missing[:show]:
        print(f"  missing      {name}")
    print(f"unreadable     {len(report.unreadable)}  ({'full decode' if args.decode else 'header check'})")
    for name, problem in report.unreadable[:show]:
        print(f"  unreadable   {name}: {problem}")
    print(f"invalid        {len(report.invalid)}  (broken records: counted as failed in a run)")
    for sid, error in report.invalid[:show]:
        print(f"  invalid      {sid}: {error}")
    if not args.no_masks:
        print(f"bad masks      {len(report.bad_masks)} of {report.n_masks_checked}  (ground truth "
              "that does not build at its image's size: counted as failed in a run)")
        for sid, error in report.bad_masks[:show]:
            print(f"  bad mask     {sid}: {error}")
    print(f"fingerprint    {report.fingerprint}")
    broken = len(report.invalid) + len(report.bad_masks)
    if report.complete and not (args.strict and broken):
        notes = [f"{len(report.invalid)} invalid records"] * bool(report.invalid) + \
                [f"{len(report.bad_masks)} bad masks"] * bool(report.bad_masks)
        print("status         complete" + (f" ({', '.join(notes)})" if notes else ""))
        return 0
    print("status         INCOMPLETE")
    print(f"fix            {fix_command(args.name, args.data_root)}")
    return 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="fetch public datasets; verify a dataset's files")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    f = dsub.add_parser("fetch", help="download and unpack a public release (synthscars, loki); "
                        "print where to get what cannot be fetched (loki JSON, richhf)")
    f.add_argument("name", choices=FETCHABLE, help="what to fetch: " + ", ".join(FETCHABLE))
    f.add_argument("--dest", help="folder to unpack into (default: data/NAME); use it as --data-root")
    f.add_argument("--archive", help="use this already-downloaded zip instead of downloading")
    f.add_argument("--keep-archive", action="store_true", help="keep the downloaded zip after unpacking")
    f.add_argument("--force", action="store_true", help="unpack again even if a previous fetch finished")
    f.set_defaults(func=run_fetch)

    v = dsub.add_parser("verify", help="count records, found / missing / unreadable images, "
                        "ground-truth masks that do not build, fingerprint; exit 1 when incomplete; "
                        "never writes into the folder")
    v.add_argument("name", help="a registered dataset (`bench ls datasets`)")
    v.add_argument("--data-root", required=True, help="the dataset folder (or manifest file)")
    v.add_argument("--split", default="test", help="dataset split to verify (default test)")
    v.add_argument("--annotations", help="annotation file override (synthscars, loki)")
    v.add_argument("--images", help="image folder override (synthscars, loki, richhf: also parquet files)")
    v.add_argument("--ids", help="id list file: verify only that subset (loki)")
    v.add_argument("--option", action="append", metavar="KEY=VALUE", help="any other dataset option")
    v.add_argument("--decode", action="store_true", help="fully decode every image, not only its header")
    v.add_argument("--no-masks", action="store_true",
                   help="skip building every ground-truth mask at its image's size (faster)")
    v.add_argument("--strict", action="store_true", help="also exit 1 when some records are invalid")
    v.add_argument("--show", type=int, default=10, help="how many missing / unreadable files to list")
    v.set_defaults(func=run_verify)
