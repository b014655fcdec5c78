"""Where the harness keeps its files, their safe names, and atomic writes (one implementation each)."""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def cache_root() -> Path:
    """``$BENCH_CACHE``, else ``$XDG_CACHE_HOME/bench``, else ``~/.cache/bench``."""
    if os.environ.get("BENCH_CACHE"):
        return Path(os.environ["BENCH_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "bench"
    return Path.home() / ".cache" / "bench"


def safe_name(text: str, max_len: int | None = None) -> str:
    """A file-system-safe name for ``text``: letters, digits, ``_ . -`` (other runs become
    ``_``); never empty, never starting with ``.`` or ``_`` (so never ``.`` or ``..``). Text
    that had to change, or (with ``max_len``) is longer than ``max_len``, keeps at most 60
    characters and gets a short sha256 suffix, so two different names never share one.
    The one rule for run folders, gallery folders and published ``results/`` names."""
    import hashlib
    import re

    text = str(text)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "x"
    if name != text or (max_len is not None and len(name) > max_len):
        keep = 60 if max_len is None else min(60, max_len - 9)
        name = f"{name[:keep]}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:8]}"
    return name


def _temp_name(path: Path) -> Path:
    """A temp file name beside ``path``, unique per process, thread and call."""
    import threading
    import time

    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{time.monotonic_ns()}.tmp")


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temp path in ``path``'s folder to write to; on a normal exit it is renamed onto
    ``path`` (``os.replace``), on an exception it is removed and ``path`` is left as it was.

    The guarantee: readers see the old file or the whole new one, never a partial one — the
    temp file is in the same folder (same file system), where the rename is atomic, and a
    killed process leaves at most a hidden ``.NAME.*.tmp`` beside it, never a torn ``path``.
    No fsync (as the prediction cache's design notes: it costs ~2 ms a write): after a power
    loss a torn file can remain, so readers treat an unreadable file as missing. The folder
    must exist. For writers that want a file name (``to_parquet``, ``np.savez``, PIL
    ``save``, ``cv2.imwrite``); see :func:`write_atomic` for bytes or text in hand."""
    path = Path(path)
    tmp = _temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path | str, data: bytes | str, encoding: str = "utf-8") -> None:
    """Write ``data`` (bytes, or text as ``encoding``) to ``path`` with the guarantee of
    :func:`atomic_path` (temp file in the same folder + atomic rename; no fsync); the bytes are
    written as given, without an extra copy."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data.encode(encoding) if isinstance(data, str) else data)


def write_json_atomic(path: Path | str, obj: Any) -> None:
    """``obj`` as indented UTF-8 JSON, written with :func:`write_atomic`. NaN and infinities
    become ``null`` (strict JSON); numpy scalars become numbers, paths and anything else text."""
    import json

    write_atomic(path, json.dumps(_finite(obj), indent=2, ensure_ascii=False, allow_nan=False,
                                  default=_json_default))


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return _finite(float(o))
    return str(o)
