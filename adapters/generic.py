"""Generic adapters: new methods need no code, only a checkpoint and a config.

- ``hf-segmentation``: a local Hugging Face semantic-segmentation checkpoint
  (``AutoModelForSemanticSegmentation`` + ``AutoImageProcessor``, offline); heatmap =
  softmax over classes, class ``artifact_index``, upsampled bilinearly to the image size.
- ``timm-classifier``: a timm model name + checkpoint file for detection; preprocessing from
  timm's ``resolve_data_config`` / ``create_transform`` (eval mode); score =
  softmax[``fake_index``].
- ``torchscript-seg`` / ``onnx-seg``: a segmentation model file with a declared preprocessing
  (:class:`SegSpec`): input size, resize filter, scale, mean, std, channel order; output kind
  ``logits`` / ``probabilities`` / ``argmax`` and the artifact channel.

Heavy libraries load inside ``load()``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from bench.adapters import register_adapter
from bench.adapters._util import (
    as_bool, as_list,
    jit_load,
    AdapterLoadError, existing_path, failed_prediction, load_state_dict_strict, load_torch_checkpoint,
    pil_resize_rgb, resize_mask_nearest, resize_prob_bilinear, resolve_device, sha256_path, strip_prefix,
)
from bench.errors import BenchError, SampleError
from bench.core.types import Adapter, ModelInput, Prediction

log = logging.getLogger(__name__)


def _batch_size_override(adapter: Adapter, config: dict[str, Any]) -> None:
    if "batch_size" in config:
        adapter.requirements = dict(type(adapter).requirements, batch_size=int(config["batch_size"]))


def _score_rule(config: dict[str, Any], adapter: str) -> str | None:
    rule = config.get("score")
    if rule not in (None, "max", "mean"):
        raise BenchError(f"adapter {adapter!r}: score must be 'max', 'mean' or unset, not {rule!r}")
    return rule


def _score_from(heatmap: np.ndarray | None, mask: np.ndarray | None, rule: str | None) -> float | None:
    if rule is None:
        return None
    arr = heatmap if heatmap is not None else np.asarray(mask, dtype=np.float32)
    return float(arr.max() if rule == "max" else arr.mean())


# ==========================================================================================
# Hugging Face semantic segmentation
# ==========================================================================================
@register_adapter
class HFSegmentationAdapter(Adapter):
    """A local Hugging Face semantic-segmentation checkpoint (e.g. a fine-tuned SegFormer).

    Config: ``path`` (folder with config.json, weights and preprocessor_config.json),
    ``artifact_index`` (class index of "artifact", default 1), ``score`` (``max``/``mean`` of the
    heatmap as a detection score, default none), ``batch_size``.
    """

    name = "hf-segmentation"
    version = "1"
    tasks = frozenset({"localize"})
    requirements: ClassVar[dict[str, Any]] = {
        "batch_size": 8, "num_gpus": 0, "gpu_memory_gb": 2, "needs_setup": True,
    }
    summary = "local Hugging Face semantic-segmentation checkpoint; softmax[artifact_index], bilinear"
    runtime_keys: ClassVar[frozenset[str]] = frozenset({"batch_size"})
    config_keys: ClassVar[frozenset[str]] = frozenset({"path", "artifact_index", "score"})

    def __init__(self, **config: Any):
        config.setdefault("artifact_index", 1)
        super().__init__(**config)
        _batch_size_override(self, config)
        if _score_rule(config, self.name):
            self.tasks = frozenset({"localize", "detect"})
        self._model = self._processor = None
        self._device = "cpu"

    def weights_sha256(self) -> str | None:
        p = self.config.get("path")
        return sha256_path(p) if p and Path(str(p)).exists() else None

    def load(self, device: str = "cpu") -> None:
        path = existing_path(self.config.get("path"), "path", self.name)
        from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

        self._device = resolve_device(device)
        try:
            self._processor = AutoImageProcessor.from_pretrained(str(path), local_files_only=True)
            model = AutoModelForSemanticSegmentation.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:
            raise AdapterLoadError(f"adapter 'hf-segmentation': cannot load {path}: {type(exc).__name__}: {exc}") from None
        k = int(self.config["artifact_index"])
        n = int(getattr(model.config, "num_labels", 0) or 0)
        if not 0 <= k < n:
            raise AdapterLoadError(f"adapter 'hf-segmentation': artifact_index {k} but the model has {n} classes")
        self._model = model.to(self._device).eval()

    def _forward(self, images: list[np.ndarray]) -> Any:
        import torch

        enc = self._processor(images=images, return_tensors="pt")
        with torch.inference_mode():
            logits = self._model(pixel_values=enc["pixel_values"].to(self._device)).logits
        return torch.softmax(logits.float(), dim=1)[:, int(self.config["artifact_index"])]

    def predict(self, batch: Sequence[ModelInput]) -> list[Prediction]:
        import torch
        import torch.nn.functional as F

        if self._model is None:
            raise AdapterLoadError("adapter 'hf-segmentation': predict() called before load()")
        if not batch:
            return []
        try:
            probs = list(self._forward([b.image for b in batch]))
        except (ValueError, RuntimeError):  # a processor that keeps sizes cannot stack: one by one
            probs = [self._forward([b.image])[0] for b in batch]
        rule = _score_rule(self.config, self.name)
        out = []
        for item, prob in zip(batch, probs):
            h, w = item.image.shape[:2]
            with torch.inference_mode():
                up = F.interpolate(prob[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
                heat = up.clamp(0.0, 1.0).cpu().numpy().astype(np.float32)
            out.append(Prediction(heatmap=heat, score=_score_from(heat, None, rule)))
        return out


# ==========================================================================================
# timm classifier (detection)
# ==========================================================================================
def load_any_state_dict(path: Path, *, allow_pickle: bool, what: str) -> dict[str, Any]:
    """A state dict from ``.safetensors`` or a torch file, unwrapping ``state_dict`` / ``model``
    and a ``module.`` prefix."""
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file

            sd = load_file(str(path))
        except Exception as exc:
            raise AdapterLoadError(f"{what} {path}: cannot load ({type(exc).__name__}: {exc})") from None
    else:
        sd = load_torch_checkpoint(path, allow_pickle=allow_pickle, what=what)
        for key in ("state_dict", "model"):
            if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
                sd = sd[key]
                break
    if not isinstance(sd, dict):
        raise AdapterLoadError(f"{what} {path}: expected a state dict, got {type(sd).__name__}")
    return strip_prefix(sd)


@register_adapter
class TimmClassifierAdapter(Adapter):
    """A timm image classifier fine-tuned for real/fake: score = softmax[fake_index].

    Config: ``model`` (timm architecture name), ``checkpoint`` (state dict file: .pth/.pt/.bin
    or .safetensors), ``num_classes`` (2), ``fake_index`` (1), ``allow_pickle`` (false), and
    optional overrides of timm's data config: ``input_size`` ([3, H, W]), ``mean``, ``std``,
    ``crop_pct``, ``crop_mode``, ``interpolation``. The resolved data config (a function of
    the model name and these overrides) is in ``self.data_config`` after ``load``.
    """

    name = "timm-classifier"
    version = "1"
    tasks = frozenset({"detect"})
    requirements: ClassVar[dict[str, Any]] = {
        "batch_size": 32, "num_gpus": 0, "gpu_memory_gb": 2, "needs_setup": True,
    }
    summary = "timm classifier checkpoint for detection; timm's eval preprocessing; softmax[fake_index]"
    runtime_keys: ClassVar[frozenset[str]] = frozenset({"batch_size"})

    _DATA_KEYS = ("input_size", "mean", "std", "crop_pct", "crop_mode", "interpolation")
    config_keys: ClassVar[frozenset[str]] = frozenset(
        {"model", "checkpoint", "num_classes", "fake_index", "allow_pickle", *_DATA_KEYS})

    def __init__(self, **config: Any):
        config.setdefault("num_classes", 2)
        config.setdefault("fake_index", 1)
        super().__init__(**config)
        _batch_size_override(self, config)
        if not config.get("model"):
            raise BenchError("adapter 'timm-classifier': config 'model' (a timm architecture name) is required")
        self._model = self._transform = None
        self.data_config: dict[str, Any] | None = None
        self._device = "cpu"

    def weights_sha256(self) -> str | None:
        p = self.config.get("checkpoint")
        return sha256_path(p) if p and Path(str(p)).exists() else None

    def load(self, device: str = "cpu") -> None:
        ckpt = existing_path(self.config.get("checkpoint"), "checkpoint", self.name)
        import timm
        from timm.data import create_transform, resolve_data_config

        self._device = resolve_device(device)
        n, k = int(self.config["num_classes"]), int(self.config["fake_index"])
        if not 0 <= k < n:
            raise AdapterLoadError(f"adapter 'timm-classifier': fake_index {k} outside 0..{n - 1}")
        try:
            model = timm.create_model(str(self.config["model"]), pretrained=False, num_classes=n)
        except Exception as exc:
            raise AdapterLoadError(f"adapter 'timm-classifier': cannot create {self.config['model']!r}: {exc}") from None
        sd = load_any_state_dict(ckpt, allow_pickle=as_bool(self.config.get("allow_pickle", False)),
                                 what="timm checkpoint")
        load_state_dict_strict(model, sd, f"timm checkpoint {ckpt}")
        overrides = {key: self.config[key] for key in self._DATA_KEYS if key in self.config}
        for key, cast in (("input_size", int), ("mean", float), ("std", float)):
            if key in overrides:
                overrides[key] = tuple(as_list(overrides[key], cast))
        if "crop_pct" in overrides:
            overrides["crop_pct"] = float(overrides["crop_pct"])
        self.data_config = resolve_data_config(overrides, model=model)
        self._transform = create_transform(**self.data_config, is_training=False)
        self._model = model.to(self._device).eval()

    def predict(self, batch: Sequence[ModelInput]) -> list[Prediction]:
        import torch
        from PIL import Image

        if self._model is None:
            raise AdapterLoadError("adapter 'timm-classifier': predict() called before load()")
        if not batch:
            return []
        x = torch.stack([self._transform(Image.fromarray(b.image, mode="RGB")) for b in batch]).to(self._device)
        with torch.inference_mode():
            probs = torch.softmax(self._model(x).float(), dim=1)[:, int(self.config["fake_index"])]
        return [Prediction(score=float(p)) for p in probs.cpu().tolist()]


# ==========================================================================================
# TorchScript / ONNX segmentation with a declared preprocessing
# ==========================================================================================
@dataclass(frozen=True)
class SegSpec:
    """Declared preprocessing and output convention of a segmentation model file.

    Input: the RGB uint8 image, resized to ``input_size`` = (H, W) with PIL ``resize`` filter
    (``None``: native size, one image per pass), channels reordered to ``channel_order``, then
    ``x = (pixel * scale - mean) / std`` per channel (mean/std in the units of pixel * scale, in
    the model's channel order), laid out N x 3 x H x W float32.

    Output (N x C x h x w, or N x h x w): ``logits`` (softmax over C, or sigmoid when C = 1),
    ``probabilities`` (taken as they are, must lie in [0, 1]) or ``argmax`` (a label map;
    artifact where label == ``artifact_channel``). Heatmaps go back to the image size
    bilinearly, label maps with nearest neighbour.
    """

    input_size: tuple[int, int] | None = None
    resize: str = "bilinear"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    channel_order: str = "RGB"
    output: str = "logits"
    artifact_channel: int = 1

    @classmethod
    def from_config(cls, config: dict[str, Any], adapter: str) -> "SegSpec":
        def triple(key: str, default: tuple[float, float, float]) -> tuple[float, float, float]:
            v = as_list(config.get(key, default), float)
            if len(v) == 1:
                v = v * 3
            if len(v) != 3:
                raise BenchError(f"adapter {adapter!r}: {key} needs 3 numbers, got {config.get(key)!r}")
            return tuple(v)  # type: ignore[return-value]

        size = as_list(config["input_size"], int) if config.get("input_size") not in (None, "", "null") else None
        if size is not None and len(size) == 1:
            size = size * 2
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise BenchError(f"adapter {adapter!r}: input_size must be [H, W], got {config.get('input_size')!r}")
        spec = cls(
            input_size=tuple(size) if size else None,  # type: ignore[arg-type]
            resize=str(config.get("resize", "bilinear")),
            scale=float(config.get("scale", 1.0 / 255.0)),
            mean=triple("mean", (0.0, 0.0, 0.0)),
            std=triple("std", (1.0, 1.0, 1.0)),
            channel_order=str(config.get("channel_order", "RGB")).upper(),
            output=str(config.get("output", "logits")),
            artifact_channel=int(config.get("artifact_channel", 1)),
        )
        if spec.channel_order not in ("RGB", "BGR"):
            raise BenchError(f"adapter {adapter!r}: channel_order must be RGB or BGR")
        if spec.output not in ("logits", "probabilities", "argmax"):
            raise BenchError(f"adapter {adapter!r}: output must be logits, probabilities or argmax")
        if any(s == 0 for s in spec.std):
            raise BenchError(f"adapter {adapter!r}: std must not contain 0")
        if spec.resize not in ("nearest", "bilinear", "bicubic", "lanczos", "box"):
            raise BenchError(f"adapter {adapter!r}: resize must be nearest, bilinear, bicubic, lanczos or box")
        return spec


def seg_preprocess(image: np.ndarray, spec: SegSpec) -> np.ndarray:
    """RGB uint8 H x W x 3 -> float32 3 x h x w per :class:`SegSpec`."""
    img = image
    if spec.input_size is not None:
        h, w = spec.input_size
        img = pil_resize_rgb(img, w, h, spec.resize)
    if spec.channel_order == "BGR":
        img = img[..., ::-1]
    x = img.astype(np.float32) * np.float32(spec.scale)
    x = (x - np.asarray(spec.mean, dtype=np.float32)) / np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


def seg_postprocess(out: np.ndarray, spec: SegSpec, height: int, width: int,
                    where: str = "model output") -> tuple[np.ndarray | None, np.ndarray | None]:
    """One image's raw output (C x h x w or h x w) -> (heatmap, mask) at (height, width);
    exactly one of them is not None."""
    arr = np.asarray(out)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise SampleError(where, f"model output has shape {np.asarray(out).shape}; expected C x H x W or H x W")
    c, k = arr.shape[0], spec.artifact_channel
    if spec.output == "argmax":
        labels = arr[0] if c == 1 else arr.argmax(axis=0)
        return None, resize_mask_nearest(labels == k, height, width)
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise SampleError(where, "model output contains NaN or infinity")
    if c == 1:
        prob = 1.0 / (1.0 + np.exp(-arr[0])) if spec.output == "logits" else arr[0]
    else:
        if not 0 <= k < c:
            raise SampleError(where, f"artifact_channel {k} but the output has {c} channels")
        if spec.output == "logits":
            z = arr - arr.max(axis=0, keepdims=True)
            e = np.exp(z)
            prob = e[k] / e.sum(axis=0)
        else:
            prob = arr[k]
    if spec.output == "probabilities" and (prob.min() < -1e-6 or prob.max() > 1 + 1e-6):
        raise SampleError(where, f"output declared as probabilities but spans [{prob.min():.4g}, {prob.max():.4g}]")
    return resize_prob_bilinear(prob, height, width), None


class _SegFileAdapter(Adapter):
    """Shared code of ``torchscript-seg`` and ``onnx-seg``: config ``model`` (file path), the
    :class:`SegSpec` keys, ``score`` (``max``/``mean``), ``batch_size``."""

    tasks = frozenset({"localize"})
    requirements: ClassVar[dict[str, Any]] = {
        "batch_size": 8, "num_gpus": 0, "gpu_memory_gb": 2, "needs_setup": True,
    }
    runtime_keys: ClassVar[frozenset[str]] = frozenset({"batch_size", "threads", "providers"})
    config_keys: ClassVar[frozenset[str]] = frozenset(
        {"model", "input_size", "resize", "scale", "mean", "std", "channel_order", "output",
         "artifact_channel", "score"})

    def __init__(self, **config: Any):
        super().__init__(**config)
        _batch_size_override(self, config)
        self.spec = SegSpec.from_config(config, self.name)
        if _score_rule(config, self.name):
            self.tasks = frozenset({"localize", "detect"})
        if self.spec.output == "argmax":
            self.flags = dict(type(self).flags, hard_mask=True)
        self._can_batch = True

    def weights_sha256(self) -> str | None:
        p = self.config.get("model")
        return sha256_path(p) if p and Path(str(p)).exists() else None

    def _run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, batch: Sequence[ModelInput]) -> list[Prediction]:
        if not batch:
            return []
        xs = [seg_preprocess(b.image, self.spec) for b in batch]
        outs: list[np.ndarray | Exception]
        if self.spec.input_size is not None and self._can_batch and len(xs) > 1:
            try:
                y = self._run(np.stack(xs))
                if y.shape[0] != len(xs):
                    raise RuntimeError(f"batched output has {y.shape[0]} items for {len(xs)} inputs")
                outs = list(y)
            except Exception as exc:  # a model exported for batch 1: one image per pass from now on
                log.info("%s: batched inference failed (%s); running one image at a time", self.name, exc)
                self._can_batch = False
                outs = self._one_by_one(xs)
        else:
            outs = self._one_by_one(xs)
        rule = _score_rule(self.config, self.name)
        preds = []
        for item, y in zip(batch, outs):
            if isinstance(y, Exception):
                preds.append(failed_prediction(f"{item.sample_id}: inference failed: {y}"))
                continue
            h, w = item.image.shape[:2]
            try:
                heat, mask = seg_postprocess(y, self.spec, h, w, where=item.sample_id)
            except SampleError as exc:
                preds.append(failed_prediction(str(exc)))
                continue
            preds.append(Prediction(heatmap=heat, mask=mask, score=_score_from(heat, mask, rule)))
        return preds

    def _one_by_one(self, xs: list[np.ndarray]) -> list[np.ndarray | Exception]:
        outs: list[np.ndarray | Exception] = []
        for x in xs:
            try:
                outs.append(self._run(x[None])[0])
            except Exception as exc:
                outs.append(exc)
        return outs


@register_adapter
class TorchScriptSegAdapter(_SegFileAdapter):
    """A TorchScript segmentation model (``torch.jit.load``) with a declared preprocessing."""

    name = "torchscript-seg"
    version = "1"
    summary = "TorchScript segmentation model with declared preprocessing (size, mean, std, output kind)"

    def load(self, device: str = "cpu") -> None:
        path = existing_path(self.config.get("model"), "model", self.name)
        self._device = resolve_device(device)
        try:
            self._model = jit_load(path, self._device).eval()
        except Exception as exc:
            raise AdapterLoadError(f"adapter 'torchscript-seg': {path} is not a loadable TorchScript file "
                                   f"({type(exc).__name__}: {str(exc)[:300]})") from None

    def _run(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            y = self._model(torch.from_numpy(x).to(self._device))
        if isinstance(y, (tuple, list)):
            y = y[0]
        if isinstance(y, dict):
            y = y.get("logits", next(iter(y.values())))
        return y.detach().float().cpu().numpy() if y.is_floating_point() else y.detach().cpu().numpy()


@register_adapter
class OnnxSegAdapter(_SegFileAdapter):
    """An ONNX segmentation model (onnxruntime) with a declared preprocessing. Config
    ``providers`` (default: CUDA when the device is CUDA and available, else CPU), ``threads``."""

    name = "onnx-seg"
    version = "1"
    summary = "ONNX segmentation model (onnxruntime) with declared preprocessing"

    def load(self, device: str = "cpu") -> None:
        import onnxruntime as ort

        path = existing_path(self.config.get("model"), "model", self.name)
        providers = self.config.get("providers")
        if not providers:
            avail = ort.get_available_providers()
            providers = ["CUDAExecutionProvider"] if str(device).startswith("cuda") and \
                "CUDAExecutionProvider" in avail else []
            providers.append("CPUExecutionProvider")
        opts = ort.SessionOptions()
        if self.config.get("threads"):
            opts.intra_op_num_threads = int(self.config["threads"])
        try:
            self._session = ort.InferenceSession(str(path), sess_options=opts, providers=list(providers))
        except Exception as exc:
            raise AdapterLoadError(f"adapter 'onnx-seg': cannot load {path}: {type(exc).__name__}: {exc}") from None
        inp = self._session.get_inputs()[0]
        self._input_name = inp.name
        first = inp.shape[0] if inp.shape else None
        self._can_batch = not isinstance(first, int) or first != 1

    def _run(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._session.run(None, {self._input_name: x})[0])
