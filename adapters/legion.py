"""LEGION (ICCV 2025) through its official inference script, in LEGION's own environment.

What the official ``scripts/loc_exp/infer.py`` (github opendatalab/LEGION, at or after commit
55fe9b0) does, and how this adapter runs it:

- Arguments: ``--hf_model_path`` (the checkpoint folder, e.g. ``khr0516/legion_LE`` downloaded),
  ``--image_dir``, ``--output_dir``, ``--image_size`` (SAM's longest side, 1024),
  ``--model_max_length`` (512), ``--conv_type`` (``llava_v1``), ``--local_rank``.
  (The repository's ``infer.sh`` before 55fe9b0 also passed ``--max_iter 3``, which the script
  does not accept; it is not passed here.)
- It imports ``eval.*``, ``model.*`` and ``tools.*`` from the repository root: PYTHONPATH is set
  to the checkout and the command runs there. Checkouts before 55fe9b0 import
  ``models.LEGION.model.Legion.GLaMMForCausalLM``, which the repository does not have, and fail
  at start-up; :meth:`LegionAdapter.load` reads the script's imports and says so.
- It always builds a ``DistributedSampler(dataset, rank=args.local_rank)``, which needs an
  initialised process group, and initialises one (NCCL, ``env://``) only when RANK and
  WORLD_SIZE are in the environment. The sampler pads the image list to a multiple of the world
  size (some images would run twice), and ``--local_rank`` is only passed by torch 1.x's
  launcher. So this adapter never uses a distributed launcher: every run is ONE process with
  RANK=0, WORLD_SIZE=1, LOCAL_RANK=0, MASTER_ADDR=127.0.0.1, MASTER_PORT=<a free port> and
  ``--local_rank 0``. With ``gpus: "0,1"`` the batch's images are split into two disjoint
  folders and two such processes run at once, each with ``CUDA_VISIBLE_DEVICES`` set to its GPU
  and its own port and output folder (``gpu_mode = "split"`` in :mod:`bench.adapters.external`).
  A GPU is required (NCCL, ``.cuda()`` everywhere; ~19 GB in bf16).
- It reads every entry of ``--image_dir`` with ``cv2.imread`` (so the folder must hold only
  images) and processes ONE image per step whatever ``--batch_size_per_gpu`` says (it takes
  item 0 of each batch), so that option stays at 1. It has no per-image error handling: one
  image that crashes it ends the run; the images left without output are then run again (the
  failing one alone), so a bad image fails only itself (see :mod:`bench.adapters.external`).
- Prompt: a fixed instruction inside the script (recorded below). Generation: the script passes
  only ``num_beams=1`` and ``max_new_tokens=512`` (bf16); everything else (``do_sample``,
  ``temperature``, ``top_p`` ...) follows the checkpoint's ``generation_config.json`` (else the
  generation keys of its ``config.json``, else transformers' defaults), as transformers 4.28's
  ``generate`` does. Those settings are read from the weights folder and recorded in the
  config's ``generation`` (with ``from``: the file they came from); a checkpoint that samples
  makes the adapter non-deterministic. Text cleaning: see docs/protocol.md §2.
- Output: ``<out>/<image file name>/mask.png`` (0/255: union of the [SEG] mask logits > 0, at
  the image's size) and ``<out>/<image file name>/explanation.json`` =
  ``{"<image_dir>/<file name>": "<cleaned text>"}``.

Config: ``repo`` (checkout), ``weights`` (the ``--hf_model_path`` folder), ``python`` (LEGION's
interpreter, e.g. ``/opt/conda/envs/legion/bin/python``, or a list such as
``["conda", "run", "--no-capture-output", "-n", "legion", "python"]``), ``gpus`` ("0" or
"0,1"), ``timeout_s`` (per run), ``image_size``, ``model_max_length``, ``conv_type``,
``batch_size`` (images per ``predict`` call, shared out over the GPUs; the model loads once per
run, so larger is faster; default 64 per GPU), ``retry_alone``.
"""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path
from typing import Any, ClassVar

from bench.adapters import register_adapter
from bench.adapters._util import AdapterLoadError, existing_path, sha256_path
from bench.adapters.external import ExternalAdapter
from bench.errors import BenchError
from bench.core.types import ModelInput, Prediction

