"""HiFi-Net (CVPR 2023, "Hierarchical Fine-Grained Image Forgery Detection and Localization"),
in-process from the user's checkout of github CHELSEA234/HiFi_IFDL (its code needs only torch and
``yacs``; ``pip install yacs``).

What the official general API (``HiFi_Net.py``, class ``HiFi_Net``) does, reproduced here:

- input: the image read as RGB, ``PIL.resize((256, 256), BICUBIC)``, ``/ 255.`` as float32,
  1 x 3 x 256 x 256, no mean/std;
- models: ``FENet = get_seg_model(get_cfg_defaults())`` (models/seg_hrnet.py) and
  ``SegNet = NLCDetection()`` (models/NLCDetection_api.py), weights
  ``weights/HRNet/750001.pth`` and ``weights/NLCDetection/750001.pth`` (``{"model": state
  dict}`` saved from ``nn.DataParallel``, keys prefixed ``module.``);
- localization: ``mask_feat`` (N x 18 x 256 x 256) -> per-pixel L2 distance to the stored centre
  (``center/radius_center.pth``; ``torch.nn.PairwiseDistance(p=2)``, eps 1e-6), pixel is forged
  when distance >= 2.3;
- detection: ``1 - softmax(cls_1)[0]`` over the 14 fine-grained classes (class 0 = real).

Differences on purpose: the official ``restore_weight_helper`` catches a failed load, prints
"weight-loading fails" and runs on RANDOM weights — here a weight file that does not load, or
does not fit the model exactly, is an error. The official code hard-codes ``cuda:0``, and its
``NLCDetection.__init__`` calls ``.cuda()`` (two index tensors the forward pass never uses):
building the model needs a CUDA GPU, and on a machine without one :meth:`HifiNetAdapter.load`
raises an :class:`AdapterLoadError` saying so. Past the build, the forward pass runs on the
device ``load(device)`` gets. The official API localizes one image per call; here a batch goes
through together (eval-mode batch norm: the same numbers per image), and if a batch fails its
images are re-run one by one so only the failing ones become failed samples. The 256 x 256
mask is resized back to the image with pixel-centre nearest neighbour.

``models/seg_hrnet.py`` uses ``np.int`` (removed in numpy 1.24; the official environment pins
numpy 1.21.5): while the checkout's code is imported, built or run, ``np.int`` is the builtin
``int`` (what it aliased), and the alias is removed again afterwards (:func:`numpy_int_alias`).
The checkout's ``models`` package is only in ``sys.modules`` while its code runs
(:class:`bench.adapters._util.RepoImports`; TruFor's checkout has a top-level ``models`` too).

Config: ``repo`` (checkout), ``weights`` (folder holding ``HRNet/`` and ``NLCDetection/``;
default ``<repo>/weights``), ``epoch`` (750001), ``center`` (default
``<repo>/center/radius_center.pth``), ``threshold`` (2.3), ``allow_pickle`` (false).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np

from bench.adapters import register_adapter
from bench.adapters._util import (
    as_bool,
    error_line,
    failed_prediction,
    AdapterLoadError, existing_path, load_state_dict_strict, load_torch_checkpoint, pil_resize_rgb,
    repo_imports, resize_mask_nearest, resolve_device, sha256_path, strip_prefix,
)
from bench.core.types import Adapter, ModelInput, Prediction

HIFINET_SIZE = 256
HIFINET_THRESHOLD = 2.3
HIFINET_EPOCH = 750001


@contextlib.contextmanager
def numpy_int_alias() -> Iterator[None]:
    """``np.int`` = builtin ``int`` inside the block only.

    HiFi-Net's ``models/seg_hrnet.py`` (``HighResolutionNet.__init__``) calls ``np.int(...)``,
    an alias of the builtin ``int`` that numpy deprecated in 1.20 and removed in 1.24 (its
    environment pins 1.21.5). Setting it process-wide would hide that removal from every other
    library, so it is set only while the checkout's code runs and deleted afterwards. With a
    numpy that still has it, nothing is changed.
    """
    if "int" in vars(np):
        yield
        return
    np.int = int  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if vars(np).get("int") is int:
            del np.int  # type: ignore[attr-defined]


def _is_cuda_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(w in text for w in ("cuda", "nvidia", "gpu"))


def hifinet_preprocess(image: np.ndarray) -> np.ndarray:
    """RGB uint8 H x W x 3 -> float32 3 x 256 x 256: PIL bicubic resize, / 255 (official API)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected RGB uint8 H x W x 3, got {image.dtype} {image.shape}")
    small = pil_resize_rgb(image, HIFINET_SIZE, HIFINET_SIZE, "bicubic")
    return np.ascontiguousarray((small.astype(np.float32) / 255.0).transpose(2, 0, 1))


