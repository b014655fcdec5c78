"""Download and unpack the public dataset releases (``bench data fetch``).

What can be fetched (Hugging Face dataset repos, with ``huggingface_hub``):

- ``synthscars``: ``khr0516/SynthScars`` ``SynthScars.zip`` -> ``<dest>/SynthScars/{train,test}/...``
- ``loki``: ``bczhou/LOKI`` ``media_data.zip`` (7.6 GB, all LOKI modalities) -> only its
  ``image/`` folder is unpacked, to ``<dest>/media_data/image/`` (the archive's top folder
  is ``loki_media_aggregate/`` in the copies seen in the wild; ``image/`` at the top, one
  level down, or under ``<top>/media_data/`` is accepted).

What cannot (printed by :func:`manual_steps`): LOKI's annotation JSON (GitHub), RichHF-18K's
TFRecords (GitHub, Git LFS) and the Pick-a-Pic images (a Hugging Face dataset of parquet
files, hundreds of GB in full; only the split you need).
"""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from bench.errors import BenchError
from bench.io.paths import atomic_path


@dataclass(frozen=True)
class Release:
    repo_id: str
    filename: str
    size: str | None  # as published, for the progress message; None when not known
    #: zip member name -> path under dest (posix), or None to skip the member.
    member_map: Callable[[str], str | None]


def _skip_junk(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return not parts or parts[0] == "__MACOSX" or parts[-1] in (".DS_Store", "Thumbs.db")


def synthscars_member(name: str) -> str | None:
    """SynthScars.zip members are kept where they are."""
    return None if _skip_junk(name) else name


def loki_member(name: str) -> str | None:
    """``[<top>/]image/<rest>`` or ``<top>/media_data/image/<rest>`` -> ``media_data/image/<rest>``;
    other modalities (video, 3D, audio, text, and any deeper ``image`` folder) are skipped."""
    if _skip_junk(name):
        return None
    parts = PurePosixPath(name).parts
    for depth in range(min(3, len(parts) - 1)):
        if parts[depth] == "image" and (depth < 2 or parts[1] == "media_data"):
            return "/".join(("media_data", "image", *parts[depth + 1:]))
    return None


RELEASES: dict[str, Release] = {
    "synthscars": Release("khr0516/SynthScars", "SynthScars.zip", None, synthscars_member),
    "loki": Release("bczhou/LOKI", "media_data.zip", "7.6 GB", loki_member),
}


def manual_steps(name: str, dest: Path) -> list[str]:
    """What the user must get by hand for ``name``, as lines to print."""
    if name == "loki":
        if any((dest / rel).is_file() for rel in ("open_ended_vqa.json", "data_json/image/open_ended_vqa.json")):
            return []
        return [
            "LOKI's annotation file is not in the Hugging Face archive. Download",
            "  https://github.com/opendatalab/LOKI/blob/main/data_json/image/open_ended_vqa.json",
            "(raw: https://raw.githubusercontent.com/opendatalab/LOKI/main/data_json/image/open_ended_vqa.json)",
            f"and save it as {dest / 'open_ended_vqa.json'} (or {dest / 'data_json/image/open_ended_vqa.json'}).",
        ]
    if name == "richhf":
        return [
            "RichHF-18K cannot be fetched automatically:",
            "1. The labels: clone https://github.com/google-research-datasets/richhf-18k with Git LFS",
            "   (`git lfs install && git clone https://github.com/google-research-datasets/richhf-18k`)",
            f"   and copy train.tfrecord, dev.tfrecord, test.tfrecord into {dest}.",
            "2. The images: Pick-a-Pic v1, Hugging Face dataset yuvalkirstain/pickapic_v1 (parquet files",
            "   with image_0_uid/jpg_0 and image_1_uid/jpg_1). test.tfrecord uses the `test` split,",
            "   train/dev use `train`. Download only the split you need, e.g.",
            "   `huggingface-cli download yuvalkirstain/pickapic_v1 --repo-type dataset "
            f"--include 'data/test-*' --local-dir {dest / 'pickapic'}`",
            f"   then pass images={dest / 'pickapic' / 'data'} (the parquet files are read directly), or",
            f"   extract the images to {dest / 'images'}/<uid>.jpg.",
        ]
    return []


def download(repo_id: str, filename: str, dest: Path) -> Path:
    """Download one file of a Hugging Face dataset repo into ``dest``; :class:`BenchError` on
    any failure (no network, unknown repo, interrupted transfer)."""
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id=repo_id, filename=filename, repo_type="dataset",
                                    local_dir=str(dest)))
    except Exception as exc:  # huggingface_hub raises many types (HTTP, offline, OS); all mean "not fetched"
        raise BenchError(
            f"could not download {filename} from https://huggingface.co/datasets/{repo_id} "
            f"({type(exc).__name__}: {exc}). Check the network (proxy, HF_ENDPOINT, HF_TOKEN), or "
            f"download the file by hand and pass it with --archive PATH"
        ) from None


def unpack(archive: Path, dest: Path, member_map: Callable[[str], str | None]) -> int:
    """Extract the members of zip ``archive`` that ``member_map`` keeps, to ``dest``; returns
    how many files were written. Refuses members that would land outside ``dest``; each file is
    written to a temporary name and renamed, so an interrupted unpack leaves no partial file."""
    dest = dest.resolve()
    written = 0
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                rel = member_map(info.filename)
                if rel is None:
                    continue
                target = (dest / rel).resolve()
                if not target.is_relative_to(dest):
                    raise BenchError(f"{archive}: member {info.filename!r} would be written outside {dest}; refused")
                target.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(target) as tmp, zf.open(info) as src, open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                written += 1
    except zipfile.BadZipFile as exc:
        raise BenchError(f"{archive}: not a valid zip archive or corrupt ({exc}); delete it and fetch again") from None
    except FileNotFoundError:
        raise BenchError(f"{archive}: archive not found") from None
    return written


def _marker(dest: Path, release: Release) -> Path:
    return dest / f".bench-unpacked-{release.filename}"


def fetch(name: str, dest: Path, archive: Path | None = None, keep_archive: bool = False,
          force: bool = False, say: Callable[[str], None] = print) -> Path:
    """Download (unless ``archive`` is given) and unpack ``name`` into ``dest``; returns ``dest``.

    Skips everything when a previous fetch finished (a marker file in ``dest``) unless
    ``force``. The downloaded archive is deleted after unpacking unless ``keep_archive``; an
    archive passed by the user is never deleted.
    """
    if name not in RELEASES:
        raise BenchError(f"{name}: cannot be fetched automatically (fetchable: {', '.join(RELEASES)})")
    release = RELEASES[name]
    dest = Path(dest).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    marker = _marker(dest, release)
    if marker.exists() and not force:
        say(f"{name}: already unpacked in {dest} ({marker.name} present; --force to redo)")
        return dest
    downloaded = archive is None
    if archive is None:
        size = f" ({release.size})" if release.size else ""
        say(f"{name}: downloading {release.filename}{size} from "
            f"https://huggingface.co/datasets/{release.repo_id} ...")
        archive = download(release.repo_id, release.filename, dest)
    say(f"{name}: unpacking {archive} into {dest} ...")
    n = unpack(Path(archive), dest, release.member_map)
    if n == 0:
        raise BenchError(f"{archive}: no files to unpack for {name} (unexpected archive layout)")
    marker.write_text(f"{release.repo_id}/{release.filename}: {n} files\n", encoding="utf-8")
    say(f"{name}: {n} files unpacked")
    if downloaded and not keep_archive:
        Path(archive).unlink(missing_ok=True)
    return dest
