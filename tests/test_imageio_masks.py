"""Image decoding (bench/io/imageio.py) and mask rules (bench/io/masks.py: boxes, heatmaps).

References: PIL's own ``convert("RGB")`` for 8-bit modes; numpy for 16-bit (PIL's I;16 -> L
clips at 255 instead of scaling, so it is not the reference there); LEGION's LOKI rule
re-implemented with ``cv2.rectangle`` for boxes; OpenCV's nearest-neighbour index rule
(``floor(i * (1 / (dst / src)))`` in double, then clipped) worked out by hand for heatmaps.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from bench.errors import SampleError
from bench.io.imageio import decode_image, image_size, load_binary_mask_png, max_pixels, verify_image
from bench.io.masks import boxes_to_mask_inclusive, heatmap_to_mask


def save(img: Image.Image, path: Path, fmt: str = "PNG", **kw) -> Path:
    img.save(path, format=fmt, **kw)
    return path


def pil_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(autouse=True)
def _restore_pillow_limit(monkeypatch):
    """bench.io.imageio sets Pillow's process-wide limit from BENCH_MAX_PIXELS: put it back so a
    small test limit never leaks into other tests in this worker."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)


# --------------------------------------------------------------------------------------------
# decode_image: modes


@pytest.fixture
def rgb_array(rng) -> np.ndarray:
    return rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)


def test_rgb_png_round_trip(tmp_path, rgb_array):
    p = save(Image.fromarray(rgb_array), tmp_path / "a.png")
    out = decode_image(p)
    assert out.dtype == np.uint8 and out.shape == (23, 31, 3)
    assert np.array_equal(out, rgb_array)
    assert np.array_equal(decode_image(p.read_bytes()), rgb_array)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "1", "P", "P-transparent", "CMYK", "YCbCr"])
def test_modes_match_pil_conversion(tmp_path, rgb_array, mode):
    base = Image.fromarray(rgb_array)
    if mode == "P-transparent":
        img = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        img.info["transparency"] = 3
        path = save(img, tmp_path / "p.png")
    elif mode == "CMYK":
        path = save(base.convert("CMYK"), tmp_path / "c.tif", "TIFF")
    elif mode == "YCbCr":
        path = save(base.convert("YCbCr"), tmp_path / "y.tif", "TIFF")
    elif mode == "RGBA":
        rgba = np.dstack([rgb_array, np.arange(23 * 31, dtype=np.uint8).reshape(23, 31)])
        path = save(Image.fromarray(rgba, "RGBA"), tmp_path / "r.png")
    elif mode == "P":
        path = save(base.convert("P", palette=Image.Palette.ADAPTIVE, colors=32), tmp_path / "p.png")
    else:
        path = save(base.convert(mode), tmp_path / "m.png")
    with Image.open(path) as im:
        assert im.mode == ("P" if mode.startswith("P") else mode)
    out = decode_image(path)
    assert out.dtype == np.uint8 and out.shape == (23, 31, 3)
    assert np.array_equal(out, pil_rgb(path))


def test_rgba_drops_alpha_without_compositing(tmp_path):
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[..., 0] = 200
    arr[..., 3] = 0  # fully transparent red: the colour under the alpha is kept
    out = decode_image(save(Image.fromarray(arr, "RGBA"), tmp_path / "t.png"))
    assert (out[..., 0] == 200).all() and (out[..., 1:] == 0).all()


def test_cmyk_jpeg_matches_pil(tmp_path, rgb_array):
    path = save(Image.fromarray(rgb_array).convert("CMYK"), tmp_path / "c.jpg", "JPEG", quality=95)
    with Image.open(path) as im:
        assert im.mode == "CMYK"
    assert np.array_equal(decode_image(path), pil_rgb(path))


def test_16bit_grey_scaled_by_nominal_range(tmp_path):
    values = np.array([[0, 1, 128, 129, 255, 256], [257, 385, 32767, 32768, 65534, 65535]], np.uint16)
    path = save(Image.fromarray(values), tmp_path / "g16.png")
    with Image.open(path) as im:
        assert im.mode == "I;16"
    want = np.rint(values.astype(np.float64) * 255 / 65535).astype(np.uint8)
    out = decode_image(path)
    assert out.shape == (2, 6, 3)
    assert all(np.array_equal(out[..., c], want) for c in range(3))
    # same file, same pixels: a dark 16-bit image is not stretched by its own maximum
    dark = np.full((3, 3), 200, np.uint16)
    assert (decode_image(save(Image.fromarray(dark), tmp_path / "d.png")) == 1).all()


