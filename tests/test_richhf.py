"""RichHF-18K loader: TFRecords written here with the real feature names and types (by the
independent ``tfrecord`` package's writer), CRC checks, corrupt / truncated records, images
from a folder and from Pick-a-Pic-like parquet files, heatmap masks vs an independent
nearest-neighbour resize."""

from __future__ import annotations

import io
import logging
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from bench.datasets import richhf as richhf_mod
from bench.datasets.tfrecord_reader import iter_records, masked_crc32c, parse_example
from bench.errors import BenchError, DataMissingError, SampleError
from bench.metrics.localization import confusion_counts, f1
from bench.core.registry import DATASETS, create_dataset

tfrecord_writer = pytest.importorskip("tfrecord.writer")


# -- writing RichHF-like data -----------------------------------------------------------------

def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(w: int, h: int, colour=(200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), colour).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def heatmap(seed: int) -> np.ndarray:
    """A 512 x 512 uint8 0-255 map: zero except a few soft blobs (like RichHF's maps)."""
    rng = np.random.default_rng(seed)
    m = np.zeros((512, 512), np.uint8)
    for _ in range(3):
        y, x = rng.integers(0, 480, 2)
        m[y:y + 30, x:x + 45] = rng.integers(1, 256)
    return m


def example(uid: str, seed: int, folder: str = "test") -> dict:
    """One record's features with the exact names and TF kinds of RichHF-18K."""
    return {
        "filename": (f"{folder}/{uid}.png".encode(), "byte"),
        "aesthetics_score": (0.25 + seed, "float"),
        "artifact_score": (0.5 + seed, "float"),
        "misalignment_score": (0.75 + seed, "float"),
        "overall_score": (1.0 + seed, "float"),
        "artifact_map": (png_bytes(heatmap(seed)), "byte"),
        "misalignment_map": (png_bytes(heatmap(seed + 100)), "byte"),
        "prompt_misalignment_label": (b"1 1 0 1 1", "byte"),
    }


def write_tfrecord(path: Path, examples: list[dict]) -> list[int]:
    """Write with the ``tfrecord`` package; returns each record's byte offset."""
    w = tfrecord_writer.TFRecordWriter(str(path))
    offsets = []
    for ex in examples:
        offsets.append(w.file.tell())
        w.write(ex)
    w.close()
    return offsets


UIDS = ["9f1c0a4e-0001", "9f1c0a4e-0002", "9f1c0a4e-0003", "9f1c0a4e-0004"]
SIZES = {UIDS[0]: (1024, 1024), UIDS[1]: (256, 256), UIDS[2]: (300, 200)}  # (w, h)


@pytest.fixture
def root(tmp_path) -> Path:
    """test.tfrecord with four records: three images in images/, the fourth nowhere."""
    write_tfrecord(tmp_path / "test.tfrecord", [example(u, k) for k, u in enumerate(UIDS)])
    (tmp_path / "images").mkdir()
    for uid, (w, h) in SIZES.items():
        (tmp_path / "images" / f"{uid}.jpg").write_bytes(jpeg_bytes(w, h))
    return tmp_path


def nearest(binary: np.ndarray, h: int, w: int) -> np.ndarray:
    """Nearest-neighbour resize written out: output pixel i takes source pixel
    floor(i * src / dst) (OpenCV's INTER_NEAREST convention)."""
    sh, sw = binary.shape
    return binary[(np.arange(h) * sh) // h][:, (np.arange(w) * sw) // w]


# -- framing and protobuf ---------------------------------------------------------------------

def test_masked_crc_matches_reference():
    import crc32c

    assert crc32c.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    rng = np.random.default_rng(1)
    for n in (0, 1, 8, 100, 4096):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        ref = struct.unpack("<I", tfrecord_writer.TFRecordWriter.masked_crc(data))[0]
        assert masked_crc32c(data) == ref


def test_reader_agrees_with_tfrecord_package(root):
    from tfrecord.reader import tfrecord_iterator

    ours = [r.payload for r in iter_records(root / "test.tfrecord")]
    theirs = [bytes(v) for v in tfrecord_iterator(str(root / "test.tfrecord"))]
    assert ours == theirs and len(ours) == 4
    feats = parse_example(ours[1])
    assert feats["filename"] == ("bytes", [f"test/{UIDS[1]}.png".encode()])
    assert feats["overall_score"] == ("float", [2.0])
    assert feats["prompt_misalignment_label"] == ("bytes", [b"1 1 0 1 1"])
    assert set(feats) == set(richhf_mod.FEATURES)


# -- the loader -------------------------------------------------------------------------------

def test_loads_all_eight_features(root):
    ds = create_dataset("richhf", data_root=root, split="test")
    samples = ds.samples()
    assert [s.id for s in samples] == UIDS
    for k, s in enumerate(samples[:3]):
        assert s.error is None and s.label == 1 and s.reference is None and s.mask_rule == "heatmap"
        m = s.meta
        assert m["filename"] == f"test/{UIDS[k]}.png" and m["uid"] == UIDS[k]
        for name, value in zip(richhf_mod.SCORES, (0.25, 0.5, 0.75, 1.0)):
            assert m[name] == float(np.float32(value + k))  # stored as float32
        assert m["prompt_misalignment_label"] == "1 1 0 1 1"
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(m["misalignment_map_png"]))),
                                      heatmap(k + 100))
        assert s.heatmap_array().dtype == np.uint8 and s.gt_heatmap is None  # kept encoded
        np.testing.assert_array_equal(s.heatmap_array(), heatmap(k))
        assert s.image_path == root / "images" / f"{UIDS[k]}.jpg" and s.file_name == f"{UIDS[k]}.jpg"
    assert ds.annotation_files() == [root / "test.tfrecord"]
    assert "richhf" in DATASETS.names()


