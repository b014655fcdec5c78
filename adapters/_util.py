"""Helpers shared by the built-in adapters: failed-sample predictions, weight hashing, device
choice, resizing outputs back to the image size, and importing a user's checkout of a model's
official repository.

Heavy libraries (torch, cv2) are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.io.paths import write_atomic
from bench.core.types import Prediction, sha256_file

log = logging.getLogger(__name__)


class AdapterLoadError(BenchError):
    """An adapter cannot be loaded (missing or broken weights, missing checkout ...)."""


#: ``Adapter.card`` of this project's own training-free adapters (reference rows, forensic
#: detectors, the template explainer): the project's licence, no weights, no training data.
TRAINING_FREE_CARD: dict[str, str | None] = {
    "licence": "Apache-2.0 (this project)", "parameters": "0 (no learned weights)",
    "training_data": "none (training-free)",
}


# -- the failed-sample contract ------------------------------------------------------------
def failed_prediction(message: str, **extras: Any) -> Prediction:
    """A Prediction that marks its sample as failed.

    Contract with the runner: a Prediction whose ``extras["error"]`` is set is recorded as a
    failed sample with that message (never dropped, never scored).
    """
    return Prediction(extras={"error": str(message), **extras})


def error_line(exc: BaseException, limit: int = 400) -> str:
    """``"<Type>: <message>"`` on one line (whitespace collapsed, cut at ``limit`` characters):
    what a failed sample records."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[:limit] + " ..."


