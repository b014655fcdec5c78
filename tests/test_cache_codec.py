"""The prediction cache's codec: lossless, smaller than the zlib entries it replaced, and entries
of the earlier format still read."""

from __future__ import annotations

import io

import numpy as np
import pytest

from bench.core.types import Prediction
from bench.engine.cache import PredictionCache, canonical_json, decode_prediction, encode_prediction


def _heatmap(h=193, w=257, seed=0):
    rng = np.random.default_rng(seed)
    import cv2

    x = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 5) * 6
    return (1 / (1 + np.exp(-x))).astype(np.float32)


def _old_entry(pred: Prediction, h: int, w: int) -> bytes:
    """An entry as the cache wrote it before the codec change (np.savez_compressed)."""
    arrays = {}
    if pred.mask is not None:
        arrays["mask_bits"] = np.packbits(pred.mask.ravel())
    if pred.heatmap is not None:
        arrays["heatmap"] = pred.heatmap
    meta = {"height": h, "width": w, "score": pred.score, "explanation": pred.explanation, "extras": pred.extras}
    arrays["meta"] = np.frombuffer(canonical_json(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["heatmap", "mask", "both", "neither"])
def test_round_trip_is_lossless(kind):
    h, w = 61, 83
    heat = _heatmap(h, w) if kind in ("heatmap", "both") else None
    rng = np.random.default_rng(1)
    mask = rng.random((h, w)) > 0.7 if kind in ("mask", "both") else None
    pred = Prediction(heatmap=heat, mask=mask, score=0.25, explanation="a hand with six fingers",
                      extras={"n": 3, "note": "é"})
    got, gh, gw = decode_prediction(encode_prediction(pred, h, w))
    assert (gh, gw) == (h, w)
    if heat is None:
        assert got.heatmap is None
    else:
        assert got.heatmap.dtype == np.float32 and np.array_equal(got.heatmap.view(np.uint32), heat.view(np.uint32))
    if mask is None:
        assert got.mask is None
    else:
        assert got.mask.dtype == bool and np.array_equal(got.mask, mask)
    assert (got.score, got.explanation, got.extras) == (0.25, "a hand with six fingers", {"n": 3, "note": "é"})


def test_smaller_than_the_zlib_entries_on_a_smooth_heatmap():
    h, w = 384, 512
    pred = Prediction(heatmap=_heatmap(h, w))
    new, old = encode_prediction(pred, h, w), _old_entry(pred, h, w)
    assert len(new) < len(old), (len(new), len(old))


def test_an_entry_of_the_earlier_format_is_still_read(tmp_path):
    cache = PredictionCache(tmp_path)
    h, w = 40, 50
    pred = Prediction(heatmap=_heatmap(h, w, seed=3), mask=_heatmap(h, w, seed=4) > 0.5, score=0.9)
    key = "ab" + "0" * 62
    path = tmp_path / key[:2] / f"{key}.npz"
    path.parent.mkdir(parents=True)
    path.write_bytes(_old_entry(pred, h, w))
    assert cache.status(key) == "ok"
    got, gh, gw = cache.get(key)
    assert (gh, gw) == (h, w) and got.score == 0.9
    assert np.array_equal(got.heatmap, pred.heatmap) and np.array_equal(got.mask, pred.mask)


def test_a_corrupt_entry_reads_as_missing_and_is_dropped(tmp_path):
    cache = PredictionCache(tmp_path)
    key = "cd" + "1" * 62
    cache.put(key, Prediction(heatmap=_heatmap(20, 30)), height=20, width=30)
    path = tmp_path / key[:2] / f"{key}.npz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(KeyError):
        cache.get(key)
    assert not path.exists() and cache.status(key) is None