def test_mask_is_heatmap_above_zero_nearest_resized(root):
    samples = create_dataset("richhf", data_root=root).samples()
    for k, s in enumerate(samples[:3]):
        img = s.load_image()
        h, w = img.shape[:2]
        assert (w, h) == SIZES[UIDS[k]]
        gt = s.load_mask(h, w)
        expected = nearest(heatmap(k) > 0, h, w)
        np.testing.assert_array_equal(gt, expected)
        assert gt.any()
        # a prediction equal to the reference mask scores F1 = 1; a shifted one does not
        assert f1(*confusion_counts(gt.copy(), gt)) == 1.0
        assert f1(*confusion_counts(np.roll(gt, 9, axis=0), gt)) < 1.0


def test_missing_image_is_reported_and_failed(root, caplog):
    with caplog.at_level(logging.WARNING, logger="bench.datasets.richhf"):
        ds = create_dataset("richhf", data_root=root)
        samples = ds.samples()
    missing = samples[3]
    assert missing.id == UIDS[3] and missing.meta["image_missing"] is True
    assert "no image found" in missing.error and "record 3" in missing.error
    assert ds.missing_images == [UIDS[3]]
    assert "1 of 4 records have no image" in caplog.text and UIDS[3] in caplog.text
    with pytest.raises(SampleError, match="no image found"):
        missing.load_image()


def test_no_images_folder_all_fail(tmp_path):
    write_tfrecord(tmp_path / "test.tfrecord", [example(UIDS[0], 0)])
    (s,) = create_dataset("richhf", data_root=tmp_path).samples()
    assert s.error and "no image" in s.error


def test_missing_tfrecord_and_lfs_pointer(tmp_path):
    with pytest.raises(DataMissingError, match=r"test\.tfrecord not found.*richhf-18k"):
        create_dataset("richhf", data_root=tmp_path).samples()
    (tmp_path / "dev.tfrecord").write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n")
    with pytest.raises(DataMissingError, match="Git LFS pointer"):
        create_dataset("richhf", data_root=tmp_path, split="dev").samples()
    with pytest.raises(BenchError, match="unknown split"):
        create_dataset("richhf", data_root=tmp_path, split="val")


# -- corrupt files ----------------------------------------------------------------------------

def _corrupt(path: Path, pos: int) -> None:
    data = bytearray(path.read_bytes())
    data[pos] ^= 0xFF
    path.write_bytes(bytes(data))


def test_bad_data_crc_fails_that_record_only(root):
    path = root / "test.tfrecord"
    offsets = write_tfrecord(path, [example(u, k) for k, u in enumerate(UIDS)])
    _corrupt(path, offsets[1] + 12 + 40)  # inside record 1's payload
    samples = create_dataset("richhf", data_root=root).samples()
    assert len(samples) == 4
    assert samples[0].id == UIDS[0] and samples[0].error is None
    bad = samples[1]
    assert bad.id == "test.tfrecord#1"
    assert str(path) in bad.error and "record 1" in bad.error and "data CRC mismatch" in bad.error
    assert samples[2].id == UIDS[2] and samples[2].error is None  # the framing is intact: go on
    with pytest.raises(SampleError, match="CRC"):
        bad.load_image()


def test_bad_length_crc_stops_after_earlier_records(root):
    path = root / "test.tfrecord"
    offsets = write_tfrecord(path, [example(u, k) for k, u in enumerate(UIDS)])
    _corrupt(path, offsets[2] + 9)  # record 2's length CRC
    samples = create_dataset("richhf", data_root=root).samples()
    assert [s.id for s in samples] == [UIDS[0], UIDS[1], "test.tfrecord#2"]
    assert samples[0].error is None and samples[1].error is None
    assert "length CRC mismatch" in samples[2].error and "record 2" in samples[2].error