#: The instruction hard-coded in scripts/loc_exp/infer.py (recorded, not sent by us).
LEGION_PROMPT = (
    "Please provide a detailed analysis of artifacts in this photo, considering physical artifacts "
    "(e.g., optical display issues, violations of physical laws, and spatial/perspective errors), "
    "structural artifacts (e.g., deformed objects, asymmetry, or distorted text), and distortion "
    "artifacts (e.g., color/texture distortion, noise/blur, artistic style errors, and material "
    "misrepresentation). Output with interleaved segmentation masks for the corresponding parts of "
    "the answer."
)
INFER_SCRIPT = "scripts/loc_exp/infer.py"
#: The first commit whose infer.py imports (``model.Legion.LegionForCausalLM``).
FIXED_COMMIT = "55fe9b0"

#: What infer.py itself sets: ``model.evaluate(..., max_tokens_new=512)`` -> ``generate(num_beams=1,
#: max_new_tokens=512)``, the model in bfloat16.
SCRIPT_GENERATION: dict[str, Any] = {"num_beams": 1, "max_new_tokens": 512, "dtype": "bfloat16"}
#: transformers 4.28 (LEGION's pin) ``GenerationConfig`` defaults of the keys that decide how
#: tokens are chosen; the checkpoint's generation_config.json (or config.json) overrides them.
TRANSFORMERS_DEFAULTS: dict[str, Any] = {
    "do_sample": False, "temperature": 1.0, "top_k": 50, "top_p": 1.0, "typical_p": 1.0,
    "repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "penalty_alpha": None,
}
#: The flags this adapter passes, which the script's parser must accept.
PASSED_FLAGS = ("--hf_model_path", "--image_dir", "--output_dir", "--image_size", "--model_max_length",
                "--conv_type", "--local_rank")


def legion_generation_settings(weights: Path | str) -> dict[str, Any]:
    """The generation settings the official infer.py ends up using with this checkpoint folder.

    transformers 4.28: ``from_pretrained`` reads ``generation_config.json`` when the folder has
    one, else ``generate`` builds the config from the model config (``config.json``); keys absent
    from both keep GenerationConfig's defaults; the script's own ``num_beams=1`` and
    ``max_new_tokens=512`` then override. ``from`` says which file the sampling keys came from.
    """
    folder = Path(weights)
    settings = dict(TRANSFORMERS_DEFAULTS)
    source = f"transformers 4.28 defaults (no generation_config.json or config.json in {folder})"
    for fname in ("generation_config.json", "config.json"):
        path = folder / fname
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise AdapterLoadError(f"adapter 'legion': cannot read {path} ({type(exc).__name__}: {exc})") from None
        if not isinstance(data, dict):
            raise AdapterLoadError(f"adapter 'legion': {path} is not a JSON object")
        for key in TRANSFORMERS_DEFAULTS:
            if key in data:
                settings[key] = data[key]
        if not isinstance(settings["do_sample"], bool):
            raise AdapterLoadError(f"adapter 'legion': {path}: do_sample is {settings['do_sample']!r}, not true/false")
        source = str(path)
        break
    settings.update(SCRIPT_GENERATION)
    settings["from"] = source
    return settings


