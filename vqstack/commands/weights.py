"""``vqstack weights ls``: which pretrained files each extractor can use, and which are here.

Nothing is ever downloaded: this lists each file's official name, SHA-256 (or the published prefix),
where to fetch it on a machine with internet, and whether it is present in --weights-dir (or
$VQSTACK_WEIGHTS) or bundled with an installed package.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any


def register(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    p = sub.add_parser("weights", help="list the pretrained weights files extractors use, and which are present",
                       description=__doc__, formatter_class=formatter)
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    q = wsub.add_parser("ls", help="list weights files and whether they are present", formatter_class=formatter,
                        description="List weights files and whether they are present.")
    q.add_argument("--weights-dir", default=None, type=Path,
                   help="folder holding weights under their official names (default: $VQSTACK_WEIGHTS)")
    q.add_argument("--verify", action="store_true", help="also hash present files and check their SHA-256")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(handler=run_ls)


def weights_table(weights_dir: Path | None, verify: bool) -> list[dict[str, Any]]:
    from vqstack.errors import VqstackError
    from vqstack.extract.base import check_digest, find_weights
    from vqstack.extract.registry import available, get_extractor_class

    rows: list[dict[str, Any]] = []
    for name in available():
        try:
            cls = get_extractor_class(name)
        except (ImportError, VqstackError) as exc:
            rows.append({"extractor": name, "file": "-", "status": f"unavailable ({exc})"})
            continue
        for spec in cls.known_weights():
            path = find_weights(spec, None, weights_dir)
            present = path is not None and path.is_file()
            status = "present" if present else "missing"
            if present and verify:
                try:
                    check_digest(spec, path)  # type: ignore[arg-type]
                    status = "present, SHA-256 ok" if spec.sha256 else "present, no published SHA-256"
                except VqstackError as exc:
                    status = f"BAD: {exc}"
            rows.append({"extractor": name, "file": spec.file_name, "status": status,
                         "path": str(path) if present else "", "sha256": spec.sha256 or "unknown", "url": spec.url})
    return rows


def run_ls(args: argparse.Namespace) -> int:
    weights_dir = args.weights_dir or (Path(os.environ["VQSTACK_WEIGHTS"]) if os.environ.get("VQSTACK_WEIGHTS")
                                       else None)
    rows = weights_table(weights_dir, args.verify)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print("extractor\tfile\tstatus\tsha256\turl")
    for r in rows:
        print(f"{r['extractor']}\t{r['file']}\t{r['status']}\t{str(r.get('sha256', ''))[:16]}\t{r.get('url', '')}")
    return 0
