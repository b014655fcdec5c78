"""Cached re-run: a second identical `run_suite` as a fraction of the first.

The LEGION grid (10 conditions) with the `empty` adapter on N demo images, twice, on one fresh
prediction cache (``BENCH_CACHE`` in a temp folder). Each run is a fresh Python process (what a
user does: type `bench run` twice), timed from outside; the time spent inside ``run_suite`` and
the run's own timing block (infer_s, score_s, n_inferred, n_calls) are printed too. The second
run must infer nothing (n_inferred = 0, n_calls = 0) and, writing to the same folder as a user's
second `bench run` does, it finds that folder already holds the identical run and reuses it
(``bench.engine.run_memo``). Target (issue 15): second run under 1% of the first.

    python benchmarks/bench_cached_rerun.py             # 200 images
    python benchmarks/bench_cached_rerun.py --n 1000    # the issue's size
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="demo images (default 200; the issue: 1000)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes")
    ap.add_argument("--gallery", type=int, default=24, help="gallery size (24 = `bench run`'s default; 0 = none)")
    ap.add_argument("--perturb", default="legion", help="condition preset ('none' = clean only)")
    ap.add_argument("--work", type=Path, default=_common.default_work_dir(),
                    help="folder for generated images and temporary caches (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="demo generator seed")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out-tag", default="rerun", help=argparse.SUPPRESS)
    args = ap.parse_args()
    perturb = None if args.perturb == "none" else args.perturb

    root, options = _common.ensure_demo_images(args.work, args.n, args.seed)
    if args.child:
        out = args.work / "out" / args.out_tag
        _common.report_to_parent(_common.run_demo_harness(root, options, args.workers, out, args.gallery, perturb))
        return

    _common.header("cached re-run: a second identical run_suite on the same cache",
                   images=f"{args.n} demo images ({options['n_fake']} fake, {options['n_real']} real)",
                   conditions=perturb or "clean", workers=args.workers, gallery=args.gallery)
    cache = _common.fresh_cache(args.work, "rerun")
    shutil.rmtree(args.work / "out" / "rerun", ignore_errors=True)  # the first run starts from nothing
    common = ["--n", str(args.n), "--workers", str(args.workers), "--work", str(args.work), "--seed",
              str(args.seed), "--gallery", str(args.gallery), "--perturb", args.perturb, "--child"]
    env = {"BENCH_CACHE": str(cache)}
    runs = []
    for i, tag in enumerate(("first", "second")):
        t, res = _common.run_child(__file__, [*common, "--out-tag", "rerun"], env=env)
        runs.append((t, res))
        print(f"{tag:6s} run: {t.wall_s:8.2f} s wall  {t.cpu_s:8.2f} s CPU (process tree) {_common.contention(t)}\n"
              f"            inside run_suite {res['seconds']:7.2f} s   {res['timing']}")
    (t1, r1), (t2, r2) = runs
    same = r1["metrics"] == r2["metrics"]
    print(f"second run: n_inferred={r2['timing']['n_inferred']} n_calls={r2['timing']['n_calls']} "
          f"n_cached={r2['timing']['n_cached']}; metric values identical to the first run: {same}")
    print(f"second / first: {100 * t2.wall_s / t1.wall_s:.1f}% wall, {100 * t2.cpu_s / t1.cpu_s:.1f}% CPU "
          f"(whole process); {100 * r2['seconds'] / r1['seconds']:.1f}% inside run_suite   (target: under 1%)")


if __name__ == "__main__":
    main()
