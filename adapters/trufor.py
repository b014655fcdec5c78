"""TruFor (CVPR 2023), in-process from the user's checkout of github grip-unina/TruFor, using the
test code in ``test_docker/src`` (its dependencies, torch + timm + ``yacs``, fit ours;
``pip install yacs``). TruFor's licence is non-commercial: the user supplies the checkout and
the weights (``test_docker/weights/trufor.pth.tar``).

What the official ``trufor_test.py`` does, reproduced here:

- input: ``np.array(Image.open(f).convert("RGB"))``, full resolution, as float
  ``tensor / 256.0`` (256, not 255), 1 x 3 x H x W, one image per forward pass;
- model: ``config._C`` merged with ``trufor.yaml`` (``detconfcmx``: SegFormer-B2 CMX with
  Noiseprint++, confidence and detection heads), ``myEncoderDecoder(cfg)``, weights
  ``load_state_dict(checkpoint["state_dict"])`` (strict), ``model.eval()``, forward under
  ``torch.no_grad()`` (here ``inference_mode``), batch size 1; on GPU the yaml's cuDNN
  switches (all off) are set, as the script does — the script sets them for its whole
  process, this adapter only around each of its forward passes (previous values restored),
  so other adapters in the same process keep theirs;
- outputs: ``map = softmax(pred)[1]`` (artifact probability at the input size),
  ``conf = sigmoid(conf)``, ``score = sigmoid(det)``; the script catches any error of one
  image (prints it, writes no output for it) and goes on — here that image is a failed sample.

The model imports its own helpers during the forward pass (``from .layer_utils import ...``
in ``models/cmx/builder_np_conf.py``), so every forward pass runs inside the checkout's import
context (:class:`bench.adapters._util.RepoImports`); outside it, the checkout's ``models`` /
``config`` / ``data_core`` modules are not in ``sys.modules`` (HiFi-Net's checkout has a
``models`` package too).

Here: heatmap = ``map`` (the harness's mask is heatmap > 0.5), score = ``score``, and the
confidence map's mean is in ``extras["conf_mean"]`` and the map itself in ``extras["conf_png"]``
(8-bit PNG, base64: JSON-safe; :func:`decode_unit_map_png`; ``keep_conf=false`` drops it). It
is NOT multiplied into the map (other wrappers do that; numbers then differ).

Config: ``repo`` (checkout root, or its ``test_docker/src``), ``weights`` (default
``<repo>/test_docker/weights/trufor.pth.tar``), ``allow_pickle`` (false), ``keep_conf`` (true).
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
    AdapterLoadError, existing_path, load_state_dict_strict, load_torch_checkpoint, repo_imports,
    resolve_device, sha256_path,
)
from bench.core.types import Adapter, ModelInput, Prediction


def trufor_preprocess(image: np.ndarray) -> np.ndarray:
    """RGB uint8 H x W x 3 -> float32 3 x H x W = pixel / 256 (the official divisor)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected RGB uint8 H x W x 3, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / np.float32(256.0)


def trufor_outputs(pred: Any, conf: Any, det: Any) -> tuple[np.ndarray, np.ndarray | None, float | None]:
    """Official output rule for one image: (``softmax(pred)[1]``, ``sigmoid(conf)[0]``,
    ``sigmoid(det)``). ``pred`` 1 x 2 x H x W logits, ``conf`` 1 x 1 x H x W or None, ``det``
    1 x 1 or None (torch tensors)."""
    import torch

    heat = torch.softmax(pred[0].float(), dim=0)[1].cpu().numpy().astype(np.float32)
    conf_map = torch.sigmoid(conf[0].float())[0].cpu().numpy().astype(np.float32) if conf is not None else None
    score = float(torch.sigmoid(det.float()).reshape(-1)[0].item()) if det is not None else None
    return heat, conf_map, score


