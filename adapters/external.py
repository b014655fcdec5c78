"""External adapters: run a model's own inference command in the model's own environment.

Some models cannot share a Python process with the harness (LEGION needs torch 1.13 /
transformers 4.28 / mmcv 1.4.7). For those, each call to ``predict(batch)``:

1. writes the batch's (already perturbed) images losslessly as PNG under file names the harness
   chooses (``000000.png``, ``000001.png`` ...);
2. splits them into command runs. ``gpu_mode = "shared"`` (the generic adapter's default): one
   run sees every configured GPU. ``gpu_mode = "split"`` (LEGION): with N GPUs the images are
   split into N disjoint groups and N single-process runs go concurrently, each with
   ``CUDA_VISIBLE_DEVICES=<its GPU>`` and its own port — no distributed launcher, no image
   processed twice. Every run gets its own ``images/`` and ``outputs/`` folders under
   ``run-NNN/``, with the mapping to sample ids in ``run-NNN/manifest.json`` *beside* (not inside)
   ``images/``, because some scripts treat every file in the input folder as an image;
3. runs the configured command template (a list of arguments) with its placeholders filled,
   in the configured working directory, with the configured environment additions, waits at
   most ``timeout_s`` seconds, then kills the command's whole process group;
4. parses each run's output folder, one sample at a time.

Failed samples (the contract with the runner)
---------------------------------------------
``predict`` always returns one Prediction per input, in order. A sample that failed is returned
as a Prediction whose ``extras["error"]`` holds the message; the runner records it as a failed
sample and goes on. Outputs that a command wrote completely before crashing are kept.

One bad image fails only itself (``retry_alone``, default on): when a run leaves some of its
images without a usable output (it crashed, or exited 0 but skipped them), those images are run
again — the first of them in the order the script processes them (``os.listdir`` of the input
folder) alone, the others together — until each image either has an output or failed in a run
of its own; its message is then that run's exit status and stderr tail. Two guards keep a
failure that is not about one image (wrong environment, out of memory at model load) from
costing a model start per image: no retry after a timeout, and when three runs in a row have
produced nothing while nothing in the batch has worked yet, the remaining images fail with that
run's message. ``extras["external_runs"]`` tells in how many runs a sample took part.

Command template placeholders (each argument is formatted with ``str.format``):
``{python}`` (``config["python"]``, default: this interpreter; a list, e.g.
``["conda", "run", "-n", "legion", "python"]``, is spliced in when the argument is exactly
``{python}``), ``{input_dir}``, ``{output_dir}``, ``{workdir}`` (their common parent),
``{checkpoint}``, ``{repo}``, ``{gpus}`` (the GPUs this run sees, comma-separated),
``{num_gpus}``, ``{port}`` (a free TCP port on 127.0.0.1, distinct between concurrent runs), and
any other scalar config value by its key.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

from bench.adapters import register_adapter
from bench.adapters._util import AdapterLoadError, as_bool, failed_prediction
from bench.errors import BenchError, SampleError
from bench.core.types import Adapter, ModelInput, Prediction

log = logging.getLogger(__name__)

#: Characters of stdout/stderr kept for error messages.
TAIL_CHARS = 4000


def cuda_indices(device: str) -> list[str]:
    """``"cuda:0,cuda:1"`` -> ``["0", "1"]``; a device without explicit CUDA indices -> []."""
    out = []
    for d in str(device or "").split(","):
        d = d.strip()
        if d.startswith("cuda:") and d[5:].isdigit():
            out.append(d[5:])
    return out

@dataclass
class CommandResult:
    """What one run of the external command did."""

    argv: list[str]
    returncode: int | None  # None when killed on timeout
    timed_out: bool
    seconds: float
    stdout_tail: str
    stderr_tail: str

    @property
    def ok(self) -> bool:
        return not self.timed_out and self.returncode == 0

    def describe(self) -> str:
        """One paragraph for a failed sample: what happened plus the output's tail."""
        if self.timed_out:
            head = f"external command timed out after {self.seconds:.0f} s and was killed"
        elif self.returncode and self.returncode < 0:
            head = f"external command was killed by signal {-self.returncode}"
        else:
            head = f"external command exited with status {self.returncode}"
        tail = self.stderr_tail.strip() or self.stdout_tail.strip()
        return head + (f"; last output:\n{tail}" if tail else "; it printed nothing")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for torch.distributed's MASTER_PORT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, chars: int = TAIL_CHARS) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - chars * 4))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return text[-chars:]


