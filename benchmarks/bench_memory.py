"""Peak memory of `run_suite` for N1 vs N2 samples (default 1,000 vs 10,000): is it flat?

Each size runs in its own fresh Python process. Its peak RSS is ``VmHWM`` from
``/proc/self/status`` (= ``getrusage(RUSAGE_SELF).ru_maxrss`` but reset at exec, so not inflated
by the launching process); each pool worker's peak RSS is its ``VmHWM``, polled every 0.1 s
while the run goes on (``RUSAGE_CHILDREN.ru_maxrss`` is printed for reference but is misleading
on Linux: a child forked while the main process is large inherits its high-water mark). The
RSS right after the imports is printed as the baseline. Linux only for the worker figures.

Images are SMALL (64 x 64 PNGs of random pixels, the ``bench-small`` dataset of
``benchmarks/_common.py``; every 4th real, the others with one polygon artifact): 10,000
demo-size images would take gigabytes and about an hour to generate. Per-image pixel memory is
therefore tiny here and what is measured is the harness's per-sample bookkeeping (sample
records, keys, result rows, bootstrap arrays). Adapter ``empty``, clean condition only by
default (``--perturb legion`` for the grid: 10x the items), metrics miou, f1, iou_fg, fp_area,
det_auc, det_acc with 1000 bootstrap resamples, fresh cache per size. Target (issue 7): flat,
N2 within 1.2x of N1.

    python benchmarks/bench_memory.py                          # 1,000 vs 10,000 (a few minutes)
    python benchmarks/bench_memory.py --sizes 500 2000         # quicker
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def child(n: int, side: int, perturb: str | None, workers: int, work: Path, gallery: int) -> dict:
    from bench.engine.runner import RunOptions, run_suite

    base = (_common.proc_status_kib("self", "VmRSS") or 0) / 1024.0
    suite = _common.small_suite(n, side, perturb)
    opts = RunOptions(out_dir=work / "out" / f"memory-{n}", data_root=work, workers=workers,
                      progress=False, gallery_size=gallery)
    t0 = time.perf_counter()
    with _common.WorkerPeakMonitor() as mon:
        (run,) = run_suite(suite, [_common.empty_adapter_name()], opts)
    seconds = time.perf_counter() - t0
    hwm = _common.proc_status_kib("self", "VmHWM")
    main_mib = hwm / 1024.0 if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"n": n, "items": run.infer.n_items, "seconds": seconds, "baseline_mib": base,
            "main_peak_mib": main_mib, "worker_peaks_mib": sorted(v / 1024.0 for v in mon.peaks.values()),
            "children_maxrss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0,
            "timing": run.results["timing"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs=2, default=[1000, 10000], metavar=("N1", "N2"),
                    help="the two sample counts (default: 1000 10000)")
    ap.add_argument("--side", type=int, default=64, help="image side in pixels (default 64)")
    ap.add_argument("--perturb", default="none", help="condition preset, e.g. legion (default: clean only)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes")
    ap.add_argument("--gallery", type=int, default=24, help="gallery size (24 = `bench run`'s default)")
    ap.add_argument("--work", type=Path, default=_common.default_work_dir(),
                    help="folder for generated images and temporary caches (default: %(default)s)")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    perturb = None if args.perturb == "none" else args.perturb

    if args.child:
        _common.report_to_parent(child(args.child, args.side, perturb, args.workers, args.work, args.gallery))
        return

    n1, n2 = args.sizes
    _common.header("peak memory: run_suite on N1 vs N2 samples",
                   images=f"{args.side} x {args.side} PNGs (small on purpose: see the docstring), "
                          f"3 fake : 1 real, in {args.work / f'small-{args.side}'}",
                   conditions=perturb or "clean", adapter=_common.empty_adapter_name(),
                   workers=args.workers)
    from bench.core.registry import create_dataset

    t0 = time.perf_counter()
    create_dataset("bench-small", data_root=args.work, n=max(n1, n2), side=args.side).samples()  # write once
    print(f"   images ready in {time.perf_counter() - t0:.1f} s")
    results = {}
    for n in (n1, n2):
        cache = _common.fresh_cache(args.work, f"memory-{n}")
        t, res = _common.run_child(__file__, ["--child", str(n), "--side", str(args.side), "--perturb",
                                              args.perturb, "--workers", str(args.workers), "--work",
                                              str(args.work), "--gallery", str(args.gallery)],
                                   env={"BENCH_CACHE": str(cache)})
        results[n] = res
        res["worker_peak_mib"] = max(res["worker_peaks_mib"], default=float("nan"))
        print(f"{n:>7d} samples ({res['items']} items): main peak {res['main_peak_mib']:7.1f} MiB "
              f"(after imports {res['baseline_mib']:.1f})  worker peak {res['worker_peak_mib']:7.1f} MiB "
              f"(each: {', '.join(f'{v:.0f}' for v in res['worker_peaks_mib'])})   {t.wall_s:.1f} s wall, "
              f"run_suite {res['seconds']:.1f} s {res['timing']}")
    a, b = results[n1], results[n2]
    print(f"ratio {n2} / {n1}: main process {b['main_peak_mib'] / a['main_peak_mib']:.2f}x, "
          f"workers {b['worker_peak_mib'] / a['worker_peak_mib']:.2f}x   (target: within 1.2x)")
    print(f"(for reference, getrusage(RUSAGE_CHILDREN).ru_maxrss: {a['children_maxrss_mib']:.0f} / "
          f"{b['children_maxrss_mib']:.0f} MiB; on Linux it is inflated by children forked from the large "
          "main process, so workers are measured by VmHWM)")
    grow = (b["main_peak_mib"] - a["main_peak_mib"]) / (n2 - n1) * 1024
    print(f"main-process growth: {grow:.1f} KiB per extra sample")


if __name__ == "__main__":
    main()
