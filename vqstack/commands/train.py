"""``vqstack train``: end-to-end branch training (fragment / frame-IQA branches).

Not in this release: the command is reserved so scripts and docs can name it; it says so plainly.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    p = sub.add_parser("train", help="(not yet available) train a branch end to end from configs/train/*.yml",
                       description=__doc__, formatter_class=formatter)
    p.add_argument("--config", required=True, help="training recipe YAML")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    print("error: vqstack train is not available in this release (branch training is planned); "
          "use 'vqstack fuse fit' over extracted features", file=sys.stderr)
    return 2
