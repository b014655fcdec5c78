"""CSS throughput on CPU: texts per second, one text at a time vs batched.

    .venv/bin/python benchmarks/bench_css.py [--n 512] [--model all-MiniLM-L6-v2] [--threads N]

Texts are SynthScars-like captions generated here (deterministic), 40-120 words each. Each
figure is the best of ``--repeat`` timed runs after one warm-up. ``metric`` times the harness's
``css`` metric end to end on n (prediction, reference) pairs (2n texts embedded, reference cache
cleared first, then a second call with the reference cache warm).
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time

WORDS = ("the a hand finger shadow light reflection mirror window wall table cup ball box sky grass "
         "tree face eye ear hair text sign letter upper lower left right corner centre region patch "
         "blurred smeared distorted duplicated rotated checkerboard texture noise compression "
         "inconsistent physically impossible direction strangely soft sharp grainy around compared "
         "with shows contains looks like missing extra fused twisted").split()


def make_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(40, 120)
        body = " ".join(rng.choice(WORDS) for _ in range(k))
        out.append(f"Upon examining the image. I have found: {body}.")
    return out


def best_time(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=256, help="texts per batched measurement")
    ap.add_argument("--n-single", type=int, default=64, help="texts for the one-at-a-time measurement")
    ap.add_argument("--model", default="all-MiniLM-L6-v2", help="CSS model name (as in protocol.css_model)")
    ap.add_argument("--batch-sizes", default="16,64")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)

    import torch

    from bench.metrics import explanation as ex

    if args.threads:
        torch.set_num_threads(args.threads)
    model = ex.load_css_model(args.model)
    info = ex.css_model_info(args.model)
    texts = make_texts(args.n)
    print(f"model {info['name']} ({info['source']}, dim {info['dim']}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")

    single = texts[: args.n_single]
    t = best_time(lambda: [model.encode([s], show_progress_bar=False) for s in single], args.repeat)
    print(f"one at a time      : {len(single) / t:8.1f} texts/s  ({len(single)} texts, {t:.2f} s)")
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        t = best_time(lambda: model.encode(texts, batch_size=bs, show_progress_bar=False), args.repeat)
        print(f"batched, batch {bs:<4d}: {len(texts) / t:8.1f} texts/s  ({len(texts)} texts, {t:.2f} s)")

    preds, refs = texts, make_texts(args.n, seed=1)

    def cold():
        ex._REF_EMBEDDINGS.clear()
        ex.css_scores(preds, refs, args.model)

    t = best_time(cold, args.repeat)
    print(f"css metric, cold   : {2 * len(preds) / t:8.1f} texts/s  ({len(preds)} pairs, {t:.2f} s)")
    ex.css_scores(preds, refs, args.model)
    t = best_time(lambda: ex.css_scores(preds, refs, args.model), args.repeat)
    print(f"css metric, refs cached: {len(preds) / t:8.1f} pairs/s ({len(preds)} pairs, {t:.2f} s)")


if __name__ == "__main__":
    main()
