"""Ground-truth rasterisation rules, exactly as LEGION builds its masks (docs/protocol.md §4, §8).

All masks are bool H x W at the original image resolution, True = artifact pixel.
Coordinates are pixels, x to the right, y down, origin at the top-left pixel's corner.

Geometry past the image border: with ``clip=True`` (the SynthScars and LOKI loaders' default)
it is filled clipped, exactly as LEGION's ``generate_mask`` / ``generate_loki_mask`` do (OpenCV
clips; a LOKI box wholly past an edge still fills that edge's last column / row, because
``cv2.rectangle`` normalises swapped corners). Each polygon or box that reaches past the border
is counted, and a ``geometry_clipped`` warning is appended to the caller's ``warnings`` list.
With ``clip=False`` (the loaders' ``strict=true`` option, and the default for code calling
these functions directly) the former rule applies: a polygon with a vertex more than
:data:`OUTSIDE_TOLERANCE` past the border, or a box wholly outside the image, is refused.
Geometry that is not a region at all (NaN / infinite values, fewer than 3 points, an odd number
of coordinates, a negative box size) is refused either way.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from bench.errors import BenchError, SampleError

#: A polygon vertex may lie this far outside the image (fraction of the image side, and at
#: least 2 px) before ``clip=False`` refuses the polygon as not belonging to this image.
OUTSIDE_TOLERANCE = 0.02
#: float32 coordinates at or past +-2**31 have no int32 value (LEGION's cast is undefined there).
INT32_LIMIT = 2.0 ** 31
#: Prefix of the warning recorded for a sample whose geometry reaches past the image border.
CLIPPED_WARNING = "geometry_clipped"

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def parse_strict_option(value: Any, dataset: str) -> bool:
    """The ``strict`` dataset option (``--dataset-option strict=true``, or a YAML boolean)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise BenchError(f"{dataset}: option strict={value!r} is not a boolean (use strict=true or strict=false)")


def _clipped_warning(n: int, total: int, what: str, height: int, width: int, how: str) -> str:
    return (f"{CLIPPED_WARNING}: {n} of {total} {what} reach past the {width}x{height} (W x H) "
            f"image border, filled clipped as LEGION's {how} does")


def polygons_to_mask(
    polygons: Sequence[Sequence[float]], height: int, width: int, where: str = "<sample>",
    clip: bool = False, warnings: list[str] | None = None,
) -> np.ndarray:
    """Union of filled polygons, LEGION's SynthScars rule.

    Each polygon is a flat list ``[x1, y1, x2, y2, ...]`` of float pixel coordinates. Vertices
    go through float32 and are then cast to int32 by truncation toward zero, as LEGION's
    ``generate_mask`` does (so 223.99999999999997 -> float32 224.0 -> 224, not 223), then
    filled with ``cv2.fillPoly`` on the H x W canvas (8-connected edges, pixels on the boundary
    included; OpenCV clips whatever lies past the border). A polygon with an integer vertex
    outside columns 0..W-1 or rows 0..H-1 counts as clipped (``warnings``); with
    ``clip=False`` one more than the tolerance outside is refused.
    Raises :class:`SampleError` for fewer than 3 points, an odd number of coordinates, NaN or
    infinite values, coordinates past the int32 range, or (``clip=False``) a polygon outside
    the image.
    """
    import cv2  # here, not at the top: reading a dataset's records needs no OpenCV

    mask = np.zeros((height, width), dtype=np.uint8)
    tol_x = max(2.0, OUTSIDE_TOLERANCE * width)
    tol_y = max(2.0, OUTSIDE_TOLERANCE * height)
    clipped = 0
    for k, poly in enumerate(polygons):
        flat = np.asarray(poly, dtype=np.float64).ravel()
        if flat.size % 2:
            raise SampleError(where, f"polygon {k} has an odd number of coordinates ({flat.size})")
        if flat.size < 6:
            raise SampleError(where, f"polygon {k} has {flat.size // 2} points; at least 3 needed")
        if not np.all(np.isfinite(flat)):
            raise SampleError(where, f"polygon {k} has NaN or infinite coordinates")
        pts = flat.reshape(-1, 2)
        xs, ys = pts[:, 0], pts[:, 1]
        if not clip and (
            xs.min() < -tol_x or ys.min() < -tol_y
            or xs.max() > width + tol_x or ys.max() > height + tol_y
        ):
            raise SampleError(
                where,
                f"polygon {k} spans x {xs.min():.1f}..{xs.max():.1f}, y {ys.min():.1f}..{ys.max():.1f}"
                f", outside the {width}x{height} (W x H) image",
            )
        f32 = pts.astype(np.float32)
        if np.abs(f32).max() >= INT32_LIMIT:
            raise SampleError(where, f"polygon {k} has coordinates past the int32 range "
                              f"(|v| up to {np.abs(flat).max():.3g})")
        ipts = f32.astype(np.int32)
        if (ipts.min(axis=0) < 0).any() or ipts[:, 0].max() > width - 1 or ipts[:, 1].max() > height - 1:
            clipped += 1
        cv2.fillPoly(mask, [ipts.reshape(-1, 1, 2)], 1)
    if clipped and warnings is not None:
        warnings.append(_clipped_warning(clipped, len(polygons), "polygons", height, width, "cv2.fillPoly"))
    return mask.astype(bool)