def run_command(
    argv: list[str], *, cwd: Path | None, env: dict[str, str], timeout_s: float, log_dir: Path,
    on_start: Callable[[subprocess.Popen], None] | None = None,
) -> CommandResult:
    """Run ``argv`` in its own process group with stdout/stderr to files in ``log_dir``.

    On timeout the whole group gets SIGTERM, then SIGKILL 10 s later (a model script may have
    started data-loader workers or a distributed launcher's children). ``on_start`` receives the
    process (so a caller running several at once can kill them all when interrupted).
    """
    out_path, err_path = log_dir / "stdout.txt", log_dir / "stderr.txt"
    t0 = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        try:
            proc = subprocess.Popen(
                argv, cwd=str(cwd) if cwd else None, env=env, stdout=out, stderr=err,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        except OSError as exc:
            return CommandResult(argv, 127, False, 0.0, "", f"cannot start {argv[0]!r}: {exc}")
        if on_start is not None:
            on_start(proc)
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
        finally:
            if proc.poll() is None:  # interrupted (KeyboardInterrupt ...): leave nothing behind
                _kill_group(proc)
    return CommandResult(
        argv, None if timed_out else proc.returncode, timed_out, time.monotonic() - t0,
        _tail(out_path), _tail(err_path),
    )


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            # the leader is gone; children may still run in the group
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass
class _Run:
    """One command run over a group of the batch's images (see the module doc)."""

    index: int
    names: list[str]  # written file names, unique within the batch
    gpus: list[str]  # the GPUs this run sees ([] = none configured)
    folder: Path
    input_dir: Path
    output_dir: Path
    order: list[str]  # ``names`` in the order the script lists them (os.listdir of input_dir)
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    port: int | None = None
    result: CommandResult | None = None


def split_evenly(names: Sequence[str], parts: int) -> list[list[str]]:
    """``names`` cut into ``parts`` disjoint contiguous groups whose sizes differ by at most one
    (empty groups dropped)."""
    parts = max(1, int(parts))
    n = len(names)
    out, start = [], 0
    for k in range(parts):
        size = n // parts + (1 if k < n % parts else 0)
        if size:
            out.append(list(names[start:start + size]))
        start += size
    return out


class ExternalAdapter(Adapter):
    """Base class of adapters that run a model's own command (see the module docstring).

    Subclasses set ``command_template()`` (or use ``config["command"]``) and implement
    ``parse_one(output_dir, written_name, model_input) -> Prediction`` which raises
    :class:`SampleError` for a missing or broken output. ``predict`` returns, per input, either
    that Prediction or one with ``extras["error"]`` set (the runner's failed-sample contract).

    Common config: ``command`` (list of args), ``python``, ``cwd``, ``env`` (dict of additions;
    values may use placeholders), ``timeout_s`` (per command run, default 3600), ``gpus`` ("0,1"
    or [0, 1]), ``gpu_mode`` (``shared``: one run sees all GPUs; ``split``: one run per GPU),
    ``retry_alone`` (default true), ``keep_temp`` (keep the temporary folder for debugging),
    ``temp_dir`` (where to create it).

    After ``predict``, ``runs`` lists what each command run did (GPUs, images, exit status,
    outputs) and ``last_result`` is the last run's :class:`CommandResult`.
    """

    flags: ClassVar[dict[str, Any]] = {"external": True}
    requirements: ClassVar[dict[str, Any]] = {
        "batch_size": 32, "num_gpus": 0, "gpu_memory_gb": 0, "needs_setup": True,
    }
    #: Config keys that change how the command runs but not its outputs (a cache may ignore them).
    runtime_keys: ClassVar[frozenset[str]] = frozenset(
        {"timeout_s", "gpus", "keep_temp", "temp_dir", "batch_size", "gpu_mode", "retry_alone"})
    default_timeout_s: ClassVar[float] = 3600.0
    #: ``shared`` (one run sees every configured GPU) or ``split`` (one single-GPU run per GPU).
    gpu_mode: ClassVar[str] = "shared"
    #: the GPUs used when neither ``gpus`` nor the run's device names any (none: the command's own choice)
    default_gpus: ClassVar[tuple[str, ...]] = ()
    #: Runs in a row that produced no output at all, while nothing in the batch has worked yet,
    #: after which a failure is taken as not specific to one image (no further retries).
    give_up_after_empty_runs: ClassVar[int] = 3

    def __init__(self, **config: Any):
        super().__init__(**config)
        if "batch_size" in config:  # a shard per command run: larger batches amortise start-up
            self.requirements = dict(type(self).requirements, batch_size=int(config["batch_size"]))
        mode = str(config.get("gpu_mode", type(self).gpu_mode))
        if mode not in ("shared", "split"):
            raise BenchError(f"adapter {self.name!r}: gpu_mode must be 'shared' or 'split', not {mode!r}")
        self.gpu_mode = mode
        self.last_result: CommandResult | None = None
        self.runs: list[dict[str, Any]] = []
        self._ports_in_use: set[int] = set()
        self._device = "cpu"

    # -- hooks ----------------------------------------------------------------------------
    def command_template(self) -> list[Any]:
        cmd = self.config.get("command")
        if not cmd:
            raise AdapterLoadError(f"adapter {self.name!r}: config 'command' (a list of arguments) is required")
        if isinstance(cmd, str):
            import shlex

            cmd = shlex.split(cmd)
        return list(cmd)

    def extra_env(self, values: dict[str, Any]) -> dict[str, str]:
        """Environment additions (already formatted). Default: ``config["env"]``."""
        env = self.config.get("env") or {}
        return {str(k): self._fmt(str(v), values) for k, v in env.items()}

    def working_dir(self, values: dict[str, Any]) -> Path | None:
        cwd = self.config.get("cwd")
        return Path(self._fmt(str(cwd), values)).expanduser() if cwd else None

    def parse_one(self, output_dir: Path, written_name: str, item: ModelInput) -> Prediction:
        raise NotImplementedError

    # -- machinery ------------------------------------------------------------------------
    def gpu_list(self) -> list[str]:
        """The configured ``gpus``, else the CUDA indices of the device the run gives
        (``bench run --device cuda:0,cuda:1`` -> ``["0", "1"]``), else :attr:`default_gpus`."""
        gpus = self.config.get("gpus")
        if gpus in (None, "", []):
            return cuda_indices(self._device) or list(self.default_gpus)
        if isinstance(gpus, (int, float)):
            return [str(int(gpus))]
        if isinstance(gpus, str):
            return [g.strip() for g in gpus.split(",") if g.strip()]
        return [str(g) for g in gpus]

    def gpu_slots(self) -> list[list[str]]:
        """The GPU sets of the runs that may go at once: one per GPU in ``split`` mode, else one
        with every GPU (``[[]]`` when no GPU is configured)."""
        gpus = self.gpu_list()
        if not gpus:
            return [[]]
        return [[g] for g in gpus] if self.gpu_mode == "split" else [gpus]

    def _free_port(self) -> int:
        for _ in range(50):
            port = free_port()
            if port not in self._ports_in_use:
                return port
        raise BenchError("cannot find a free TCP port on 127.0.0.1 for the external command")

    def placeholder_values(self, workdir: Path, input_dir: Path, output_dir: Path,
                           gpus: Sequence[str] | None = None) -> dict[str, Any]:
        """Placeholder values for one run; ``gpus`` (default: every configured GPU) are the GPUs
        that run sees."""
        values: dict[str, Any] = {
            k: v for k, v in self.config.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool)
        }
        gpus = self.gpu_list() if gpus is None else [str(g) for g in gpus]
        values.update(
            python=self.config.get("python") or sys.executable,
            input_dir=str(input_dir), output_dir=str(output_dir), workdir=str(workdir),
            checkpoint=str(self.config.get("checkpoint", "")), repo=str(self.config.get("repo", "")),
            gpus=",".join(gpus), num_gpus=max(1, len(gpus)), port=self._free_port(),
        )
        return values

    @staticmethod
    def _fmt(template: str, values: dict[str, Any]) -> str:
        try:
            return template.format_map(values)
        except KeyError as exc:
            raise AdapterLoadError(
                f"command template {template!r} uses unknown placeholder {exc}; known: {', '.join(sorted(values))}"
            ) from None
        except (ValueError, IndexError) as exc:
            raise AdapterLoadError(f"bad command template {template!r}: {exc}") from None

    def build_argv(self, values: dict[str, Any]) -> list[str]:
        argv: list[str] = []
        for arg in self.command_template():
            arg = str(arg)
            key = arg[1:-1] if arg.startswith("{") and arg.endswith("}") else None
            if key is not None and isinstance(values.get(key), (list, tuple)):
                argv.extend(str(a) for a in values[key])
            else:
                argv.append(self._fmt(arg, values))
        return argv

    def build_env(self, values: dict[str, Any]) -> dict[str, str]:
        """The run's environment: this process's, ``CUDA_VISIBLE_DEVICES`` = the run's GPUs
        (``values["gpus"]``), then :meth:`extra_env`."""
        env = dict(os.environ)
        if values.get("gpus"):
            env["CUDA_VISIBLE_DEVICES"] = str(values["gpus"])
        env.update(self.extra_env(values))
        return env

    def load(self, device: str = "cpu") -> None:
        """Check the configuration (placeholders, paths); the model loads in its own process."""
        self._device = device
        probe = Path(tempfile.gettempdir())
        self.build_argv(self.placeholder_values(probe, probe / "in", probe / "out"))

    def timeout_s(self) -> float:
        return float(self.config.get("timeout_s", self.default_timeout_s))

    def predict(self, batch: Sequence[ModelInput]) -> list[Prediction]:
        from bench.io.imageio import write_png

        if not batch:
            return []
        base = self.config.get("temp_dir")
        workdir = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-", dir=base))
        staging = workdir / "images"
        staging.mkdir()
        self.runs = []
        try:
            preds: list[Prediction | None] = [None] * len(batch)
            index: dict[str, int] = {}
            for i, item in enumerate(batch):
                name = f"{i:06d}.png"
                try:
                    write_png(staging / name, item.image)
                    index[name] = i
                except Exception as exc:
                    preds[i] = failed_prediction(f"cannot write the image for the external command: {exc}")
            manifest = {n: self._manifest_entry(batch[i]) for n, i in index.items()}
            (workdir / "manifest.json").write_text(json.dumps(manifest, indent=1))
            if index:
                _Scheduler(self, batch, index, preds, workdir).run()
            return [p for p in preds]  # type: ignore[misc]
        finally:
            if as_bool(self.config.get("keep_temp", False)):
                log.warning("%s: kept temporary folder %s", self.name, workdir)
            else:
                shutil.rmtree(workdir, ignore_errors=True)

    @staticmethod
    def _manifest_entry(item: ModelInput) -> dict[str, Any]:
        return {"sample_id": item.sample_id, "file_name": item.file_name, "condition": item.condition}

    def _prepare_run(self, k: int, names: list[str], gpus: list[str], workdir: Path,
                     manifest: dict[str, Any]) -> _Run:
        folder = workdir / f"run-{k:03d}"
        input_dir, output_dir = folder / "images", folder / "outputs"
        input_dir.mkdir(parents=True)
        output_dir.mkdir()
        for name in names:
            src = workdir / "images" / name
            try:
                os.link(src, input_dir / name)
            except OSError:
                shutil.copyfile(src, input_dir / name)
        (folder / "manifest.json").write_text(json.dumps({n: manifest[n] for n in names}, indent=1))
        wanted = set(names)
        order = [n for n in os.listdir(input_dir) if n in wanted]
        values = self.placeholder_values(folder, input_dir, output_dir, gpus)
        run = _Run(k, list(names), list(gpus), folder, input_dir, output_dir, order,
                   argv=self.build_argv(values), env=self.build_env(values), cwd=self.working_dir(values),
                   port=int(values["port"]))
        return run


