"""Prediction cache codec: bytes per pixel and milliseconds per write/read, before and after.

The ``noise`` adapter's heatmaps (a full float32 map per image, like a real localization model)
on N demo images under the LEGION grid's clean and perturbed inputs; each heatmap is stored as
the cache stored it before (``np.savez_compressed``: zlib level 6 on the raw arrays) and as it
stores it now (:func:`bench.engine.cache.encode_prediction`: zstd level 1 after a float32
byte-shuffle, in an uncompressed ``.npz``). A third row shows blosc2 (shuffle + zstd), which
compresses alike but holds the GIL while it works (the last column: how late a thread that
sleeps 20 ms wakes while another thread encodes, i.e. what a writer thread costs the thread
that feeds the accelerator). Both round-trips are checked to be lossless.

    python benchmarks/bench_cache_codec.py            # 20 images x 10 conditions
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def old_entry(pred, h: int, w: int) -> bytes:
    """The entry format before: np.savez_compressed of the raw heatmap and a JSON meta."""
    import numpy as np

    from bench.engine.cache import canonical_json

    meta = {"height": h, "width": w, "score": pred.score, "explanation": None, "extras": {}}
    buf = io.BytesIO()
    np.savez_compressed(buf, heatmap=pred.heatmap, meta=np.frombuffer(canonical_json(meta).encode(), np.uint8))
    return buf.getvalue()


def blosc2_entry(pred, h: int, w: int) -> bytes:
    """blosc2's shuffle + zstd level 1 of the heatmap (for comparison; not a cache format)."""
    import blosc2

    return blosc2.pack_tensor(pred.heatmap, cparams={"codec": blosc2.Codec.ZSTD, "clevel": 1,
                                                      "filters": [blosc2.Filter.SHUFFLE], "nthreads": 1})


def wake_delay_ms(encode, preds) -> float:
    """Mean lateness of a thread's 20 ms sleeps while another thread encodes in a loop."""
    import threading

    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            for p in preds[:4]:
                encode(p, *p.heatmap.shape)

    th = threading.Thread(target=loop)
    th.start()
    late = []
    for _ in range(30):
        t0 = time.perf_counter()
        time.sleep(0.02)
        late.append(time.perf_counter() - t0 - 0.02)
    stop.set()
    th.join()
    return 1000 * sum(late) / len(late)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20, help="demo images (default 20)")
    ap.add_argument("--adapter", default="noise", help="a heatmap adapter (default noise)")
    ap.add_argument("--work", type=Path, default=_common.default_work_dir(),
                    help="folder for generated images (default: %(default)s)")
    args = ap.parse_args()

    import numpy as np

    from bench.core.registry import create_adapter, create_dataset
    from bench.core.types import ModelInput
    from bench.engine.cache import decode_prediction, encode_prediction
    from bench.perturbations import apply_condition, preset_conditions

    root, options = _common.ensure_demo_images(args.work, args.n)
    samples = create_dataset("demo", data_root=root, split="test", **options).samples()[: args.n]
    adapter = create_adapter(args.adapter)
    adapter.load("cpu")
    preds = []
    for s in samples:
        image = s.load_image()
        for cond in preset_conditions("legion"):
            img = apply_condition(image, cond, suite_seed=0, sample_id=s.id)
            preds.append(adapter.predict([ModelInput(s.id, img, s.file_name, cond.key)])[0])
    pixels = sum(p.heatmap.size for p in preds)
    _common.header("prediction cache codec", adapter=args.adapter, heatmaps=f"{len(preds)} ({pixels / len(preds):,.0f} px each)")
    rows = []
    for label, enc, dec in (("before: np.savez_compressed (zlib 6)", old_entry, decode_prediction),
                            ("now: shuffle + zstd-1 in .npz", encode_prediction, decode_prediction),
                            ("(blosc2 shuffle + zstd-1)", blosc2_entry, None)):
        t0 = time.perf_counter()
        blobs = [enc(p, *p.heatmap.shape) for p in preds]
        t_write = time.perf_counter() - t0
        t_read = float("nan")
        if dec is not None:
            t0 = time.perf_counter()
            back = [dec(b)[0] for b in blobs]
            t_read = time.perf_counter() - t0
            assert all(np.array_equal(a.heatmap, b.heatmap) for a, b in zip(preds, back)), "not lossless"
        rows.append((label, sum(map(len, blobs)) / pixels, 1000 * t_write / len(preds), 1000 * t_read / len(preds),
                     wake_delay_ms(enc, preds)))
    print(f"{'codec':40s} {'bytes/px':>9s} {'write ms':>9s} {'read ms':>8s} {'wake delay ms':>14s}")
    for label, bpp, w, r, d in rows:
        print(f"{label:40s} {bpp:9.3f} {w:9.2f} {r:8.2f} {d:14.2f}")
    (_, b0, w0, r0, _), (_, b1, w1, r1, _) = rows[:2]
    print(f"now / before: {b1 / b0:.2f}x the bytes, writes {w0 / w1:.1f}x faster, reads {r0 / r1:.1f}x faster "
          "(lossless both ways)")


if __name__ == "__main__":
    main()
