"""`bench perturb IMAGE --perturbation NAME --param K=V ... --out FILE.png`: write exactly what a
model saw under one condition, losslessly.

The image is decoded as a run decodes it (``bench.io.imageio.decode_image``) and perturbed with
``bench.perturbations.apply_condition`` with the run's seeding: the random stream comes from
(--seed, --sample-id, condition key). ``--seed`` defaults to 0 (the built-in suites' seed);
``--sample-id`` defaults to the image's file name — pass the sample id a run recorded
(``samples.parquet``) to reproduce that run's noise exactly. ``--condition`` takes a whole
condition key instead, e.g. ``resize(scale=0.5)+jpeg(quality=75)``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.core.conditions import Condition, Step, parse_value
from bench.core.config_args import parse_pairs
from bench.errors import BenchError


def _condition(args: argparse.Namespace) -> Condition:
    if args.condition is not None:
        if args.perturbation or args.param:
            raise BenchError("give either --condition or --perturbation/--param, not both")
        try:
            return Condition.parse(args.condition)
        except ValueError as exc:
            raise BenchError(f"--condition {args.condition!r}: {exc}") from None
    if not args.perturbation:
        raise BenchError("give --perturbation NAME (with --param K=V ...) or --condition KEY")
    # values as in a condition key (numbers, else text), so --param gives the same condition
    params = parse_pairs(args.param, "--param", value=lambda v: parse_value(v.strip()), unique=True)
    return Condition((Step.make(args.perturbation, params),))


def run(args: argparse.Namespace) -> int:
    from bench.io.imageio import decode_image, write_png
    from bench.perturbations import apply_condition, canonical_condition

    out = Path(args.out)
    if out.is_dir():
        raise BenchError(f"--out {out}: is a folder; give a .png file name, e.g. {out / 'seen.png'}")
    if out.suffix.lower() != ".png":
        raise BenchError(f"--out {out}: the output is written losslessly as PNG; give a .png file name")
    if not out.parent.is_dir():
        raise BenchError(f"--out {out}: folder {out.parent} does not exist")
    try:
        cond = canonical_condition(_condition(args))  # unknown names raise UnknownNameError (a BenchError)
    except ValueError as exc:
        raise BenchError(str(exc)) from None
    image = decode_image(Path(args.image))  # SampleError (a BenchError) names the file
    sample_id = args.sample_id if args.sample_id is not None else Path(args.image).name
    try:
        result = apply_condition(image, cond, suite_seed=args.seed, sample_id=sample_id)
    except ValueError as exc:
        raise BenchError(f"{args.image}: {exc}") from None
    write_png(out, result)
    print(f"wrote {out} ({result.shape[1]}x{result.shape[0]}, condition {cond.key}, "
          f"seed {args.seed}, sample id {sample_id!r})")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "perturb",
        help="write one image under one condition as PNG (what a model saw)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("image", help="input image file")
    p.add_argument("--perturbation", "-p", help="a registered perturbation (`bench ls perturbations`)")
    p.add_argument("--param", action="append", metavar="K=V", help="a parameter, e.g. quality=50 (repeatable)")
    p.add_argument("--condition", "-c", help="a whole condition key, e.g. 'resize(scale=0.5)+jpeg(quality=75)'")
    p.add_argument("--seed", type=int, default=0, help="suite seed (default 0)")
    p.add_argument("--sample-id", help="sample id used for seeding (default: the image's file name)")
    p.add_argument("--out", "-o", required=True, help="output .png file")
    p.set_defaults(func=run)