# -- reading the checkout's infer.py ----------------------------------------------------------
def _module_file(repo: Path, parts: list[str]) -> Path | None:
    """The file of module ``parts`` under ``repo`` (``x.py``, ``x/__init__.py``, or the folder
    of a namespace package), or None."""
    base = repo.joinpath(*parts)
    for cand in (base.with_name(base.name + ".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return base if base.is_dir() else None


def _defines(path: Path, name: str) -> bool:
    """Whether module ``path`` defines ``name`` at top level (True when it cannot tell)."""
    package = path if path.is_dir() else path.parent if path.name == "__init__.py" else None
    if package is not None and _module_file(package, [name]) is not None:
        return True  # a submodule
    if path.is_dir():
        return False  # a namespace package defines nothing but its submodules
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except SyntaxError:
        return True
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*" or (alias.asname or alias.name.split(".")[0]) == name:
                    return True
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(t)):
                    return True
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            for attr in ("body", "orelse", "finalbody", "handlers"):
                stack.extend(getattr(node, attr, []) or [])
        if isinstance(node, ast.ExceptHandler):
            stack.extend(node.body)
    return False


def _import_problem(repo: Path, module: str, names: list[str]) -> str | None:
    parts = module.split(".")
    if (repo / parts[0]).is_dir() or (repo / f"{parts[0]}.py").is_file():
        path = _module_file(repo, parts)
        if path is None:
            return f"imports {module}, which is not in the checkout"
        for name in names:
            if name != "*" and not _defines(path, name):
                return f"imports {name} from {module}, which {path.relative_to(repo)} does not define"
        return None
    if parts[0] == "models" and "LEGION" in parts:  # the authors' internal layout (before 55fe9b0)
        return f"imports {', '.join(names)} from {module}, a package the repository does not have"
    for j in range(1, len(parts)):
        if _module_file(repo, parts[j:]) is not None:
            return f"imports {module}, which the checkout has only as {'.'.join(parts[j:])}"
    return None


def check_infer_script(repo: Path) -> None:
    """Refuse (one line) a checkout whose ``scripts/loc_exp/infer.py`` cannot import or does not
    accept the flags this adapter passes — read from the file, nothing of it is run."""
    script = repo / INFER_SCRIPT
    fix = (f"checkouts before commit {FIXED_COMMIT} ('fixed some bugs', May 2025) fail at start-up like this; "
           f"update it: git -C {repo} pull")
    try:
        tree = ast.parse(script.read_text(encoding="utf-8"), filename=str(script))
    except (OSError, UnicodeDecodeError, SyntaxError) as exc:
        raise AdapterLoadError(f"adapter 'legion': cannot read {script} ({type(exc).__name__}: {exc})") from None
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            problem = _import_problem(repo, node.module, [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            problem = next((p for a in node.names if (p := _import_problem(repo, a.name, [])) is not None), None)
        else:
            continue
        if problem:
            raise AdapterLoadError(f"adapter 'legion': {script} {problem} (line {node.lineno}); {fix}")
    declared = {
        arg.value for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"
        for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
    }
    missing = [f for f in PASSED_FLAGS if f not in declared]
    if missing:
        raise AdapterLoadError(f"adapter 'legion': {script} does not accept {', '.join(missing)}; "
                               f"use a checkout at or after commit {FIXED_COMMIT} (git -C {repo} pull)")


@register_adapter
class LegionAdapter(ExternalAdapter):
    """LEGION's official ``scripts/loc_exp/infer.py``, run in LEGION's own environment."""

    name = "legion"
    version = "2"
    tasks = frozenset({"localize", "explain"})
    requirements: ClassVar[dict[str, Any]] = {
        "batch_size": 64, "num_gpus": 1, "gpu_memory_gb": 19, "needs_setup": True,
    }
    flags: ClassVar[dict[str, Any]] = {"external": True}
    summary = "LEGION (ICCV25) official infer.py in its own env; mask + explanation"
    card: ClassVar[dict[str, str | None]] = {
        "paper": "LEGION: Learning to Ground and Explain for Synthetic Image Detection (ICCV 2025, arXiv 2503.15264)",
        "paper_url": "https://arxiv.org/abs/2503.15264",
        "code_url": "https://github.com/opendatalab/LEGION",
        "parameters": "~8B (Vicuna-7B + CLIP ViT-L/14-336 + SAM ViT-H)",
    }
    default_timeout_s = 6 * 3600.0
    gpu_mode = "split"
    #: without ``gpus`` configured or CUDA indices in the run's device: GPU 0
    default_gpus: ClassVar[tuple[str, ...]] = ("0",)
    config_keys: ClassVar[frozenset[str]] = frozenset(
        {"repo", "weights", "python", "command", "cwd", "env", "checkpoint", "image_size",
         "model_max_length", "conv_type", "prompt", "generation"})

    def __init__(self, **config: Any):
        config.setdefault("image_size", 1024)
        config.setdefault("model_max_length", 512)
        config.setdefault("conv_type", "llava_v1")
        # recorded so results say exactly what was asked and how text was generated
        config.setdefault("prompt", LEGION_PROMPT)
        if config["prompt"] != LEGION_PROMPT:
            raise BenchError(
                "adapter 'legion': the prompt is fixed inside the official infer.py; it is recorded, not "
                "configurable (edit the script and use the 'external' adapter instead)"
            )
        if str(config.get("gpu_mode", "split")) != "split":
            raise BenchError("adapter 'legion': gpu_mode must be 'split' (infer.py uses one GPU per process)")
        super().__init__(**config)
        if "batch_size" not in config:  # 64 images per GPU and run: the model loads once per run
            self.requirements = dict(type(self).requirements, batch_size=64 * max(1, len(self.gpu_list())))
        self._asked_generation = config.get("generation")
        weights = config.get("weights")
        if weights and Path(str(weights)).expanduser().is_dir():
            self._set_generation(Path(str(weights)).expanduser())

    def _set_generation(self, weights: Path) -> None:
        derived = legion_generation_settings(weights)
        if self._asked_generation is not None and self._asked_generation != derived:
            raise BenchError(
                "adapter 'legion': generation settings come from the checkpoint "
                f"({derived['from']}) and infer.py; they are recorded, not configurable "
                f"(asked {self._asked_generation}, the checkpoint gives {derived})"
            )
        self.config["generation"] = derived
        self.deterministic = not derived["do_sample"]

    def command_template(self) -> list[Any]:
        if self.config.get("command"):
            return super().command_template()
        return [
            "{python}", INFER_SCRIPT,
            "--hf_model_path", "{weights}",
            "--image_dir", "{input_dir}",
            "--output_dir", "{output_dir}",
            "--image_size", "{image_size}",
            "--model_max_length", "{model_max_length}",
            "--conv_type", "{conv_type}",
            "--local_rank", "0",
        ]

    def extra_env(self, values: dict[str, Any]) -> dict[str, str]:
        # one process per run: the variables init_distributed_mode needs for a world of one
        env = {"PYTHONPATH": str(values["repo"]), "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(values["port"])}
        env.update(super().extra_env(values))
        return env

    def working_dir(self, values: dict[str, Any]) -> Path | None:
        return super().working_dir(values) or Path(str(values["repo"]))

    def load(self, device: str = "cpu") -> None:
        repo = existing_path(self.config.get("repo"), "repo", self.name)
        if not self.config.get("command"):
            if not (repo / INFER_SCRIPT).is_file():
                raise AdapterLoadError(f"adapter 'legion': {repo / INFER_SCRIPT} not found; is repo a LEGION checkout?")
            check_infer_script(repo)
        weights = existing_path(self.config.get("weights"), "weights", self.name)
        if not weights.is_dir():
            raise AdapterLoadError(f"adapter 'legion': weights {str(weights)!r} must be the checkpoint folder "
                                   "(--hf_model_path, e.g. khr0516/legion_LE downloaded), not a file")
        self._set_generation(weights)
        if not self.config.get("python") and not self.config.get("command"):
            raise AdapterLoadError(
                "adapter 'legion': set python to the interpreter of LEGION's own environment "
                "(torch 1.13 / transformers 4.28 / mmcv 1.4.7), e.g. --config legion.python=/opt/conda/envs/legion/bin/python "
                "or a list such as [conda, run, --no-capture-output, -n, legion, python]"
            )
        super().load(device)

    def repo_commit(self) -> str | None:
        repo = self.config.get("repo")
        if not repo:
            return None
        try:
            out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                                 text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() or None if out.returncode == 0 else None

    def identity(self) -> dict[str, Any]:
        ident = super().identity()
        ident["config"] = {**ident["config"], "repo_commit": self.repo_commit()}
        return ident

    def weights_sha256(self) -> str | None:
        w = self.config.get("weights")
        return sha256_path(w) if w and Path(str(w)).exists() else None

    def parse_one(self, output_dir: Path, written_name: str, item: ModelInput) -> Prediction:
        from bench.core.prediction_folders import read_legion_prediction

        return read_legion_prediction(output_dir, written_name, item.image.shape[:2])