def hifinet_distance_map(mask_feat: Any, center: Any) -> Any:
    """Per-pixel distance to the real-pixel centre: ``||f - c + 1e-6||_2`` over channels
    (torch's PairwiseDistance, as the official IsolatingLossFunction.inference).
    ``mask_feat`` N x C x H x W tensor, ``center`` C tensor -> N x H x W tensor."""
    import torch

    n, c, h, w = mask_feat.shape
    flat = mask_feat.permute(0, 2, 3, 1).reshape(-1, c)
    dist = torch.nn.functional.pairwise_distance(flat, center.reshape(1, c).to(flat), p=2.0, eps=1e-6)
    return dist.reshape(n, h, w)


def hifinet_outputs(dist: np.ndarray, cls_logits: np.ndarray, height: int, width: int,
                    threshold: float = HIFINET_THRESHOLD) -> tuple[np.ndarray, float]:
    """(mask at the image size, fakeness score) for one image: ``dist >= threshold`` resized
    back with nearest neighbour, and ``1 - softmax(cls_logits)[0]``."""
    mask = resize_mask_nearest(np.asarray(dist) >= threshold, height, width)
    z = np.asarray(cls_logits, dtype=np.float64).ravel()
    p = np.exp(z - z.max())
    p /= p.sum()
    return mask, float(min(1.0, max(0.0, 1.0 - p[0])))


