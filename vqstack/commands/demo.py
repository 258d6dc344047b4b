"""``vqstack demo``: the whole pipeline on videos it makes itself (no data, no weights, no download).

It renders eight sources (pans over photos and maps that matplotlib and scikit-learn ship, seeded
1/f textures, two ffmpeg test sources), damages each along four ladders (x264 CRF, downscale-upscale,
blur, noise; four steps each), scores every version with VMAF against its pristine source, then
runs vqstack: probe -> 2 fps frames -> extract ``nss`` into a store -> fuse fit (SVR, grouped by
source: each source is scored by a model that never saw it) -> per-ladder Spearman correlation of
the predictions with the damage order. A second ``extract`` shows the cache hit.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    p = sub.add_parser("demo", help="run the pipeline end to end on generated distortion ladders",
                       description=__doc__, formatter_class=formatter)
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="working folder (reused when run again)")
    p.add_argument("--workers", type=int, default=2, help="parallel ffmpeg / extraction workers")
    p.add_argument("--seconds", type=float, default=2.0, help="length of each generated clip")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vqstack.demo import run_demo

    return run_demo(args.out, workers=args.workers, seconds=args.seconds)
