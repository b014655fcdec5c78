"""The ``--out`` folder of a run: checked before any work, locked for the run, and cleaned of
the previous run's files of each adapter before that adapter's results are written.

- :func:`check_out_dir`: the folder (created if missing) must be a writable folder, and each
  ``<out>/<adapter>`` a folder or absent: else :class:`~bench.core.validate.InputError` at once,
  not a traceback after all inference.
- :class:`RunLock`: an OS lock (``fcntl.flock``) on ``<out>/.bench-run.lock`` held while the run
  lasts; a second ``bench run`` on the same ``--out`` stops at once and says who holds it. The
  lock dies with its process (a killed run leaves no stale lock).
- :func:`clean_previous_run`: removes what an earlier run wrote into ``<out>/<adapter>/``
  (``results.json``, ``samples.parquet``, the ``gallery/`` files), so a re-run never mixes old
  gallery pictures with new results. Files the harness did not write, and other adapters'
  folders, are left alone.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from pathlib import Path
from typing import Sequence

from bench.core.validate import InputError
from bench.results.schema import GALLERY_DIR, GALLERY_INDEX, RESULTS_FILE, SAMPLES_FILE

log = logging.getLogger(__name__)

LOCK_NAME = ".bench-run.lock"
#: What a run writes into ``<out>/<adapter>/`` (the gallery's layout is in bench/engine/gallery.py).
RUN_FILES = (RESULTS_FILE, SAMPLES_FILE)
GALLERY = GALLERY_DIR
GALLERY_FILES = (GALLERY_INDEX, "images/*.jpg", "gt/*.png", "pred/*/*.png")


def check_out_dir(out: Path, adapter_dirs: Sequence[str] = ()) -> None:
    """Create ``out`` if needed and check it can take the run's files (one-line errors)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file; give a folder (the run writes "
                         f"{out}/<adapter>/results.json there)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in [out, *out.parents] if p.exists() and not p.is_dir()), None)
        raise InputError(f"--out {out}: {blocker or 'a part of the path'} is a file, not a folder; "
                         "give another --out") from None
    except OSError as exc:
        raise InputError(f"--out {out}: cannot create the folder ({exc.strerror or exc}); "
                         "give a folder you can write") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: the folder is not writable; give a folder you can write")
    for name in adapter_dirs:
        sub = out / name
        if sub.exists() and not sub.is_dir():
            raise InputError(f"--out {out}: {sub} is a file, but the run writes the folder "
                             f"{sub}/ there; move the file or give another --out")
        if sub.is_dir() and not os.access(sub, os.W_OK | os.X_OK):
            raise InputError(f"--out {out}: {sub} is not writable; give another --out")


class RunLock:
    """An exclusive, non-blocking OS lock on ``<out>/.bench-run.lock`` for one run."""

    def __init__(self, out: Path, command: str | None = None):
        self.path = Path(out) / LOCK_NAME
        self.command = command
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock, as before
            return self
        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise InputError(f"--out {self.path.parent}: cannot create the lock file {self.path.name} "
                                 f"({exc.strerror or exc}); give a folder you can write") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    # a file system without locks (some network mounts): run unlocked, as before
                    log.warning("--out %s: cannot lock the folder (%s); two runs on it would collide",
                                self.path.parent, exc.strerror or exc)
                    os.close(fd)
                    return self
                holder = _read_holder(fd)
                os.close(fd)
                raise InputError(f"--out {self.path.parent}: another `bench run` is writing here{holder}; "
                                 "wait for it to finish or give another --out") from None
            try:  # the file we locked must still be the one at the path (a releaser unlinks it)
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:  # pragma: no cover - ten lost races in a row
            raise InputError(f"--out {self.path.parent}: could not lock the folder; try again")
        info = f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
        if self.command:
            info += f": {self.command}"
        os.ftruncate(fd, 0)
        os.write(fd, info.encode("utf-8", "replace"))
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink()
        except OSError:
            pass
        os.close(self._fd)  # closing drops the lock
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 2000, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f" ({text})" if text else ""


def clean_previous_run(adapter_dir: Path) -> list[Path]:
    """Remove the files an earlier run wrote into ``adapter_dir``; returns what was removed.
    Unknown files (and folders that still hold them) stay."""
    adapter_dir = Path(adapter_dir)
    removed: list[Path] = []
    if not adapter_dir.is_dir():
        return removed
    for name in RUN_FILES:
        p = adapter_dir / name
        if p.is_file() or p.is_symlink():
            p.unlink()
            removed.append(p)
    gallery = adapter_dir / GALLERY
    if gallery.is_dir():
        for pattern in GALLERY_FILES:
            for p in sorted(gallery.glob(pattern)):
                if p.is_file() or p.is_symlink():
                    p.unlink()
                    removed.append(p)
        for d in sorted((p for p in gallery.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            _rmdir_if_empty(d)
        _rmdir_if_empty(gallery)
    return removed


def _rmdir_if_empty(d: Path) -> None:
    try:
        d.rmdir()
    except OSError:
        pass