def test_16bit_rgb_png_matches_pil(tmp_path, rng):
    arr16 = rng.integers(0, 65536, (9, 7, 3)).astype(np.uint16)
    ok, buf = cv2.imencode(".png", arr16[..., ::-1])  # cv2 writes BGR 16-bit PNGs
    assert ok
    path = tmp_path / "c16.png"
    path.write_bytes(buf.tobytes())
    out = decode_image(path)
    assert np.array_equal(out, pil_rgb(path))
    assert np.array_equal(out, (arr16 >> 8).astype(np.uint8))  # PIL keeps the high byte


def test_exif_orientation_not_applied(tmp_path, rgb_array):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = save(Image.fromarray(rgb_array), tmp_path / "o.jpg", "JPEG", exif=exif.tobytes())
    assert decode_image(path).shape == (23, 31, 3)  # stored pixels, not rotated


# --------------------------------------------------------------------------------------------
# decode_image: bad input


def test_missing_file(tmp_path):
    p = tmp_path / "none.png"
    with pytest.raises(SampleError) as exc:
        decode_image(p)
    assert exc.value.where == str(p) and "not found" in exc.value.problem


@pytest.mark.parametrize("fmt, suffix", [("PNG", ".png"), ("JPEG", ".jpg")])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_file(tmp_path, rgb_array, fmt, suffix, keep):
    big = np.kron(rgb_array, np.ones((8, 8, 1), np.uint8))  # enough data to cut
    path = save(Image.fromarray(big), tmp_path / ("t" + suffix), fmt)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(SampleError) as exc:
        decode_image(path)
    assert exc.value.where == str(path) and "cannot decode" in exc.value.problem
    with pytest.raises(SampleError) as exc:
        decode_image(path.read_bytes(), name="sample-7")
    assert exc.value.where == "sample-7"


def test_random_bytes_and_empty_file(tmp_path, rng):
    p = tmp_path / "noise.png"
    p.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(SampleError, match="cannot decode") as exc:
        decode_image(p)
    assert exc.value.where == str(p)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(SampleError, match="cannot decode"):
        decode_image(tmp_path / "empty.jpg")
    with pytest.raises(SampleError) as exc:
        decode_image(b"not an image at all")
    assert exc.value.where == "<bytes>"


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(SampleError) as exc:
        decode_image(tmp_path)
    assert exc.value.where == str(tmp_path)


@pytest.fixture
def count_decodes(monkeypatch):
    """Counts calls of PIL's pixel decoding (ImageFile.load)."""
    calls = []
    real = ImageFile.ImageFile.load

    def counting(self, *a, **kw):
        calls.append(self.size)
        return real(self, *a, **kw)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting)
    return calls


def test_pixel_limit_refuses_before_decoding(tmp_path, rgb_array, monkeypatch, count_decodes):
    path = save(Image.fromarray(rgb_array), tmp_path / "a.png")  # 31 x 23 = 713 pixels
    monkeypatch.setenv("BENCH_MAX_PIXELS", "712")
    with pytest.raises(SampleError) as exc:
        decode_image(path)
    assert exc.value.where == str(path)
    assert "713" in exc.value.problem and "limit" in exc.value.problem
    assert count_decodes == []  # never decoded
    monkeypatch.setenv("BENCH_MAX_PIXELS", "713")  # at the limit: allowed
    assert decode_image(path).shape == (23, 31, 3)
    assert count_decodes and set(count_decodes) == {(31, 23)}  # the counter does see decoding


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height but holds almost no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def test_huge_header_refused_with_default_limit(tmp_path, monkeypatch, count_decodes):
    monkeypatch.delenv("BENCH_MAX_PIXELS", raising=False)
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(9000, 8000))  # 72 Mpx: over 64M, under PIL's own 89M
    with pytest.raises(SampleError, match="over the limit") as exc:
        decode_image(path)
    assert exc.value.where == str(path) and count_decodes == []
    path.write_bytes(png_header_only(100_000, 100_000))  # PIL's own bomb guard fires first
    with pytest.raises(SampleError, match="too large|over the limit"):
        decode_image(path)
    assert count_decodes == []


# --------------------------------------------------------------------------------------------
# load_binary_mask_png


@pytest.fixture
def mask_bool(rng) -> np.ndarray:
    m = rng.random((13, 17)) < 0.3
    m[0, 0], m[0, 1] = True, False
    return m


@pytest.mark.parametrize("encoding", ["0/255", "0/1", "mode-1", "rgb-0/255"])
def test_binary_mask_encodings(tmp_path, mask_bool, encoding):
    u8 = mask_bool.astype(np.uint8)
    img = {
        "0/255": Image.fromarray(u8 * 255),
        "0/1": Image.fromarray(u8),
        "mode-1": Image.fromarray(u8 * 255).convert("1"),
        "rgb-0/255": Image.fromarray(np.dstack([u8 * 255] * 3)),
    }[encoding]
    path = save(img, tmp_path / "m.png")
    out = load_binary_mask_png(path, (13, 17))
    assert out.dtype == bool and np.array_equal(out, mask_bool)


