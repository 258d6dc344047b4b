"""Content keys: name a video by its bytes, not by its path.

Why: labels, folders and file names change (a dataset is copied, a file renamed, a folder reorganised),
but the features of a video only depend on its bytes. The store names every video group by a content
key, so a renamed file is still found, and a re-encoded file (different bytes) is never confused with
its source.

Two kinds of key, told apart by their first character:

``f`` + 40 hex
    blake2b (20-byte digest) of the whole file. Used for files of at most :data:`FULL_HASH_LIMIT`
    (32 MiB). Exact: two files share a key only if their bytes are equal.
``s`` + 40 hex
    blake2b of a *sample* of a larger file: its size, the first and last 4 MiB and 32 evenly spaced
    256 KiB blocks of the middle (16 MiB read in all, whatever the file size). Why: hashing a 4 GB
    source video whole costs seconds of I/O per file on every new path, for no practical gain.

Collision trade-off of ``s`` keys: two large files of the same size that differ only in bytes outside
the sample get the same key, so the second would reuse the features of the first. That does not
happen with real videos: any re-encode, trim, remux or edit changes the container header (first
4 MiB), the index (last 4 MiB for MP4/MKV) and the size; only deliberate in-place byte edits of the
middle of a file escape it. If that matters, set ``full_hash_limit`` high enough to always hash whole.

:class:`KeyCache` remembers keys by (absolute path, size, mtime_ns, inode), so a rerun over a
folder costs one ``stat`` per unchanged file.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

FULL_HASH_LIMIT = 32 * 1024 * 1024
"""Files up to this size (bytes) are hashed whole (``f`` keys); larger ones are sampled (``s`` keys)."""
HEAD_BYTES = 4 * 1024 * 1024
TAIL_BYTES = 4 * 1024 * 1024
N_BLOCKS = 32
BLOCK_BYTES = 256 * 1024
DIGEST_SIZE = 20
_READ_CHUNK = 1024 * 1024
_SAMPLED_PERSON = b"vqstack-s1"  # blake2b personalisation: a sampled digest never equals a full one


def _sample_offsets(size: int) -> list[tuple[int, int]]:
    """(offset, length) of every sampled region of a file of ``size`` bytes (``size`` > head + tail)."""
    regions = [(0, HEAD_BYTES)]
    middle_start = HEAD_BYTES
    middle_len = size - HEAD_BYTES - TAIL_BYTES
    span = max(middle_len - BLOCK_BYTES, 0)
    for i in range(N_BLOCKS):
        off = middle_start + (span * i) // (N_BLOCKS - 1)
        regions.append((off, min(BLOCK_BYTES, size - TAIL_BYTES - off)))
    regions.append((size - TAIL_BYTES, TAIL_BYTES))
    return regions


def content_key(path: str | Path, *, full_hash_limit: int = FULL_HASH_LIMIT) -> str:
    """Return the content key of a file (see the module docstring for the two kinds).

    ``full_hash_limit`` is never below 8 MiB + 1 block so that sampling always reads disjoint regions.
    Raises ``OSError`` if the file cannot be read (the caller turns that into an InputError).
    """
    path = Path(path)
    limit = max(full_hash_limit, HEAD_BYTES + TAIL_BYTES + BLOCK_BYTES)
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size <= limit:
            h = hashlib.blake2b(digest_size=DIGEST_SIZE)
            while chunk := fh.read(_READ_CHUNK):
                h.update(chunk)
            return "f" + h.hexdigest()
        h = hashlib.blake2b(digest_size=DIGEST_SIZE, person=_SAMPLED_PERSON)
        h.update(size.to_bytes(8, "little"))
        for off, length in _sample_offsets(size):
            fh.seek(off)
            data = fh.read(length)
            if len(data) != length:
                raise OSError(f"{path}: file shrank while being hashed")
            h.update(data)
        return "s" + h.hexdigest()


def is_content_key(text: str) -> bool:
    """True if ``text`` looks like a key made by :func:`content_key`."""
    return (
        len(text) == 1 + 2 * DIGEST_SIZE
        and text[0] in "fs"
        and all(c in "0123456789abcdef" for c in text[1:])
    )


class KeyCache:
    """Persistent map (absolute path, size, mtime_ns, inode) -> content key, in one SQLite file.

    Why SQLite and not JSON: readers of the store (training, ``read_matrix``) add entries without the
    writer lock, possibly from several processes at once; SQLite serialises those writes itself and
    a kill mid-write never leaves a half-written file. The cache is disposable: an unreadable
    database is renamed aside and rebuilt, and a read-only store falls back to an in-memory cache.
    SQLite locking is unreliable on some network file systems; there, pass ``path=None``.
    """

    def __init__(self, path: str | Path | None, *, full_hash_limit: int = FULL_HASH_LIMIT) -> None:
        self.path = Path(path) if path is not None else None
        self.full_hash_limit = full_hash_limit
        self.hits = 0
        self.misses = 0
        self._mem: dict[str, tuple[int, int, int, str]] = {}
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        if self.path is not None:
            self._conn = self._connect(self.path)

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(str(path), timeout=30.0, check_same_thread=False)
        conn.execute("PRAGMA synchronous=OFF")  # a lost entry is just recomputed
        conn.execute(
            "CREATE TABLE IF NOT EXISTS keys (path TEXT PRIMARY KEY, size INTEGER, "
            "mtime_ns INTEGER, inode INTEGER, key TEXT)"
        )
        conn.commit()
        return conn

    def _connect(self, path: Path) -> sqlite3.Connection | None:
        try:
            return self._open(path)
        except sqlite3.DatabaseError as exc:  # corrupt file: move aside, start again
            log.warning("key cache %s is unreadable (%s); starting a new one", path, exc)
            with contextlib.suppress(OSError):
                os.replace(path, path.with_name(path.name + ".corrupt"))
            try:
                return self._open(path)
            except (sqlite3.Error, OSError) as exc2:
                log.warning("key cache %s unusable (%s); caching in memory only", path, exc2)
        except (sqlite3.Error, OSError) as exc:  # read-only store, missing directory
            log.warning("key cache %s unusable (%s); caching in memory only", path, exc)
        return None

    def lookup(self, path: str | Path) -> str | None:
        """The cached key of ``path`` if its size, mtime and inode are unchanged, else None."""
        apath = os.path.abspath(path)
        st = os.stat(apath)
        row = self._get_row(apath)
        if row is not None and row[:3] == (st.st_size, st.st_mtime_ns, st.st_ino):
            return row[3]
        return None

    def key(self, path: str | Path) -> str:
        """The content key of ``path``: from the cache when the file is unchanged, else computed."""
        apath = os.path.abspath(path)
        st = os.stat(apath)
        row = self._get_row(apath)
        stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
        if row is not None and row[:3] == stamp:
            self.hits += 1
            return row[3]
        self.misses += 1
        key = content_key(apath, full_hash_limit=self.full_hash_limit)
        st2 = os.stat(apath)
        if (st2.st_size, st2.st_mtime_ns, st2.st_ino) == stamp:  # do not cache a file being written
            self._put_row(apath, (*stamp, key))
        return key

    def _get_row(self, apath: str) -> tuple[int, int, int, str] | None:
        with self._lock:
            if apath in self._mem:
                return self._mem[apath]
            if self._conn is None:
                return None
            try:
                row = self._conn.execute(
                    "SELECT size, mtime_ns, inode, key FROM keys WHERE path = ?", (apath,)
                ).fetchone()
            except sqlite3.Error as exc:
                log.warning("key cache read failed (%s); recomputing", exc)
                return None
            return tuple(row) if row is not None else None  # type: ignore[return-value]

    def _put_row(self, apath: str, row: tuple[int, int, int, str]) -> None:
        with self._lock:
            if self._conn is None:
                self._mem[apath] = row
                return
            try:
                self._conn.execute(
                    "INSERT OR REPLACE INTO keys (path, size, mtime_ns, inode, key) VALUES (?, ?, ?, ?, ?)",
                    (apath, *row),
                )
                self._conn.commit()
            except sqlite3.Error as exc:  # e.g. database locked for too long: keep it in memory
                log.warning("key cache write failed (%s); keeping the entry in memory", exc)
                self._mem[apath] = row

    def close(self) -> None:
        """Close the database (entries are committed as they are added)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> KeyCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
