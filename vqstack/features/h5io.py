"""Low-level HDF5 layout of one video group, durability helpers and the corruption message.

Why a separate module: the table (writes, compaction), the store (reads, repair, export) and the tests
all need the exact same group layout; keeping it in one place means the layout documented in
``docs/store.md`` has exactly one implementation.

Files are opened with ``locking=False``: HDF5's own file locks are advisory ``flock``/``fcntl``
calls that fail on several network file systems, and our writers are already serialised by
:mod:`vqstack.features.lock` while readers only ever open complete, never-modified files (writes go
to a temporary file renamed into place). ``HDF5_USE_FILE_LOCKING=FALSE`` has the same effect for
other HDF5 tools (h5dump, h5ls) used on such mounts.
"""

from __future__ import annotations

import datetime as _dt
import json
import numbers
import os
import platform
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from vqstack.errors import StoreError
from vqstack.features.records import VideoFeatures

FORMAT_VERSION = 1
"""Bumped when the group layout changes incompatibly."""

VIDEO_ATTR_KEYS = ("duration", "fps", "num_frames", "width", "height")
RESERVED_ATTRS = frozenset(
    {
        "content_key", "path", "aliases", "size", "extractor", "extractor_version", "config",
        "weights_sha256", "created_utc", "versions", "video", *VIDEO_ATTR_KEYS,
    }
)
TABLE_ATTRS = ("vqstack_format", "table", "extractor", "extractor_version", "config", "weights_sha256")

REPAIR_HINT = (
    "run `vqstack features repair --store {root}` to move unreadable files aside and keep every "
    "readable video"
)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):  # e.g. a Fraction frame rate from PyAV
        return float(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces): equal configs give equal text and equal hashes."""
    try:
        return json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=_json_default
        )
    except (TypeError, ValueError) as exc:
        raise StoreError(f"cannot store {obj!r} as JSON: {exc}") from exc


def corrupt_error(path: str | Path, reason: object, root: str | Path) -> StoreError:
    """The one wording for an unreadable store file: which file, why, and how to rebuild."""
    return StoreError(
        f"{path}: unreadable HDF5 file ({reason}); it was probably truncated by a full disk or damaged; "
        + REPAIR_HINT.format(root=root)
    )


def open_h5(path: str | Path, mode: str = "r") -> h5py.File:
    """Open an HDF5 file without HDF5's own file locking (see the module docstring)."""
    return h5py.File(path, mode, locking=False)


