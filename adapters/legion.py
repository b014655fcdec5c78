"""LEGION (ICCV 2025) through its official inference script, in LEGION's own environment.

What the official ``scripts/loc_exp/infer.py`` (github opendatalab/LEGION) does, and how this
adapter launches it:

- Arguments: ``--hf_model_path`` (the checkpoint folder, e.g. ``khr0516/legion_LE`` downloaded),
  ``--image_dir``, ``--output_dir``, ``--image_size`` (SAM's longest side, 1024),
  ``--model_max_length`` (512), ``--conv_type`` (``llava_v1``), ``--local_rank``.
  (The repository's ``infer.sh`` also passes ``--max_iter 3``, which the script does not accept;
  it is not passed here.)
- It imports ``eval.*``, ``model.*`` and ``tools.*`` from the repository root: PYTHONPATH is set
  to the checkout and the command runs there.
- It always builds a ``DistributedSampler`` (rank taken from ``--local_rank``, default -1), which
  needs an initialised process group, and initialises one (NCCL, ``env://``) only when RANK and
  WORLD_SIZE are in the environment. So a single-GPU run gets RANK=0, WORLD_SIZE=1,
  LOCAL_RANK=0, MASTER_ADDR=127.0.0.1, MASTER_PORT=<a free port> and ``--local_rank 0``; with
  several GPUs it runs under ``python -m torch.distributed.launch --nproc_per_node=N`` (torch
  1.13's launcher sets those variables and passes ``--local_rank``). A GPU is required (NCCL,
  ``.cuda()`` everywhere; ~19 GB in bf16).
- It reads every entry of ``--image_dir`` with ``cv2.imread`` (so the folder must hold only
  images) and processes ONE image per step whatever ``--batch_size_per_gpu`` says (it takes
  item 0 of each batch), so that option stays at 1.
- Prompt: a fixed instruction inside the script (recorded below). Generation: greedy
  (``num_beams=1``), ``max_new_tokens=512``, bf16. Text cleaning: see PROTOCOL §2.
- Output: ``<out>/<image file name>/mask.png`` (0/255: union of the [SEG] mask logits > 0, at
  the image's size) and ``<out>/<image file name>/explanation.json`` =
  ``{"<image_dir>/<file name>": "<cleaned text>"}``.

Config: ``repo`` (checkout), ``weights`` (the ``--hf_model_path`` folder), ``python`` (LEGION's
interpreter, e.g. ``/opt/conda/envs/legion/bin/python``, or a list such as
``["conda", "run", "--no-capture-output", "-n", "legion", "python"]``), ``gpus`` ("0" or
"0,1"), ``timeout_s``, ``image_size``, ``model_max_length``, ``conv_type``, ``batch_size``
(images per command run: the model loads once per run, so larger is faster).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, ClassVar

from adapters import register_adapter
from adapters._util import existing_path, sha256_path
from adapters.external import ExternalAdapter
from bench.types import ModelInput, Prediction

#: The instruction hard-coded in scripts/loc_exp/infer.py (recorded, not sent by us).
LEGION_PROMPT = (
    "Please provide a detailed analysis of artifacts in this photo, considering physical artifacts "
    "(e.g., optical display issues, violations of physical laws, and spatial/perspective errors), "
    "structural artifacts (e.g., deformed objects, asymmetry, or distorted text), and distortion "
    "artifacts (e.g., color/texture distortion, noise/blur, artistic style errors, and material "
    "misrepresentation). Output with interleaved segmentation masks for the corresponding parts of "
    "the answer."
)
LEGION_GENERATION = {"max_new_tokens": 512, "num_beams": 1, "do_sample": False, "dtype": "bfloat16"}
INFER_SCRIPT = "scripts/loc_exp/infer.py"


@register_adapter("legion")
class LegionAdapter(ExternalAdapter):
    """LEGION's official ``scripts/loc_exp/infer.py``, run in LEGION's own environment."""

    name = "legion"
    version = "1"
    tasks = frozenset({"localize", "explain"})
    requirements: ClassVar[dict[str, Any]] = {
        "batch_size": 64, "num_gpus": 1, "gpu_memory_gb": 19, "needs_setup": True,
    }
    flags: ClassVar[dict[str, Any]] = {"external": True}
    summary = "LEGION (ICCV25) official infer.py in its own env; mask + explanation"
    default_timeout_s = 6 * 3600.0

    def __init__(self, **config: Any):
        config.setdefault("image_size", 1024)
        config.setdefault("model_max_length", 512)
        config.setdefault("conv_type", "llava_v1")
        config.setdefault("gpus", "0")
        # recorded so results say exactly what was asked and how text was generated
        config.setdefault("prompt", LEGION_PROMPT)
        config.setdefault("generation", dict(LEGION_GENERATION))
        super().__init__(**config)
        if self.config["prompt"] != LEGION_PROMPT or self.config["generation"] != LEGION_GENERATION:
            from bench.errors import BenchError

            raise BenchError(
                "adapter 'legion': prompt and generation are fixed inside the official infer.py; "
                "they are recorded, not configurable (edit the script and use the 'external' adapter instead)"
            )

    def command_template(self) -> list[Any]:
        if self.config.get("command"):
            return super().command_template()
        args = [
            INFER_SCRIPT,
            "--hf_model_path", "{weights}",
            "--image_dir", "{input_dir}",
            "--output_dir", "{output_dir}",
            "--image_size", "{image_size}",
            "--model_max_length", "{model_max_length}",
            "--conv_type", "{conv_type}",
        ]
        if len(self.gpu_list()) > 1:
            return ["{python}", "-m", "torch.distributed.launch", "--nproc_per_node={num_gpus}",
                    "--master_port={port}", *args]
        return ["{python}", *args, "--local_rank", "0"]

    def extra_env(self, values: dict[str, Any]) -> dict[str, str]:
        env = {"PYTHONPATH": str(values["repo"])}
        if len(self.gpu_list()) <= 1:  # single process: the variables init_distributed_mode needs
            env.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0",
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=str(values["port"]))
        env.update(super().extra_env(values))
        return env

    def working_dir(self, values: dict[str, Any]) -> Path | None:
        return super().working_dir(values) or Path(str(values["repo"]))

    def load(self, device: str = "cpu") -> None:
        repo = existing_path(self.config.get("repo"), "repo", self.name)
        if not self.config.get("command") and not (repo / INFER_SCRIPT).is_file():
            from adapters._util import AdapterLoadError

            raise AdapterLoadError(f"adapter 'legion': {repo / INFER_SCRIPT} not found; is repo a LEGION checkout?")
        existing_path(self.config.get("weights"), "weights", self.name)
        if not self.config.get("python") and not self.config.get("command"):
            from adapters._util import AdapterLoadError

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
        from bench.prediction_folders import read_legion_prediction

        return read_legion_prediction(output_dir, written_name, item.image.shape[:2])
