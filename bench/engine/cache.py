"""Content-addressed prediction cache.

A prediction's key is sha256 over: the adapter identity (name, version, config, weights hash),
the sha256 of the ORIGINAL image bytes, the condition key, and the suite seed when the
condition is stochastic. Not the run, the worker count or the device: the same work is never
done twice, in any run.

Storage (under ``cache_root()/predictions``):
- ``<key[:2]>/<key>.npz``: an uncompressed ``.npz`` whose members are the mask (bool, bit-packed)
  and/or the heatmap (float32, byte-shuffled), each zstd-compressed (:func:`encode_prediction`),
  plus a JSON ``meta`` (score, explanation, extras, height, width);
  written to a temp file and renamed, so a reader never sees half a file and a killed writer
  leaves nothing behind. Entries written before (``np.savez_compressed``: zlib on the raw
  arrays) are still read as they are;
- ``<key[:2]>/<key>.failed.json``: a recorded failure (its reason), retried only on request;
- ``index.sqlite`` (WAL mode): one row per entry (adapter, condition, status, bytes, times) for
  ``bench cache ls|du|gc``. The files are the truth; the index is bookkeeping that many
  processes may write at once.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.types import Prediction
from bench.io.paths import cache_root, write_atomic

#: The codec of heatmaps and masks, chosen by measurement (benchmarks/bench_cache_codec.py, on
#: the ``noise`` adapter's demo heatmaps): float32 byte-shuffle then zstd level 1 writes about
#: 10x faster than ``np.savez_compressed`` (zlib level 6) and about a third smaller (about 2.0
#: vs 3.0 bytes per pixel), reads about 5x faster, and is lossless. Shuffling groups the
#: float32s' exponent bytes, which zlib on raw floats cannot exploit; blosc2 (shuffle + zstd)
#: compresses alike but holds the GIL while it works, and zstandard releases it.
CODEC = {"codec": "zstd", "level": 1, "filter": "byte-shuffle (float32)"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    adapter TEXT NOT NULL,
    condition TEXT NOT NULL,
    status TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created REAL NOT NULL,
    used REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS image_hashes (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
"""


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def prediction_key(adapter_identity: dict[str, Any], image_sha256: str, condition_key: str,
                   seed: int | None) -> str:
    """The cache key (hex sha256). ``seed`` is None for deterministic conditions."""
    payload = canonical_json({
        "adapter": adapter_identity,
        "image": image_sha256,
        "condition": condition_key,
        "seed": seed,
    })
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """:func:`bench.io.paths.write_atomic` (temp file + rename): a killed process (SIGKILL) never
    leaves a partial entry. No fsync (it cost ~2 ms per prediction): after a power loss a torn file can remain, and
    :meth:`PredictionCache.get` treats an unreadable entry as missing, so it is re-inferred."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)


def encode_prediction(pred: Prediction, height: int, width: int) -> bytes:
    """The bytes of one cache entry: an uncompressed ``.npz`` (numpy's own container, so the
    entry stays inspectable with ``np.load``) holding the heatmap byte-shuffled and
    zstd-compressed (:data:`CODEC`), the bit-packed mask zstd-compressed, and a JSON ``meta``."""
    import zstandard

    zc = zstandard.ZstdCompressor(level=CODEC["level"])
    arrays: dict[str, np.ndarray] = {}
    if pred.mask is not None:
        bits = np.packbits(np.asarray(pred.mask, dtype=bool).ravel())
        arrays["mask_bits_zstd"] = np.frombuffer(zc.compress(bits.tobytes()), dtype=np.uint8)
    if pred.heatmap is not None:
        heat = np.ascontiguousarray(pred.heatmap, dtype=np.float32)
        # byte-shuffle: all first bytes of the float32s, then all second bytes, ... (what
        # blosc2's shuffle filter does; written with numpy because blosc2 holds the GIL while it
        # compresses, which stalls the thread that feeds the accelerator, and zstandard does not)
        shuffled = np.ascontiguousarray(heat.reshape(-1).view(np.uint8).reshape(-1, 4).T)
        arrays["heatmap_f32_shuffle_zstd"] = np.frombuffer(zc.compress(shuffled.tobytes()), dtype=np.uint8)
    meta = {
        "height": height, "width": width,
        "score": None if pred.score is None else float(pred.score),
        "explanation": pred.explanation,
        "extras": pred.extras,
    }
    arrays["meta"] = np.frombuffer(canonical_json(meta).encode("utf-8"), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def decode_prediction(data: bytes) -> tuple[Prediction, int, int]:
    """(prediction, height, width) from :func:`encode_prediction`'s bytes, or from an entry of
    the earlier format (``np.savez_compressed`` of ``mask_bits`` / ``heatmap``)."""
    with np.load(io.BytesIO(data)) as z:
        meta = json.loads(bytes(z["meta"]).decode("utf-8"))
        h, w = int(meta["height"]), int(meta["width"])
        mask = heatmap = None
        if "mask_bits_zstd" in z.files or "heatmap_f32_shuffle_zstd" in z.files:
            import zstandard

            zd = zstandard.ZstdDecompressor()
            if "mask_bits_zstd" in z.files:
                bits = np.frombuffer(zd.decompress(z["mask_bits_zstd"].tobytes()), dtype=np.uint8)
                mask = np.unpackbits(bits, count=h * w).reshape(h, w).astype(bool)
            if "heatmap_f32_shuffle_zstd" in z.files:
                raw = np.frombuffer(zd.decompress(z["heatmap_f32_shuffle_zstd"].tobytes()), dtype=np.uint8)
                heatmap = np.ascontiguousarray(raw.reshape(4, -1).T).view(np.float32).reshape(h, w)
        else:
            if "mask_bits" in z.files:
                mask = np.unpackbits(z["mask_bits"], count=h * w).reshape(h, w).astype(bool)
            if "heatmap" in z.files:
                heatmap = z["heatmap"]
    pred = Prediction(heatmap=heatmap, mask=mask, score=meta["score"],
                      explanation=meta["explanation"], extras=meta.get("extras") or {})
    return pred, h, w


class PredictionCache:
    """Prediction store under ``root`` (default: ``cache_root()/predictions``).

    ``create=False`` (the ``bench cache`` commands): open an existing cache only — nothing is
    created; a folder that holds no cache index raises :class:`~bench.errors.BenchError`
    ("no cache at PATH").
    """

    def __init__(self, root: Path | str | None = None, *, create: bool = True):
        self.root = Path(root) if root is not None else cache_root() / "predictions"
        self._db_path = self.root / "index.sqlite"
        self._create = create
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        elif not self._db_path.is_file():
            from bench.errors import BenchError

            what = "no such folder" if not self.root.exists() else "no index.sqlite in it"
            raise BenchError(f"no cache at {self.root} ({what}); nothing was created. The cache is "
                             "$BENCH_CACHE/predictions (else $XDG_CACHE_HOME/bench/predictions, else "
                             "~/.cache/bench/predictions) unless --cache-dir names another")
        self._conns: dict[tuple[int, int], sqlite3.Connection] = {}
        self._pid = os.getpid()

    # -- index ----------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        """This thread's connection (one per process and thread: never shared across a fork,
        and the writer thread of :class:`~bench.engine.inference.CacheSink` has its own)."""
        me = (os.getpid(), threading.get_ident())
        conn = self._conns.get(me)
        if conn is None:
            if self._pid != os.getpid():  # forked: the parent's connections are not ours
                self._conns, self._pid = {}, os.getpid()
            if self._create:
                conn = sqlite3.connect(self._db_path, timeout=60.0, isolation_level=None)
            else:  # an existing index only: never create the database file
                conn = sqlite3.connect(f"{self._db_path.resolve().as_uri()}?mode=rw", uri=True,
                                       timeout=60.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            self._conns[me] = conn
        return conn

    def _index(self, key: str, adapter: str, condition: str, status: str, nbytes: int) -> None:
        now = time.time()
        self._db().execute(
            "INSERT INTO entries(key, adapter, condition, status, bytes, created, used) "
            "VALUES (?,?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET status=excluded.status, "
            "bytes=excluded.bytes, used=excluded.used",
            (key, adapter, condition, status, nbytes, now, now),
        )

    def close_thread(self) -> None:
        """Close the calling thread's connection (a writer thread, before it ends)."""
        conn = self._conns.pop((os.getpid(), threading.get_ident()), None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close this process's connections (a thread's is closed from here: sqlite3 allows
        close from any thread)."""
        for conn in self._conns.values() if self._pid == os.getpid() else ():
            try:
                conn.close()
            except sqlite3.ProgrammingError:  # made in another thread: it closes with the thread
                pass
        self._conns = {}

    # -- image hashes ---------------------------------------------------------------------
    def image_sha256(self, path: Path | None, data: bytes | None = None) -> str:
        """sha256 of an image file's bytes, memoised by (path, size, mtime)."""
        if data is not None and path is None:
            return hashlib.sha256(data).hexdigest()
        assert path is not None
        st = os.stat(path)
        row = self._db().execute(
            "SELECT sha256 FROM image_hashes WHERE path=? AND size=? AND mtime_ns=?",
            (str(path), st.st_size, st.st_mtime_ns),
        ).fetchone()
        if row:
            return row[0]
        digest = hashlib.sha256(data if data is not None else Path(path).read_bytes()).hexdigest()
        self._db().execute(
            "INSERT OR REPLACE INTO image_hashes(path, size, mtime_ns, sha256) VALUES (?,?,?,?)",
            (str(path), st.st_size, st.st_mtime_ns, digest),
        )
        return digest

    # -- entries --------------------------------------------------------------------------
    def _path(self, key: str, failed: bool = False) -> Path:
        return self.root / key[:2] / (f"{key}.failed.json" if failed else f"{key}.npz")

    def status(self, key: str) -> str | None:
        """``ok``, ``failed`` or None (absent; an empty file, as a power loss may leave, counts
        as absent)."""
        try:
            if self._path(key).stat().st_size > 0:
                return "ok"
        except FileNotFoundError:
            pass
        if self._path(key, failed=True).exists():
            return "failed"
        return None

    def put(self, key: str, pred: Prediction, *, height: int, width: int,
            adapter: str = "", condition: str = "") -> None:
        self.put_encoded(key, encode_prediction(pred, height, width), adapter=adapter, condition=condition)

    def put_encoded(self, key: str, data: bytes, *, adapter: str = "", condition: str = "") -> None:
        """Store an entry made by :func:`encode_prediction` (e.g. on another machine)."""
        _atomic_write_bytes(self._path(key), data)
        failed = self._path(key, failed=True)
        if failed.exists():
            failed.unlink(missing_ok=True)
        self._index(key, adapter, condition, "ok", len(data))

    def put_failure(self, key: str, error: str, *, adapter: str = "", condition: str = "") -> None:
        data = canonical_json({"error": error, "time": time.time()}).encode("utf-8")
        _atomic_write_bytes(self._path(key, failed=True), data)
        self._index(key, adapter, condition, "failed", len(data))

    def get(self, key: str) -> tuple[Prediction, int, int]:
        """(prediction, height, width). Raises KeyError when absent."""
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None
        try:
            return decode_prediction(data)
        except Exception:  # torn or corrupt entry (e.g. after a power loss): drop it, re-infer
            path.unlink(missing_ok=True)
            raise KeyError(key) from None

    def get_failure(self, key: str) -> str | None:
        try:
            return json.loads(self._path(key, failed=True).read_text("utf-8"))["error"]
        except FileNotFoundError:
            return None

    def touch(self, keys: list[str]) -> None:
        """Mark entries as used now (for ``gc --older-than``)."""
        now = time.time()
        with self._db():
            self._db().executemany("UPDATE entries SET used=? WHERE key=?", [(now, k) for k in keys])

    # -- maintenance ----------------------------------------------------------------------
    def summary(self) -> list[tuple[str, str, int, int]]:
        """(adapter, status, entries, bytes) rows."""
        with closing(self._db().execute(
            "SELECT adapter, status, COUNT(*), SUM(bytes) FROM entries GROUP BY adapter, status "
            "ORDER BY adapter, status"
        )) as cur:
            return [(a, s, int(n), int(b or 0)) for a, s, n, b in cur.fetchall()]

    def gc(self, *, adapter: str | None = None, older_than_s: float | None = None,
           failed_only: bool = False, dry_run: bool = False) -> tuple[int, int]:
        """Delete entries matching all given filters; returns (entries, bytes) removed."""
        clauses, args = [], []
        if adapter:
            clauses.append("adapter GLOB ?")
            args.append(adapter)
        if older_than_s is not None:
            clauses.append("used < ?")
            args.append(time.time() - older_than_s)
        if failed_only:
            clauses.append("status = 'failed'")
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self._db().execute(f"SELECT key, status, bytes FROM entries{where}", args).fetchall()
        total = 0
        for key, status, nbytes in rows:
            total += nbytes
            if not dry_run:
                self._path(key, failed=(status == "failed")).unlink(missing_ok=True)
                self._db().execute("DELETE FROM entries WHERE key=?", (key,))
        return len(rows), total
