"""Accelerator busy fraction: does the harness keep a GPU-bound model busy?

A stand-in GPU adapter (``bench-gpu``, in ``_common.py``: declares one GPU, waits ``--ms`` per
image with the CPU free, returns a heatmap made from the image) runs the demo images under the
LEGION grid (10 conditions) with a fresh cache. Busy fraction = (items x ms) / infer time, where
infer time is the run's own ``timing.infer_s`` (planning, worker start-up, decode, perturbation,
predict and cache writes: everything before scoring). Each N runs as a fresh process.

    python benchmarks/bench_gpu_pipeline.py                 # N = 5, 20, 100 ms; 260 images
    python benchmarks/bench_gpu_pipeline.py --ms 20 --n 100
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=260, help="demo images (default 260, the demo suite's size)")
    ap.add_argument("--ms", type=float, nargs="+", default=[5.0, 20.0, 100.0], help="model ms per image")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes")
    ap.add_argument("--perturb", default="legion", help="condition preset ('none' = clean only)")
    ap.add_argument("--work", type=Path, default=_common.default_work_dir(),
                    help="folder for generated images and temporary caches (default: %(default)s)")
    ap.add_argument("--child", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    perturb = None if args.perturb == "none" else args.perturb
    root, options = _common.ensure_demo_images(args.work, args.n)
    if args.child is not None:
        out = args.work / "out" / f"gpu-{args.child:g}"
        res = _common.run_demo_harness(root, options, args.workers, out, 0, perturb, adapter="bench-gpu",
                                       adapter_config={"ms": args.child})
        _common.report_to_parent(res)
        return
    _common.header("accelerator busy fraction (stand-in GPU adapter)",
                   images=f"{args.n} demo images", conditions=perturb or "clean", workers=args.workers)
    print(f"{'ms/image':>8} {'items':>6} {'model s':>8} {'infer s':>8} {'busy':>6}  machine")
    for ms in args.ms:
        cache = _common.fresh_cache(args.work, f"gpu-{ms:g}")
        t, res = _common.run_child(__file__, ["--n", str(args.n), "--workers", str(args.workers), "--work",
                                              str(args.work), "--perturb", args.perturb, "--child", str(ms)],
                                   env={"BENCH_CACHE": str(cache)})
        items = res["timing"]["n_inferred"]
        model_s = items * ms / 1000.0
        infer_s = res["timing"]["infer_s"]
        print(f"{ms:8g} {items:6d} {model_s:8.1f} {infer_s:8.1f} {100 * model_s / infer_s:5.1f}%  {_common.contention(t)}")


if __name__ == "__main__":
    main()
