"""Safe image decoding: any mode -> RGB uint8 H x W x 3, with one pixel limit (the harness's and
Pillow's) checked before decode."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image

from bench.errors import SampleError
from bench.io.paths import atomic_path

#: Images with more pixels than this are refused without decoding (decompression-bomb guard).
#: Override with the environment variable BENCH_MAX_PIXELS. The one limit: it is also Pillow's
#: ``Image.MAX_IMAGE_PIXELS`` (set by :func:`max_pixels`), so Pillow neither refuses an image
#: the harness allows (its own default is ~89 Mpx) nor lets through one the harness refuses.
DEFAULT_MAX_PIXELS = 64_000_000


def max_pixels() -> int:
    """The pixel limit (``$BENCH_MAX_PIXELS``, else :data:`DEFAULT_MAX_PIXELS`), applied to
    Pillow too."""
    raw = os.environ.get("BENCH_MAX_PIXELS")
    try:
        limit = int(raw) if raw else DEFAULT_MAX_PIXELS
    except ValueError:
        raise SampleError("BENCH_MAX_PIXELS", f"{raw!r} is not a whole number of pixels") from None
    if limit <= 0:
        raise SampleError("BENCH_MAX_PIXELS", f"{limit} is not a positive number of pixels")
    Image.MAX_IMAGE_PIXELS = limit  # Pillow warns above it, refuses above twice it
    return limit


def _too_large(where: str, w: int, h: int, limit: int) -> SampleError:
    return SampleError(where, f"image is {w}x{h} = {w * h} pixels, over the limit of {limit} "
                       "(set BENCH_MAX_PIXELS to raise it); not decoded")


def open_checked(src, where: str, limit: int) -> Image.Image:
    """``Image.open`` under the one pixel limit (our message, whichever check fires first)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our check below says it
        try:
            img = Image.open(src)
        except Image.DecompressionBombError as exc:
            raise SampleError(where, f"image refused as too large (over the limit of {limit} pixels; "
                              f"set BENCH_MAX_PIXELS to raise it): {exc}") from None
    w, h = img.size
    if w * h > limit:
        img.close()
        raise _too_large(where, w, h, limit)
    return img


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Convert any PIL mode (L, LA, P, RGBA, CMYK, I;16, I, F ...) to RGB uint8 without warnings.

    16-bit and float greyscale are scaled to 8 bits by their nominal range (not by min/max), so
    the same file always gives the same pixels. Alpha is dropped (not composited): the colour
    values under the alpha are what a model's own loader would see after ``convert("RGB")``.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img, dtype=np.uint16)
        arr8 = (arr.astype(np.uint32) * 255 + 32767) // 65535
        return np.repeat(arr8.astype(np.uint8)[..., None], 3, axis=2)
    if img.mode in ("I", "F"):
        arr = np.asarray(img)
        top = 65535.0 if img.mode == "I" and arr.max(initial=0) > 255 else 255.0
        if img.mode == "F" and arr.max(initial=0) <= 1.0:
            top = 1.0
        arr8 = np.clip(np.rint(arr.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(arr8[..., None], 3, axis=2)
    if img.mode != "RGB":
        img = img.convert("RGBA").convert("RGB") if img.mode == "P" else img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy()


@contextlib.contextmanager
def _loaded(data: bytes | Path | str, where: str, err_where: str, problem: Any) -> Iterator[Any]:
    """The PIL image of a file or bytes with every pixel decoded (``Image.load``: truncated data
    raises, LOAD_TRUNCATED_IMAGES stays False), over the pixel limit refused. Other failures
    are ``SampleError(err_where, problem(reason))``."""
    try:
        src = io.BytesIO(data) if isinstance(data, bytes) else open(data, "rb")
    except FileNotFoundError:
        raise SampleError(where, "image file not found") from None
    except OSError as exc:
        raise SampleError(err_where, problem(exc.strerror or exc)) from None
    with src:
        try:
            img = open_checked(src, where, max_pixels())
            img.load()
        except SampleError:
            raise
        except Exception as exc:  # PIL raises many types: UnidentifiedImageError, OSError, SyntaxError
            raise SampleError(err_where, problem(f"{type(exc).__name__}: {exc}")) from None
        with img:
            yield img


def decode_image(data: bytes | Path | str, name: str | None = None) -> np.ndarray:
    """Decode an image file or bytes to RGB uint8 (H x W x 3).

    EXIF orientation is NOT applied — annotations in these datasets are in stored-pixel
    coordinates, and the models' official loaders (cv2.imread / PIL.open) do not rotate either.
    Raises :class:`SampleError` naming the file for missing, unreadable, truncated or oversized
    images.
    """
    where = name or (str(data) if not isinstance(data, bytes) else "<bytes>")
    with _loaded(data, where, where, lambda reason: f"cannot decode image ({reason})") as img:
        arr = _to_rgb(img)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise SampleError(where, f"decoded to an unusable array of shape {arr.shape}")
    return arr


def image_size(path: Path | str) -> tuple[int, int]:
    """(height, width) from the header only, without decoding pixels; an image over the pixel
    limit is refused as a run refuses it."""
    limit = max_pixels()
    try:
        with open_checked(path, str(path), limit) as img:
            w, h = img.size
    except SampleError:
        raise
    except FileNotFoundError:
        raise SampleError(str(path), "image file not found") from None
    except Exception as exc:
        raise SampleError(str(path), f"cannot read image header ({type(exc).__name__}: {exc})") from None
    return h, w


def verify_image(data: bytes | Path | str, name: str | None = None) -> tuple[int, int]:
    """(height, width) after decoding every pixel (``Image.load``, no conversion), so a
    truncated or corrupt file is caught, as a run's decode would catch it. Raises
    :class:`SampleError` ``truncated or unreadable image <file>: <reason>``; over the pixel
    limit, the same refusal as :func:`decode_image`."""
    where = name or (str(data) if not isinstance(data, bytes) else "<bytes>")
    with _loaded(data, where, "", lambda reason: f"truncated or unreadable image {where}: {reason}") as img:
        w, h = img.size
    return h, w


def write_png(path: Path | str, image: np.ndarray) -> None:
    """Write RGB uint8 (H x W x 3), greyscale uint8 (H x W) or bool (H x W, as 0/255) losslessly,
    atomically (temp file + rename)."""
    path = Path(path)
    arr = image
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8:
        raise ValueError(f"write_png expects uint8 or bool, got {arr.dtype}")
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def load_binary_mask_png(path: Path | str, expect_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read a 0/255 (or 0/1) mask PNG into bool H x W. Refuses other values and wrong sizes."""
    where = str(path)
    try:
        with open_checked(path, where, max_pixels()) as img:
            img.load()
            arr = np.asarray(img.convert("L") if img.mode not in ("L", "1", "I;16", "I") else img)
    except SampleError:
        raise
    except FileNotFoundError:
        raise SampleError(where, "prediction mask not found") from None
    except Exception as exc:
        raise SampleError(where, f"cannot decode mask ({type(exc).__name__}: {exc})") from None
    if arr.dtype == bool:
        mask = arr
    else:
        values = np.unique(arr)
        if not (set(values.tolist()) <= {0, 255} or set(values.tolist()) <= {0, 1}):
            shown = ", ".join(str(v) for v in values[:6]) + (" ..." if len(values) > 6 else "")
            raise SampleError(where, f"mask is not binary: values {shown} (expected 0/255 or 0/1)")
        mask = arr > 0
    if expect_hw is not None and mask.shape != tuple(expect_hw):
        raise SampleError(
            where, f"mask is {mask.shape[1]}x{mask.shape[0]} (W x H) but the image is "
            f"{expect_hw[1]}x{expect_hw[0]}"
        )
    return mask


try:  # Pillow's limit is the harness's from the first import on
    max_pixels()
except SampleError:  # a bad BENCH_MAX_PIXELS is reported where an image is opened
    pass


def decode_heatmap(data: bytes) -> np.ndarray:
    """An encoded single-channel heatmap -> uint8 H x W (0-255, values as stored).

    A multi-channel or palette image is converted with PIL's ``convert("L")`` (0 stays 0);
    16-bit greyscale is refused rather than rescaled.
    """
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        if img.mode == "L":
            arr = np.asarray(img, dtype=np.uint8)
        elif img.mode in ("1", "P", "LA", "RGB", "RGBA"):
            arr = np.asarray(img.convert("L"), dtype=np.uint8)
        else:
            raise ValueError(f"unexpected heatmap image mode {img.mode!r} (expected 8-bit greyscale)")
    return arr.copy()
