"""``vqstack probe``: what vqstack sees in each file, without decoding more than one frame."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    p = sub.add_parser("probe", help="show duration, fps, frames, size, rotation, pixel format, codec",
                       description=__doc__, formatter_class=formatter)
    p.add_argument("videos", nargs="+", help="video/image files, folders, or list files (.txt/.csv)")
    p.add_argument("--json", action="store_true", help="print one JSON object per file instead of a table")
    p.add_argument("--failures", default=None,
                   help="also write failing files and reasons to this CSV")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vqstack.batch import BatchReport
    from vqstack.errors import InputError
    from vqstack.extract.media import discover
    from vqstack.extract.probe import probe

    report = BatchReport()
    rows: list[dict[str, Any]] = []
    for source in args.videos:
        try:
            paths = discover(source)
        except InputError as exc:
            report.fail(exc.path, exc.reason)
            continue
        for path in paths:
            try:
                info = probe(path)
            except InputError as exc:
                report.fail(exc.path, exc.reason)
                continue
            report.done.append(str(path))
            rows.append(info.as_dict())
    if args.json:
        for row in rows:
            print(json.dumps(row))
    elif rows:
        cols = ["path", "duration", "fps", "num_frames", "width", "height", "rotation", "pix_fmt", "codec"]
        print("\t".join(cols))
        for row in rows:
            print("\t".join(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in cols))
    if args.failures:
        report.write_failures(args.failures)
    return report.exit_code
