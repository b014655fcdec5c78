"""Shared helpers for the scripts in ``benchmarks/`` (not a benchmark itself).

- a work folder (default ``$TMPDIR/bench-benchmarks``) that keeps the generated images between
  runs, and a *fresh* prediction cache per measurement (``BENCH_CACHE`` is pointed inside it,
  so the user's own cache is never touched);
- the adapters the benchmarks need: ``empty`` (the built-in reference row when it is registered,
  else an equivalent defined here) and ``bench-burn`` (burns a fixed amount of CPU per image);
- ``bench-small``: a dataset of small generated images (64 x 64 by default) for the memory
  benchmark, where 10,000 demo-size images would cost gigabytes of disk and an hour to make;
- CPU-time and peak-memory readings from :mod:`resource`.

Spawned worker processes and Ray workers import this module by name (``_common``): the
benchmark scripts put their own folder on ``sys.path`` first, and spawn/Ray pass that path on.
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:  # `python benchmarks/x.py` from anywhere: the repo is importable
    sys.path.insert(1, str(REPO))

from bench.core.registry import ADAPTERS, DATASETS  # noqa: E402
from bench.core.types import FAKE, REAL, Adapter, Dataset, ModelInput, Prediction, Region, Sample  # noqa: E402

#: LEGION-style localization + detection metrics (no text metrics: the adapters here do not explain)
LOC_METRICS = ["miou", "f1"]
ALL_PIXEL_DET_METRICS = ["miou", "f1", "iou_fg", "fp_area", "det_auc", "det_acc"]


# -- folders ------------------------------------------------------------------------------

def default_work_dir() -> Path:
    return Path(tempfile.gettempdir()) / "bench-benchmarks"


# Safety net: nothing in these scripts may fall back to the user's own cache (~/.cache/bench);
# every measurement sets its own fresh BENCH_CACHE (see fresh_cache).
os.environ.setdefault("BENCH_CACHE", str(default_work_dir() / "cache" / "default"))


def fresh_cache(work: Path, tag: str) -> Path:
    """An empty folder for ``BENCH_CACHE`` (removed first if a previous run left it); sets the
    environment variable so every process started afterwards uses it."""
    path = work / "cache" / tag
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    os.environ["BENCH_CACHE"] = str(path)
    return path


def ensure_demo_images(work: Path, n: int, seed: int = 0) -> tuple[Path, dict[str, int]]:
    """Generate ``n`` demo images once (3 fake : 1 real) under ``work``; returns the folder to
    pass as ``data_root`` and the demo dataset options."""
    from bench.datasets.demo import ensure_demo

    n_real = n // 4
    n_fake = n - n_real
    root = work / f"demo-n{n}-seed{seed}"
    if not (root / "SynthScars" / "test" / "annotations" / "test.json").exists():
        t0 = time.perf_counter()
        print(f"generating {n} demo images into {root} (once) ...", file=sys.stderr, flush=True)
        ensure_demo(seed, n_fake, n_real, root=root)
        print(f"  done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return root, {"seed": seed, "n_fake": n_fake, "n_real": n_real}


def demo_suite(options: dict[str, int], perturb: str | None = "legion",
               metrics: Sequence[str] = LOC_METRICS, bootstrap_n: int = 1000):
    from bench.suites import Suite

    return Suite.from_mapping({
        "name": "bench-demo", "version": 1, "dataset": "demo", "dataset_options": dict(options),
        "needs_data_root": False, "perturb": perturb, "metrics": list(metrics),
        "protocol": {"bootstrap": {"n": bootstrap_n, "seed": 0}},
    })


def small_suite(n: int, side: int, perturb: str | None = None,
                metrics: Sequence[str] = ALL_PIXEL_DET_METRICS, bootstrap_n: int = 1000):
    from bench.suites import Suite

    return Suite.from_mapping({
        "name": "bench-small", "version": 1, "dataset": "bench-small",
        "dataset_options": {"n": n, "side": side}, "needs_data_root": True, "perturb": perturb,
        "metrics": list(metrics), "protocol": {"bootstrap": {"n": bootstrap_n, "seed": 0}},
    })


# -- adapters -----------------------------------------------------------------------------

class BenchEmptyAdapter(Adapter):
    """Same outputs as the built-in ``empty`` reference row: an all-False mask and score 0.
    Used only when ``empty`` is not registered (yet)."""

    name = "bench-empty"
    version = "1"
    tasks = frozenset({"detect", "localize"})
    requirements = {"batch_size": 8, "num_gpus": 0}

    def predict(self, batch: Sequence[ModelInput]) -> list[Prediction]:
        return [Prediction(mask=np.zeros(mi.image.shape[:2], bool), score=0.0) for mi in batch]


class BurnAdapter(Adapter):
    """CPU-bound stand-in for a model: burns ``ms`` milliseconds of this thread's CPU time per
    image (``time.thread_time``, so the work per image is fixed whatever else runs on the
    machine), then predicts an all-False mask and score 0."""

    name = "bench-burn"
    version = "1"
    tasks = frozenset({"detect", "localize"})
    requirements = {"batch_size": 4, "num_gpus": 0}

    def predict(self, batch: Sequence[ModelInput]) -> list[Prediction]:
        ms = float(self.config.get("ms", 50.0))
        out = []
        for mi in batch:
            end = time.thread_time() + ms / 1000.0
            x = 0
            while time.thread_time() < end:
                x += sum(range(2000))
            out.append(Prediction(mask=np.zeros(mi.image.shape[:2], bool), score=0.0))
        return out


class StandInGPUAdapter(Adapter):
    """A stand-in for a model on a GPU: declares one GPU; a batch of n images keeps the
    "accelerator" busy n x ``ms`` milliseconds (``time.sleep``: a GPU kernel does not hold the
    CPU), during which it makes a heatmap with real entropy from each image (its green channel,
    0-1, float32) and a score, as a model's host code runs while its kernels do. ``busy_s`` is the summed wait: the time the "accelerator" was busy."""

    name = "bench-gpu"
    version = "1"
    tasks = frozenset({"detect", "localize"})
    requirements = {"batch_size": 8, "num_gpus": 1}
    busy_s = 0.0

    def predict(self, batch: Sequence[ModelInput]) -> list[Prediction]:
        busy = float(self.config.get("ms", 20.0)) * len(batch) / 1000.0
        end = time.perf_counter() + busy
        out = []  # made while the "kernel" runs, as a model's host code overlaps its GPU work
        for mi in batch:
            heat = mi.image[..., 1] * np.float32(1 / 255)
            out.append(Prediction(heatmap=heat, score=float(mi.image[0, 0, 1]) / 255))
        time.sleep(max(0.0, end - time.perf_counter()))
        type(self).busy_s += busy
        return out