@pytest.mark.parametrize("cut", [5, 12 + 100, -2])
def test_truncated_record(root, cut):
    path = root / "test.tfrecord"
    offsets = write_tfrecord(path, [example(u, k) for k, u in enumerate(UIDS)])
    data = path.read_bytes()
    end = len(data) + cut if cut < 0 else offsets[3] + cut
    path.write_bytes(data[:end])
    samples = create_dataset("richhf", data_root=root).samples()
    assert [s.id for s in samples[:3]] == UIDS[:3] and all(s.error is None for s in samples[:2])
    assert samples[3].id == "test.tfrecord#3"
    assert "truncated" in samples[3].error and "record 3" in samples[3].error and str(path) in samples[3].error


def test_wrong_feature_type_missing_feature_and_bad_heatmap(tmp_path):
    wrong = example(UIDS[0], 0)
    wrong["artifact_score"] = (b"0.5", "byte")
    missing = example(UIDS[1], 1)
    del missing["misalignment_map"]
    bad_png = example(UIDS[2], 2)
    bad_png["artifact_map"] = (b"\x89PNG\r\n\x1a\nbroken", "byte")
    write_tfrecord(tmp_path / "test.tfrecord", [wrong, missing, bad_png])
    s = create_dataset("richhf", data_root=tmp_path).samples()
    assert "'artifact_score' is a bytes list; expected float" in s[0].error
    assert "missing feature(s) misalignment_map" in s[1].error
    assert s[2].id == UIDS[2] and "cannot decode artifact_map" in s[2].error


def test_duplicate_uid_fails_the_second(tmp_path):
    write_tfrecord(tmp_path / "test.tfrecord", [example(UIDS[0], 0), example(UIDS[0], 1, folder="other")])
    s = create_dataset("richhf", data_root=tmp_path).samples()
    assert [x.id for x in s] == [UIDS[0], f"{UIDS[0]}#2"]
    assert "more than once" in s[1].error


# -- Pick-a-Pic parquet -----------------------------------------------------------------------

def write_pickapic(path: Path, rows: list[tuple[str, bytes, str, bytes]], row_group_size: int = 2) -> None:
    table = pa.table({
        "caption": [f"prompt {k}" for k in range(len(rows))],
        "image_0_uid": [r[0] for r in rows], "jpg_0": pa.array([r[1] for r in rows], pa.binary()),
        "image_1_uid": [r[2] for r in rows], "jpg_1": pa.array([r[3] for r in rows], pa.binary()),
        "label_0": [0.5] * len(rows),
    })
    pq.write_table(table, path, row_group_size=row_group_size)


def test_images_from_parquet(tmp_path, monkeypatch):
    write_tfrecord(tmp_path / "test.tfrecord", [example(u, k) for k, u in enumerate(UIDS)])
    blobs = {u: jpeg_bytes(64 + 8 * k, 48, (k * 60, 10, 10)) for k, u in enumerate(UIDS)}
    other = jpeg_bytes(32, 32)
    pq_dir = tmp_path / "pickapic"
    pq_dir.mkdir()
    # UIDS[0] in image_0 of row group 0; UIDS[1] in image_1 of row group 2; row group 1 unrelated;
    # UIDS[2] in a second file; UIDS[3] nowhere.
    write_pickapic(pq_dir / "test-0.parquet", [
        (UIDS[0], blobs[UIDS[0]], "x-1", other), ("x-2", other, "x-3", other),
        ("x-4", other, "x-5", other), ("x-6", other, "x-7", other),
        ("x-8", other, UIDS[1], blobs[UIDS[1]]),
    ])
    write_pickapic(pq_dir / "test-1.parquet", [("y-1", other, UIDS[2], blobs[UIDS[2]])])

    reads: list[tuple[int, tuple]] = []
    real_read = pq.ParquetFile.read_row_group

    def spy(self, i, columns=None, **kw):
        reads.append((i, tuple(columns or ())))
        return real_read(self, i, columns=columns, **kw)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    samples = create_dataset("richhf", data_root=tmp_path, images=str(pq_dir)).samples()
    assert [s.id for s in samples] == UIDS
    for k, s in enumerate(samples[:3]):
        assert s.error is None and s.image_path is None
        assert s.image_bytes == blobs[UIDS[k]]
        img = s.load_image()
        assert img.shape == (48, 64 + 8 * k, 3)
        assert s.load_mask(*img.shape[:2]).shape == img.shape[:2]
    assert samples[3].error and "no image found" in samples[3].error
    # uid columns for every row group; a JPEG column only where a wanted uid is, alone
    jpeg_reads = sorted(r for r in reads if any(c.startswith("jpg") for c in r[1]))
    assert jpeg_reads == [(0, ("jpg_0",)), (0, ("jpg_1",)), (2, ("jpg_1",))]
    uid_reads = [r for r in reads if r not in jpeg_reads]
    assert len(uid_reads) == 3 + 1 and {c for _, c in uid_reads} == {("image_0_uid", "image_1_uid")}

    # the same through a single file, a glob and a list
    one = create_dataset("richhf", data_root=tmp_path, images=str(pq_dir / "test-1.parquet")).samples()
    assert [s.error is None for s in one] == [False, False, True, False]
    glob_ = create_dataset("richhf", data_root=tmp_path, images=str(pq_dir / "test-*.parquet")).samples()
    assert sum(s.error is None for s in glob_) == 3
    both = create_dataset("richhf", data_root=tmp_path,
                          images=[str(pq_dir / "test-0.parquet"), str(pq_dir / "test-1.parquet")]).samples()
    assert sum(s.error is None for s in both) == 3