class _Scheduler:
    """Runs one batch's command runs: initial groups (one per GPU slot), then retries of the
    images left without an output, at most one run per slot at a time."""

    def __init__(self, adapter: ExternalAdapter, batch: Sequence[ModelInput], index: dict[str, int],
                 preds: list[Prediction | None], workdir: Path):
        self.a, self.batch, self.index, self.preds, self.workdir = adapter, batch, index, preds, workdir
        self.manifest = json.loads((workdir / "manifest.json").read_text())
        self.slots = adapter.gpu_slots()
        self.retry = as_bool(adapter.config.get("retry_alone", True))
        self.attempts: dict[str, int] = {n: 0 for n in index}
        self.any_output = False
        self.empty_runs = 0
        self.give_up: str | None = None
        self.procs: set[subprocess.Popen] = set()
        self.lock = threading.Lock()
        self.count = 0

    def _fail(self, name: str, message: str) -> None:
        self.preds[self.index[name]] = failed_prediction(message, external_runs=self.attempts[name])

    def _started(self, proc: subprocess.Popen) -> None:
        with self.lock:
            self.procs.add(proc)

    def _execute(self, run: _Run) -> CommandResult:
        log.info("%s: run %d on GPU(s) %s, %d image(s): %s", self.a.name, run.index, ",".join(run.gpus) or "-",
                 len(run.names), " ".join(run.argv))
        return run_command(run.argv, cwd=run.cwd, env=run.env, timeout_s=self.a.timeout_s(),
                           log_dir=run.folder, on_start=self._started)

    def run(self) -> None:
        from collections import deque

        pending = deque(split_evenly(list(self.index), len(self.slots)))
        free = list(range(len(self.slots)))
        running: dict[Future, tuple[int, _Run]] = {}
        with ThreadPoolExecutor(max_workers=len(self.slots), thread_name_prefix=f"bench-{self.a.name}") as ex:
            try:
                while pending or running:
                    while pending and free and self.give_up is None:
                        names, slot = pending.popleft(), free.pop(0)
                        run = self.a._prepare_run(self.count, names, self.slots[slot], self.workdir, self.manifest)
                        self.count += 1
                        self.a._ports_in_use.add(run.port)
                        for n in names:
                            self.attempts[n] += 1
                        running[ex.submit(self._execute, run)] = (slot, run)
                    if self.give_up is not None:
                        while pending:
                            for n in pending.popleft():
                                self._fail(n, self.give_up)
                    if not running:
                        break
                    done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for fut in done:
                        slot, run = running.pop(fut)
                        free.append(slot)
                        free.sort()
                        self.a._ports_in_use.discard(run.port)
                        run.result = fut.result()
                        pending.extend(self._collect(run))
            except BaseException:
                with self.lock:
                    procs = list(self.procs)
                for proc in procs:
                    if proc.poll() is None:
                        _kill_group(proc)
                raise
            finally:
                for _, run in running.values():
                    self.a._ports_in_use.discard(run.port)

    def _collect(self, run: _Run) -> list[list[str]]:
        """Parse one finished run; return the groups to run again."""
        result = run.result
        assert result is not None
        self.a.last_result = result
        missing: list[tuple[str, str]] = []
        parsed = 0
        for name in run.order:
            i = self.index[name]
            item = self.batch[i]
            try:
                pred = self.a.parse_one(run.output_dir, name, item)
            except SampleError as exc:
                msg = f"{item.sample_id}: {exc.problem} ({exc.where})"
                if not result.ok:
                    msg = f"{result.describe()}\n(then: {msg})"
                missing.append((name, msg))
                continue
            except BenchError as exc:
                self._fail(name, f"{item.sample_id}: {exc}")
                continue
            pred.extras.pop("source", None)  # the temporary folder is deleted
            pred.extras.setdefault("external_seconds", round(result.seconds, 3))
            pred.extras["external_runs"] = self.attempts[name]
            self.preds[i] = pred
            parsed += 1
        self.a.runs.append({
            "run": run.index, "gpus": ",".join(run.gpus), "images": list(run.order), "port": run.port,
            "returncode": result.returncode, "timed_out": result.timed_out,
            "seconds": round(result.seconds, 3), "outputs": parsed,
        })
        if parsed:
            self.any_output, self.empty_runs = True, 0
        else:
            self.empty_runs += 1
        if not missing:
            return []
        if not result.ok:
            log.warning("%s: run %d: %s (%d of %d image(s) without output)", self.a.name, run.index,
                        result.describe().split("\n")[0], len(missing), len(run.names))
        if (not self.any_output and self.empty_runs >= self.a.give_up_after_empty_runs
                and self.give_up is None and len(missing) > 1):
            self.give_up = (f"{result.describe()}\n(not retried further: {self.empty_runs} runs in a row "
                            "produced no output for any image, so the failure is not specific to one image)")
        if result.timed_out or not self.retry or len(run.names) == 1 or self.give_up is not None:
            for name, msg in missing:
                self._fail(name, self.give_up if self.give_up and not result.timed_out else msg)
            return []
        first, rest = [missing[0][0]], [n for n, _ in missing[1:]]
        return [first] + ([rest] if rest else [])


