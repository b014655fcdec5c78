"""The demo dataset's generator: photo-like scenes with planted artifacts, written in
SynthScars' on-disk format (what it draws, and why, is in :mod:`bench.datasets.demo`).

Kept apart from the loader so that reading an already generated demo never imports OpenCV.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

MIN_SIDE, MAX_SIDE = 256, 1024

#: artifact kind -> SynthScars category
KIND_CATEGORY: dict[str, str] = {
    "lowres": "distortion",
    "checker": "distortion",
    "copymove": "structure",
    "lighting": "physics",
    "smear": "structure",
}
KINDS: tuple[str, ...] = tuple(KIND_CATEGORY)

_COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.72, 0.16, 0.12), "blue": (0.15, 0.3, 0.7), "green": (0.2, 0.55, 0.22),
    "yellow": (0.85, 0.75, 0.2), "orange": (0.88, 0.48, 0.14), "purple": (0.45, 0.25, 0.6),
    "white": (0.86, 0.85, 0.82), "grey": (0.48, 0.48, 0.5), "brown": (0.45, 0.3, 0.18),
    "teal": (0.15, 0.55, 0.55),
}
_SKIES = {  # name: (zenith colour, horizon colour)
    "clear blue": ((0.22, 0.4, 0.72), (0.68, 0.78, 0.88)),
    "hazy sunset": ((0.32, 0.3, 0.52), (0.92, 0.62, 0.38)),
    "overcast grey": ((0.55, 0.57, 0.6), (0.78, 0.78, 0.78)),
    "pale morning": ((0.45, 0.58, 0.78), (0.88, 0.84, 0.76)),
}
_GROUNDS = {  # name: colour
    "green grassland": (0.22, 0.42, 0.14), "sandy desert": (0.74, 0.6, 0.4),
    "rocky field": (0.42, 0.39, 0.35), "autumn meadow": (0.55, 0.4, 0.16),
    "snowy plain": (0.82, 0.84, 0.88),
}
_WALLS = {"beige wall": (0.75, 0.68, 0.56), "grey wall": (0.55, 0.56, 0.58),
          "pale blue wall": (0.58, 0.66, 0.74), "dark green wall": (0.22, 0.32, 0.26)}
_TABLES = {"wooden table": (0.5, 0.33, 0.18), "white tablecloth": (0.85, 0.84, 0.8),
           "dark stone counter": (0.25, 0.24, 0.24), "light oak table": (0.72, 0.58, 0.38)}


# ----------------------------------------------------------------------------------------
# scene rendering (float32, display-referred values in [0, 1], H x W x 3 RGB)
# ----------------------------------------------------------------------------------------
@dataclass
class _Surface:
    """A named part of the scene (for location phrases): boolean mask + noun."""

    noun: str
    mask: np.ndarray
    is_object: bool = False
    colour: str = ""


@dataclass
class _Scene:
    image: np.ndarray
    content_type: str
    description: str
    surfaces: list[_Surface] = field(default_factory=list)


def _fractal(rng: np.random.Generator, h: int, w: int, cells: float, octaves: int,
             persistence: float = 0.5) -> np.ndarray:
    """Smooth fractal noise, float32 H x W, roughly zero mean and unit std.

    Sum of bicubically upsampled Gaussian grids, ``cells`` grid cells along the longer side
    for the first octave, doubling per octave."""
    out = np.zeros((h, w), np.float32)
    amp = 1.0
    for _ in range(octaves):
        gh = max(2, int(round(cells * h / max(h, w))) + 2)
        gw = max(2, int(round(cells * w / max(h, w))) + 2)
        grid = rng.standard_normal((gh, gw), dtype=np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        amp *= persistence
        cells *= 2
    std = float(out.std())
    return out / std if std > 0 else out


def _fill(h: int, w: int, pts: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage (float32 in [0,1]) of the polygon ``pts`` (N x 2 float x, y)."""
    canvas = np.zeros((h, w), np.uint8)
    cv2.fillPoly(canvas, [np.round(pts * 16).astype(np.int32).reshape(-1, 1, 2)], 255,
                 lineType=cv2.LINE_AA, shift=4)
    return canvas.astype(np.float32) / 255.0