def empty_adapter_name() -> str:
    """``empty`` when the built-in reference adapter exists, else this module's equivalent."""
    return "empty" if "empty" in ADAPTERS else BenchEmptyAdapter.name


# -- small-image dataset ------------------------------------------------------------------

class SmallDataset(Dataset):
    """``n`` PNG images, ``side`` x ``side`` (default 64), seeded random pixels, in
    ``data_root/small-<side>/``; every 4th is real, the others have one triangle artifact.
    Images are written once (existing files are kept)."""

    name = "bench-small"

    def _load(self) -> list[Sample]:
        from PIL import Image

        n = int(self.options.get("n", 1000))
        side = int(self.options.get("side", 64))
        folder = Path(self.data_root) / f"small-{side}"
        folder.mkdir(parents=True, exist_ok=True)
        tri = (side * 0.2, side * 0.2, side * 0.8, side * 0.3, side * 0.4, side * 0.8)
        out = []
        for i in range(n):
            p = folder / f"img{i:06d}.png"
            if not p.exists():
                arr = np.random.default_rng(i).integers(0, 256, (side, side, 3), dtype=np.uint8)
                Image.fromarray(arr).save(p, compress_level=1)
            label = REAL if i % 4 == 0 else FAKE
            regions = (Region("a triangle", "it is odd", (tri,)),) if label == FAKE else ()
            out.append(Sample(id=p.name, image_path=p, label=label, regions=regions,
                              mask_rule="polygon" if label == FAKE else "none"))
        return out

    def annotation_files(self) -> list[Path]:
        return []


