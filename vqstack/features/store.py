"""The feature store: cached per-video features, one HDF5 table per extractor configuration.

Layout of a store root (see ``docs/store.md``)::

    <root>/<extractor>-<hash8>.h5            main file of a table (compacted videos)
    <root>/<extractor>-<hash8>.shards/<key>.h5   videos written since the last compaction
    <root>/.writer.lock                       single-writer lock (pid and start time inside)
    <root>/.keycache.sqlite                   path -> content key cache
    <root>/corrupt/                           files moved aside by ``repair``

``hash8`` is the first 8 hex of the SHA-256 of the canonical JSON of
``{extractor, version, config, weights_sha256}``: changing any of them starts a new table, so features
from different weights or settings are never mixed, while re-running with the same ones reuses the cache.

Writers hold :meth:`FeatureStore.writer` (one process at a time); readers take no lock and always see
a consistent store, even while a writer runs or after one was killed (see :mod:`.table`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vqstack.errors import MissingFeaturesError, StoreError
from vqstack.features import h5io
from vqstack.features.content_key import KeyCache
from vqstack.features.lock import WriterLock
from vqstack.features.matching import PathIndex
from vqstack.features.table import H5_ERRORS, SHARD_SUFFIX, Table, TableInfo

log = logging.getLogger(__name__)

EXTRACTOR_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+]*(?:-[A-Za-z0-9_.+]+)*$")
TABLE_RE = re.compile(r"^(?P<extractor>.+)-(?P<hash>[0-9a-f]{8})$")
KEYCACHE_NAME = ".keycache.sqlite"
CORRUPT_DIR = "corrupt"
MAX_LISTED = 20


def table_name(extractor: str, version: str, config: dict[str, Any], weights_sha256: str | None) -> str:
    """``<extractor>-<hash8>``: the file stem of the table for this exact configuration."""
    if not isinstance(extractor, str) or not EXTRACTOR_RE.match(extractor):
        raise StoreError(f"invalid extractor name {extractor!r}: use letters, digits, '_', '.', '+', '-'")
    blob = h5io.canonical_json(
        {"extractor": extractor, "version": str(version), "config": config, "weights_sha256": weights_sha256}
    )
    return f"{extractor}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


class FeatureStore:
    """A folder of feature tables. Cheap to construct; touches the disk only when used.

    ``compression`` applies to the ``steps`` datasets of new videos (``"lzf"``, ``"gzip"`` or None).
    """

    def __init__(self, root: str | Path, *, compression: str | None = "lzf") -> None:
        self.root = Path(root).expanduser().absolute()
        self.compression = compression
        self._lock = WriterLock(self.root)
        self._cleaned = False
        self._mutex = threading.RLock()
        self._keycache: KeyCache | None = None

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.root)!r})"

    # ------------------------------------------------------------ writer lock
    @contextlib.contextmanager
    def writer(self) -> Iterator[FeatureStore]:
        """Hold the store's writer lock (re-entrant within this object); StoreError if another has it.

        The extract pipeline holds it for a whole run; ``Table.write`` and the other mutating calls
        take it for their own duration when it is not held. The first holder also deletes the stray
        ``.tmp`` files a killed writer left behind.
        """
        took = self._lock.acquire()
        try:
            if took and not self._cleaned:
                self._clean_tmp()
                self._cleaned = True
            yield self
        finally:
            self._lock.release()

    @contextlib.contextmanager
    def mutating(self) -> Iterator[None]:
        """The writer lock plus a per-store thread lock: one mutating operation at a time.

        Why both: the file lock excludes other processes; the thread lock keeps, e.g., a compaction
        in one thread from deleting a shard another thread has just rewritten.
        """
        with self.writer(), self._mutex:
            yield

    def _clean_tmp(self) -> list[str]:
        removed = []
        if not self.root.is_dir():
            return removed
        candidates = list(self.root.glob("*.tmp")) + list(self.root.glob(f"*{SHARD_SUFFIX}/*.tmp"))
        for path in candidates:
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(str(path))
        if removed:
            log.info("removed %d unfinished temporary file(s) left by an interrupted writer", len(removed))
        return removed

    # ----------------------------------------------------------------- tables
    def table(
        self, extractor: str, version: str, config: dict[str, Any], weights_sha256: str | None
    ) -> Table:
        """The table of this exact configuration (created on its first write)."""
        if not isinstance(config, dict):
            raise StoreError(f"config of table '{extractor}' must be a dict, got {type(config).__name__}")
        weights_sha256 = weights_sha256 or None
        name = table_name(extractor, version, config, weights_sha256)
        meta = {
            "extractor": extractor,
            "extractor_version": str(version),
            "config": config,
            "weights_sha256": weights_sha256,
        }
        return Table(self, name, meta)

    def _table_names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        names = set()
        for entry in os.scandir(self.root):
            if entry.name.endswith(".h5") and entry.is_file():
                names.add(entry.name[:-3])
            elif entry.name.endswith(SHARD_SUFFIX) and entry.is_dir():
                names.add(entry.name[: -len(SHARD_SUFFIX)])
        return sorted(n for n in names if TABLE_RE.match(n))

    def _meta_of(self, name: str) -> dict[str, Any]:
        """Table metadata from the main file, else from the first readable shard."""
        main = self.root / f"{name}.h5"
        errors = []
        candidates = [main] if main.exists() else []
        shard_dir = self.root / f"{name}{SHARD_SUFFIX}"
        if shard_dir.is_dir():
            candidates += sorted(shard_dir.glob("*.h5"))
        for path in candidates:
            try:
                with h5io.open_h5(path) as f:
                    return h5io.read_table_meta(f)
            except FileNotFoundError:
                continue
            except H5_ERRORS as exc:
                errors.append((path, exc))
        if errors:
            raise h5io.corrupt_error(errors[0][0], errors[0][1], self.root)
        raise StoreError(f"no table {name} in {self.root}")

    def open_table(self, name: str) -> Table:
        """An existing table by its name (``<extractor>-<hash8>``)."""
        return Table(self, name, self._meta_of(name))

    def tables(self) -> list[TableInfo]:
        """Every table with its summary; an unreadable one is listed with ``error`` set."""
        out = []
        for name in self._table_names():
            try:
                out.append(self.open_table(name).info())
            except StoreError as exc:
                m = TABLE_RE.match(name)
                out.append(
                    TableInfo(
                        name=name, extractor=m["extractor"] if m else name, version=None, config=None,
                        weights_sha256=None, n_videos=0, file_size=0, n_shards=0,
                        path=str(self.root / f"{name}.h5"), error=str(exc),
                    )
                )
        return out

    def find_tables(self, extractor_or_table_name: str) -> list[TableInfo]:
        """The table with that name, else every table of that extractor."""
        infos = self.tables()
        exact = [t for t in infos if t.name == extractor_or_table_name]
        return exact or [t for t in infos if t.extractor == extractor_or_table_name]

    def resolve(self, extractor_or_table_name: str) -> Table:
        """Exactly one table for a table name or an extractor name, or a StoreError saying why not."""
        found = self.find_tables(extractor_or_table_name)
        if not found:
            have = ", ".join(t.name for t in self.tables()) or "none"
            raise StoreError(
                f"no table '{extractor_or_table_name}' in {self.root} (tables: {have}); run `vqstack extract`"
            )
        if len(found) > 1:
            listed = "; ".join(
                f"{t.name} (version {t.version}, {t.n_videos} videos, config {h5io.canonical_json(t.config)})"
                for t in found
            )
            raise StoreError(
                f"extractor '{extractor_or_table_name}' has {len(found)} tables in {self.root}: {listed}; "
                "name one table instead"
            )
        if found[0].error:
            raise StoreError(found[0].error)
        return self.open_table(found[0].name)

    def compact_all(self) -> dict[str, int]:
        """Compact every table; ``{table: videos merged}``."""
        with self.mutating():
            return {name: self.open_table(name).compact() for name in self._table_names()}

    # -------------------------------------------------------------- matching
    @property
    def keycache(self) -> KeyCache:
        """The store's path -> content key cache (in memory only if the root is not writable)."""
        if self._keycache is None:
            path = self.root / KEYCACHE_NAME if self.root.is_dir() else None
            self._keycache = KeyCache(path)
        return self._keycache

    def match_ids(
        self, ids: Sequence[str], table: Table, *, videos_root: str | Path | None = None
    ) -> list[str | None]:
        """The key each id names in ``table`` (None if not stored); see :mod:`.matching`."""
        index: PathIndex | None = None
        stored: set[str] | None = None
        keys: list[str | None] = []
        for id_ in ids:
            id_ = str(id_)
            if videos_root is not None:
                candidate = Path(videos_root) / id_
                if candidate.is_file():
                    if stored is None:
                        stored = table.keys()
                    key = self.keycache.key(candidate)
                    keys.append(key if key in stored else None)
                    continue
            if index is None:
                index = PathIndex(table.paths())
            keys.append(index.match(id_, table=table.name))
        return keys

    def _require(self, ids: Sequence[str], keys: list[str | None], table: Table) -> list[str]:
        missing = [str(i) for i, k in zip(ids, keys, strict=True) if k is None]
        if missing:
            shown = ", ".join(missing[:MAX_LISTED]) + (" ..." if len(missing) > MAX_LISTED else "")
            raise MissingFeaturesError(
                f"{len(missing)} of {len(ids)} videos have no features in table {table.name} "
                f"({self.root}): {shown}; run `vqstack extract` on them first",
                missing,
            )
        return [k for k in keys if k is not None]

    def read_matrix(
        self,
        ids: Sequence[str],
        extractor: str,
        pooling: str | Sequence[str] = "mean",
        *,
        videos_root: str | Path | None = None,
    ) -> tuple[np.ndarray, list[str]]:
        """Pooled features of ``ids`` as one float64 matrix, rows in the order of ``ids``.

        ``pooling`` names the pooled vectors to concatenate per video (``"mean"``, ``["mean", "std"]``).
        Returns ``(X, columns)``; column names are ``<table>/<pooling>/<feature name or index>``.
        Raises MissingFeaturesError listing ids with no stored video, StoreError for ambiguous ids, a
        missing pooled vector or inconsistent widths.
        """
        table = self.resolve(extractor)
        names = [pooling] if isinstance(pooling, str) else list(pooling)
        if not names:
            raise StoreError("pooling must name at least one pooled vector")
        keys = self._require(ids, self.match_ids(ids, table, videos_root=videos_root), table)

        def reader(g: Any) -> tuple[dict[str, np.ndarray], list[str], list[str] | None]:
            got, available = h5io.read_pooled(g, names)
            return got, available, h5io.read_feature_names(g)

        data = table.read_many(set(keys), reader)
        widths: dict[str, int] = {}
        for key, (got, available, _) in data.items():
            for name in names:
                if name not in got:
                    raise StoreError(
                        f"video {key} in table {table.name} has no pooled vector '{name}' "
                        f"(it has: {', '.join(available) or 'none'})"
                    )
                w = widths.setdefault(name, got[name].size)
                if got[name].size != w:
                    raise StoreError(
                        f"pooled '{name}' has width {got[name].size} for video {key} but {w} for others "
                        f"in table {table.name}; the table mixes incompatible records"
                    )
        X = np.empty((len(keys), sum(widths.values())), dtype=np.float64)
        for row, key in enumerate(keys):
            X[row] = np.concatenate([data[key][0][n] for n in names])
        first_names = data[keys[0]][2] if keys else None
        columns = []
        for name in names:
            width = widths.get(name, 0)
            fnames = first_names if first_names is not None and len(first_names) == width else None
            columns += [f"{table.name}/{name}/{fnames[i] if fnames else i}" for i in range(width)]
        return X, columns

    def read_steps(
        self, ids: Sequence[str], extractor: str, *, videos_root: str | Path | None = None
    ) -> list[np.ndarray]:
        """Per-step features ``[T, D]`` (float32) of ``ids``, in the order of ``ids``."""
        table = self.resolve(extractor)
        keys = self._require(ids, self.match_ids(ids, table, videos_root=videos_root), table)
        data = table.read_many(set(keys), lambda g: g["steps"][()])
        return [data[k] for k in keys]

    # ------------------------------------------------------- CLI operations
    def ls(self) -> list[dict[str, Any]]:
        """``vqstack features ls``: one dict per table."""
        return [t.as_dict() for t in self.tables()]

    def info(self, table_or_key: str) -> dict[str, Any]:
        """``vqstack features info``: a table (its videos) or a video key (its attributes per table).

        A key may be given by a unique prefix of at least 6 characters, as with git.
        """
        if self.find_tables(table_or_key):
            table = self.resolve(table_or_key)
            videos = table.read_many_lenient(
                sorted(table.keys()),
                lambda g: {"paths": h5io.read_paths(g), "steps_shape": tuple(g["steps"].shape)},
            )
            return {
                "kind": "table",
                **table.info().as_dict(),
                "videos": [{"key": k, **videos[k]} for k in sorted(videos)],
            }
        found = []
        for name in self._table_names():
            table = self.open_table(name)
            matches = [k for k in table if k.startswith(table_or_key)]
            if len(table_or_key) < 6:
                matches = [k for k in matches if k == table_or_key]
            for key in matches:
                found.append({"table": name, "key": key, "attrs": table.attrs(key)})
        if not found:
            raise StoreError(f"'{table_or_key}' is neither a table nor a stored video key in {self.root}")
        if len({f["key"] for f in found}) > 1:
            raise StoreError(
                f"key prefix '{table_or_key}' matches several videos: "
                + ", ".join(sorted({f["key"] for f in found})[:MAX_LISTED])
            )
        return {"kind": "video", "key": found[0]["key"], "tables": found}

    def rm(self, table: str, keys: Sequence[str] | None = None) -> dict[str, Any]:
        """``vqstack features rm``: delete some videos of a table, or the whole table."""
        t = self.resolve(table)
        with self.mutating():
            if keys is not None:
                return {"table": t.name, "removed_videos": t.delete(keys), "removed_table": False}
            n = len(t.keys())
            if t.shard_dir.exists():
                shutil.rmtree(t.shard_dir)
            with contextlib.suppress(FileNotFoundError):
                t.path.unlink()
            h5io.fsync_dir(self.root)
            return {"table": t.name, "removed_videos": n, "removed_table": True}

    def export(self, table: str, out_path: str | Path, *, include_steps: bool = True) -> dict[str, Any]:
        """``vqstack features export``: a table to ``.npz`` or ``.parquet`` (see :mod:`.export`)."""
        from vqstack.features.export import export_table

        return export_table(self.resolve(table), Path(out_path), include_steps=include_steps)

    def repair(self) -> dict[str, Any]:
        """``vqstack features repair``: move unreadable files to ``<root>/corrupt/``, keep readable videos.

        Returns ``{"removed_tmp": [...], "moved": [...], "tables": {name: {"kept": n, "lost": [keys]}}}``
        (``lost`` lists keys known to be lost; a main file that cannot be opened at all loses an unknown
        number of videos and is reported in ``moved`` only).
        """
        from vqstack.features.repair import repair_store

        with self.mutating():
            report = repair_store(self)
            report["removed_tmp"] = self._clean_tmp() + report.get("removed_tmp", [])
            return report

    def move_aside(self, path: Path) -> str:
        """Move a damaged file into ``<root>/corrupt/`` under a unique name; returns the new path."""
        dest_dir = self.root / CORRUPT_DIR
        rel = path.relative_to(self.root)
        dest = dest_dir / rel.parent / f"{rel.name}.{time.strftime('%Y%m%dT%H%M%S')}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        n = 0
        while dest.exists():
            n += 1
            dest = dest.with_name(f"{dest.name}.{n}")
        os.replace(path, dest)
        h5io.fsync_dir(path.parent)
        log.warning("moved unreadable %s to %s", path, dest)
        return str(dest)