def test_all_zero_mask_is_binary(tmp_path):
    path = save(Image.fromarray(np.zeros((4, 6), np.uint8)), tmp_path / "z.png")
    assert not load_binary_mask_png(path, (4, 6)).any()


@pytest.mark.parametrize("values", [[0, 128, 255], [0, 1, 255], [3], [0, 254]])
def test_non_binary_mask_refused(tmp_path, values):
    arr = np.resize(np.array(values, np.uint8), (4, 6))
    path = save(Image.fromarray(arr), tmp_path / "nb.png")
    with pytest.raises(SampleError, match="not binary") as exc:
        load_binary_mask_png(path, (4, 6))
    assert exc.value.where == str(path)


def test_wrong_size_mask_refused(tmp_path):
    path = save(Image.fromarray(np.zeros((4, 6), np.uint8)), tmp_path / "s.png")
    with pytest.raises(SampleError) as exc:
        load_binary_mask_png(path, (6, 4))
    assert exc.value.where == str(path) and "6x4" in exc.value.problem and "4x6" in exc.value.problem
    assert load_binary_mask_png(path).shape == (4, 6)  # no size check asked


def test_missing_and_broken_mask(tmp_path):
    with pytest.raises(SampleError, match="not found"):
        load_binary_mask_png(tmp_path / "none.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(SampleError, match="cannot decode") as exc:
        load_binary_mask_png(bad)
    assert exc.value.where == str(bad)


# --------------------------------------------------------------------------------------------
# boxes_to_mask_inclusive (LEGION's LOKI rule)


def legion_box_mask(boxes, height, width) -> np.ndarray:
    """LEGION's generate_loki_mask, re-implemented: int() corners, clip, filled cv2.rectangle."""
    m = np.zeros((height, width), np.uint8)
    for x, y, w, h in boxes:
        x1, y1, x2, y2 = int(x), int(y), int(x + w), int(y + h)
        x1, y1 = max(0, x1), max(0, y1)
        x2, y2 = min(width - 1, x2), min(height - 1, y2)
        cv2.rectangle(m, (x1, y1), (x2, y2), 1, thickness=-1)
    return m.astype(bool)


def test_box_corners_inclusive():
    got = boxes_to_mask_inclusive([[2, 3, 4, 5]], 12, 10)
    want = np.zeros((12, 10), bool)
    want[3:9, 2:7] = True  # rows 3..8, columns 2..6 inclusive
    assert np.array_equal(got, want)


def test_box_truncation():
    # x 2.9 -> 2, x + w = 7.1 -> 7; y 3.9 -> 3, y + h = 8.95 -> 8
    got = boxes_to_mask_inclusive([[2.9, 3.9, 4.2, 5.05]], 12, 10)
    want = np.zeros((12, 10), bool)
    want[3:9, 2:8] = True
    assert np.array_equal(got, want)
    # int() truncates toward zero: x + w = -0.5 -> 0, so column 0 is covered
    got = boxes_to_mask_inclusive([[-3, 2, 2.5, 1]], 6, 6)
    want = np.zeros((6, 6), bool)
    want[2:4, 0] = True
    assert np.array_equal(got, want)
    assert np.array_equal(got, legion_box_mask([[-3, 2, 2.5, 1]], 6, 6))


def test_box_clipping():
    got = boxes_to_mask_inclusive([[-3, -2, 5, 4], [8, 9, 10, 10]], 12, 10)
    want = np.zeros((12, 10), bool)
    want[0:3, 0:3] = True
    want[9:12, 8:10] = True
    assert np.array_equal(got, want)


def test_boxes_match_legion_rule(rng):
    for _ in range(200):
        height, width = (int(v) for v in rng.integers(1, 60, 2))
        boxes = []
        for _ in range(int(rng.integers(1, 5))):
            x, y = rng.uniform(-10, width), rng.uniform(-10, height)
            w, h = rng.uniform(0, width), rng.uniform(0, height)
            if int(x + w) < 0 or int(y + h) < 0:  # wholly outside: refused (tested below)
                continue
            boxes.append([x, y, w, h])
        assert np.array_equal(boxes_to_mask_inclusive(boxes, height, width),
                              legion_box_mask(boxes, height, width)), boxes


def test_zero_size_box_is_one_pixel():
    got = boxes_to_mask_inclusive([[4.5, 2.2, 0, 0]], 6, 8)
    assert got.sum() == 1 and got[2, 4]


@pytest.mark.parametrize("box, problem", [
    ([1, 1, -2, 3], "negative"),
    ([1, 1, 2, -0.5], "negative"),
    ([float("nan"), 1, 2, 3], "NaN"),
    ([1, 1, float("inf"), 3], "infinite"),
    ([1, 2, 3], "expected"),
    ([50, 1, 3, 3], "outside"),
    ([1, -20, 3, 3], "outside"),
])
def test_bad_boxes(box, problem):
    with pytest.raises(SampleError) as exc:
        boxes_to_mask_inclusive([box], 10, 10, where="img.png")
    assert exc.value.where == "img.png" and problem in exc.value.problem


# --------------------------------------------------------------------------------------------
# heatmap_to_mask (RichHF rule: > 0, nearest neighbour)


def nearest_by_hand(binary: np.ndarray, height: int, width: int) -> np.ndarray:
    """OpenCV INTER_NEAREST: source index floor(i * (1 / (dst / src))) in double, clipped."""
    h, w = binary.shape
    iy, ix = 1.0 / (height / h), 1.0 / (width / w)
    rows = np.minimum(np.floor(np.arange(height) * iy).astype(int), h - 1)
    cols = np.minimum(np.floor(np.arange(width) * ix).astype(int), w - 1)
    return binary[rows][:, cols]


def test_heatmap_threshold_is_strictly_positive():
    hm = np.array([[0, 1e-9, -3], [255, 0.0, 7]], np.float32)
    assert heatmap_to_mask(hm, 2, 3).tolist() == [[False, True, False], [True, False, True]]


def test_heatmap_resize_matches_nearest_by_hand(rng):
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        H, W = (int(v) for v in rng.integers(1, 300, 2))
        hm = rng.integers(0, 256, (h, w)).astype(np.uint8) * (rng.random((h, w)) < 0.4)
        got = heatmap_to_mask(hm, H, W)
        assert got.dtype == bool and got.shape == (H, W)
        assert np.array_equal(got, nearest_by_hand(hm > 0, H, W)), (h, w, H, W)


def test_heatmap_512_to_image_size():
    hm = np.zeros((512, 512), np.uint8)
    hm[100:200, 300:400] = 40
    got = heatmap_to_mask(hm, 768, 1024)  # H x W
    assert np.array_equal(got, nearest_by_hand(hm > 0, 768, 1024))
    # integer scale (x1.5 rows, x2 columns): block edges land exactly
    assert got[150:300, 600:800].all() and got.sum() == 150 * 200


# --------------------------------------------------------------------------------------------
# one pixel limit: the harness's is Pillow's


def test_bench_max_pixels_also_governs_pillow(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    path.write_bytes(png_header_only(14_000, 14_000))  # 196 Mpx: Pillow's default refuses (> 2 x 89M)
    monkeypatch.setenv("BENCH_MAX_PIXELS", "200000000")
    assert image_size(path) == (14_000, 14_000)  # allowed by the one limit, Pillow included
    assert Image.MAX_IMAGE_PIXELS == 200_000_000
    monkeypatch.setenv("BENCH_MAX_PIXELS", "1000")
    assert max_pixels() == 1000 and Image.MAX_IMAGE_PIXELS == 1000
    with pytest.raises(SampleError, match="over the limit of 1000"):
        image_size(path)  # header only, same limit as the decode
    small = save(Image.new("RGB", (40, 30)), tmp_path / "s.png")  # 1,200 px: Pillow would only warn
    with pytest.raises(SampleError, match=r"1200 pixels, over the limit of 1000 \(set BENCH_MAX_PIXELS"):
        decode_image(small)
    bigger = save(Image.new("RGB", (60, 50)), tmp_path / "b.png")  # 3,000 px: Pillow itself refuses
    with pytest.raises(SampleError, match="over the limit of 1000"):
        decode_image(bigger)
    monkeypatch.setenv("BENCH_MAX_PIXELS", "lots")
    with pytest.raises(SampleError, match="BENCH_MAX_PIXELS: 'lots' is not a whole number"):
        decode_image(small)


def test_verify_image_catches_truncated_files(tmp_path, rgb_array):
    png = save(Image.fromarray(rgb_array), tmp_path / "a.png")
    big = np.tile(rgb_array, (8, 8, 1))  # 184 x 248: the JPEG header is a small part of the file
    jpg = save(Image.fromarray(big), tmp_path / "a.jpg", "JPEG", quality=90)
    assert verify_image(png) == (23, 31) and verify_image(jpg) == (184, 248)
    for src, keep in ((png, 300), (jpg, len(jpg.read_bytes()) // 3)):
        cut = tmp_path / f"cut{src.suffix}"
        cut.write_bytes(src.read_bytes()[:keep])
        assert image_size(cut) in ((23, 31), (184, 248))  # the header alone looks fine
        with pytest.raises(SampleError) as e:
            verify_image(cut)
        assert str(e.value).startswith(f"truncated or unreadable image {cut}: ")
