"""``vqstack features export``: one table to a single ``.npz`` or ``.parquet`` file.

Why: to hand features to someone without vqstack or h5py (numpy alone reads the ``.npz``; pandas
or polars read the ``.parquet``).

``.npz`` arrays (rows in sorted key order; no pickled objects, so ``np.load`` needs no
``allow_pickle``):

* ``keys``, ``paths`` (recorded path), ``aliases`` (JSON list per video): ``[N]`` strings;
* ``pooled_<name>``: ``[N, d]`` float64 for each pooled vector every video has with one width;
* ``steps`` ``[sum T, D]`` float32, ``timestamps`` ``[sum T]`` and ``steps_offsets`` ``[N + 1]``: the
  steps of video ``i`` are ``steps[steps_offsets[i]:steps_offsets[i + 1]]`` (compact, unlike padding);
* ``feature_names`` ``[D]`` if stored; ``table``, ``extractor``, ``extractor_version``, ``config``,
  ``weights_sha256``: 0-d strings.

``.parquet``: one row per video with ``key``, ``path``, ``aliases``, ``num_steps`` and one list
column ``pooled_<name>`` per pooled vector; table metadata in the schema metadata. Steps are not
exported to parquet. Needs ``pyarrow`` (``pip install 'vqstack[parquet]'``).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from vqstack.errors import StoreError
from vqstack.features import h5io
from vqstack.features.table import Table


def _collect(table: Table, include_steps: bool) -> tuple[list[str], dict[str, dict[str, Any]]]:
    keys = sorted(table.keys())

    def reader(g: Any) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "paths": h5io.read_paths(g),
            "pooled": {n: np.asarray(d[()], dtype=np.float64).ravel() for n, d in g["pooled"].items()},
            "num_steps": int(g["steps"].shape[0]),
            "feature_names": h5io.read_feature_names(g),
        }
        if include_steps:
            rec["steps"] = g["steps"][()]
            rec["timestamps"] = g["timestamps"][()]
        return rec

    return keys, table.read_many(keys, reader)


def _common_pooled(keys: list[str], recs: dict[str, dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Pooled names every video has with one width (exported) and the others (skipped)."""
    all_names = sorted({n for r in recs.values() for n in r["pooled"]})
    ok, skipped = [], []
    for name in all_names:
        widths = {recs[k]["pooled"][name].size if name in recs[k]["pooled"] else -1 for k in keys}
        (ok if len(widths) == 1 and -1 not in widths else skipped).append(name)
    return ok, skipped


def _atomic_target(out_path: Path) -> Path:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    return out_path.with_name(out_path.name + ".tmp")


def export_table(table: Table, out_path: Path, *, include_steps: bool = True) -> dict[str, Any]:
    """Write ``table`` to ``out_path`` (format from the suffix); returns a small report."""
    suffix = out_path.suffix.lower()
    if suffix not in (".npz", ".parquet"):
        raise StoreError(f"{out_path}: export format must be .npz or .parquet, got '{suffix or 'none'}'")
    if suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise StoreError(
                f"{out_path}: exporting to parquet needs pyarrow: pip install 'vqstack[parquet]' "
                "(or export to .npz)"
            ) from exc
    keys, recs = _collect(table, include_steps and suffix == ".npz")
    pooled_names, skipped = _common_pooled(keys, recs)
    meta = {
        "table": table.name,
        "extractor": table.extractor,
        "extractor_version": table.version,
        "config": h5io.canonical_json(table.config),
        "weights_sha256": table.weights_sha256 or "",
    }
    tmp = _atomic_target(out_path)
    try:
        if suffix == ".npz":
            arrays: dict[str, np.ndarray] = {
                "keys": np.array(keys, dtype=str),
                "paths": np.array([recs[k]["paths"][0] if recs[k]["paths"] else "" for k in keys], dtype=str),
                "aliases": np.array([json.dumps(recs[k]["paths"]) for k in keys], dtype=str),
                **{k: np.array(v, dtype=str) for k, v in meta.items()},
            }
            for name in pooled_names:
                arrays[f"pooled_{name}"] = np.stack([recs[k]["pooled"][name] for k in keys]) if keys else (
                    np.zeros((0, 0))
                )
            if include_steps:
                dims = {recs[k]["steps"].shape[1] for k in keys}
                if len(dims) > 1:
                    raise StoreError(
                        f"table {table.name} mixes step widths {sorted(dims)}; export without steps"
                    )
                d = dims.pop() if dims else 0
                lengths = [recs[k]["num_steps"] for k in keys]
                arrays["steps_offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
                arrays["steps"] = (
                    np.concatenate([recs[k]["steps"] for k in keys]).astype(np.float32)
                    if keys else np.zeros((0, d), np.float32)
                )
                arrays["timestamps"] = (
                    np.concatenate([recs[k]["timestamps"] for k in keys]) if keys else np.zeros(0)
                )
            names = next((recs[k]["feature_names"] for k in keys if recs[k]["feature_names"]), None)
            if names is not None:
                arrays["feature_names"] = np.array(names, dtype=str)
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        else:
            columns: dict[str, Any] = {
                "key": pa.array(keys, pa.string()),
                "path": pa.array([(recs[k]["paths"] or [None])[0] for k in keys], pa.string()),
                "aliases": pa.array([recs[k]["paths"] for k in keys], pa.list_(pa.string())),
                "num_steps": pa.array([recs[k]["num_steps"] for k in keys], pa.int64()),
            }
            for name in pooled_names:
                columns[f"pooled_{name}"] = pa.array(
                    [recs[k]["pooled"][name].tolist() for k in keys], pa.list_(pa.float64())
                )
            tbl = pa.table(columns).replace_schema_metadata({k: str(v) for k, v in meta.items()})
            pq.write_table(tbl, tmp)
        os.replace(tmp, out_path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return {
        "table": table.name,
        "path": str(out_path),
        "videos": len(keys),
        "pooled": pooled_names,
        "skipped_pooled": skipped,
        "steps": include_steps and suffix == ".npz",
    }
