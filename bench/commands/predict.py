"""`bench predict IMAGE --adapter NAME [--config K=V ...] [--mask GT.png] [--out FILE.png]`:
one image through one adapter — writes an overlay picture, prints the score and explanation."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench.errors import BenchError


def parse_config(items: Sequence[str] | None) -> dict[str, Any]:
    """``["K=V", ...]`` -> dict (see :func:`bench.config_args.parse_pairs`)."""
    from bench.config_args import parse_pairs

    return parse_pairs(items)


def default_out(image: Path, adapter: str) -> Path:
    from bench.publish import slug

    return Path(f"{slug(image.stem)}_{slug(adapter)}_overlay.png")


def predict_one(image_path: Path, adapter_name: str, config: dict[str, Any], threshold: float = 0.5,
                device: str = "cpu"):
    """(RGB image, prediction, binary mask or None) for one image through one adapter."""
    from bench.imageio import decode_image
    from bench.registry import ADAPTERS
    from bench.types import ModelInput

    image = decode_image(image_path)
    # = bench.registry.create_adapter, which cannot take a config key called "name" (its own
    # first parameter); the lookup gives the same unknown-name message with suggestions.
    adapter = ADAPTERS.get(adapter_name)(**config)
    adapter.load(device)
    preds = adapter.predict([ModelInput(sample_id=image_path.stem, image=image, file_name=image_path.name)])
    if len(preds) != 1:
        raise BenchError(f"adapter {adapter_name!r} returned {len(preds)} predictions for 1 image")
    pred = preds[0]
    h, w = image.shape[:2]
    pred.validate(h, w, getattr(adapter, "tasks", ()), str(image_path))
    return image, pred, pred.binary_mask(threshold)


def run(args: argparse.Namespace) -> int:
    from bench.imageio import load_binary_mask_png, write_png
    from bench.overlay import overlay_prediction

    image_path = Path(args.image)
    if not 0.0 <= args.threshold <= 1.0:
        raise BenchError(f"--threshold {args.threshold} is not in [0, 1]")
    image, pred, mask = predict_one(image_path, args.adapter, parse_config(args.config), args.threshold, args.device)
    h, w = image.shape[:2]
    gt = load_binary_mask_png(args.mask, (h, w)) if args.mask else None
    out = Path(args.out) if args.out else default_out(image_path, args.adapter)
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