def _ellipse_pts(cx: float, cy: float, rx: float, ry: float, angle: float, n: int = 96) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    ca, sa = math.cos(angle), math.sin(angle)
    return np.stack([cx + ca * x - sa * y, cy + sa * x + ca * y], axis=1)


def _blob_pts(rng: np.random.Generator, cx: float, cy: float, r: float, n: int,
              wobble: float, aspect: float = 1.0, angle: float = 0.0) -> np.ndarray:
    """An irregular star-convex polygon (float x, y) of mean radius ``r`` around (cx, cy)."""
    t = np.sort((np.arange(n) + rng.uniform(-0.3, 0.3, n)) * (2 * np.pi / n))
    rad = np.ones(n)
    for k in (1, 2, 3):
        rad += wobble / k * rng.uniform(0.4, 1.0) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    rad = r * np.clip(rad, 0.45, 1.8)
    x, y = rad * np.cos(t) * math.sqrt(aspect), rad * np.sin(t) / math.sqrt(aspect)
    ca, sa = math.cos(angle), math.sin(angle)
    return np.stack([cx + ca * x - sa * y, cy + sa * x + ca * y], axis=1)


def _add_objects(rng: np.random.Generator, img: np.ndarray, surfaces: list[_Surface],
                 n: int, y_min: float, light: np.ndarray, kinds: tuple[str, ...]) -> list[str]:
    """Draw ``n`` shaded objects standing below ``y_min`` (fraction of H), with cast shadows.

    Each object is rendered inside its own bounding box (shadow included) for speed."""
    h, w = img.shape[:2]
    names = []
    side = min(h, w)
    order = rng.permutation(len(_COLOURS))
    colour_names = list(_COLOURS)
    for j in range(n):
        cname = colour_names[order[j % len(order)]]
        colour = np.array(_COLOURS[cname], np.float32) * np.float32(rng.uniform(0.85, 1.1))
        kind = kinds[rng.integers(len(kinds))]
        r = side * rng.uniform(0.07, 0.16)
        cx = rng.uniform(0.12, 0.88) * w
        cy = rng.uniform(y_min + (1 - y_min) * 0.25, 0.9) * h
        if kind == "ball":
            rx = ry = r
            pts = _ellipse_pts(cx, cy - ry, rx, ry, 0.0)
        elif kind == "rock":
            rx, ry = r * rng.uniform(1.1, 1.5), r * rng.uniform(0.6, 0.85)
            pts = _blob_pts(rng, cx, cy - ry, (rx + ry) / 2, 20, 0.18, rx / ry)
        elif kind == "vase":
            rx, ry = r * 0.6, r * 1.4
            pts = _ellipse_pts(cx, cy - ry, rx, ry, rng.uniform(-0.05, 0.05))
        else:  # box / house: a slightly rotated rectangle standing on (cx, cy)
            rx, ry = r * rng.uniform(0.8, 1.3), r * rng.uniform(0.7, 1.1)
            a = rng.uniform(-0.06, 0.06)
            corners = np.array([[-rx, -2 * ry], [rx, -2 * ry], [rx, 0], [-rx, 0]], np.float64)
            ca, sa = math.cos(a), math.sin(a)
            pts = np.stack([cx + ca * corners[:, 0] - sa * corners[:, 1],
                            cy + sa * corners[:, 0] + ca * corners[:, 1]], axis=1)
        # cast shadow: the footprint ellipse offset away from the light, blurred
        sh_pts = _ellipse_pts(cx - light[0] * rx * 0.9, cy - light[1] * ry * 0.2, rx * 1.3, ry * 0.35 + 2, 0.0)
        blur = max(1.5, r * 0.12)
        allp = np.concatenate([pts, sh_pts])
        x0 = int(max(0, math.floor(allp[:, 0].min() - 3 * blur)))
        x1 = int(min(w, math.ceil(allp[:, 0].max() + 3 * blur) + 1))
        y0 = int(max(0, math.floor(allp[:, 1].min() - 3 * blur)))
        y1 = int(min(h, math.ceil(allp[:, 1].max() + 3 * blur) + 1))
        if x1 - x0 < 4 or y1 - y0 < 4:
            continue
        ch, cw = y1 - y0, x1 - x0
        off = np.array([x0, y0], np.float64)
        crop = img[y0:y1, x0:x1]
        sh = cv2.GaussianBlur(_fill(ch, cw, sh_pts - off), (0, 0), blur)
        crop *= (1.0 - 0.45 * sh)[..., None]
        cover = _fill(ch, cw, pts - off)
        # shading: Lambert-like on a sphere-ish normal inside the object's bounding box
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        bx0, bx1 = pts[:, 0].min(), pts[:, 0].max()
        by0, by1 = pts[:, 1].min(), pts[:, 1].max()
        nx = (xx - (bx0 + bx1) / 2) / max(1.0, (bx1 - bx0) / 2)
        ny = (yy - (by0 + by1) / 2) / max(1.0, (by1 - by0) / 2)
        nz = np.sqrt(np.clip(1.0 - 0.6 * (nx * nx + ny * ny), 0.05, 1.0))
        lam = np.clip(nx * light[0] + ny * light[1] + nz * light[2], 0.0, 1.0)
        shade = 0.35 + 0.75 * lam
        tex = 1.0 + 0.06 * _fractal(rng, ch, cw, 40 * max(ch, cw) / max(h, w), 2)
        if rng.random() < 0.35:  # stripes on some objects
            freq = rng.uniform(0.05, 0.15)
            tex *= 1.0 + 0.15 * np.sign(np.sin((xx * 0.7 + yy * 0.3) * freq))
        obj = colour[None, None, :] * (shade * tex)[..., None]
        if kind in ("ball", "vase"):  # specular highlight
            hx = (bx0 + bx1) / 2 + light[0] * (bx1 - bx0) * 0.22
            hy = (by0 + by1) / 2 + light[1] * (by1 - by0) * 0.22
            spec = np.exp(-(((xx - hx) ** 2 + (yy - hy) ** 2) / (2 * (r * 0.12) ** 2)))
            obj = obj + (0.35 * spec)[..., None]
        crop[:] = crop * (1 - cover[..., None]) + obj * cover[..., None]
        full = np.zeros((h, w), bool)
        full[y0:y1, x0:x1] = cover > 0.5
        for earlier in surfaces:  # the new object hides what is behind it
            earlier.mask &= ~full
        surfaces.append(_Surface(kind, full, True, cname))
        names.append(f"{_article(cname)} {cname} {kind}")
    return names


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _join(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def _render_scene(rng: np.random.Generator, h: int, w: int) -> _Scene:
    yy = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    xx = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    theta = rng.uniform(-np.pi * 0.85, -np.pi * 0.15)  # light from above, left or right
    light = np.array([math.cos(theta), math.sin(theta), 0.8], np.float32)
    light /= np.linalg.norm(light)
    surfaces: list[_Surface] = []
    if rng.random() < 0.5:
        content = "scene"
        sky_name = list(_SKIES)[rng.integers(len(_SKIES))]
        ground_name = list(_GROUNDS)[rng.integers(len(_GROUNDS))]
        top, hor = (np.array(c, np.float32) for c in _SKIES[sky_name])
        horizon = rng.uniform(0.35, 0.62)
        profile = (horizon + 0.04 * _fractal(rng, 1, w, 6, 3)[0] + rng.uniform(-0.05, 0.05) * (xx[0] - 0.5))
        t = np.clip(yy / horizon, 0, 1)[..., None]
        img = np.broadcast_to(top * (1 - t) + hor * t, (h, w, 3)).copy()
        clouds = np.clip(_fractal(rng, h, w, 4, 4, 0.55) * 0.6 + rng.uniform(-0.6, 0.2), 0, 1)
        img += (clouds * (1 - t[..., 0]) * 0.35)[..., None] * (np.float32(0.95) - img)
        ground = (yy > profile[None, :])
        gcol = np.array(_GROUNDS[ground_name], np.float32)
        tex = _fractal(rng, h, w, 24, 5, 0.6)
        depth = np.clip((yy - horizon) / (1 - horizon + 1e-6), 0, 1)
        gimg = gcol * (1 + 0.18 * tex[..., None]) * (0.75 + 0.35 * depth[..., None])
        haze = np.exp(-depth * 4)[..., None] * 0.35
        gimg = gimg * (1 - haze) + hor * haze
        g = cv2.GaussianBlur(ground.astype(np.float32), (0, 0), 0.8)[..., None]
        img = img * (1 - g) + gimg * g
        surfaces.append(_Surface("sky", ~ground))
        surfaces.append(_Surface(ground_name.split()[-1], ground))
        objs = _add_objects(rng, img, surfaces, int(rng.integers(0, 3)), horizon,
                            light, ("rock", "house", "ball"))
        desc = f"An outdoor scene of {_article(sky_name)} {sky_name} sky above {_article(ground_name)} {ground_name}"
    else:
        content = "object"
        wall_name = list(_WALLS)[rng.integers(len(_WALLS))]
        table_name = list(_TABLES)[rng.integers(len(_TABLES))]
        edge = rng.uniform(0.4, 0.62)
        wall = np.array(_WALLS[wall_name], np.float32)
        img = np.broadcast_to(wall * (1 + 0.05 * _fractal(rng, h, w, 8, 3))[..., None], (h, w, 3)).copy()
        table = np.broadcast_to(yy > edge, (h, w))
        tcol = np.array(_TABLES[table_name], np.float32)
        grain = np.sin((yy * 90 + 3 * _fractal(rng, h, w, 10, 3)) * rng.uniform(0.8, 1.6))
        timg = tcol * (1 + 0.08 * grain[..., None] + 0.05 * _fractal(rng, h, w, 60, 2)[..., None])
        g = cv2.GaussianBlur(table.astype(np.float32), (0, 0), 0.8)[..., None]
        img = img * (1 - g) + timg * g
        surfaces.append(_Surface(wall_name.split()[-1], ~table))
        surfaces.append(_Surface(" ".join(table_name.split()[-1:]), table.copy()))
        objs = _add_objects(rng, img, surfaces, int(rng.integers(2, 5)), edge,
                            light, ("ball", "vase", "box"))
        desc = (f"A still life with {_join(objs) or 'nothing'} on {_article(table_name)} {table_name}"
                f" in front of {_article(wall_name)} {wall_name}")
        objs = []
    if objs:
        desc += " with " + _join(objs)
    # illumination: directional gradient + vignetting (multiplicative, smooth)
    illum = (1.0 + rng.uniform(0.1, 0.3) * ((xx - 0.5) * -light[0] + (yy - 0.5) * -light[1])
             - rng.uniform(0.1, 0.3) * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * 2)
    img *= illum[..., None] * rng.uniform(0.85, 1.05)
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 0.9))  # optics
    return _Scene(np.clip(img, 0.0, 0.97), content, desc, surfaces)