# -- config values given as text on a command line ---------------------------------------
def as_list(value: Any, cast: Any = float) -> list[Any]:
    """A list option given as a list, a number, or text: ``"[1, 2]"``, ``"1,2"``, ``"1 2"``."""
    if isinstance(value, (list, tuple)):
        return [cast(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [cast(value)]
    text = str(value).strip().strip("[]()")
    return [cast(v) for v in text.replace(",", " ").split()]


def as_bool(value: Any) -> bool:
    """A yes/no option; text ``"false"``, ``"0"``, ``"no"``, ``""`` is False (``bool("false")`` is not)."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no", "off", "none", "null")
    return bool(value)


# -- weight hashing ------------------------------------------------------------------------
_HASH_LOCK = threading.Lock()
_MEMO: dict[tuple, str] = {}


def _hash_cache_file() -> Path:
    from bench.io.paths import cache_root

    return cache_root() / "weights-sha256.json"


def sha256_path(path: Path | str) -> str:
    """sha256 of a weight file, or of a folder (over its sorted relative paths and the sha256
    of each file; hidden files and ``__pycache__`` skipped).

    Results are remembered per (absolute path, size, mtime) in memory and in
    ``<cache root>/weights-sha256.json`` so a 17 GB checkpoint folder is hashed once.
    """
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise AdapterLoadError(f"{p}: weight file or folder not found")
    files = [p] if p.is_file() else sorted(
        f for f in p.rglob("*")
        if f.is_file() and not any(part.startswith(".") or part == "__pycache__"
                                   for part in f.relative_to(p).parts)
    )
    stamp = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    key = hashlib.sha256(repr(stamp).encode()).hexdigest()
    with _HASH_LOCK:
        if key in _MEMO:
            return _MEMO[key]
        disk: dict[str, str] = {}
        cache = _hash_cache_file()
        try:
            disk = json.loads(cache.read_text())
        except (OSError, ValueError):
            disk = {}
        if key in disk:
            _MEMO[key] = disk[key]
            return disk[key]
    if p.is_file():
        digest = sha256_file(p)
    else:
        h = hashlib.sha256()
        for f in files:
            h.update(f.relative_to(p).as_posix().encode() + b"\0" + sha256_file(f).encode() + b"\n")
        digest = h.hexdigest()
    with _HASH_LOCK:
        _MEMO[key] = digest
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            try:
                disk = json.loads(cache.read_text())
            except (OSError, ValueError):
                disk = {}
            disk[key] = digest
            write_atomic(cache, json.dumps(disk))
        except OSError as exc:  # a read-only cache only costs a re-hash next time
            log.debug("cannot write %s: %s", cache, exc)
    return digest


def existing_path(value: Any, what: str, adapter: str) -> Path:
    """``value`` as an existing Path, or an :class:`AdapterLoadError` saying which option is wrong."""
    if value in (None, ""):
        raise AdapterLoadError(f"adapter {adapter!r}: option {what!r} is required (--config {what}=PATH)")
    p = Path(str(value)).expanduser()
    if not p.exists():
        raise AdapterLoadError(f"adapter {adapter!r}: {what} {str(p)!r} does not exist")
    return p


# -- device ---------------------------------------------------------------------------------
def resolve_device(device: str | None) -> str:
    """The torch device to use: CUDA when asked for (``cuda``, ``cuda:N``, ``auto``) and
    available, CPU otherwise (with a warning when CUDA was asked for but is missing)."""
    import torch

    device = (device or "cpu").strip()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if torch.cuda.is_available():
            return device
        log.warning("device %r requested but CUDA is not available; running on CPU", device)
        return "cpu"
    return device


# -- resizing outputs back to the image ----------------------------------------------------
def resize_mask_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a bool/label map to (height, width) with PIL's NEAREST (pixel-centre sampling,
    source index ``floor((dst + 0.5) * src / dst)`` accumulated in double precision), what the
    official demos do. OpenCV is not used: ``INTER_NEAREST`` samples ``floor(dst * src / dst)``
    (a shift of up to half a source pixel), and ``INTER_NEAREST_EXACT`` of OpenCV 4.10 still
    differs from PIL on some pixels."""
    from PIL import Image

    arr = np.asarray(mask)
    if arr.shape == (height, width):
        return arr.copy()
    if arr.dtype == bool or arr.dtype == np.uint8:
        img = Image.fromarray(arr.astype(np.uint8))  # mode L
    else:  # label maps: PIL's 32-bit integer mode
        if arr.size and (arr.min() < np.iinfo(np.int32).min or arr.max() > np.iinfo(np.int32).max):
            raise ValueError(f"label map values outside int32: {arr.min()}..{arr.max()}")
        img = Image.fromarray(arr.astype(np.int32))  # mode I
    out = np.asarray(img.resize((int(width), int(height)), Image.NEAREST))
    return out.astype(arr.dtype)


def resize_prob_bilinear(prob: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a float map to (height, width) bilinearly (half-pixel centres, like
    ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``), clipped to [0, 1],
    float32."""
    import cv2

    arr = np.asarray(prob, dtype=np.float32)
    if arr.shape != (height, width):
        arr = cv2.resize(arr, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(arr, 0.0, 1.0).astype(np.float32)


def pil_resize_rgb(image: np.ndarray, width: int, height: int, resample: str = "bicubic") -> np.ndarray:
    """Resize RGB uint8 H x W x 3 with PIL (the resampling most official demos use:
    ``Image.resize`` defaults to BICUBIC for RGB since Pillow 7)."""
    from PIL import Image

    filters = {
        "nearest": Image.Resampling.NEAREST,
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "lanczos": Image.Resampling.LANCZOS,
        "box": Image.Resampling.BOX,
    }
    if resample not in filters:
        raise ValueError(f"unknown resampling {resample!r}; choose one of {', '.join(filters)}")
    img = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="RGB")
    return np.asarray(img.resize((width, height), resample=filters[resample]), dtype=np.uint8)


# -- importing a user's checkout of an official repository --------------------------------
#: One lock for every checkout context: while one is active, ``sys.modules`` and ``sys.path``
#: hold that checkout's packages (``models``, ``config`` ...), so two contexts must never be
#: active at once in different threads. Re-entrant: the same thread may nest contexts.
_CHECKOUT_LOCK = threading.RLock()


class RepoImports:
    """The import context of a user's checkout at ``root`` whose top-level package names
    (``models``, ``config`` ...) may clash with other checkouts (TruFor and HiFi-Net both have
    a top-level ``models``).

    Use it as a context manager, as often as needed (keep the handle: official code often
    imports its own helpers during the forward pass, e.g. TruFor's
    ``from .layer_utils import ...``). Inside the block ``root`` is first on ``sys.path`` and
    the named top-level modules resolve to the checkout's: on the first entry they are
    imported fresh from ``root``, on later entries the same module objects come back (so
    classes built earlier stay the classes the code sees). On exit the checkout's modules
    (the named ones and any other module loaded from under ``root``) are taken out of
    ``sys.modules`` and kept in the handle, ``root`` leaves ``sys.path``, and whatever held
    those names before is put back: nothing of the checkout leaks into other code. Contexts
    are serialised by a process-wide re-entrant lock; nesting (the same or another checkout)
    in one thread works.
    """

    def __init__(self, root: Path | str, top_level: tuple[str, ...] | list[str]):
        self.root = str(Path(root).resolve())
        self.top_level = tuple(top_level)
        self._own: dict[str, Any] = {}  # the checkout's modules, kept between entries
        self._saved: dict[str, Any] = {}  # what held those names outside while active
        self._depth = 0  # nested entries of this same handle (one thread: the lock is held)
        self._prefix = os.path.join(self.root, "")

    def _named(self, name: str) -> bool:
        return any(name == t or name.startswith(t + ".") for t in self.top_level)

    def _from_root(self, module: Any) -> bool:
        f = getattr(module, "__file__", None)
        if f:
            return os.path.abspath(f).startswith(self._prefix)
        paths = getattr(module, "__path__", None)  # namespace packages have no __file__
        try:
            return bool(paths) and all(os.path.abspath(p).startswith(self._prefix) for p in paths)
        except TypeError:
            return False

    def __enter__(self) -> "RepoImports":
        _CHECKOUT_LOCK.acquire()
        if self._depth:  # already active (nested in the same thread): nothing to swap
            self._depth += 1
            return self
        try:
            clash = [n for n in list(sys.modules) if self._named(n) or n in self._own]
            self._saved = {n: sys.modules.pop(n) for n in clash}
            sys.modules.update(self._own)
            sys.path.insert(0, self.root)
        except BaseException:
            _CHECKOUT_LOCK.release()
            raise
        self._depth = 1
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self._depth -= 1
            if self._depth:
                return
            try:
                sys.path.remove(self.root)
            except ValueError:
                pass
            mine = [n for n, m in list(sys.modules.items()) if self._named(n) or self._from_root(m)]
            self._own = {n: sys.modules.pop(n) for n in mine}
            sys.modules.update(self._saved)
            self._saved = {}
        finally:
            _CHECKOUT_LOCK.release()


def repo_imports(root: Path | str, top_level: tuple[str, ...]) -> RepoImports:
    """A :class:`RepoImports` handle for the checkout at ``root`` (``with repo_imports(...):``
    works as before; keep the handle to re-enter it, e.g. around each forward pass)."""
    return RepoImports(root, top_level)


def jit_load(path: Path | str, device: str) -> Any:
    """``torch.jit.load`` without torch's deprecation warning (TorchScript is what the
    official exports are)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location=device)


_DEVICE_TEXT = None


def torchscript_devices(module: Any) -> set[str]:
    """The devices named by constants in a TorchScript module's code (``{"cuda:0"}``,
    ``{"cpu"}``, or empty), e.g. the ``device=torch.device("cuda:0")`` that ``torch.jit.trace``
    bakes into every tensor created inside ``forward``. ``map_location`` moves weights, not
    these constants, so a traced file may run only on the device it was traced on.

    Reads every method graph of the module and its submodules (``forward`` inlined, so called
    functions count): Device constants, and string constants passed to ``torch.device``; plus
    ``torch.device("...")`` in the printed code."""
    import re

    global _DEVICE_TEXT
    if _DEVICE_TEXT is None:
        _DEVICE_TEXT = re.compile(r"""torch\.device\(\s*["']([A-Za-z]+(?::\d+)?)["']\s*\)""")
    found: set[str] = set()

    def note(value: Any) -> None:
        try:
            import torch

            found.add(str(torch.device(str(value))))
        except (RuntimeError, ValueError, TypeError):
            pass

    def walk(block: Any) -> None:
        for node in block.nodes():
            if node.kind() == "prim::Constant" and node.hasAttribute("value"):
                out = node.output()
                kind = str(out.type())
                if kind == "Device":
                    note(out.toIValue())
                elif kind == "str" and any(u.user.kind() == "aten::device" for u in out.uses()):
                    note(out.toIValue())
            for sub in node.blocks():
                walk(sub)

    graphs = []
    try:
        graphs.append(module.inlined_graph)
    except (AttributeError, RuntimeError):
        pass
    modules = list(module.modules()) if hasattr(module, "modules") else [module]
    for m in modules:
        c = getattr(m, "_c", None)
        if c is None:
            continue
        try:
            names = c._method_names()
        except (AttributeError, RuntimeError):
            names = []
        for name in names:
            try:
                graphs.append(c._get_method(name).graph)
            except (AttributeError, RuntimeError):
                continue
        try:
            for hit in _DEVICE_TEXT.findall(m.code):
                note(hit)
        except (AttributeError, RuntimeError):
            pass
    if hasattr(module, "graph") and not hasattr(module, "modules"):  # a scripted function
        graphs.append(module.graph)
        try:
            for hit in _DEVICE_TEXT.findall(module.code):
                note(hit)
        except (AttributeError, RuntimeError):
            pass
    for g in graphs:
        walk(g)
    return found


def load_torch_checkpoint(path: Path, *, allow_pickle: bool, what: str, device: str = "cpu") -> Any:
    """``torch.load`` with a clear error. ``allow_pickle=False`` (default in the adapters) uses
    ``weights_only=True``: tensors and plain containers only, no code run from the file."""
    import torch

    try:
        return torch.load(str(path), map_location=device, weights_only=not allow_pickle)
    except Exception as exc:
        hint = ""
        if not allow_pickle and "weights_only" in str(exc):
            hint = (" (the file holds Python objects beyond tensors; if you trust it, "
                    "set --config allow_pickle=true)")
        raise AdapterLoadError(f"{what} {path}: cannot load ({type(exc).__name__}: {exc}){hint}") from None


def strip_prefix(state_dict: dict[str, Any], prefix: str = "module.") -> dict[str, Any]:
    """Drop a key prefix (``nn.DataParallel`` saves keys as ``module.<name>``)."""
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def load_state_dict_strict(module: Any, state_dict: Any, what: str) -> None:
    """``module.load_state_dict(state_dict, strict=True)`` or an AdapterLoadError listing the
    first missing / unexpected keys. Never continues with random weights."""
    if not isinstance(state_dict, dict):
        raise AdapterLoadError(f"{what}: expected a state dict, got {type(state_dict).__name__}")
    try:
        module.load_state_dict(state_dict, strict=True)
    except Exception as exc:
        text = " ".join(str(exc).split())
        if len(text) > 800:
            text = text[:800] + " ..."
        raise AdapterLoadError(f"{what}: weights do not fit the model ({text}); refusing to run "
                               "with randomly initialised weights") from None
