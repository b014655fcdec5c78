"""Where does `run_suite` spend its time? A cProfile breakdown by harness stage.

Runs ``run_suite`` IN ONE PROCESS (``workers=1``, so cProfile sees every stage; the pool's
start-up is not included, see the note printed at the end) on N demo images with the `empty`
adapter and the LEGION grid, on a fresh cache, then a second identical run on the same cache.
For each run it prints the time of each stage (cumulative: a stage includes what it calls;
indented lines are parts of the line above), then the top functions by own time.

    python benchmarks/profile_harness.py                # 100 images
    python benchmarks/profile_harness.py --n 1000 --top 30
    python benchmarks/profile_harness.py --save /tmp/run.prof   # for snakeviz / pstats
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

#: (label, indent, file suffix, function name[, only when called from this function]):
#: cumulative time of that function
STAGES: list[tuple] = [
    ("run_suite (total)", 0, "bench/engine/runner.py", "run_suite"),
    ("dataset: open + load annotations", 1, "bench/engine/plan.py", "open_dataset"),
    ("infer phase", 1, "bench/engine/runner.py", "_infer"),
    ("image sha256 (memoised in SQLite)", 2, "bench/engine/cache.py", "image_sha256"),
    ("cache.status (stat calls)", 2, "bench/engine/cache.py", "status"),
    ("decode images", 2, "bench/core/types.py", "load_image", "model_inputs"),
    ("perturbations (apply_condition)", 2, "perturbations/__init__.py", "apply_condition"),
    ("adapter predict + validate + cache write (flush)", 2, "bench/engine/inference.py", "flush"),
    ("cache.put", 3, "bench/engine/cache.py", "put"),
    ("np.savez_compressed", 4, "numpy/lib/_npyio_impl.py", "savez_compressed"),
    ("os.fsync", 4, "~", "<built-in method posix.fsync>"),
    ("SQLite index insert", 4, "bench/engine/cache.py", "_index"),
    ("score phase (rows)", 1, "bench/engine/scoring.py", "score_jobs"),
    ("cache.touch (SQLite UPDATE)", 2, "bench/engine/cache.py", "touch"),
    ("cache.get (np.load)", 2, "bench/engine/cache.py", "get", "fetch"),
    ("ground-truth masks", 2, "bench/core/types.py", "load_mask"),
    ("confusion counts", 2, "bench/metrics/localization.py", "confusion_counts"),
    ("metric columns + aggregates", 1, "bench/engine/scoring.py", "add_metric_columns"),
    ("per-condition aggregates", 1, "bench/engine/scoring.py", "aggregate"),
    ("bootstrap intervals", 2, "bench/metrics/stats.py", "bootstrap_mean_ci"),
    ("bootstrap intervals (ROC-AUC etc.)", 2, "bench/metrics/stats.py", "bootstrap_stat_ci"),
    ("results.json (build_results)", 1, "bench/results/writer.py", "build_results"),
    ("dataset fingerprint", 2, "bench/core/types.py", "fingerprint"),
    ("results.json + samples.parquet", 1, "bench/results/writer.py", "write_run"),
    ("gallery", 1, "bench/engine/gallery.py", "write_gallery"),
    ("cache.get (np.load)", 2, "bench/engine/cache.py", "get", "write_gallery"),
    ("decode images", 2, "bench/core/types.py", "load_image", "write_gallery"),
    ("imports during the run", 1, "<frozen importlib._bootstrap>", "_find_and_load"),
]


def stage_times(stats: pstats.Stats) -> list[tuple[str, int, float, int]]:
    rows = []
    for label, indent, fsuffix, func, *via in STAGES:
        total, calls = 0.0, 0
        for (fname, _line, fn), (_cc, nc, _tt, ct, callers) in stats.stats.items():  # type: ignore[attr-defined]
            if fn == func and fname.endswith(fsuffix):
                if not via:
                    total += ct
                    calls += nc
                    continue
                for (_cf, _cl, cfn), (_ccc, cnc, _ctt, cct) in callers.items():
                    if cfn == via[0]:
                        total += cct
                        calls += cnc
        rows.append((label, indent, total, calls))
    return rows


def profile_run(suite, root: Path, out: Path, name: str) -> tuple[pstats.Stats, float, dict]:
    from bench.engine.runner import RunOptions, run_suite

    opts = RunOptions(out_dir=out, data_root=root, workers=1, progress=False)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    (run,) = run_suite(suite, [name], opts)
    prof.disable()
    return pstats.Stats(prof), time.perf_counter() - t0, run.results["timing"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100, help="demo images (default 100)")
    ap.add_argument("--perturb", default="legion", help="condition preset ('none' = clean only)")
    ap.add_argument("--top", type=int, default=15, help="functions to list by own time")
    ap.add_argument("--save", type=Path, help="write the first run's profile here (pstats format)")
    ap.add_argument("--work", type=Path, default=_common.default_work_dir(),
                    help="folder for generated images and temporary caches (default: %(default)s)")
    args = ap.parse_args()

    root, options = _common.ensure_demo_images(args.work, args.n)
    _common.fresh_cache(args.work, "profile")
    suite = _common.demo_suite(options, None if args.perturb == "none" else args.perturb)
    name = _common.empty_adapter_name()
    _common.header("cProfile of run_suite (1 process)", images=f"{args.n} demo images", adapter=name,
                   conditions=args.perturb)
    for label in ("first run (fresh cache)", "second run (cached)"):
        stats, wall, timing = profile_run(suite, root, args.work / "out" / "profile", name)
        if args.save and label.startswith("first"):
            stats.dump_stats(str(args.save))
        print(f"\n-- {label}: {wall:.2f} s wall under the profiler; timing block {timing}")
        for stage, indent, seconds, calls in stage_times(stats):
            if calls:
                print(f"   {'  ' * indent}{stage:<{56 - 2 * indent}s} {seconds:8.2f} s  {calls:7d} calls")
        buf = io.StringIO()
        stats.stream = buf  # type: ignore[attr-defined]
        stats.sort_stats("tottime").print_stats(args.top)
        print("   top functions by own time:")
        lines = buf.getvalue().splitlines()
        start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
        for line in lines[start:]:
            if line.strip():
                print("   " + line)
    print("\nnote: with workers > 1 the pool's processes are spawned once per run and each imports"
          " bench.engine.inference and bench.engine.scoring (not seen here); see bench_harness_overhead.py.")


if __name__ == "__main__":
    main()