# ----------------------------------------------------------------------------------------
# camera pipeline
# ----------------------------------------------------------------------------------------
def _jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """RGB uint8 -> JPEG (libjpeg via PIL, 4:2:0) -> RGB uint8."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality), subsampling="4:2:0")
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).copy()


def _camera(rng: np.random.Generator, scene: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Display values -> linear light -> shot + read noise -> gamma -> uint8 (-> JPEG)."""
    shot = float(np.exp(rng.uniform(np.log(2e-4), np.log(1.5e-3))))  # variance per unit linear signal
    read = float(rng.uniform(5e-4, 2e-3))  # read-noise std, linear units
    lin = cv2.pow(scene, 2.2)
    std = cv2.sqrt(lin * np.float32(shot) + np.float32(read * read))
    noisy = lin + std * rng.standard_normal(lin.shape, dtype=np.float32)
    out = cv2.pow(np.clip(noisy, 0.0, 1.0), 1 / 2.2) * np.float32(255.0)
    img = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    info: dict[str, Any] = {"shot_noise": round(shot, 6), "read_noise": round(read, 6), "camera_jpeg": None}
    if rng.random() < 0.65:
        q = int(rng.integers(70, 91))
        img = _jpeg_roundtrip(img, q)
        info["camera_jpeg"] = q
    return img, info