def register() -> None:
    if SmallDataset.name not in DATASETS:
        DATASETS.add(SmallDataset.name, SmallDataset, source="benchmarks")
    for cls in (BenchEmptyAdapter, BurnAdapter, StandInGPUAdapter):
        if cls.name not in ADAPTERS:
            ADAPTERS.add(cls.name, cls, source="benchmarks")


register()


# -- measurements -------------------------------------------------------------------------

@dataclass
class Timing:
    wall_s: float
    cpu_self_s: float       # user + sys of this process
    cpu_children_s: float   # user + sys of finished (waited-for) child processes
    machine_busy_cores: float | None = None  # mean number of busy cores, all processes (Linux)

    @property
    def cpu_s(self) -> float:
        return self.cpu_self_s + self.cpu_children_s

    @property
    def others_cores(self) -> float | None:
        """Mean cores used by OTHER processes meanwhile (busy - this process tree's CPU / wall):
        how contended the machine was. Only meaningful when all our CPU is in the tree."""
        if self.machine_busy_cores is None or self.wall_s <= 0:
            return None
        return max(0.0, self.machine_busy_cores - self.cpu_s / self.wall_s)


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies over all cores from /proc/stat (Linux), else None."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    return total - idle, total


class Stopwatch:
    """Wall time and CPU time (this process and its finished children) of a ``with`` block."""

    def __enter__(self) -> "Stopwatch":
        self._w = time.perf_counter()
        self._j = _cpu_jiffies()
        self._s = resource.getrusage(resource.RUSAGE_SELF)
        self._c = resource.getrusage(resource.RUSAGE_CHILDREN)
        return self

    def __exit__(self, *exc: Any) -> None:
        s = resource.getrusage(resource.RUSAGE_SELF)
        c = resource.getrusage(resource.RUSAGE_CHILDREN)
        j = _cpu_jiffies()
        busy = None
        if j is not None and self._j is not None and j[1] > self._j[1]:
            busy = (j[0] - self._j[0]) / (j[1] - self._j[1]) * (os.cpu_count() or 1)
        self.timing = Timing(
            time.perf_counter() - self._w,
            (s.ru_utime + s.ru_stime) - (self._s.ru_utime + self._s.ru_stime),
            (c.ru_utime + c.ru_stime) - (self._c.ru_utime + self._c.ru_stime),
            busy,
        )


CHILD_MARK = "BENCH-RESULT "


def run_child(script: Path | str, args: Sequence[str], env: dict[str, str] | None = None) -> tuple[Timing, dict]:
    """Run ``python script args...`` in a fresh interpreter (cold imports, own memory, like a
    user's command) and time it from outside: wall time and the CPU time of the whole process
    tree (children and their waited-for workers). The child reports figures by printing one
    line ``BENCH-RESULT {json}``; its other output is passed through to stderr."""
    import json
    import subprocess

    with Stopwatch() as sw:
        proc = subprocess.run([sys.executable, str(script), *args], env={**os.environ, **(env or {})},
                              stdout=subprocess.PIPE, text=True)
    result: dict = {}
    for line in proc.stdout.splitlines():
        if line.startswith(CHILD_MARK):
            result = json.loads(line[len(CHILD_MARK):])
        else:
            print(line, file=sys.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"child {' '.join(args)} failed with exit code {proc.returncode}")
    return sw.timing, result


def report_to_parent(result: dict) -> None:
    import json

    print(CHILD_MARK + json.dumps(result), flush=True)