def encode_unit_map_png(arr: np.ndarray) -> str:
    """A map in [0, 1] as a base64 8-bit greyscale PNG (value = round(255 * x)), so it fits in a
    Prediction's JSON ``extras``. :func:`decode_unit_map_png` reverses it (to within 1/510)."""
    import base64
    import io

    from PIL import Image

    q = np.clip(np.rint(np.asarray(arr, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(q, mode="L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_unit_map_png(text: str) -> np.ndarray:
    """float32 H x W in [0, 1] from :func:`encode_unit_map_png`'s output."""
    import base64
    import io

    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(text))) as img:
        return np.asarray(img, dtype=np.float32) / 255.0


@register_adapter
class TruForAdapter(Adapter):
    """TruFor's official test code from the user's checkout: heatmap, score, confidence."""

    name = "trufor"
    version = "1"
    tasks = frozenset({"detect", "localize"})
    requirements: ClassVar[dict[str, Any]] = {
        "batch_size": 4, "num_gpus": 1, "gpu_memory_gb": 8, "needs_setup": True,
    }
    flags: ClassVar[dict[str, Any]] = {"non_commercial": True}
    config_keys: ClassVar[frozenset[str]] = frozenset({"repo", "weights", "allow_pickle", "keep_conf"})
    summary = "TruFor (CVPR23) official test code from your checkout; full res /256, map=softmax[1]"
    card: ClassVar[dict[str, str | None]] = {
        "paper": "TruFor (CVPR 2023)",
        "code_url": "https://github.com/grip-unina/TruFor",
        "licence": "non-commercial (TruFor's own licence)",
    }

    def __init__(self, **config: Any):
        super().__init__(**config)
        self._model = None
        self._device = "cpu"
        self._imports = None  # the checkout's import context, re-entered for each forward pass
        self._cudnn: tuple[bool, bool, bool] | None = None  # yaml's (benchmark, deterministic, enabled)

    def _paths(self) -> tuple[Path, Path]:
        repo = existing_path(self.config.get("repo"), "repo", self.name)
        src = repo / "test_docker" / "src" if (repo / "test_docker" / "src").is_dir() else repo
        if not (src / "trufor.yaml").is_file():
            raise AdapterLoadError(f"adapter 'trufor': {src / 'trufor.yaml'} not found; is repo a TruFor checkout?")
        default = src.parent / "weights" / "trufor.pth.tar"
        weights = Path(str(self.config.get("weights") or default)).expanduser()
        if not weights.is_file():
            raise AdapterLoadError(f"adapter 'trufor': weights {weights} not found")
        return src, weights

    def weights_sha256(self) -> str | None:
        try:
            return sha256_path(self._paths()[1])
        except AdapterLoadError:
            return None

    def load(self, device: str = "cpu") -> None:
        src, weights = self._paths()
        self._model = None
        self._device = resolve_device(device)
        imports = repo_imports(src, ("config", "models", "data_core"))
        try:
            with imports:
                from config import _C  # type: ignore[import-not-found]

                cfg = _C.clone()
                cfg.defrost()
                cfg.merge_from_file(str(src / "trufor.yaml"))
                cfg.freeze()
                if cfg.MODEL.NAME != "detconfcmx":
                    raise AdapterLoadError(f"adapter 'trufor': model {cfg.MODEL.NAME!r} in trufor.yaml is not supported")
                from models.cmx.builder_np_conf import myEncoderDecoder  # type: ignore[import-not-found]

                model = myEncoderDecoder(cfg=cfg)
        except AdapterLoadError:
            raise
        except ModuleNotFoundError as exc:
            raise AdapterLoadError(
                f"adapter 'trufor': cannot import TruFor's code from {src} ({exc}); "
                "is 'yacs' installed (pip install yacs)?"
            ) from None
        except Exception as exc:
            raise AdapterLoadError(f"adapter 'trufor': building the model failed: {error_line(exc)}") from None
        ckpt = load_torch_checkpoint(weights, allow_pickle=as_bool(self.config.get("allow_pickle", False)),
                                     what="TruFor weights")
        if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
            raise AdapterLoadError(f"TruFor weights {weights}: expected a dict with key 'state_dict' (official format)")
        load_state_dict_strict(model, ckpt["state_dict"], f"TruFor weights {weights}")
        # the official script applies the yaml's cuDNN switches (all False in trufor.yaml) on GPU
        self._cudnn = (bool(cfg.CUDNN.BENCHMARK), bool(cfg.CUDNN.DETERMINISTIC), bool(cfg.CUDNN.ENABLED)) \
            if self._device.startswith("cuda") else None
        self._imports = imports
        self._model = model.to(self._device).eval()

    @contextlib.contextmanager
    def _forward_context(self) -> Iterator[None]:
        """The checkout's imports, and on GPU the yaml's cuDNN switches, for one forward pass;
        the previous cuDNN switches come back afterwards."""
        assert self._imports is not None
        with self._imports:
            if self._cudnn is None:
                yield
                return
            import torch.backends.cudnn as cudnn

            before = (cudnn.benchmark, cudnn.deterministic, cudnn.enabled)
            cudnn.benchmark, cudnn.deterministic, cudnn.enabled = self._cudnn
            try:
                yield
            finally:
                cudnn.benchmark, cudnn.deterministic, cudnn.enabled = before

    def predict(self, batch: Sequence[ModelInput]) -> list[Prediction]:
        import torch

        if self._model is None:
            raise AdapterLoadError("adapter 'trufor': predict() called before load()")
        out = []
        keep_conf = as_bool(self.config.get("keep_conf", True))
        for item in batch:  # full resolution: sizes differ, so one image per pass (as official)
            try:
                x = torch.from_numpy(trufor_preprocess(item.image))[None].to(self._device)
                with self._forward_context(), torch.inference_mode():
                    pred, conf, det, _npp = self._model(x)
                heat, conf_map, score = trufor_outputs(pred, conf, det)
            except Exception as exc:  # out of memory on a large image, a bad input ...: this sample fails
                out.append(failed_prediction(f"{item.sample_id}: TruFor inference failed: {error_line(exc)}"))
                continue
            extras: dict[str, Any] = {}
            if conf_map is not None:
                extras["conf_mean"] = float(conf_map.mean())
                if keep_conf:
                    extras["conf_png"] = encode_unit_map_png(conf_map)
            out.append(Prediction(heatmap=np.clip(heat, 0.0, 1.0), score=score, extras=extras))
        return out
