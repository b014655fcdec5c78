"""Throughput of each perturbation next to decoding the same image (prints figures, asserts nothing).

    .venv/bin/python benchmarks/bench_perturbations.py [--size 1024x768] [--repeats 15] [--image FILE]
        [--threads N]

Without --image a synthetic photo-like RGB image (smooth gradients, shapes, sensor-like noise)
is used. Decode figures are for ``bench.io.imageio.decode_image`` on in-memory PNG and JPEG
(quality 90) bytes of that image; each perturbation is timed through ``apply_condition``
(generator derivation included) over the ``legion`` and ``imagenet-c`` presets plus resize and
the compatibility JPEG. Times are medians over --repeats runs, one image at a time, in one
process; OpenCV may use --threads threads (default: OpenCV's choice).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.core.conditions import Condition  # noqa: E402
from bench.io.imageio import decode_image  # noqa: E402
from bench.perturbations import PRESETS, apply_condition, perturbation_provenance  # noqa: E402


def synthetic_photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Deterministic photo-like content: gradients, discs, stripes, mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([
        128 + 100 * np.sin(xx / 97.0) * np.cos(yy / 131.0),
        128 + 90 * np.cos((xx + yy) / 173.0),
        128 + 80 * np.sin(np.hypot(xx - w / 2, yy - h / 2) / 41.0),
    ], -1)
    for _ in range(40):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(10, 90)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        img[mask] = rng.integers(0, 256, 3)
    img[:, ::7] *= 0.9
    img += rng.normal(0, 4, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1024x768", help="W x H of the synthetic image")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--image", help="use this image instead of a synthetic one")
    ap.add_argument("--threads", type=int, help="cv2.setNumThreads")
    args = ap.parse_args(argv)
    if args.threads is not None:
        cv2.setNumThreads(args.threads)
    if args.image:
        img = decode_image(Path(args.image))
    else:
        w, h = (int(v) for v in args.size.lower().split("x"))
        img = synthetic_photo(h, w)
    png, jpg = io.BytesIO(), io.BytesIO()
    Image.fromarray(img).save(png, "PNG")
    Image.fromarray(img).save(jpg, "JPEG", quality=90)
    png_b, jpg_b = png.getvalue(), jpg.getvalue()

    prov = perturbation_provenance()
    print(f"image {img.shape[1]}x{img.shape[0]} RGB; PNG {len(png_b) / 1e6:.2f} MB, JPEG q90 {len(jpg_b) / 1e6:.2f} MB; "
          f"opencv {prov['opencv']} ({cv2.getNumThreads()} threads), numpy {prov['numpy']}, "
          f"pillow {prov['pillow']}; median of {args.repeats}")
    rows: list[tuple[str, float]] = [
        ("decode PNG", median_ms(lambda: decode_image(png_b), args.repeats)),
        ("decode JPEG q90", median_ms(lambda: decode_image(jpg_b), args.repeats)),
    ]
    keys: list[str] = []
    for conds in PRESETS.values():
        keys += [c.key for c in conds if not c.is_clean and c.key not in keys]
    keys += ["resize(scale=0.5)", "resize(scale=0.5)+jpeg(quality=75)", "jpeg_bgr_swap(quality=50)"]
    for key in keys:
        cond = Condition.parse(key)
        rows.append((key, median_ms(lambda: apply_condition(img, cond, suite_seed=0, sample_id="bench"),
                                    args.repeats)))
    png_ms = rows[0][1]
    width = max(len(k) for k, _ in rows)
    print(f"{'operation':<{width}}  {'ms/image':>9}  {'images/s':>9}  {'x PNG decode':>12}")
    for key, ms in rows:
        print(f"{key:<{width}}  {ms:9.2f}  {1000 / ms:9.1f}  {ms / png_ms:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
