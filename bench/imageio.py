"""Safe image decoding: any mode -> RGB uint8 H x W x 3, with a pixel limit checked before decode."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from bench.errors import SampleError

#: Images with more pixels than this are refused without decoding (decompression-bomb guard).
#: Override with the environment variable BENCH_MAX_PIXELS.
DEFAULT_MAX_PIXELS = 64_000_000


def max_pixels() -> int:
    return int(os.environ.get("BENCH_MAX_PIXELS", DEFAULT_MAX_PIXELS))


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


def decode_image(data: bytes | Path | str, name: str | None = None) -> np.ndarray:
    """Decode an image file or bytes to RGB uint8 (H x W x 3).

    EXIF orientation is NOT applied — annotations in these datasets are in stored-pixel
    coordinates, and the models' official loaders (cv2.imread / PIL.open) do not rotate either.
    Raises :class:`SampleError` naming the file for missing, unreadable, truncated or oversized
    images.
    """
    where = name or (str(data) if not isinstance(data, bytes) else "<bytes>")
    limit = max_pixels()
    try:
        src = io.BytesIO(data) if isinstance(data, bytes) else open(data, "rb")
    except FileNotFoundError:
        raise SampleError(where, "image file not found") from None
    except OSError as exc:
        raise SampleError(where, f"cannot open image: {exc.strerror or exc}") from None
    with src:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(src)
                w, h = img.size
                if w * h > limit:
                    raise SampleError(
                        where, f"image is {w}x{h} = {w * h} pixels, over the limit of {limit} "
                        "(set BENCH_MAX_PIXELS to raise it); not decoded"
                    )
                img.load()  # raises on truncated data (LOAD_TRUNCATED_IMAGES stays False)
        except SampleError:
            raise
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise SampleError(where, f"image refused as too large: {exc}") from None
        except Exception as exc:  # PIL raises many types: UnidentifiedImageError, OSError, SyntaxError
            raise SampleError(where, f"cannot decode image ({type(exc).__name__}: {exc})") from None
        arr = _to_rgb(img)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise SampleError(where, f"decoded to an unusable array of shape {arr.shape}")
    return arr


def image_size(path: Path | str) -> tuple[int, int]:
    """(height, width) from the header only, without decoding pixels."""
    try:
        with Image.open(path) as img:
            w, h = img.size
    except FileNotFoundError:
        raise SampleError(str(path), "image file not found") from None
    except Exception as exc:
        raise SampleError(str(path), f"cannot read image header ({type(exc).__name__}: {exc})") from None
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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(arr).save(tmp, format="PNG")
    os.replace(tmp, path)


def load_binary_mask_png(path: Path | str, expect_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read a 0/255 (or 0/1) mask PNG into bool H x W. Refuses other values and wrong sizes."""
    where = str(path)
    try:
        with Image.open(path) as img:
            img.load()
            arr = np.asarray(img.convert("L") if img.mode not in ("L", "1", "I;16", "I") else img)
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
