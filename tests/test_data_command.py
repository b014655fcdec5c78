"""`bench data fetch` (download replaced by a local fake zip; no network) and `bench data
verify`, plus :func:`bench.datasets.verify.check_data_available` used before suite runs."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.cli import main
from bench.datasets import fetch as fetch_mod
from bench.datasets.verify import check_data_available
from bench.errors import BenchError, DataMissingError
from bench.core.registry import create_dataset


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Belt and braces: any real Hugging Face call in these tests would fail fast."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def png(w: int = 16, h: int = 12, colour=(10, 200, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), colour).save(buf, format="PNG")
    return buf.getvalue()


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def synthscars_zip(path: Path) -> Path:
    ann = [{"ann-1": {"img_file_name": "x.png", "caption": "Upon examining the image. I have found: a bad hand.",
                      "refs": [{"sentence": "the hand", "explanation": "six fingers", "bbox": None,
                                "segmentation": [[1.0, 1.0, 9.0, 1.0, 9.0, 8.0]]}]}}]
    return make_zip(path, {
        "SynthScars/test/images/x.png": png(),
        "SynthScars/test/annotations/test.json": json.dumps(ann).encode(),
        "__MACOSX/SynthScars/._x.png": b"junk",
        "SynthScars/.DS_Store": b"junk",
    })


def fake_download(zip_path: Path, calls: list):
    def download(repo_id: str, filename: str, dest: Path) -> Path:
        calls.append((repo_id, filename))
        target = Path(dest) / filename
        target.write_bytes(zip_path.read_bytes())
        return target
    return download


def no_download(*args, **kwargs):
    raise AssertionError("download must not be called")


# -- fetch --------------------------------------------------------------------------------------

def test_fetch_synthscars_unpacks_and_verifies(tmp_path, monkeypatch, capsys):
    src = synthscars_zip(tmp_path / "src.zip")
    calls: list = []
    monkeypatch.setattr(fetch_mod, "download", fake_download(src, calls))
    dest = tmp_path / "ss"
    assert main(["data", "fetch", "synthscars", "--dest", str(dest)]) == 0
    assert calls == [("khr0516/SynthScars", "SynthScars.zip")]
    assert (dest / "SynthScars/test/images/x.png").read_bytes() == png()
    assert not (dest / "__MACOSX").exists() and not (dest / "SynthScars/.DS_Store").exists()
    assert not (dest / "SynthScars.zip").exists()  # the downloaded archive is removed after unpacking
    out = capsys.readouterr().out
    assert f"bench data verify synthscars --data-root {dest}" in out

    monkeypatch.setattr(fetch_mod, "download", no_download)  # a finished fetch is not redone
    assert main(["data", "fetch", "synthscars", "--dest", str(dest)]) == 0
    assert "already unpacked" in capsys.readouterr().out

    assert main(["data", "verify", "synthscars", "--data-root", str(dest)]) == 0
    out = capsys.readouterr().out
    fp = create_dataset("synthscars", data_root=dest).fingerprint()
    assert f"fingerprint    {fp}" in out
    assert "records        1\n" in out and "images found   1\n" in out and "missing        0\n" in out
    assert "status         complete" in out


def test_fetch_loki_keeps_only_images_and_says_where_the_json_is(tmp_path, monkeypatch, capsys):
    src = make_zip(tmp_path / "media.zip", {
        "loki_media_aggregate/image/a.png": png(),
        "loki_media_aggregate/image/sub/b.jpg": b"jpegbytes",
        "loki_media_aggregate/video/v.mp4": b"video",
        "loki_media_aggregate/3D/image/not-this.png": b"x",
    })
    calls: list = []
    monkeypatch.setattr(fetch_mod, "download", fake_download(src, calls))
    dest = tmp_path / "loki"
    assert main(["data", "fetch", "loki", "--dest", str(dest), "--keep-archive"]) == 0
    assert calls == [("bczhou/LOKI", "media_data.zip")]
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() and not p.name.startswith("."))
    assert files == ["media_data.zip", "media_data/image/a.png", "media_data/image/sub/b.jpg"]
    out = capsys.readouterr().out
    assert "github.com/opendatalab/LOKI" in out and "open_ended_vqa.json" in out


def test_fetch_with_local_archive_never_deletes_it(tmp_path, monkeypatch):
    src = synthscars_zip(tmp_path / "mine.zip")
    monkeypatch.setattr(fetch_mod, "download", no_download)
    assert main(["data", "fetch", "synthscars", "--dest", str(tmp_path / "d"), "--archive", str(src)]) == 0
    assert src.is_file() and (tmp_path / "d/SynthScars/test/images/x.png").is_file()


def test_network_failure_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    def refuse(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'huggingface.co'")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    assert main(["data", "fetch", "loki", "--dest", str(tmp_path / "l")]) == 2
    err = capsys.readouterr().err
    assert "could not download media_data.zip from https://huggingface.co/datasets/bczhou/LOKI" in err
    assert "Failed to resolve" in err and "--archive" in err
    assert not (tmp_path / "l" / ".bench-unpacked-media_data.zip").exists()


def test_fetch_richhf_prints_manual_steps(tmp_path, capsys):
    assert main(["data", "fetch", "richhf", "--dest", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "google-research-datasets/richhf-18k" in out and "yuvalkirstain/pickapic_v1" in out
    assert "nothing downloaded" in out


def test_unpack_refuses_escaping_members_and_corrupt_zips(tmp_path):
    evil = make_zip(tmp_path / "evil.zip", {"ok.txt": b"1", "../escape.txt": b"2"})
    with pytest.raises(BenchError, match="outside"):
        fetch_mod.unpack(evil, tmp_path / "out", fetch_mod.synthscars_member)
    assert not (tmp_path / "escape.txt").exists()
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(BenchError, match="not a valid zip"):
        fetch_mod.unpack(bad, tmp_path / "out", fetch_mod.synthscars_member)
    empty = make_zip(tmp_path / "empty.zip", {"video/v.mp4": b"v"})
    with pytest.raises(BenchError, match="no files to unpack"):
        fetch_mod.fetch("loki", tmp_path / "e", archive=empty, say=lambda s: None)


@pytest.mark.parametrize("name, expected", [
    ("media_data/image/a.png", "media_data/image/a.png"),
    ("loki_media_aggregate/image/x/y.jpg", "media_data/image/x/y.jpg"),
    ("image/a.png", "media_data/image/a.png"),
    ("top/media_data/image/c.png", "media_data/image/c.png"),
    ("a/3D/image/c.png", None),       # another modality's image folder
    ("a/b/c/image/d.png", None),
    ("loki_media_aggregate/video/image.mp4", None),
    ("__MACOSX/image/._a.png", None),
])
def test_loki_member_map(name, expected):
    assert fetch_mod.loki_member(name) == expected


# -- verify ---------------------------------------------------------------------------------------

def loki_root(tmp_path: Path) -> Path:
    recs = [{"id": f"r{k}", "image_path": f"media_data/image/{k}.png",
             "problems": {"global": [{"desc": ""}], "regional": [{"region": [1, 1, 4, 4], "desc": "d"}]}}
            for k in range(4)]
    recs[3]["problems"]["regional"] = []  # an invalid record (no regions), image present
    (tmp_path / "open_ended_vqa.json").write_bytes(json.dumps(recs).encode("utf-16"))
    d = tmp_path / "media_data" / "image"
    d.mkdir(parents=True)
    (d / "0.png").write_bytes(png())
    (d / "1.png").write_bytes(b"garbage, not an image")
    (d / "3.png").write_bytes(png())
    return tmp_path  # 2.png missing


def test_verify_loki_incomplete(tmp_path, capsys):
    root = loki_root(tmp_path)
    assert main(["data", "verify", "loki", "--data-root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "records        4\n" in out
    assert "images found   2\n" in out
    assert "missing        1\n" in out and f"missing      {root / 'media_data/image/2.png'}" in out
    assert "unreadable     1 " in out and "1.png: cannot read image header" in out
    assert "invalid        1  (broken records" in out and "r3" in out and "no regions" in out
    assert f"fingerprint    {create_dataset('loki', data_root=root).fingerprint()}" in out
    assert "status         INCOMPLETE" in out and "bench data fetch loki" in out


def test_verify_strict_and_decode(tmp_path, capsys):
    root = tmp_path / "m"
    root.mkdir()
    good = png(64, 64)
    (root / "a.png").write_bytes(good)
    (root / "cut.png").write_bytes(good[: len(good) // 2])  # header fine, pixels truncated
    (root / "manifest.jsonl").write_text(
        '{"image": "a.png", "label": "real"}\n{"image": "cut.png", "label": "real"}\n{"image": "a.png"}\n',
        encoding="utf-8")
    assert main(["data", "verify", "manifest", "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "images found   2\n" in out and "complete (1 invalid records)" in out
    assert main(["data", "verify", "manifest", "--data-root", str(root), "--strict"]) == 1
    capsys.readouterr()
    assert main(["data", "verify", "manifest", "--data-root", str(root), "--decode"]) == 1
    out = capsys.readouterr().out
    assert "unreadable     1  (full decode)" in out and "cut.png" in out


def test_verify_richhf_with_parquet_images(tmp_path, capsys):
    tfw = pytest.importorskip("tfrecord.writer")
    import pyarrow as pa
    import pyarrow.parquet as pq

    hm = np.zeros((512, 512), np.uint8)
    hm[10:20, 10:20] = 200
    buf = io.BytesIO()
    Image.fromarray(hm).save(buf, format="PNG")
    w = tfw.TFRecordWriter(str(tmp_path / "test.tfrecord"))
    for uid in ("u1", "u2", "u3"):
        w.write({"filename": (f"test/{uid}.png".encode(), "byte"), "aesthetics_score": (1.0, "float"),
                 "artifact_score": (1.0, "float"), "misalignment_score": (1.0, "float"),
                 "overall_score": (1.0, "float"), "artifact_map": (buf.getvalue(), "byte"),
                 "misalignment_map": (buf.getvalue(), "byte"), "prompt_misalignment_label": (b"1 0", "byte")})
    w.close()
    pq.write_table(pa.table({"image_0_uid": ["u1", "zz"], "jpg_0": pa.array([png(), png()], pa.binary()),
                             "image_1_uid": ["yy", "u2"], "jpg_1": pa.array([png(), png()], pa.binary())}),
                   tmp_path / "pickapic.parquet")
    args = ["data", "verify", "richhf", "--data-root", str(tmp_path), "--images", str(tmp_path / "pickapic.parquet")]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "records        3\n" in out and "images found   2\n" in out and "missing        1\n" in out
    assert "missing      u3.jpg" in out


def test_verify_missing_data_root_names_the_fix(tmp_path, capsys):
    assert main(["data", "verify", "loki", "--data-root", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and f"Fix: bench data fetch loki --dest {tmp_path / 'none'}" in err


# -- check_data_available -------------------------------------------------------------------------

def test_check_data_available(tmp_path):
    root = loki_root(tmp_path)
    report = check_data_available("loki", root, "test")
    assert (report.n_records, report.n_found, len(report.missing)) == (4, 3, 1)  # exists-check only

    for p in (root / "media_data" / "image").iterdir():
        p.unlink()
    with pytest.raises(DataMissingError) as info:
        check_data_available("loki", root, "test")
    msg = str(info.value)
    assert "none of the 4 records' images exists" in msg and f"Fix: bench data fetch loki --dest {root}" in msg

    with pytest.raises(DataMissingError) as info:
        check_data_available("loki", tmp_path / "empty", "test")
    assert "bench data fetch loki" in str(info.value)

    with pytest.raises(DataMissingError) as info:
        check_data_available("synthscars", tmp_path / "nothing", "test")
    assert "Fix: bench data fetch synthscars --dest" in str(info.value)

    with pytest.raises(DataMissingError) as info:
        check_data_available("richhf", tmp_path, "test")
    assert "bench data fetch richhf" in str(info.value)


def test_loki_json_hint_only_when_missing(tmp_path):
    assert any("opendatalab/LOKI" in line for line in fetch_mod.manual_steps("loki", tmp_path))
    (tmp_path / "open_ended_vqa.json").write_bytes(b"[]")
    assert fetch_mod.manual_steps("loki", tmp_path) == []


def test_verify_builds_ground_truth_masks_and_applies_the_pixel_limit(tmp_path, capsys, monkeypatch):
    from PIL import Image as PILImage

    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", PILImage.MAX_IMAGE_PIXELS)  # restored after
    root = tmp_path / "m"
    (root / "masks").mkdir(parents=True)
    (root / "a.png").write_bytes(png(16, 12))
    (root / "b.png").write_bytes(png(16, 12))
    (root / "big.png").write_bytes(png(40, 30))
    PILImage.new("L", (16, 12)).save(root / "masks" / "a.png")
    PILImage.new("L", (10, 10)).save(root / "masks" / "b.png")  # not the image's size
    (root / "manifest.jsonl").write_text(
        '{"image": "a.png", "label": "fake", "mask": "masks/a.png"}\n'
        '{"image": "b.png", "label": "fake", "mask": "masks/b.png"}\n'
        '{"image": "big.png", "label": "real"}\n', encoding="utf-8")
    before = sorted(p.name for p in root.rglob("*"))
    assert main(["data", "verify", "manifest", "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "bad masks      1 of 3" in out and "masks/b.png" in out and "10x10" in out
    assert main(["data", "verify", "manifest", "--data-root", str(root), "--strict"]) == 1
    capsys.readouterr()
    monkeypatch.setenv("BENCH_MAX_PIXELS", "500")  # the run's limit: 16 x 12 passes, 40 x 30 does not
    assert main(["data", "verify", "manifest", "--data-root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "unreadable     1 " in out and "big.png" in out and "over the limit of 500" in out
    assert sorted(p.name for p in root.rglob("*")) == before  # nothing written
