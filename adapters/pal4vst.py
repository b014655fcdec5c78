"""PAL4VST (ICCV 2023, "Perceptual Artifacts Localization for Image Synthesis Tasks"), in-process
from its TorchScript export ``end2end.pt`` (Swin-L + UperNet, mmdeploy).

The official demo (``test_torchscript.py`` / ``utils.prepare_input`` in github owenzlz/PAL4VST):

- ``np.array(Image.open(f).resize((512, 512)))``: PIL resize to 512 x 512, aspect NOT kept, with
  Pillow's default filter for RGB, BICUBIC (``test_torchscript_all.py`` then ``.convert("RGB")``;
  the harness's images are RGB already);
- ``(x - mean) * (1 / std)`` per channel in float32, mean 123.675/116.28/103.53,
  std 58.395/57.12/57.375 (RGB order), as a 1 x 3 x 512 x 512 tensor;
- the model returns the argmax label map, N x 1 x 512 x 512 (1 = artifact): a HARD mask, no
  probabilities.

The demo keeps the map at 512 x 512. Here it is resized back to the image's size with
pixel-centre nearest neighbour (PIL NEAREST sampling), as LEGION's comparison needs masks at the
original resolution. The official demo loads with ``torch.load``; this uses ``torch.jit.load``
(what ``torch.load`` does for a TorchScript archive).

Device: the published ``end2end.pt`` was exported with ``--device cuda``
(``deployment/convert.sh``), and tracing bakes the device of every tensor mmseg's Swin creates
inside ``forward`` into the file's code (``torch.device("cuda:0")``): ``map_location`` moves the
weights, not those constants, so the file runs on ``cuda:0`` only. The adapter therefore
declares one GPU, and ``load`` reads the device constants of the loaded file's code: when they
name a device other than the one asked for (``--device cpu``, the CLI default, or ``cuda:1``),
it refuses with one line naming the traced device and the fix (``--device cuda:0``, or a file
re-exported with ``convert.sh --device cpu`` for CPU).

Config: ``weights`` (path to end2end.pt).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Sequence

import numpy as np

from bench.adapters import register_adapter
from bench.adapters._util import (
    jit_load,
    failed_prediction,
    torchscript_devices,
    AdapterLoadError, existing_path, pil_resize_rgb, resize_mask_nearest, resolve_device, sha256_path,
)
from bench.errors import SampleError
from bench.core.types import Adapter, ModelInput, Prediction

log = logging.getLogger(__name__)

PAL4VST_SIZE = 512
PAL4VST_MEAN = (123.675, 116.28, 103.53)
PAL4VST_STD = (58.395, 57.12, 57.375)


def pal4vst_preprocess(image: np.ndarray) -> np.ndarray:
    """RGB uint8 H x W x 3 -> float32 3 x 512 x 512, exactly as the official demo: PIL bicubic
    resize to 512 x 512, then ``(x - mean) * float32(1 / float32(std))`` per channel."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected RGB uint8 H x W x 3, got {image.dtype} {image.shape}")
    small = pil_resize_rgb(image, PAL4VST_SIZE, PAL4VST_SIZE, "bicubic").astype(np.float32)
    mean = np.asarray(PAL4VST_MEAN, dtype=np.float32)
    stdinv = (1.0 / np.asarray(PAL4VST_STD, dtype=np.float32)).astype(np.float32)
    return np.ascontiguousarray(((small - mean) * stdinv).transpose(2, 0, 1), dtype=np.float32)


def pal4vst_postprocess(label_map: np.ndarray, height: int, width: int, where: str = "PAL4VST output") -> np.ndarray:
    """The model's label map (1 x 1 x h x w, 1 x h x w or h x w; 0 = clean, 1 = artifact) -> bool
    mask at (height, width), pixel-centre nearest neighbour."""
    arr = np.asarray(label_map)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise SampleError(where, f"expected a label map (1 x 1 x H x W), got shape {np.asarray(label_map).shape}")
    values = np.unique(arr)
    if not set(values.tolist()) <= {0, 1}:
        raise SampleError(where, f"label map has values {values[:6].tolist()}; expected 0/1 (argmax of 2 classes)")
    return resize_mask_nearest(arr.astype(bool), height, width)


def _normalise_device(device: str) -> str:
    import torch

    d = torch.device(device)
    if d.type == "cuda" and d.index is None:
        index = torch.cuda.current_device() if torch.cuda.is_available() else 0
        return f"cuda:{index}"
    return str(d)


