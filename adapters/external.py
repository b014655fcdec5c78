"""External adapters: run a model's own inference command in the model's own environment.

Some models cannot share a Python process with the harness (LEGION needs torch 1.13 /
transformers 4.28 / mmcv 1.4.7). For those, each call to ``predict(batch)``:

1. writes the batch's (already perturbed) images losslessly as PNG into a fresh temporary
   folder, under file names the harness chooses (``000000.png``, ``000001.png`` ...), and
   records the mapping to sample ids in ``manifest.json`` *beside* (not inside) that folder,
   because some scripts treat every file in the input folder as an image;
2. runs the configured command template (a list of arguments) with its placeholders filled,
   in the configured working directory, with the configured environment additions;
3. waits at most ``timeout_s`` seconds, then kills the command's whole process group;
4. parses the output folder, one sample at a time.

Failed samples (the contract with the runner)
---------------------------------------------
``predict`` always returns one Prediction per input, in order. A sample that failed — the
command crashed, timed out, or left no or a broken output for it — is returned as a Prediction
whose ``extras["error"]`` holds the message (with the command's exit status and the tail of its
stderr/stdout). The runner records such a Prediction as a failed sample with that message and
goes on with the rest. Outputs that a command wrote completely before crashing are kept.

Command template placeholders (each argument is formatted with ``str.format``):
``{python}`` (``config["python"]``, default: this interpreter; a list, e.g.
``["conda", "run", "-n", "legion", "python"]``, is spliced in when the argument is exactly
``{python}``), ``{input_dir}``, ``{output_dir}``, ``{workdir}`` (their common parent),
``{checkpoint}``, ``{repo}``, ``{gpus}`` (comma-separated), ``{num_gpus}``, ``{port}`` (a free TCP
port on 127.0.0.1), and any other scalar config value by its key.
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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

from adapters import register_adapter
from adapters._util import AdapterLoadError, as_bool, failed_prediction
from bench.errors import BenchError, SampleError
from bench.types import Adapter, ModelInput, Prediction

log = logging.getLogger(__name__)

#: Characters of stdout/stderr kept for error messages.
TAIL_CHARS = 4000


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
    argv: list[str], *, cwd: Path | None, env: dict[str, str], timeout_s: float, log_dir: Path
) -> CommandResult:
    """Run ``argv`` in its own process group with stdout/stderr to files in ``log_dir``.

    On timeout the whole group gets SIGTERM, then SIGKILL 10 s later (a model script may have
    started data-loader workers or a distributed launcher's children).
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


class ExternalAdapter(Adapter):
    """Base class of adapters that run a model's own command (see the module docstring).

    Subclasses set ``command_template()`` (or use ``config["command"]``) and implement
    ``parse_one(output_dir, written_name, model_input) -> Prediction`` which raises
    :class:`SampleError` for a missing or broken output. ``predict`` returns, per input, either
    that Prediction or one with ``extras["error"]`` set (the runner's failed-sample contract).

    Common config: ``command`` (list of args), ``python``, ``cwd``, ``env`` (dict of additions;
    values may use placeholders), ``timeout_s`` (default 3600), ``gpus`` ("0,1" or [0, 1]),
    ``keep_temp`` (keep the temporary folder for debugging), ``temp_dir`` (where to create it).
    """

    flags: ClassVar[dict[str, Any]] = {"external": True}
    requirements: ClassVar[dict[str, Any]] = {
        "batch_size": 32, "num_gpus": 0, "gpu_memory_gb": 0, "needs_setup": True,
    }
    #: Config keys that change how the command runs but not its outputs (a cache may ignore them).
    runtime_keys: ClassVar[frozenset[str]] = frozenset({"timeout_s", "gpus", "keep_temp", "temp_dir", "batch_size"})
    default_timeout_s: ClassVar[float] = 3600.0

    def __init__(self, **config: Any):
        super().__init__(**config)
        if "batch_size" in config:  # a shard per command run: larger batches amortise start-up
            self.requirements = dict(type(self).requirements, batch_size=int(config["batch_size"]))
        self.last_result: CommandResult | None = None
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
        gpus = self.config.get("gpus")
        if gpus in (None, "", []):
            return []
        if isinstance(gpus, (int, float)):
            return [str(int(gpus))]
        if isinstance(gpus, str):
            return [g.strip() for g in gpus.split(",") if g.strip()]
        return [str(g) for g in gpus]

    def placeholder_values(self, workdir: Path, input_dir: Path, output_dir: Path) -> dict[str, Any]:
        values: dict[str, Any] = {
            k: v for k, v in self.config.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool)
        }
        gpus = self.gpu_list()
        values.update(
            python=self.config.get("python") or sys.executable,
            input_dir=str(input_dir), output_dir=str(output_dir), workdir=str(workdir),
            checkpoint=str(self.config.get("checkpoint", "")), repo=str(self.config.get("repo", "")),
            gpus=",".join(gpus), num_gpus=max(1, len(gpus)), port=free_port(),
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
        env = dict(os.environ)
        gpus = self.gpu_list()
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
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
        from bench.imageio import write_png

        if not batch:
            return []
        base = self.config.get("temp_dir")
        workdir = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-", dir=base))
        input_dir, output_dir = workdir / "images", workdir / "outputs"
        input_dir.mkdir()
        output_dir.mkdir()
        try:
            names: list[str | None] = []
            preds: list[Prediction | None] = []
            for i, item in enumerate(batch):
                name = f"{i:06d}.png"
                try:
                    write_png(input_dir / name, item.image)
                    names.append(name)
                    preds.append(None)
                except Exception as exc:
                    names.append(None)
                    preds.append(failed_prediction(f"cannot write the image for the external command: {exc}"))
            manifest = {
                n: {"sample_id": item.sample_id, "file_name": item.file_name, "condition": item.condition}
                for n, item in zip(names, batch) if n
            }
            (workdir / "manifest.json").write_text(json.dumps(manifest, indent=1))
            values = self.placeholder_values(workdir, input_dir, output_dir)
            argv = self.build_argv(values)
            log.info("%s: running %s", self.name, " ".join(argv))
            result = run_command(
                argv, cwd=self.working_dir(values), env=self.build_env(values),
                timeout_s=self.timeout_s(), log_dir=workdir,
            )
            self.last_result = result
            if not result.ok:
                log.warning("%s: %s", self.name, result.describe().split("\n")[0])
            for i, (name, item) in enumerate(zip(names, batch)):
                if preds[i] is not None or name is None:
                    continue
                if result.timed_out:
                    preds[i] = failed_prediction(result.describe())
                    continue
                try:
                    pred = self.parse_one(output_dir, name, item)
                    pred.extras.pop("source", None)  # the temporary folder is deleted below
                    pred.extras.setdefault("external_seconds", round(result.seconds, 3))
                    preds[i] = pred
                except SampleError as exc:
                    msg = f"{item.sample_id}: {exc.problem} ({exc.where})"
                    if not result.ok:
                        msg = f"{result.describe()}\n(then: {msg})"
                    preds[i] = failed_prediction(msg)
                except BenchError as exc:
                    preds[i] = failed_prediction(f"{item.sample_id}: {exc}")
            return [p for p in preds]  # type: ignore[misc]
        finally:
            if as_bool(self.config.get("keep_temp", False)):
                log.warning("%s: kept temporary folder %s", self.name, workdir)
            else:
                shutil.rmtree(workdir, ignore_errors=True)


@register_adapter("external")
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
        from bench.prediction_folders import read_legion_prediction, read_native_prediction

        hw = item.image.shape[:2]
        if self.config.get("output_format", "native") == "legion":
            return read_legion_prediction(output_dir, written_name, hw,
                                          require_explanation="explain" in self.tasks)
        stem = Path(written_name).stem
        return read_native_prediction(output_dir, stem, written_name, hw)
