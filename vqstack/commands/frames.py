"""``vqstack frames``: dump frames at N fps (Zoom-VQA's 2 fps) with ffmpeg, resumable and parallel."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    from vqstack.commands.extract import add_engine_options

    p = sub.add_parser("frames", help="extract frames at N fps to image folders (one folder per video)",
                       description=__doc__, formatter_class=formatter)
    p.add_argument("--videos", required=True, help="a folder (searched recursively), a list file, or one video")
    p.add_argument("--out", required=True, type=Path, help="output root; one sub-folder per video")
    p.add_argument("--fps", type=float, default=2.0, help="frames per second to keep")
    p.add_argument("--format", dest="image_format", choices=["png", "jpg"], default="png",
                   help="png is lossless; jpg is smaller but adds compression artefacts")
    p.add_argument("--png-level", type=int, default=0, choices=range(10), metavar="0-9",
                   help="zlib level for png (0 = fastest, still lossless; 6 = ~3x smaller, ~4x slower)")
    p.add_argument("--jpeg-quality", type=int, default=2, help="ffmpeg -q:v for jpg (2 = best usable)")
    p.add_argument("--threads", type=int, default=2, help="ffmpeg decoding threads per video")
    p.add_argument("--ffmpeg", default=None,
                   help="ffmpeg binary to use (default: $VQSTACK_FFMPEG, else the one imageio-ffmpeg ships)")
    p.add_argument("--overwrite", action="store_true", help="redo folders that are already complete")
    p.add_argument("--failures", type=Path, default=None,
                   help="CSV of failed videos and reasons (default: OUT/failures.csv)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_engine_options(p, what="videos processed")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vqstack.errors import ConfigError, InputError
    from vqstack.extract.frames import FrameDumpConfig, extract_frames
    from vqstack.extract.media import discover
    from vqstack.extract.ray_engine import check_engine

    if args.fps <= 0:
        raise ConfigError(f"--fps must be positive, got {args.fps}")
    check_engine(args.engine, args.address)
    source = Path(args.videos)
    try:
        videos = discover(source)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    cfg = FrameDumpConfig(fps=args.fps, image_format=args.image_format, png_level=args.png_level,
                          jpeg_quality=args.jpeg_quality, threads=args.threads)
    report = extract_frames(videos, args.out, videos_root=source if source.is_dir() else None, cfg=cfg,
                            workers=args.workers, ffmpeg=args.ffmpeg, overwrite=args.overwrite,
                            progress=not args.no_progress, engine=args.engine, address=args.address)
    failures = report.write_failures(args.failures or args.out / "failures.csv")
    print(f"frames: {report.summary()} -> {args.out}" + (f" (failures: {failures})" if failures else ""))
    return report.exit_code