@register_adapter
class GenericExternalAdapter(ExternalAdapter):
    """Any command that reads a folder of PNGs and writes a prediction folder.

    Config: ``command`` (list with placeholders, see the module doc), ``output_format``
    ``native`` (default: ``masks/<stem>.png`` / ``heatmaps/<stem>.png`` /
    ``predictions.jsonl`` keyed by the written file's stem, e.g. ``000003``) or ``legion``
    (``<out>/<file name>/mask.png`` + ``explanation.json``), and ``tasks`` (list, default
    ``[localize]``).
    """

    name = "external"
    version = "1"
    tasks = frozenset({"detect", "localize", "explain"})
    summary = "any model's own command on a folder of PNGs; parses a native or LEGION output folder"

    def __init__(self, **config: Any):
        super().__init__(**config)
        tasks = config.get("tasks", ["localize"])
        if isinstance(tasks, str):
            tasks = [t.strip() for t in tasks.split(",") if t.strip()]
        bad = set(tasks) - {"detect", "localize", "explain"}
        if bad or not tasks:
            raise BenchError(f"adapter 'external': tasks must be a subset of detect, localize, explain (got {tasks})")
        self.tasks = frozenset(tasks)
        fmt = config.get("output_format", "native")
        if fmt not in ("native", "legion"):
            raise BenchError(f"adapter 'external': output_format must be 'native' or 'legion', not {fmt!r}")

    def parse_one(self, output_dir: Path, written_name: str, item: ModelInput) -> Prediction:
        from bench.core.prediction_folders import read_legion_prediction, read_native_prediction

        hw = item.image.shape[:2]
        if self.config.get("output_format", "native") == "legion":
            return read_legion_prediction(output_dir, written_name, hw,
                                          require_explanation="explain" in self.tasks)
        stem = Path(written_name).stem
        return read_native_prediction(output_dir, stem, written_name, hw)
