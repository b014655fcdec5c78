"""Ground-truth rasterisation rules, exactly as LEGION builds its masks (PROTOCOL.md §4).

All masks are bool H x W at the original image resolution, True = artifact pixel.
Coordinates are pixels, x to the right, y down, origin at the top-left pixel's corner.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from bench.errors import SampleError

#: A polygon vertex may lie this far outside the image (fraction of the image side, and at
#: least 2 px) before the polygon is refused as not belonging to this image. Annotation tools
#: often put vertices a little past the border; LEGION's fillPoly clips those silently.
OUTSIDE_TOLERANCE = 0.02


def polygons_to_mask(
    polygons: Sequence[Sequence[float]], height: int, width: int, where: str = "<sample>"
) -> np.ndarray:
    """Union of filled polygons, LEGION's SynthScars rule.

    Each polygon is a flat list ``[x1, y1, x2, y2, ...]`` of float pixel coordinates. Vertices
    go through float32 and are then cast to int32 by truncation toward zero, as LEGION's
    ``generate_mask`` does (so 223.99999999999997 -> float32 224.0 -> 224, not 223), then
    filled with ``cv2.fillPoly`` (8-connected edges, pixels on the boundary included).
    Raises :class:`SampleError` for fewer than 3 points, an odd number of coordinates, NaN or
    infinite values, or a polygon outside the image.
    """
    mask = np.zeros((height, width), dtype=np.uint8)
    tol_x = max(2.0, OUTSIDE_TOLERANCE * width)
    tol_y = max(2.0, OUTSIDE_TOLERANCE * height)
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
        if (
            xs.min() < -tol_x or ys.min() < -tol_y
            or xs.max() > width + tol_x or ys.max() > height + tol_y
        ):
            raise SampleError(
                where,
                f"polygon {k} spans x {xs.min():.1f}..{xs.max():.1f}, y {ys.min():.1f}..{ys.max():.1f}"
                f", outside the {width}x{height} (W x H) image",
            )
        cv2.fillPoly(mask, [pts.astype(np.float32).astype(np.int32).reshape(-1, 1, 2)], 1)
    return mask.astype(bool)


def boxes_to_mask_inclusive(
    boxes: Sequence[Sequence[float]], height: int, width: int, where: str = "<sample>"
) -> np.ndarray:
    """Union of axis-aligned boxes ``[x, y, w, h]``, LEGION's LOKI rule.

    Each box covers columns ``int(x) .. int(x + w)`` and rows ``int(y) .. int(y + h)``, both
    ends INCLUSIVE, clipped to the image (``int`` truncates toward zero, like Python's int()).
    Raises :class:`SampleError` for a negative size or NaN values. A box entirely outside the
    image contributes nothing (after clipping) and is refused.
    """
    mask = np.zeros((height, width), dtype=bool)
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
        if x0c > x1c or y0c > y1c:
            raise SampleError(
                where, f"box {k} [{x}, {y}, {w}, {h}] lies outside the {width}x{height} image"
            )
        mask[y0c : y1c + 1, x0c : x1c + 1] = True
    return mask


def heatmap_to_mask(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    """RichHF rule: heatmap pixel > 0 is artifact, resized to (height, width) with nearest
    neighbour (``cv2.INTER_NEAREST``, applied to the binary map)."""
    binary = (np.asarray(heatmap) > 0).astype(np.uint8)
    if binary.shape != (height, width):
        binary = cv2.resize(binary, (width, height), interpolation=cv2.INTER_NEAREST)
    return binary.astype(bool)


def resize_heatmap(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    """A soft 0-255 heatmap resized to (height, width) with nearest neighbour, as float32 in [0,1]."""
    arr = np.asarray(heatmap, dtype=np.float32) / 255.0
    if arr.shape != (height, width):
        arr = cv2.resize(arr, (width, height), interpolation=cv2.INTER_NEAREST)
    return arr