def check_traced_device(model: Any, device: str, path: Any = "TorchScript file", asked: str | None = None) -> None:
    """Raise a one-line :class:`AdapterLoadError` when ``model``'s code has device constants
    (baked in by tracing) for a device other than ``device``.

    The traced device is the accelerator the constants name (``cuda:0``), else ``cpu``. A file
    without device constants runs anywhere."""
    baked = torchscript_devices(model)
    if not baked:
        return
    accel = sorted(d for d in baked if not d.startswith("cpu"))
    traced = accel or ["cpu"]
    want = _normalise_device(device)
    if want in traced or (want.startswith("cuda") and "cuda" in traced):
        return
    where = "cuda:0" if "cuda:0" in traced else traced[0]
    if where == "cpu":
        fix = "run with --device cpu, or re-export it with deployment/convert.sh --device cuda"
    else:
        fix = (f"run with --device {where} (a GPU is needed), or re-export it with PAL4VST's "
               "deployment/convert.sh --device cpu to run on the CPU")
    note = ""
    if asked and asked.startswith("cuda") and want == "cpu":
        note = f" ({asked!r} was asked but CUDA is not available here)"
    raise AdapterLoadError(
        f"PAL4VST weights {path}: the TorchScript file was traced on {', '.join(traced)} (device constants "
        f"in its code: {', '.join(sorted(baked))}) and cannot run on {want}{note}; {fix}"
    )


@register_adapter
class Pal4vstAdapter(Adapter):
    """PAL4VST TorchScript ``end2end.pt``: hard artifact mask."""

    name = "pal4vst"
    version = "1"
    tasks = frozenset({"localize"})
    #: one GPU: the published end2end.pt was traced on cuda:0 and runs only there (module doc)
    requirements: ClassVar[dict[str, Any]] = {
        "batch_size": 8, "num_gpus": 1, "gpu_memory_gb": 4, "needs_setup": True,
    }
    flags: ClassVar[dict[str, Any]] = {"hard_mask": True}
    summary = "PAL4VST (ICCV23) TorchScript end2end.pt, 512x512, hard mask; the published file needs cuda:0"
    #: the official end2end.pt: not the SynthScars-fine-tuned PAL4VST of LEGION's tables
    card: ClassVar[dict[str, str | None]] = {
        "paper": "Perceptual Artifacts Localization for Image Synthesis Tasks (ICCV 2023)",
        "code_url": "https://github.com/owenzlz/PAL4VST",
    }
    config_keys: ClassVar[frozenset[str]] = frozenset({"weights"})

    def __init__(self, **config: Any):
        super().__init__(**config)
        self._model = None
        self._device = "cpu"

    def load(self, device: str = "cpu") -> None:
        """Load ``end2end.pt`` onto ``device``; refuse a file traced on another device."""
        path = existing_path(self.config.get("weights"), "weights", self.name)
        asked = (device or "cpu").strip()
        self._device = resolve_device(asked)
        try:
            model = jit_load(path, self._device)
        except Exception as exc:
            raise AdapterLoadError(
                f"PAL4VST weights {path}: not a loadable TorchScript file ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:300]}). Pass the exported end2end.pt, not an mmseg .pth checkpoint."
            ) from None
        check_traced_device(model, self._device, path, asked)
        model.eval()
        self._model = model

    def weights_sha256(self) -> str | None:
        w = self.config.get("weights")
        return sha256_path(w) if w else None

    def predict(self, batch: Sequence[ModelInput]) -> list[Prediction]:
        import torch

        if self._model is None:
            raise AdapterLoadError("adapter 'pal4vst': predict() called before load()")
        out: list[Prediction] = []
        # One image per forward pass, as the official demo: the export was traced at batch 1.
        for item in batch:
            try:
                x = torch.from_numpy(pal4vst_preprocess(item.image))[None].to(self._device)
                with torch.inference_mode():
                    y = self._model(x)
                if isinstance(y, (tuple, list)):
                    y = y[0]
                h, w = item.image.shape[:2]
                mask = pal4vst_postprocess(y.detach().cpu().numpy(), h, w, where=item.sample_id)
            except (SampleError, RuntimeError) as exc:  # e.g. out of memory: this sample fails
                out.append(failed_prediction(f"{item.sample_id}: PAL4VST inference failed: {exc}"))
                continue
            out.append(Prediction(mask=mask))
        return out
