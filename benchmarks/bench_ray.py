"""Ray executor with 2 workers vs the local executor with 1 worker, on a CPU-bound adapter.

Adapter ``bench-burn`` (``benchmarks/_common.py``): burns a fixed ``--ms`` milliseconds of CPU
per image (measured with ``time.thread_time``, so the work is the same whatever else runs),
then predicts an empty mask. Alternatively ``--adapter ela`` / ``noise`` (the built-in
training-free forensic detectors) or any other registered adapter. N demo images, clean
condition (``--perturb legion`` for the grid), fresh cache for each side, each side in a fresh
Python process:

- *local, 1 worker*: ``run_suite(..., workers=1)`` (runs in the main process);
- *Ray, 2 workers*: a local Ray instance with 2 CPUs (``ray.init`` timed separately), then
  ``run_suite(..., executor="ray", workers=2)``.

Printed: whole-process wall time, time inside ``run_suite``, the infer phase alone, the speed-up
of the infer phase, and whether both give the same metric values.

    python benchmarks/bench_ray.py                       # 100 images x 100 ms
    python benchmarks/bench_ray.py --n 200 --ms 200
    python benchmarks/bench_ray.py --adapter ela
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def child(args, executor: str) -> dict:
    root, options = _common.ensure_demo_images(args.work, args.n, args.seed)
    config = json.loads(args.config) if args.config else {}
    if args.adapter == _common.BurnAdapter.name:
        config.setdefault("ms", args.ms)
    ray_init_s = None
    workers = 1
    if executor == "ray":
        from bench.engine.executors.ray import ensure_ray

        workers = 2
        t0 = time.perf_counter()
        ensure_ray(None, workers)  # the same call run_suite makes; timed on its own
        ray_init_s = time.perf_counter() - t0
    perturb = None if args.perturb == "none" else args.perturb
    res = _common.run_demo_harness(root, options, workers, args.work / "out" / f"ray-{executor}", args.gallery,
                                   perturb, _common.ALL_PIXEL_DET_METRICS, adapter=args.adapter,
                                   executor=executor, adapter_config=config)
    if executor == "ray":
        import ray

        ray.shutdown()
    res["ray_init_s"] = ray_init_s
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100, help="demo images (default 100)")
    ap.add_argument("--adapter", default=_common.BurnAdapter.name, help="adapter (default: %(default)s)")
    ap.add_argument("--ms", type=float, default=100.0, help="CPU milliseconds per image for bench-burn (default 100)")
    ap.add_argument("--config", help="adapter config as JSON, e.g. '{\"ms\": 50}'")
    ap.add_argument("--perturb", default="none", help="condition preset, e.g. legion (default: clean only)")
    ap.add_argument("--gallery", type=int, default=0, help="gallery size (default 0: not part of this comparison)")
    ap.add_argument("--work", type=Path, default=_common.default_work_dir(),
                    help="folder for generated images and temporary caches (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="demo generator seed")
    ap.add_argument("--child", choices=["local", "ray"], help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        _common.report_to_parent(child(args, args.child))
        return

    root, options = _common.ensure_demo_images(args.work, args.n, args.seed)
    _common.header("Ray (2 workers) vs local executor (1 worker), CPU-bound adapter",
                   images=f"{args.n} demo images", adapter=args.adapter,
                   work_per_image=f"{args.ms:g} ms CPU" if args.adapter == _common.BurnAdapter.name else "the adapter's",
                   conditions=args.perturb if args.perturb != "none" else "clean")
    passthrough = [a for a in sys.argv[1:]]
    out = {}
    for executor in ("local", "ray"):
        cache = _common.fresh_cache(args.work, f"ray-{executor}")
        t, res = _common.run_child(__file__, [*passthrough, "--child", executor], env={"BENCH_CACHE": str(cache)})
        out[executor] = (t, res)
        init = f"ray.init {res['ray_init_s']:.2f} s, " if res["ray_init_s"] is not None else ""
        busy = "" if t.machine_busy_cores is None else f" [machine busy {t.machine_busy_cores:.2f} of {os.cpu_count()} cores]"
        print(f"{executor:5s}: process {t.wall_s:7.2f} s wall; {init}run_suite {res['seconds']:7.2f} s; "
              f"infer phase {res['timing']['infer_s']:7.2f} s; score phase {res['timing']['score_s']:.2f} s   "
              f"({res['timing']['n_inferred']} inferred){busy}")
    (tl, rl), (tr, rr) = out["local"], out["ray"]
    print(f"same metric values: {rl['metrics'] == rr['metrics']}")
    print(f"speed-up Ray 2 workers over local 1 worker: infer phase {rl['timing']['infer_s'] / rr['timing']['infer_s']:.2f}x, "
          f"run_suite {rl['seconds'] / rr['seconds']:.2f}x, whole process incl. ray.init "
          f"{tl.wall_s / tr.wall_s:.2f}x   (ideal on 2 idle cores: 2x)")


if __name__ == "__main__":
    main()