def test_not_a_pickapic_parquet(tmp_path):
    write_tfrecord(tmp_path / "test.tfrecord", [example(UIDS[0], 0)])
    pq.write_table(pa.table({"a": [1]}), tmp_path / "x.parquet")
    with pytest.raises(BenchError, match="not a Pick-a-Pic parquet file"):
        create_dataset("richhf", data_root=tmp_path, images=str(tmp_path / "x.parquet")).samples()
    with pytest.raises(DataMissingError, match="matches no file"):
        create_dataset("richhf", data_root=tmp_path, images=str(tmp_path / "none-*.parquet")).samples()


# -- image modes ------------------------------------------------------------------------------

def test_image_modes_through_loader(tmp_path):
    uids = ["grey", "rgba", "deep", "cmyk", "broken"]
    write_tfrecord(tmp_path / "test.tfrecord", [example(u, k) for k, u in enumerate(uids)])
    d = tmp_path / "images"
    d.mkdir()
    Image.new("L", (40, 30), 100).save(d / "grey.png")
    Image.new("RGBA", (40, 30), (10, 20, 30, 0)).save(d / "rgba.png")
    Image.fromarray(np.full((30, 40), 65535, np.uint16)).save(d / "deep.png")
    Image.new("CMYK", (40, 30), (0, 0, 0, 0)).save(d / "cmyk.jpg", quality=95)
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    expected = {"grey": (100, 100, 100), "rgba": (10, 20, 30), "deep": (255, 255, 255), "cmyk": (255, 255, 255)}
    for s in create_dataset("richhf", data_root=tmp_path).samples():
        assert s.error is None
        if s.id == "broken":
            with pytest.raises(SampleError) as info:
                s.load_image()
            assert "broken.jpg" in str(info.value)
            continue
        img = s.load_image()
        assert img.dtype == np.uint8 and img.shape == (30, 40, 3)
        assert np.abs(img.astype(int) - np.array(expected[s.id])).max() <= 2, s.id


# -- suite and end to end -------------------------------------------------------------------

def test_suite():
    from bench.suites import get_suite

    suite = get_suite("richhf")
    assert (suite.dataset, suite.split, suite.metrics) == ("richhf", "test", ["miou", "f1", "iou_fg"])
    assert suite.protocol["reference_field"] is None


def test_bench_score_end_to_end(root, tmp_path):
    """`bench score --dataset richhf` on LEGION-layout masks equal to heatmap > 0 (nearest
    resize, written independently): F1 = 1 on every image that has one; the missing image fails."""
    pytest.importorskip("bench.cli.score")
    import pandas as pd

    from bench.cli import main
    from bench.io.imageio import write_png

    pred = tmp_path / "pred"
    for k, uid in enumerate(UIDS[:3]):
        w, h = SIZES[uid]
        (pred / f"{uid}.jpg").mkdir(parents=True)
        write_png(pred / f"{uid}.jpg" / "mask.png", nearest(heatmap(k) > 0, h, w))
    out = tmp_path / "out"
    rc = main(["score", "--dataset", "richhf", "--data-root", str(root), "--predictions", str(pred),
               "--format", "legion", "--out", str(out), "--no-progress"])
    assert rc == 0
    df = pd.read_parquet(out / "samples.parquet").set_index("sample_id")
    assert list(df.loc[UIDS[:3], "f1"]) == [1.0, 1.0, 1.0]
    assert df.loc[UIDS[3], "status"] == "failed" and "no image found" in df.loc[UIDS[3], "error"]
