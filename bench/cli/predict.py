"""`bench predict IMAGE --adapter NAME [--config K=V ...] [--mask GT.png] [--out FILE.png]`:
one image through one adapter — writes an overlay picture, prints the score and explanation."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench.errors import BenchError


def parse_config(items: Sequence[str] | None) -> dict[str, Any]:
    """``["K=V", ...]`` -> dict (see :func:`bench.core.config_args.parse_pairs`)."""
    from bench.core.config_args import parse_pairs

    return parse_pairs(items)


def default_out(image: Path, adapter: str) -> Path:
    from bench.results.publish import slug

    return Path(f"{slug(image.stem)}_{slug(adapter)}_overlay.png")


def predict_one(image_path: Path, adapter_name: str, config: dict[str, Any], threshold: float = 0.5,
                device: str = "cpu"):
    """(RGB image, prediction, binary mask or None) for one image through one adapter."""
    from bench.io.imageio import decode_image
    from bench.core.registry import ADAPTERS
    from bench.core.types import ModelInput
    from bench.core.validate import build_adapter

    # = bench.core.registry.create_adapter, which cannot take a config key called "name" (its own
    # first parameter); the lookup gives the same unknown-name message with suggestions, and a
    # config the adapter refuses is a one-line error naming the key.
    ADAPTERS.entry(adapter_name)
    adapter = build_adapter(adapter_name, config)
    image = decode_image(image_path)
    adapter.load(device)
    preds = adapter.predict([ModelInput(sample_id=image_path.stem, image=image, file_name=image_path.name)])
    if len(preds) != 1:
        raise BenchError(f"adapter {adapter_name!r} returned {len(preds)} predictions for 1 image")
    pred = preds[0]
    h, w = image.shape[:2]
    pred.validate(h, w, getattr(adapter, "tasks", ()), str(image_path))
    return image, pred, pred.binary_mask(threshold)


def check_out_file(out: Path) -> None:
    """``--out`` must name a .png file in a folder that exists (or can be made) and is writable."""
    import os

    if out.is_dir():
        raise BenchError(f"--out {out}: is a folder; give the overlay's file name, e.g. {out / 'overlay.png'}")
    if out.suffix.lower() != ".png":
        raise BenchError(f"--out {out}: the overlay is written as PNG; give a .png file name")
    parent = out.parent
    blocker = next((p for p in [parent, *parent.parents] if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise BenchError(f"--out {out}: {blocker} is a file, not a folder")
    if blocker is not None and not os.access(blocker, os.W_OK | os.X_OK):
        raise BenchError(f"--out {out}: folder {blocker} is not writable")


def run(args: argparse.Namespace) -> int:
    from bench.io.imageio import load_binary_mask_png, write_png
    from bench.io.overlay import overlay_prediction
    from bench.core.registry import ADAPTERS

    image_path = Path(args.image)
    if not 0.0 <= args.threshold <= 1.0:
        raise BenchError(f"--threshold {args.threshold} is not in [0, 1]")
    if args.threshold == 1.0:
        raise BenchError("--threshold 1.0 marks no pixel (a pixel is artifact when heatmap > threshold); "
                         "give a value below 1, e.g. 0.5")
    # every input before the model is built or loaded
    if image_path.is_dir():
        raise BenchError(f"{image_path}: is a folder; give an image file")
    if not image_path.exists():
        raise BenchError(f"{image_path}: image file not found")
    if args.mask and not Path(args.mask).is_file():
        raise BenchError(f"--mask {args.mask}: not a file; give the ground-truth mask PNG (0/255)")
    out = Path(args.out) if args.out else default_out(image_path, args.adapter)
    check_out_file(out)
    ADAPTERS.entry(args.adapter)  # unknown names: suggestions
    config = parse_config(args.config)
    image, pred, mask = predict_one(image_path, args.adapter, config, args.threshold, args.device)
    h, w = image.shape[:2]
    gt = load_binary_mask_png(args.mask, (h, w)) if args.mask else None
    if mask is None:
        picture = image.copy()
    else:
        picture = overlay_prediction(image, np.asarray(mask, dtype=bool), gt)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_png(out, picture)

    print(f"image:       {image_path} ({w}x{h}, W x H)")
    print(f"adapter:     {args.adapter}")
    print(f"score:       {'-' if pred.score is None else f'{float(pred.score):.4f}'}"
          "  (probability the image is synthetic)")
    if mask is None:
        print("mask:        none (this adapter does not localize); the picture is the image alone")
    else:
        src = "mask" if pred.mask is not None else f"heatmap > {args.threshold}"
        print(f"mask:        {100 * float(np.mean(mask)):.2f}% of pixels ({src})")
        if gt is not None:
            from bench.metrics.localization import confusion_counts, f1, miou

            tp, fp, fn, tn = confusion_counts(np.asarray(mask, dtype=bool), gt)
            print(f"vs mask:     mIoU {100 * float(miou([tp], [fp], [fn], [tn])[0]):.2f}  "
                  f"F1 {100 * float(f1([tp], [fp], [fn], [tn])[0]):.2f}  (x100, LEGION definitions)")
    print(f"explanation: {pred.explanation if pred.explanation is not None else '-'}")
    legend = "green = predicted and annotated, vermillion = predicted only, blue = missed" if gt is not None \
        else "vermillion = predicted artifact"
    print(f"overlay:     {out}  ({legend})")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="run one adapter on one image and write an overlay picture",
                       description="Run one image through one adapter: writes the predicted mask as an "
                       "overlay PNG and prints the score and the explanation.")
    p.add_argument("image", metavar="IMAGE", help="image file (any format PIL reads)")
    p.add_argument("--adapter", required=True, metavar="NAME", help="adapter name (`bench ls adapters`)")
    p.add_argument("--config", action="append", metavar="K=V", help="adapter option (repeatable)")
    p.add_argument("--mask", metavar="GT.png", help="ground-truth mask (0/255) to colour the overlay by agreement")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="heatmap threshold for the mask (strict >, default 0.5, the protocol's)")
    p.add_argument("--device", default="cpu", help="device for the model (default cpu)")
    p.add_argument("--out", metavar="FILE.png", help="overlay file (default: <image>_<adapter>_overlay.png)")
    p.set_defaults(func=run)
