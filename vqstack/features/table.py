"""One table of the store: all videos processed by one (extractor, version, config, weights).

On disk a table is a *main* HDF5 file ``<root>/<name>.h5`` plus a folder of *shards*
``<root>/<name>.shards/<key>.h5``, one complete video each.

Why shards (and not appending to one file, nor SWMR): HDF5 gives no crash safety for a file being
modified -- a kill in the middle of adding a group can leave the whole file unreadable -- and SWMR
forbids creating groups while it is on. So no file that a reader may open is ever modified in place:

* ``write`` builds a shard as ``<key>.h5.tmp``, fsyncs it, and renames it to ``<key>.h5`` (atomic),
  then fsyncs the folder. A kill leaves either no shard or a complete one, plus maybe a stray ``.tmp``
  that readers ignore and the next writer deletes.
* ``compact`` builds the next main file as ``<name>.h5.tmp`` (old main + shards), fsyncs it, renames
  it onto ``<name>.h5``, and only then deletes the merged shards. A kill at any point leaves the old or
  the new main file plus shards that are all complete; a video in both is the same video (shard wins).
* Readers list the shards *before* opening the main file, so a compaction running meanwhile can only
  move a video from "shard" to "main", never hide it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py

from vqstack.errors import StoreError
from vqstack.features import h5io
from vqstack.features.records import VideoFeatures

if TYPE_CHECKING:
    from vqstack.features.store import FeatureStore

log = logging.getLogger(__name__)

KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
SHARD_SUFFIX = ".shards"
# What can go wrong when HDF5 reads a damaged file: h5py raises OSError for most, KeyError for a
# missing object, RuntimeError/ValueError for some broken metadata.
H5_ERRORS = (OSError, KeyError, RuntimeError, ValueError, StoreError)


@dataclass(frozen=True)
class TableInfo:
    """Summary of one table, as listed by ``FeatureStore.tables()`` and ``vqstack features ls``."""

    name: str
    extractor: str
    version: str | None
    config: dict[str, Any] | None
    weights_sha256: str | None
    n_videos: int
    file_size: int
    """Bytes on disk: main file plus shards."""
    n_shards: int
    path: str
    error: str | None = None
    """Why the table could not be read (then the other fields are what the file names say)."""

    def as_dict(self) -> dict[str, Any]:
        """Plain data for printing or JSON."""
        return asdict(self)


def check_key(key: str) -> str:
    """Keys name HDF5 groups and shard files: refuse anything that is not a safe file name."""
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise StoreError(f"invalid video key {key!r}: use letters, digits, '_', '-', '.' (a content key)")
    return key


class Table:
    """Read and write the videos of one table. Obtain it from :meth:`FeatureStore.table`."""

    def __init__(self, store: FeatureStore, name: str, meta: dict[str, Any]) -> None:
        self.store = store
        self.name = name
        self.extractor: str = meta["extractor"]
        self.version: str = meta["extractor_version"]
        self.config: dict[str, Any] = meta["config"]
        self.weights_sha256: str | None = meta["weights_sha256"]
        self.path = store.root / f"{name}.h5"
        self.shard_dir = store.root / f"{name}{SHARD_SUFFIX}"
        self._meta = {**meta, "table": name}
        self._main_checked = False
        self._main_cache: tuple[tuple[int, int, int], set[str]] | None = None

    def __repr__(self) -> str:
        return f"Table({self.name!r}, root={str(self.store.root)!r})"

    # ----------------------------------------------------------------- reading
    def _shard(self, key: str) -> Path:
        return self.shard_dir / f"{key}.h5"

    def shard_keys(self) -> list[str]:
        """Keys that are in complete shards (not yet compacted), sorted."""
        try:
            names = os.listdir(self.shard_dir)
        except FileNotFoundError:
            return []
        return sorted(n[:-3] for n in names if n.endswith(".h5") and KEY_RE.match(n[:-3]))

    def _main_keys(self) -> set[str]:
        """Group names of the main file, cached while the file's (inode, size, mtime) is unchanged."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return set()
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._main_cache is not None and self._main_cache[0] == stamp:
            return self._main_cache[1]
        try:
            with h5io.open_h5(self.path) as f:
                keys = set(f.keys())
        except FileNotFoundError:
            return set()
        except H5_ERRORS as exc:
            raise h5io.corrupt_error(self.path, exc, self.store.root) from exc
        self._main_cache = (stamp, keys)
        return keys

    def keys(self) -> set[str]:
        """Every stored key, in shards or in the main file."""
        shards = self.shard_keys()  # before the main file: see the module docstring
        return set(shards) | self._main_keys()

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.keys()))

    def __len__(self) -> int:
        return len(self.keys())

    def has(self, key: str) -> bool:
        """True if ``key`` is stored (a stat for shards, a cached key list for the main file)."""
        return self._shard(key).exists() or key in self._main_keys()

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.has(key)

    @contextlib.contextmanager
    def _main_file(self) -> Iterator[h5py.File | None]:
        try:
            f = h5io.open_h5(self.path)
        except FileNotFoundError:
            yield None
            return
        except H5_ERRORS as exc:
            raise h5io.corrupt_error(self.path, exc, self.store.root) from exc
        try:
            yield f
        finally:
            f.close()

    def _groups(self, keys: Iterable[str], *, strict: bool) -> Iterator[tuple[str, h5py.Group]]:
        """Yield ``(key, group)`` for each stored key, opening the main file once.

        A damaged shard is skipped with a warning (its older copy in the main file is used if any);
        with ``strict`` a key found nowhere raises StoreError, else it is skipped.
        """
        wanted = list(dict.fromkeys(keys))
        from_main: list[str] = []
        damaged: dict[str, Path] = {}
        for key in wanted:
            shard = self._shard(key)
            try:
                with h5io.open_h5(shard) as f:
                    g = f[key]
                    yield key, g
                    continue
            except FileNotFoundError:
                pass  # not a shard, or compacted meanwhile: it is in the main file now
            except H5_ERRORS as exc:
                log.warning(
                    "skipping damaged shard %s (%s); %s",
                    shard, exc, h5io.REPAIR_HINT.format(root=self.store.root),
                )
                damaged[key] = shard
            from_main.append(key)
        if not from_main:
            return
        with self._main_file() as f:
            for key in from_main:
                try:
                    g = f[key] if f is not None and key in f else None
                except H5_ERRORS as exc:
                    raise h5io.corrupt_error(self.path, f"video {key}: {exc}", self.store.root) from exc
                if g is not None:
                    yield key, g
                elif strict and key in damaged:
                    raise h5io.corrupt_error(damaged[key], "damaged shard", self.store.root)
                elif strict:
                    raise StoreError(f"video {key} is not in table {self.name} ({self.store.root})")

    def _read_one(self, key: str, reader: Callable[[h5py.Group], Any]) -> Any:
        check_key(key)
        for _, g in self._groups([key], strict=True):
            try:
                return reader(g)
            except H5_ERRORS as exc:
                raise h5io.corrupt_error(g.file.filename, f"video {key}: {exc}", self.store.root) from exc
        raise StoreError(f"video {key} is not in table {self.name} ({self.store.root})")

    def read(self, key: str) -> VideoFeatures:
        """The features of one video (StoreError if absent or unreadable)."""
        return self._read_one(key, h5io.read_video)

    def attrs(self, key: str) -> dict[str, Any]:
        """Provenance attributes of one video (paths, source facts, extractor, versions, shapes)."""
        return self._read_one(key, h5io.read_attrs)

    def read_many(
        self, keys: Iterable[str], reader: Callable[[h5py.Group], Any] = h5io.read_video
    ) -> dict[str, Any]:
        """``{key: reader(group)}`` for many keys with one opening of the main file."""
        out: dict[str, Any] = {}
        for key, g in self._groups(keys, strict=True):
            try:
                out[key] = reader(g)
            except H5_ERRORS as exc:
                raise h5io.corrupt_error(g.file.filename, f"video {key}: {exc}", self.store.root) from exc
        return out

    def paths(self) -> dict[str, list[str]]:
        """``{key: [recorded path, *aliases]}`` of every readable video (used to match label ids)."""
        return self.read_many_lenient(self.keys(), h5io.read_paths)

    def read_many_lenient(
        self, keys: Iterable[str], reader: Callable[[h5py.Group], Any]
    ) -> dict[str, Any]:
        """Like :meth:`read_many` but a damaged video is skipped with a warning instead of raising."""
        out: dict[str, Any] = {}
        for key, g in self._groups(keys, strict=False):
            try:
                out[key] = reader(g)
            except H5_ERRORS as exc:
                log.warning("skipping damaged video %s in %s (%s)", key, g.file.filename, exc)
        return out

    def info(self) -> TableInfo:
        """Summary of this table (counts and bytes on disk)."""
        shards = self.shard_keys()
        size = self.path.stat().st_size if self.path.exists() else 0
        for key in shards:
            with contextlib.suppress(OSError):
                size += self._shard(key).stat().st_size
        return TableInfo(
            name=self.name,
            extractor=self.extractor,
            version=self.version,
            config=self.config,
            weights_sha256=self.weights_sha256,
            n_videos=len(set(shards) | self._main_keys()),
            file_size=size,
            n_shards=len(shards),
            path=str(self.path),
        )

    # ----------------------------------------------------------------- writing
    def _check_main(self) -> None:
        """Before the first write: create the main file with the table metadata, or check it."""
        if self._main_checked:
            return
        if self.path.exists():
            with self._main_file() as f:
                if f is not None:
                    try:
                        meta = h5io.read_table_meta(f)
                    except H5_ERRORS as exc:
                        raise h5io.corrupt_error(self.path, exc, self.store.root) from exc
                    self._check_meta(meta, self.path)
        else:
            self._atomic_h5(self.path, lambda f: None)
            h5io.fsync_dir(self.store.root)
        self._main_checked = True

    def _check_meta(self, meta: dict[str, Any], where: Path) -> None:
        mine = {k: self._meta[k] for k in ("extractor", "extractor_version", "config", "weights_sha256")}
        theirs = {k: meta.get(k) for k in mine}
        if h5io.canonical_json(mine) != h5io.canonical_json(theirs):
            raise StoreError(
                f"{where}: table {self.name} holds {theirs}, not {mine} (an 8-hex name collision); "
                "use another --store"
            )

    def _atomic_h5(self, final: Path, fill: Callable[[h5py.File], None], *, base: Path | None = None) -> None:
        """Build ``final`` as ``final.tmp`` (from a copy of ``base`` if given), fsync, rename over."""
        tmp = final.with_name(final.name + ".tmp")
        try:
            if base is not None:
                shutil.copyfile(base, tmp)
                mode = "r+"
            else:
                mode = "w"
            with h5io.open_h5(tmp, mode) as f:
                if base is None:
                    h5io.write_table_meta(f, self._meta)
                fill(f)
            h5io.fsync_file(tmp)
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        h5io.fsync_dir(final.parent)

    def _write_shard(self, key: str, fill: Callable[[h5py.File], None]) -> None:
        if not self.shard_dir.is_dir():
            self.shard_dir.mkdir(exist_ok=True)
            h5io.fsync_dir(self.store.root)
        self._atomic_h5(self._shard(key), fill)

    def _stored_paths(self, key: str) -> list[str]:
        if not self.has(key):  # the common case for a new video: a stat, no HDF5 open
            return []
        found = self.read_many_lenient([key], h5io.read_paths)
        return found.get(key, [])

    def write(self, key: str, features: VideoFeatures, extra_attrs: dict[str, Any] | None = None) -> None:
        """Store one video, durably: when this returns, a kill -9 cannot lose it.

        Replaces a previous record of ``key`` but keeps every path it was seen at as an alias.
        ``features.video['path']`` is recorded as an absolute path. ``extra_attrs`` become group
        attributes (dicts/lists as JSON); its ``versions`` dict (e.g. ``{"torch": "2.4.1"}``) is merged
        into the recorded library versions. Takes the writer lock for the call unless already held.
        """
        check_key(key)
        if not isinstance(features, VideoFeatures):
            raise TypeError(f"features must be a VideoFeatures, got {type(features).__name__}")
        raw_path = features.video.get("path")
        new_path = os.path.abspath(os.fspath(raw_path)) if raw_path else None
        with self.store.mutating():
            self._check_main()
            paths = self._stored_paths(key)
            if new_path is not None and new_path not in paths:
                paths.append(new_path)
            original = paths[0] if paths else None
            self._write_shard(
                key,
                lambda f: h5io.write_video(
                    f, key, features, self._meta, aliases=paths, original_path=original,
                    extra_attrs=extra_attrs, compression=self.store.compression,
                ),
            )

    def add_alias(self, key: str, path: str | Path) -> bool:
        """Record that video ``key`` was also seen at ``path`` (so labels using the new name match).

        Returns False if the path was already known. Crash safe like :meth:`write` (the record is
        copied into a new shard with the updated alias list).
        """
        check_key(key)
        apath = os.path.abspath(os.fspath(path))
        with self.store.mutating():
            self._check_main()
            groups = self._groups([key], strict=True)
            try:
                _, src = next(groups)
                paths = h5io.read_paths(src)
                if apath in paths:
                    return False

                def fill(f: h5py.File) -> None:
                    src.file.copy(src, f, name=key)
                    f[key].attrs["aliases"] = json.dumps([*paths, apath])

                self._write_shard(key, fill)
                return True
            finally:
                groups.close()

    def delete(self, keys: str | Iterable[str]) -> int:
        """Remove videos (from the main file and shards); returns how many were stored."""
        wanted = {check_key(k) for k in ([keys] if isinstance(keys, str) else keys)}
        with self.store.mutating():
            in_shards = wanted & set(self.shard_keys())
            in_main = wanted & self._main_keys()
            if in_main:
                self._rebuild_main(exclude=in_main, shards=[])
            for key in in_shards:
                with contextlib.suppress(FileNotFoundError):
                    self._shard(key).unlink()
            if in_shards:
                h5io.fsync_dir(self.shard_dir)
            return len(in_shards | in_main)

    def _rebuild_main(self, *, exclude: set[str], shards: list[tuple[str, Path]]) -> None:
        """Write a fresh main file: current main minus ``exclude`` plus the given shards."""

        def fill(dst: h5py.File) -> None:
            with self._main_file() as src:
                if src is not None:
                    for key in src:
                        if key not in exclude:
                            src.copy(src[key], dst, name=key)
            self._copy_shards(shards, dst)

        self._atomic_h5(self.path, fill)

    @staticmethod
    def _copy_shards(shards: list[tuple[str, Path]], dst: h5py.File) -> None:
        for key, path in shards:
            with h5io.open_h5(path) as src:
                src.copy(src[key], dst, name=key)

    def _valid_shards(self) -> list[tuple[str, Path]]:
        good = []
        for key in self.shard_keys():
            path = self._shard(key)
            try:
                with h5io.open_h5(path) as f:
                    self._check_meta(h5io.read_table_meta(f), path)
                    h5io.check_video(f[key])
            except H5_ERRORS as exc:
                log.warning(
                    "not compacting damaged shard %s (%s); %s",
                    path, exc, h5io.REPAIR_HINT.format(root=self.store.root),
                )
                continue
            good.append((key, path))
        return good

    def compact(self) -> int:
        """Merge every shard into the main file (crash safe, idempotent); returns how many merged.

        Cost: one copy of the main file per call, so call it at the end of a run and, during a long
        run, every few hundred videos rather than every few. Readers never need it: shards are read
        directly; it only bounds the number of files.
        """
        with self.store.mutating():
            self._check_main()
            shards = self._valid_shards()
            if not shards:
                return 0
            main_keys = self._main_keys()
            overlap = {k for k, _ in shards} & main_keys
            if self.path.exists() and not overlap:
                # common case: append to a byte copy of the main file (no per-group copy of old data)
                self._atomic_h5(self.path, lambda dst: self._copy_shards(shards, dst), base=self.path)
            else:
                # a re-written video: build a fresh file so the old copy's space is not kept
                self._rebuild_main(exclude=overlap, shards=shards)
            for _, path in shards:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            h5io.fsync_dir(self.shard_dir)
            return len(shards)