def proc_status_kib(pid: int | str, field: str) -> int | None:
    """A ``kB`` field of ``/proc/<pid>/status`` (Linux), e.g. VmHWM (peak RSS since the process's
    last exec) or VmRSS; None when unavailable."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class WorkerPeakMonitor:
    """Polls ``VmHWM`` of this process's multiprocessing workers (descendants whose command line
    holds ``spawn_main``) every ``interval`` seconds, keeping each one's highest value.

    Why not ``getrusage(RUSAGE_CHILDREN).ru_maxrss``: Linux keeps a process's high-water mark
    across fork + exec, so any child forked while the parent is large (a worker started late, a
    ``git`` subprocess for the environment record) reports the PARENT's size. ``VmHWM`` is reset
    by exec. Linux only (reads ``/proc``); elsewhere it reports nothing.
    """

    def __init__(self, interval: float = 0.1):
        import threading

        self.interval = interval
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "WorkerPeakMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _descendants(self) -> list[int]:
        parent: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                        stat = f.read()
                    parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
        me, out, frontier = os.getpid(), [], [os.getpid()]
        while frontier:
            p = frontier.pop()
            kids = [c for c, pp in parent.items() if pp == p and c != me]
            out += kids
            frontier += kids
        return out

    def _sample(self) -> None:
        for pid in self._descendants():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if b"spawn_main" not in cmd:
                continue
            hwm = proc_status_kib(pid, "VmHWM")
            if hwm is not None:
                self.peaks[pid] = max(self.peaks.get(pid, 0), hwm)

    def _run(self) -> None:
        if not os.path.isdir("/proc"):
            return
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)


def peak_rss_mib() -> tuple[float, float]:
    """(this process, largest finished child) peak resident set size in MiB (Linux: KiB units)."""
    s = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    c = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return s / 1024.0, c / 1024.0


def contention(t: Timing) -> str:
    """A short note on how busy the machine was during a measurement."""
    if t.machine_busy_cores is None:
        return ""
    others = t.others_cores
    return (f"[machine busy {t.machine_busy_cores:.2f} of {os.cpu_count()} cores"
            + (f", other processes {others:.2f}]" if others is not None else "]"))


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def code_version() -> str:
    """``git describe``-like note of the harness code measured: commit and changed files."""
    import subprocess

    try:
        sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no",
                                "--", "bench", "perturbations", "adapters"],
                               capture_output=True, text=True, timeout=10).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    changed = [line[3:] for line in dirty if line.strip()]
    return sha + (f" + uncommitted changes in {', '.join(changed)}" if changed else "")


def header(title: str, **facts: Any) -> None:
    print(f"== {title}")
    print(f"   code: {code_version()}")
    print(f"   cores: {os.cpu_count()}  load average at start: {load_average()}  python: "
          f"{sys.version.split()[0]}")
    for k, v in facts.items():
        print(f"   {k}: {v}")


def run_demo_harness(root: Path, options: dict, workers: int, out: Path, gallery: int = 24,
                     perturb: str | None = "legion", metrics: Sequence[str] = LOC_METRICS,
                     adapter: str | None = None, executor: str = "local",
                     adapter_config: dict | None = None) -> dict:
    """``run_suite`` on the demo images in ``root``; returns its wall time, the run's timing
    block and the per-condition metric values. The cache is ``$BENCH_CACHE/predictions``."""
    from bench.engine.runner import RunOptions, run_suite

    name = adapter or empty_adapter_name()
    t0 = time.perf_counter()
    suite = demo_suite(options, perturb, metrics)
    opts = RunOptions(out_dir=out, data_root=root, workers=workers, progress=False,
                      gallery_size=gallery, executor=executor,
                      adapter_configs={name: dict(adapter_config or {})})
    (run,) = run_suite(suite, [name], opts)
    seconds = time.perf_counter() - t0
    values = {c["key"]: {m: v["value"] for m, v in c["metrics"].items()} for c in run.results["conditions"]}
    return {"seconds": seconds, "timing": run.results["timing"], "metrics": values,
            "adapter": run.results["adapter"]["name"]}