# ----------------------------------------------------------------------------------------
# artifacts
# ----------------------------------------------------------------------------------------
def _legion_mask(pts: np.ndarray, h: int, w: int) -> np.ndarray:
    """The polygon rasterised exactly as the loader does (float -> int32, fillPoly)."""
    m = np.zeros((h, w), np.uint8)
    cv2.fillPoly(m, [pts.astype(np.int32).reshape(-1, 1, 2)], 1)
    return m.astype(bool)


def _location(cx: float, cy: float, w: int, h: int) -> str:
    v = "upper" if cy < h / 3 else ("lower" if cy > 2 * h / 3 else "")
    hz = "left" if cx < w / 3 else ("right" if cx > 2 * w / 3 else "")
    if v and hz:
        return f"{v}-{hz}"
    return v or hz or "centre"


def _apply(img: np.ndarray, new: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int]) -> None:
    """Blend ``new`` (crop-sized float) into ``img`` inside ``mask`` (feathered ~1 px)."""
    y0, y1, x0, x1 = box
    alpha = cv2.GaussianBlur(mask[y0:y1, x0:x1].astype(np.float32), (0, 0), 0.7)[..., None]
    crop = img[y0:y1, x0:x1]
    crop[:] = crop * (1 - alpha) + new * alpha


def _plant(rng: np.random.Generator, kind: str, img: np.ndarray, mask: np.ndarray,
           box: tuple[int, int, int, int]) -> str:
    """Plant one artifact of ``kind`` in float32 ``img`` (0..255) inside ``mask``.

    Returns a variant word used by the explanation text."""
    y0, y1, x0, x1 = box
    crop = img[y0:y1, x0:x1]
    ch, cw = crop.shape[:2]
    if kind == "lowres":
        f = rng.uniform(3.0, 6.0)
        small = cv2.resize(crop, (max(2, int(cw / f)), max(2, int(ch / f))), interpolation=cv2.INTER_AREA)
        new = cv2.resize(small, (cw, ch), interpolation=cv2.INTER_CUBIC)
        variant = "blur"
    elif kind == "checker":
        small = cv2.resize(crop, ((cw + 1) // 2, (ch + 1) // 2), interpolation=cv2.INTER_AREA)
        new = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)[:ch, :cw]
        yy, xx = np.mgrid[y0:y1, x0:x1]  # absolute parity: a grid locked to the image
        checker = (((yy + xx) % 2) * 2 - 1).astype(np.float32) * np.float32(rng.uniform(3.0, 7.0))
        new = new + checker[..., None] * rng.uniform(0.8, 1.2, 3).astype(np.float32)
        variant = "grid"
    elif kind == "copymove":
        h, w = img.shape[:2]
        # source centre: far enough from the target, inside the image
        for _ in range(20):
            sx, sy = rng.uniform(cw / 2, w - cw / 2), rng.uniform(ch / 2, h - ch / 2)
            if abs(sx - (x0 + x1) / 2) > cw * 0.8 or abs(sy - (y0 + y1) / 2) > ch * 0.8:
                break
        ang = float(rng.choice([-1, 1]) * rng.uniform(8, 25))
        scale = float(rng.uniform(0.85, 1.2))
        m = cv2.getRotationMatrix2D((float(sx), float(sy)), ang, scale)
        m[:, 2] += np.array([(x0 + x1) / 2 - sx, (y0 + y1) / 2 - sy])
        m[:, 2] -= np.array([x0, y0])  # output is the crop
        new = cv2.warpAffine(img, m, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        q = int(rng.integers(40, 71))
        new = _jpeg_roundtrip(np.clip(np.rint(new), 0, 255).astype(np.uint8), q).astype(np.float32)
        variant = "copy"
    elif kind == "lighting":
        variant = str(rng.choice(["shadow", "glow", "tint"]))
        if variant == "shadow":
            gain = rng.uniform(0.4, 0.55) * np.array([0.95, 0.98, 1.08])
        elif variant == "glow":
            gain = rng.uniform(1.5, 1.8) * np.array([1.06, 1.0, 0.9])
        else:
            gain = np.array([1.0, 1.0, 1.0]) + rng.uniform(-0.5, 0.5, 3)
            gain[rng.integers(3)] = rng.uniform(1.5, 1.8)
        yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
        a = rng.uniform(0, 2 * np.pi)
        ramp = 1.0 + 0.15 * ((xx / cw - 0.5) * math.cos(a) + (yy / ch - 0.5) * math.sin(a))
        new = crop * ramp[..., None] * gain.astype(np.float32)
    elif kind == "smear":
        amp = rng.uniform(4.0, 10.0)
        dx = _fractal(rng, ch, cw, 3, 2) * amp
        dy = _fractal(rng, ch, cw, 3, 2) * amp
        yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
        new = cv2.remap(crop, xx + dx, yy + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        new = cv2.GaussianBlur(new, (0, 0), rng.uniform(1.0, 1.6))
        variant = "smear"
    else:  # pragma: no cover - KINDS is closed
        raise ValueError(kind)
    _apply(img, np.clip(new, 0, 255), mask, box)
    return variant


_EXPLAIN = {
    "blur": ["The {noun} here looks blurry and smooth, as if upscaled from a much smaller image; "
             "it lacks the fine grain and detail of its surroundings.",
             "The {noun} is strangely soft and smeared compared with the sharp, grainy texture around it."],
    "grid": ["The {noun} shows a regular grid-like checkerboard pattern, a typical trace of "
             "upsampling in image generators.",
             "A fine repetitive checkerboard texture covers the {noun}, which real surfaces do not have."],
    "copy": ["Part of the {noun} repeats content copied from elsewhere in the image, slightly "
             "rotated and with blocky detail.",
             "The {noun} contains a duplicated, tilted patch whose texture does not continue its surroundings."],
    "shadow": ["The {noun} is much darker than the light in the scene allows, like a shadow with no object to cast it.",
               "An unexplained dark shadow falls on the {noun}, inconsistent with the direction of the light."],
    "glow": ["The {noun} is unnaturally bright, glowing as if lit by a light source that is not in the scene.",
             "The {noun} is overexposed compared with the rest of the scene, inconsistent with its lighting."],
    "tint": ["The {noun} has a strange colour cast that does not match the lighting of the rest of the scene.",
             "The colour of the {noun} is shifted to an odd tint, inconsistent with its surroundings."],
    "smear": ["The {noun} is warped and smeared, its edges bending and melting unnaturally.",
              "The shape of the {noun} is distorted, with wavy, melted contours."],
}
_SHORT = {"blur": "a blurred, low-detail patch", "grid": "a grid-like checkerboard texture",
          "copy": "a duplicated, rotated patch", "shadow": "an unexplained dark shadow",
          "glow": "an unnatural glow", "tint": "an inconsistent colour cast",
          "smear": "warped, melted detail"}


def _place(rng: np.random.Generator, h: int, w: int, taken: np.ndarray,
           surfaces: list[_Surface]) -> tuple[np.ndarray, _Surface] | None:
    """An irregular polygon (float N x 2) on one surface, not touching earlier artifacts."""
    frac = float(np.clip(np.exp(rng.normal(np.log(0.035), 0.6)), 0.008, 0.12))
    objects = [s for s in surfaces if s.is_object and s.mask.sum() > 400]
    for _ in range(30):
        use_obj = objects and rng.random() < 0.45
        surf = objects[rng.integers(len(objects))] if use_obj else surfaces[rng.integers(min(2, len(surfaces)))]
        ys, xs = np.nonzero(surf.mask[::4, ::4])
        if len(ys) == 0:
            continue
        k = rng.integers(len(ys))
        cy, cx = ys[k] * 4.0 + 2, xs[k] * 4.0 + 2
        r = math.sqrt(frac * h * w / math.pi)
        if use_obj:
            r = min(r, 0.75 * math.sqrt(surf.mask.sum() / math.pi))
        aspect = float(np.exp(rng.uniform(-0.5, 0.5)))
        pts = _blob_pts(rng, cx, cy, r, int(rng.integers(9, 17)), rng.uniform(0.12, 0.3), aspect,
                        rng.uniform(0, np.pi))
        pts = np.round(pts, 3)
        if pts[:, 0].min() < 1 or pts[:, 1].min() < 1 or pts[:, 0].max() > w - 2 or pts[:, 1].max() > h - 2:
            continue
        m = _legion_mask(pts, h, w)
        if m.sum() < 64:
            continue
        grown = cv2.dilate(m.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        if (grown & taken).any():
            continue
        return pts, surf
    return None


def _where(loc: str) -> tuple[str, str]:
    """(preposition, place): ``upper-left`` -> ("in", "the upper-left corner"),
    ``upper`` -> ("in", "the upper part"), ``left`` -> ("on", "the left side"), ``centre``."""
    if loc == "centre":
        return "in", "the centre"
    if "-" in loc:
        return "in", f"the {loc} corner"
    return ("in", f"the {loc} part") if loc in ("upper", "lower") else ("on", f"the {loc} side")


def _phrase(surf: _Surface, loc: str, rng: np.random.Generator) -> tuple[str, str, str]:
    """(location phrase, noun for the explanation, short location for the global sentence)."""
    prep, where = _where(loc)
    if surf.is_object:
        noun = f"{surf.colour} {surf.noun}"
        phrase = f"The {noun} {prep} {where} of the image" if rng.random() < 0.5 else f"The {noun} near {where}"
        return phrase, noun, f"on the {noun}"
    noun = surf.noun
    phrase = f"The {noun} {prep} {where} of the image" if rng.random() < 0.5 else f"The {noun} {prep} {where}"
    return phrase, noun, f"{prep} {where} of the {noun}"


# ----------------------------------------------------------------------------------------
# one image
# ----------------------------------------------------------------------------------------
def _image_size(rng: np.random.Generator) -> tuple[int, int]:
    """(H, W): long side 320..1024, aspect from common photo ratios, short side >= 256."""
    aspect = float(rng.choice([1.0, 1.0, 4 / 3, 3 / 2, 16 / 9, 3 / 4, 2 / 3, 5 / 4]))
    long_side = int(rng.integers(320, MAX_SIDE + 1))
    if aspect >= 1:
        w, h = long_side, int(round(long_side / aspect))
    else:
        h, w = long_side, int(round(long_side * aspect))
    return max(MIN_SIDE, h), max(MIN_SIDE, w)


def _make_image(seed: int, index: int, fake: bool) -> tuple[bytes, str, dict[str, Any], dict[str, Any]]:
    """Render image ``index``: (file bytes, extension, record without file name, side info)."""
    rng = np.random.default_rng([seed, index])
    h, w = _image_size(rng)
    scene = _render_scene(rng, h, w)
    img8, pipeline = _camera(rng, scene.image)
    refs: list[dict[str, Any]] = []
    kinds: list[str] = []
    notes: list[str] = []
    if fake:
        img = img8.astype(np.float32)
        taken = np.zeros((h, w), bool)
        n_art = int(rng.choice([1, 1, 1, 2, 2, 3]))
        for kind in rng.permutation(KINDS)[:n_art]:
            kind = str(kind)
            placed = _place(rng, h, w, taken, scene.surfaces)
            if placed is None:
                continue
            pts, surf = placed
            mask = _legion_mask(pts, h, w)
            ys, xs = np.nonzero(mask)
            box = (max(0, ys.min() - 4), min(h, ys.max() + 5), max(0, xs.min() - 4), min(w, xs.max() + 5))
            variant = _plant(rng, kind, img, mask, box)
            taken |= mask
            loc = _location(float(xs.mean()), float(ys.mean()), w, h)
            phrase, noun, short_loc = _phrase(surf, loc, rng)
            templates = _EXPLAIN[variant]
            explanation = templates[rng.integers(len(templates))].format(noun=noun)
            refs.append({"sentence": phrase, "explanation": explanation, "bbox": None,
                         "segmentation": [[float(v) for v in pts.ravel()]],
                         "category": KIND_CATEGORY[kind]})
            kinds.append(kind)
            notes.append(f"{_SHORT[variant]} {short_loc}")
        img8 = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if rng.random() < 0.35:
        q = int(rng.integers(88, 97))
        buf = io.BytesIO()
        Image.fromarray(img8).save(buf, format="JPEG", quality=q, subsampling="4:2:0")
        data, ext = buf.getvalue(), ".jpg"
        pipeline["final"] = f"jpeg{q}"
    else:
        # zlib level 1 with the RLE strategy: fastest, and smaller than the default on noisy images
        png_opts = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
        ok, enc = cv2.imencode(".png", cv2.cvtColor(img8, cv2.COLOR_RGB2BGR), png_opts)
        if not ok:  # pragma: no cover
            raise RuntimeError("PNG encoding failed")
        data, ext = enc.tobytes(), ".png"
        pipeline["final"] = "png"
    head = "Upon examining the image. I have found: "
    if refs:
        glob = f"{scene.description}, showing {_join(notes)}."
        caption = head + glob + "\nTo elaborate, I have found the following artifacts. " + "".join(
            f"{r['sentence']}:{r['explanation']}" for r in refs)
    else:
        caption = head + f"{scene.description}. The image looks like a genuine photograph with no visible artifacts."
    record = {"caption": caption, "refs": refs, "label": "fake" if fake else "real",
              "content_type": scene.content_type}
    return data, ext, record, {"kinds": kinds, "pipeline": pipeline}


# ----------------------------------------------------------------------------------------
# whole dataset, cache
# ----------------------------------------------------------------------------------------
def _write_image(seed: int, index: int, fake: bool, width: int,
                 img_dir: Path) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """Render image ``index`` into ``img_dir``: (annotation item, file name, side info)."""
    data, ext, record, info = _make_image(seed, index, fake)
    name = f"img_{index:0{width}d}{ext}"
    (img_dir / name).write_bytes(data)
    return {str(index): {"img_file_name": name, **record}}, name, info


def generate_demo(root: Path | str, seed: int, n_fake: int, n_real: int, version: int, side_file: str) -> Path:
    """Write the demo into ``<root>/SynthScars/test/...`` and return ``<root>/SynthScars``.

    Written atomically: everything goes into a temporary folder beside it, which is then
    renamed. If ``<root>/SynthScars`` already exists (e.g. another process won a race) it is
    kept as it is and the fresh copy is discarded. Labels are interleaved in a seeded order;
    file names (``img_0000.png`` ...) do not reveal the label. Single process: about 0.08 s
    of CPU per image (the default 260 images in ~20 s).
    """
    if n_fake < 0 or n_real < 0 or n_fake + n_real == 0:
        raise ValueError(f"need a positive number of images (n_fake={n_fake}, n_real={n_real})")
    root = Path(root)
    final = root / "SynthScars"
    if (final / "test" / "annotations" / "test.json").exists():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".SynthScars.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        img_dir = tmp / "test" / "images"
        ann_dir = tmp / "test" / "annotations"
        img_dir.mkdir(parents=True)
        ann_dir.mkdir(parents=True)
        n = n_fake + n_real
        is_fake = np.zeros(n, bool)
        is_fake[np.random.default_rng([seed, 1 << 30]).permutation(n)[:n_fake]] = True
        width = max(4, len(str(n - 1)))
        records, side = [], {}
        import sys

        from tqdm.auto import tqdm

        # the first demo run spends most of a minute here: say so (a bar only on a terminal)
        print(f"bench: generating the demo dataset ({n} images) into {final} (once; later runs reuse it)",
              file=sys.stderr, flush=True)
        for i in tqdm(range(n), desc="generate demo", unit="img", leave=False, file=sys.stderr,
                      disable=None):
            item, name, info = _write_image(int(seed), i, bool(is_fake[i]), width, img_dir)
            records.append(item)
            side[name] = info
        (ann_dir / "test.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
        (tmp / "test" / side_file).write_text(
            json.dumps({"version": version, "seed": int(seed), "images": side}), encoding="utf-8")
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "test" / "annotations" / "test.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