@register_adapter
class HifiNetAdapter(Adapter):
    """HiFi-Net's official general API from the user's checkout (hard mask + detection score)."""

    name = "hifinet"
    version = "1"
    tasks = frozenset({"detect", "localize"})
    requirements: ClassVar[dict[str, Any]] = {
        "batch_size": 16, "num_gpus": 1, "gpu_memory_gb": 4, "needs_setup": True,
    }
    flags: ClassVar[dict[str, Any]] = {"hard_mask": True}
    config_keys: ClassVar[frozenset[str]] = frozenset({"repo", "weights", "epoch", "center", "threshold", "allow_pickle"})
    summary = "HiFi-Net (CVPR23) official API from your checkout; 256x256, distance >= 2.3"
    card: ClassVar[dict[str, str | None]] = {
        "paper": "Hierarchical Fine-Grained Image Forgery Detection and Localization (CVPR 2023)",
        "code_url": "https://github.com/CHELSEA234/HiFi_IFDL",
        "licence": "MIT",
    }

    def __init__(self, **config: Any):
        super().__init__(**config)
        self._fenet = self._segnet = self._center = None
        self._device = "cpu"
        self._imports = None  # the checkout's import context, re-entered for each forward pass

    # -- paths ----------------------------------------------------------------------------
    def _paths(self) -> tuple[Path, Path, Path, Path]:
        repo = existing_path(self.config.get("repo"), "repo", self.name)
        weights = Path(str(self.config.get("weights") or repo / "weights")).expanduser()
        epoch = int(self.config.get("epoch", HIFINET_EPOCH))
        center = Path(str(self.config.get("center") or repo / "center" / "radius_center.pth")).expanduser()
        fe, seg = weights / "HRNet" / f"{epoch}.pth", weights / "NLCDetection" / f"{epoch}.pth"
        for p, what in ((fe, "HRNet weights"), (seg, "NLCDetection weights"), (center, "centre file")):
            if not p.is_file():
                raise AdapterLoadError(f"adapter 'hifinet': {what} {p} not found")
        return repo, fe, seg, center

    def weights_sha256(self) -> str | None:
        try:
            _, fe, seg, center = self._paths()
        except AdapterLoadError:
            return None
        import hashlib

        h = hashlib.sha256()
        for p in (fe, seg, center):
            h.update(sha256_path(p).encode())
        return h.hexdigest()

    # -- loading --------------------------------------------------------------------------
    def load(self, device: str = "cpu") -> None:
        import torch

        repo, fe_path, seg_path, center_path = self._paths()
        self._fenet = self._segnet = self._center = None
        self._device = resolve_device(device)
        allow = as_bool(self.config.get("allow_pickle", False))
        imports = repo_imports(repo, ("models",))
        try:
            with imports, numpy_int_alias():
                from models.NLCDetection_api import NLCDetection  # type: ignore[import-not-found]
                from models.seg_hrnet import get_seg_model  # type: ignore[import-not-found]
                from models.seg_hrnet_config import get_cfg_defaults  # type: ignore[import-not-found]

                fenet = get_seg_model(get_cfg_defaults())
                segnet = NLCDetection()
        except ModuleNotFoundError as exc:
            raise AdapterLoadError(
                f"adapter 'hifinet': cannot import HiFi-Net's code from {repo} ({exc}); "
                "is repo a HiFi_IFDL checkout, and is 'yacs' installed (pip install yacs)?"
            ) from None
        except Exception as exc:
            if not torch.cuda.is_available() and _is_cuda_error(exc):
                raise AdapterLoadError(
                    "adapter 'hifinet': HiFi-Net's official code needs a CUDA GPU: NLCDetection.__init__ "
                    "(models/NLCDetection_api.py) calls .cuda(), and this machine has no usable CUDA device "
                    f"({error_line(exc, 200)})") from None
            raise AdapterLoadError(f"adapter 'hifinet': building the model failed: {error_line(exc)}") from None
        for module, path, what in ((fenet, fe_path, "HiFi-Net HRNet"), (segnet, seg_path, "HiFi-Net NLCDetection")):
            ckpt = load_torch_checkpoint(path, allow_pickle=allow, what=f"{what} weights")
            if not isinstance(ckpt, dict) or "model" not in ckpt:
                raise AdapterLoadError(f"{what} weights {path}: expected a dict with key 'model' (official format)")
            load_state_dict_strict(module, strip_prefix(ckpt["model"]), f"{what} weights {path}")
        cr = load_torch_checkpoint(center_path, allow_pickle=allow, what="HiFi-Net centre file")
        if not isinstance(cr, dict) or "center" not in cr:
            raise AdapterLoadError(f"HiFi-Net centre file {center_path}: expected a dict with key 'center'")
        center = torch.as_tensor(cr["center"], dtype=torch.float32).reshape(-1)
        if center.numel() != 18:
            raise AdapterLoadError(f"HiFi-Net centre file {center_path}: 'center' has {center.numel()} values, "
                                   "the model's features have 18")
        self._center = center.to(self._device)
        self._imports = imports
        self._fenet = fenet.to(self._device).eval()
        self._segnet = segnet.to(self._device).eval()

    # -- inference ------------------------------------------------------------------------
    def _forward(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """Distance maps (N x 256 x 256) and level-1 logits (N x 14) for a preprocessed batch."""
        import torch

        assert self._imports is not None
        with self._imports, numpy_int_alias(), torch.inference_mode():
            x = x.to(self._device)
            feats = self._fenet(x)
            mask_feat, _mask_binary, _c4, _c3, _c2, cls_1 = self._segnet(feats, x)
            dist = hifinet_distance_map(mask_feat.float(), self._center).cpu().numpy()
            logits = cls_1.float().cpu().numpy()
        return dist, logits

    def predict(self, batch: Sequence[ModelInput]) -> list[Prediction]:
        import torch

        if self._fenet is None:
            raise AdapterLoadError("adapter 'hifinet': predict() called before load()")
        if not batch:
            return []
        threshold = float(self.config.get("threshold", HIFINET_THRESHOLD))
        out: list[Prediction | None] = [None] * len(batch)
        ready: list[tuple[int, np.ndarray]] = []
        for i, item in enumerate(batch):
            try:
                ready.append((i, hifinet_preprocess(item.image)))
            except Exception as exc:  # a bad input fails its own sample only
                out[i] = failed_prediction(f"{item.sample_id}: HiFi-Net preprocessing failed: {error_line(exc)}")
        groups = [ready] if ready else []
        while groups:
            group = groups.pop(0)
            try:
                dist, logits = self._forward(torch.from_numpy(np.stack([a for _, a in group])))
            except Exception as exc:
                if len(group) > 1:  # find the image that fails: re-run them one by one
                    groups = [[g] for g in group] + groups
                    continue
                i = group[0][0]
                out[i] = failed_prediction(f"{batch[i].sample_id}: HiFi-Net inference failed: {error_line(exc)}")
                continue
            for k, (i, _) in enumerate(group):
                h, w = batch[i].image.shape[:2]
                try:
                    mask, score = hifinet_outputs(dist[k], logits[k], h, w, threshold)
                except Exception as exc:
                    out[i] = failed_prediction(f"{batch[i].sample_id}: HiFi-Net outputs failed: {error_line(exc)}")
                    continue
                out[i] = Prediction(mask=mask, score=score)
        return [p if p is not None else failed_prediction(f"{b.sample_id}: HiFi-Net gave no output")
                for p, b in zip(out, batch)]