def boxes_to_mask_inclusive(
    boxes: Sequence[Sequence[float]], height: int, width: int, where: str = "<sample>",
    clip: bool = False, warnings: list[str] | None = None,
) -> np.ndarray:
    """Union of axis-aligned boxes ``[x, y, w, h]``, LEGION's LOKI rule.

    Corners ``x1, y1 = max(0, int(x)), max(0, int(y))`` and ``x2, y2 = min(W-1, int(x + w)),
    min(H-1, int(y + h))`` (``int`` truncates toward zero, like Python's int()); the filled
    rectangle between them, both ends INCLUSIVE, as ``cv2.rectangle(thickness=-1)`` draws it.
    A box with ``int(x) < 0``, ``int(y) < 0``, ``int(x+w) > W-1`` or ``int(y+h) > H-1`` counts as
    clipped (``warnings``). A box wholly past the right (bottom) edge has x1 > x2 (y1 > y2):
    OpenCV swaps the corners, so it fills the last column (row) between them; wholly past the
    left (top) edge it fills column (row) 0. With ``clip=False`` such a box is refused instead.
    Raises :class:`SampleError` for a negative size or NaN values.
    """
    mask = np.zeros((height, width), dtype=bool)
    clipped = 0
    for k, box in enumerate(boxes):
        if len(box) != 4:
            raise SampleError(where, f"box {k} has {len(box)} numbers; expected [x, y, w, h]")
        x, y, w, h = (float(v) for v in box)
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            raise SampleError(where, f"box {k} has NaN or infinite values: {list(box)}")
        if w < 0 or h < 0:
            raise SampleError(where, f"box {k} has negative size (w={w}, h={h})")
        x0, y0, x1, y1 = int(x), int(y), int(x + w), int(y + h)
        x0c, y0c = max(x0, 0), max(y0, 0)
        x1c, y1c = min(x1, width - 1), min(y1, height - 1)
        if (x0c, y0c, x1c, y1c) != (x0, y0, x1, y1):
            clipped += 1
        if not clip and (x0c > x1c or y0c > y1c):
            raise SampleError(
                where, f"box {k} [{x}, {y}, {w}, {h}] lies outside the {width}x{height} image"
            )
        # cv2.rectangle: corners in either order, filled inclusive, clipped to the canvas
        c0, c1 = max(min(x0c, x1c), 0), min(max(x0c, x1c), width - 1)
        r0, r1 = max(min(y0c, y1c), 0), min(max(y0c, y1c), height - 1)
        mask[r0 : r1 + 1, c0 : c1 + 1] = True
    if clipped and warnings is not None:
        warnings.append(_clipped_warning(clipped, len(boxes), "boxes", height, width, "cv2.rectangle"))
    return mask


def heatmap_to_mask(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    """RichHF rule: heatmap pixel > 0 is artifact, resized to (height, width) with nearest
    neighbour (``cv2.INTER_NEAREST``, applied to the binary map)."""
    binary = (np.asarray(heatmap) > 0).astype(np.uint8)
    if binary.shape != (height, width):
        import cv2

        binary = cv2.resize(binary, (width, height), interpolation=cv2.INTER_NEAREST)
    return binary.astype(bool)


