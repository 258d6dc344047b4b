"""``vqstack features``: look into the feature store, and mend or export it.

  ls       one line per table (extractor + config): videos, size, weights
  info     a table's videos, or one video's attributes (by content key or a 6+ char prefix)
  rm       delete a table, or some videos of it (--keys)
  export   a table to .npz or .parquet
  repair   move unreadable files to STORE/corrupt/ and keep every readable video
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    p = sub.add_parser("features", help="inspect, export, delete or repair stored features",
                       description=__doc__, formatter_class=formatter)
    fsub = p.add_subparsers(dest="features_command", metavar="ACTION", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        q = fsub.add_parser(name, help=help_text, description=help_text, formatter_class=formatter)
        q.add_argument("--store", default="features", type=Path, help="feature store folder")
        q.add_argument("--json", action="store_true", help="print JSON instead of text")
        return q

    add("ls", "list the tables of the store").set_defaults(handler=run_ls)
    q = add("info", "show a table's videos or one video's attributes")
    q.add_argument("name", help="table name (e.g. nss-1a2b3c4d), extractor name, or video content key")
    q.set_defaults(handler=run_info)
    q = add("rm", "delete a table or some of its videos")
    q.add_argument("table", help="table name or extractor name")
    q.add_argument("--keys", nargs="+", default=None, help="only these video content keys")
    q.set_defaults(handler=run_rm)
    q = add("export", "write a table to .npz or .parquet")
    q.add_argument("table", help="table name or extractor name")
    q.add_argument("--out", required=True, type=Path, help="output file, .npz or .parquet")
    q.add_argument("--no-steps", action="store_true", help="pooled vectors only, no per-step arrays")
    q.set_defaults(handler=run_export)
    add("repair", "move unreadable files aside, keep every readable video").set_defaults(handler=run_repair)


def _store(args: argparse.Namespace, *, must_exist: bool = True) -> Any:
    from vqstack.errors import StoreError
    from vqstack.features.store import FeatureStore

    if must_exist and not Path(args.store).is_dir():
        raise StoreError(f"{args.store}: no feature store here (run 'vqstack extract' first)")
    return FeatureStore(args.store)


def _print(args: argparse.Namespace, data: Any) -> None:
    print(json.dumps(data, indent=1, default=str) if args.json else _text(data))


def _text(data: Any) -> str:
    if isinstance(data, list):
        if not data:
            return "(empty)"
        cols = [c for c in data[0] if not isinstance(data[0][c], dict | list)]
        lines = ["\t".join(cols)]
        lines += ["\t".join(str(row.get(c, "")) for c in cols) for row in data]
        return "\n".join(lines)
    return json.dumps(data, indent=1, default=str)


def run_ls(args: argparse.Namespace) -> int:
    _print(args, _store(args).ls())
    return 0


def run_info(args: argparse.Namespace) -> int:
    _print(args, _store(args).info(args.name))
    return 0


def run_rm(args: argparse.Namespace) -> int:
    _print(args, _store(args).rm(args.table, args.keys))
    return 0


def run_export(args: argparse.Namespace) -> int:
    _print(args, _store(args).export(args.table, args.out, include_steps=not args.no_steps))
    return 0


def run_repair(args: argparse.Namespace) -> int:
    _print(args, _store(args).repair())
    return 0