def fsync_file(path: str | Path) -> None:
    """Flush a closed file's data to disk (so a rename after it never exposes a partial file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Make renames and unlinks inside ``path`` durable (needed after ``os.replace`` on Linux)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories; the rename itself is still atomic
        pass
    finally:
        os.close(fd)


def utc_now() -> str:
    """Current UTC time, ISO 8601 with a Z."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def library_versions() -> dict[str, str]:
    """Versions recorded with every video: what produced the numbers, for reproducibility."""
    from vqstack import __version__

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
        "vqstack": __version__,
    }


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [_decode(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_table_meta(f: h5py.File, meta: dict[str, Any]) -> None:
    """File-level attributes naming the table; written in the main file and in every shard."""
    f.attrs["vqstack_format"] = FORMAT_VERSION
    f.attrs["table"] = meta["table"]
    f.attrs["extractor"] = meta["extractor"]
    f.attrs["extractor_version"] = meta["extractor_version"]
    f.attrs["config"] = canonical_json(meta["config"])
    f.attrs["weights_sha256"] = meta["weights_sha256"] or ""


def read_table_meta(f: h5py.File) -> dict[str, Any]:
    """Inverse of :func:`write_table_meta` (``config`` decoded, empty weights sha -> None)."""
    a = f.attrs
    missing = [k for k in TABLE_ATTRS if k not in a]
    if missing:
        raise StoreError(f"{f.filename}: not a vqstack table (missing attributes {missing})")
    return {
        "vqstack_format": int(a["vqstack_format"]),
        "table": _decode(a["table"]),
        "extractor": _decode(a["extractor"]),
        "extractor_version": _decode(a["extractor_version"]),
        "config": json.loads(_decode(a["config"])),
        "weights_sha256": _decode(a["weights_sha256"]) or None,
    }


def write_video(
    parent: h5py.Group,
    key: str,
    features: VideoFeatures,
    meta: dict[str, Any],
    *,
    aliases: list[str],
    original_path: str | None,
    extra_attrs: dict[str, Any] | None,
    compression: str | None,
) -> h5py.Group:
    """Create group ``key`` under ``parent`` holding ``features`` and every provenance attribute."""
    g = parent.create_group(key)
    steps = np.asarray(features.steps, dtype=np.float32)
    # Fletcher-32 lets repair tell a damaged video from a valid one (float data has no other check).
    chunked = {"compression": compression, "fletcher32": True} if steps.size else {}
    g.create_dataset("steps", data=steps, **chunked)
    g.create_dataset("timestamps", data=np.asarray(features.timestamps, dtype=np.float64))
    pg = g.create_group("pooled")
    for name, vec in features.pooled.items():
        arr = np.asarray(vec)
        if arr.dtype.kind not in "fiub":
            raise StoreError(f"pooled vector '{name}' of {key} is not numeric (dtype {arr.dtype})")
        pg.create_dataset(name, data=arr.astype(np.float64) if arr.dtype.kind != "f" else arr)
    if features.feature_names is not None:
        g.create_dataset(
            "feature_names", data=np.array(features.feature_names, dtype=object), dtype=h5py.string_dtype()
        )
    video = dict(features.video)
    a = g.attrs
    a["content_key"] = key
    if original_path is not None:
        a["path"] = original_path
    a["aliases"] = json.dumps(aliases)
    for k in VIDEO_ATTR_KEYS:
        if video.get(k) is not None:
            try:
                a[k] = float(video[k]) if k in ("duration", "fps") else int(video[k])
            except (TypeError, ValueError) as exc:
                raise StoreError(f"video {key}: '{k}' must be a number, got {video[k]!r}") from exc
    if video.get("width") is not None and video.get("height") is not None:
        a["size"] = np.array([int(video["width"]), int(video["height"])], dtype=np.int64)
    a["video"] = canonical_json(video)
    a["extractor"] = meta["extractor"]
    a["extractor_version"] = meta["extractor_version"]
    a["config"] = canonical_json(meta["config"])
    a["weights_sha256"] = meta["weights_sha256"] or ""
    a["created_utc"] = utc_now()
    versions = library_versions()
    extra = dict(extra_attrs or {})
    if isinstance(extra.get("versions"), dict):
        versions.update({str(k): str(v) for k, v in extra.pop("versions").items()})
    a["versions"] = canonical_json(versions)
    for k, v in extra.items():
        if k in RESERVED_ATTRS:
            raise StoreError(f"extra attribute '{k}' would overwrite a store attribute; rename it")
        a[k] = canonical_json(v) if isinstance(v, dict | list | tuple) else v
    return g


def read_paths(g: h5py.Group) -> list[str]:
    """Every path a video has been seen at: the recorded path first, then the other aliases."""
    paths: list[str] = []
    if "path" in g.attrs:
        paths.append(_decode(g.attrs["path"]))
    if "aliases" in g.attrs:
        for p in json.loads(_decode(g.attrs["aliases"])):
            if p not in paths:
                paths.append(p)
    return paths


def read_attrs(g: h5py.Group) -> dict[str, Any]:
    """All attributes of a video group, JSON fields decoded (config, versions, video, aliases)."""
    out: dict[str, Any] = {}
    for k, v in g.attrs.items():
        v = _decode(v)
        if k in ("config", "versions", "video", "aliases") and isinstance(v, str):
            v = json.loads(v)
        elif k == "size":
            v = tuple(v)
        out[k] = v
    out["weights_sha256"] = out.get("weights_sha256") or None
    out["steps_shape"] = tuple(g["steps"].shape)
    out["pooled"] = sorted(g["pooled"].keys()) if "pooled" in g else []
    return out


def read_feature_names(g: h5py.Group) -> list[str] | None:
    """The step feature names of a video group, or None if none were stored."""
    if "feature_names" not in g:
        return None
    return [str(s) for s in g["feature_names"].asstr()[()]]


def read_video(g: h5py.Group) -> VideoFeatures:
    """Read a whole video group back into a :class:`VideoFeatures` (``video`` as it was written)."""
    steps = g["steps"][()]
    timestamps = g["timestamps"][()]
    pooled = {name: ds[()] for name, ds in g["pooled"].items()}
    video = json.loads(_decode(g.attrs["video"])) if "video" in g.attrs else {}
    return VideoFeatures(
        steps=steps,
        timestamps=timestamps,
        pooled=pooled,
        feature_names=read_feature_names(g),
        video=video,
    )


def check_video(g: h5py.Group) -> None:
    """Read every byte of a video group; raises (OSError, KeyError, ...) if any part is damaged."""
    read_video(g)
    read_attrs(g)



def read_pooled(g: h5py.Group, names: list[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """The named pooled vectors present in a video group (as float64 1-D) and all pooled names."""
    pooled = g["pooled"]
    available = sorted(pooled.keys())
    out = {n: np.asarray(pooled[n][()], dtype=np.float64).ravel() for n in names if n in pooled}
    return out, available
