"""``vqstack features repair``: set damaged store files aside and keep every readable video.

Why it exists: the write protocol survives kills, but not a full disk that truncated a file, a
damaged disk, or a file copied half-way by hand. HDF5 then refuses the whole file. Repair reads every
video of every file (checksums included: ``steps`` carry a Fletcher-32 checksum), then

* a damaged shard is moved to ``<root>/corrupt/`` (its video is lost unless the main file has it);
* a main file that cannot be opened at all is moved aside (its videos are lost and must be
  re-extracted; ``vqstack extract`` redoes exactly the missing ones);
* a main file with some damaged videos is rebuilt from its readable ones; the original is first
  *copied* to ``corrupt/`` and the rebuilt file then renamed over it, so a kill during repair leaves
  the original in place and repair can simply be run again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vqstack.features import h5io
from vqstack.features.table import H5_ERRORS, KEY_RE, SHARD_SUFFIX

if TYPE_CHECKING:
    from vqstack.features.store import FeatureStore

log = logging.getLogger(__name__)


def _meta_from_group(name: str, g: Any) -> dict[str, Any]:
    a = h5io.read_attrs(g)
    return {
        "table": name,
        "extractor": a["extractor"],
        "extractor_version": a["extractor_version"],
        "config": a["config"],
        "weights_sha256": a["weights_sha256"],
    }


def _check_shards(store: FeatureStore, name: str, report: dict[str, Any]) -> tuple[set[str], set[str], Any]:
    """Move damaged shards aside; return (good keys, bad keys, table metadata or None)."""
    shard_dir = store.root / f"{name}{SHARD_SUFFIX}"
    good: set[str] = set()
    bad: set[str] = set()
    meta = None
    if not shard_dir.is_dir():
        return good, bad, meta
    for entry in sorted(os.listdir(shard_dir)):
        if not entry.endswith(".h5") or not KEY_RE.match(entry[:-3]):
            continue
        key, path = entry[:-3], shard_dir / entry
        try:
            with h5io.open_h5(path) as f:
                m = h5io.read_table_meta(f)
                h5io.check_video(f[key])
        except H5_ERRORS as exc:
            log.warning("shard %s is unreadable: %s", path, exc)
            bad.add(key)
            report["moved"].append(store.move_aside(path))
            continue
        meta = meta or m
        good.add(key)
    return good, bad, meta


def _rebuild_main(store: FeatureStore, main: Path, meta: dict[str, Any], good: list[str]) -> None:
    tmp = main.with_name(main.name + ".tmp")
    try:
        with h5io.open_h5(main) as src, h5io.open_h5(tmp, "w") as dst:
            h5io.write_table_meta(dst, meta)
            for key in good:
                src.copy(src[key], dst, name=key)
        h5io.fsync_file(tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dest = store.root / "corrupt" / f"{main.name}.before-repair"
    dest.parent.mkdir(exist_ok=True)
    n = 0
    while dest.exists():
        n += 1
        dest = dest.with_name(f"{main.name}.before-repair.{n}")
    shutil.copyfile(main, dest)
    os.replace(tmp, main)
    h5io.fsync_dir(store.root)
    log.warning("rebuilt %s from its readable videos; the original is kept as %s", main, dest)


def repair_store(store: FeatureStore) -> dict[str, Any]:
    """Check every file of every table; the caller holds the writer lock. See the module docstring."""
    report: dict[str, Any] = {"moved": [], "rebuilt": [], "tables": {}}
    for name in store._table_names():
        good_shards, bad_shards, meta = _check_shards(store, name, report)
        main = store.root / f"{name}.h5"
        main_good: list[str] = []
        lost: set[str] = set()
        main_lost = False
        if main.exists():
            try:
                f = h5io.open_h5(main)
            except H5_ERRORS as exc:
                log.warning("main file %s is unreadable: %s", main, exc)
                report["moved"].append(store.move_aside(main))
                main_lost = True
            else:
                bad: list[str] = []
                with f:
                    try:
                        main_meta = h5io.read_table_meta(f)
                    except H5_ERRORS:
                        main_meta = None
                    for key in list(f.keys()):
                        try:
                            h5io.check_video(f[key])
                            main_good.append(key)
                            if meta is None and main_meta is None:
                                meta = _meta_from_group(name, f[key])
                        except H5_ERRORS as exc:
                            log.warning("video %s in %s is unreadable: %s", key, main, exc)
                            bad.append(key)
                meta = main_meta or meta
                if bad or main_meta is None:
                    if meta is None:
                        report["moved"].append(store.move_aside(main))
                        main_good = []
                    else:
                        _rebuild_main(store, main, meta, main_good)
                        report["rebuilt"].append(str(main))
                    lost.update(k for k in bad if k not in good_shards)
        lost.update(k for k in bad_shards if k not in main_good)
        report["tables"][name] = {
            "kept": len(good_shards | set(main_good)),
            "lost": sorted(lost),
            "main_file_lost": main_lost,
        }
    return report
