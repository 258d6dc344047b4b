"""Extraction benchmark: NSS speed per core, the cost of a cached rerun, and decode-once sharing.

1. ``nss`` frames per second per core at 540p: the per-frame feature function on decoded 960x540
   frames, one thread (target >= 20).
2. A second ``extract`` over the same folder as a share of the first (target <= 2 %).
(One decode feeding several extractors vs one run each is measured by ``bench_deep.py``, with the
extractors built and warmed up first: on short clips here the model build and first-call costs of a
cold process would decide the ratio.)

    python scripts/bench_extract.py --out bench_results
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench_common import SHARED, write_results

os.environ.setdefault("OMP_NUM_THREADS", "1")


def make_videos(out: Path, n: int) -> list[Path]:
    from vqstack.extract.ffmpeg_bin import ffmpeg_exe

    konvid = sorted((SHARED / "videos" / "konvid").glob("*.mp4"))
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        target = out / f"clip{i:02d}.mp4"
        if konvid:  # real 540p content, a different 3 s window of a KoNViD video per clip
            src = konvid[i % len(konvid)]
            args = ["-ss", str((i // len(konvid)) % 5), "-i", str(src), "-t", "3"]
        else:
            args = ["-f", "lavfi", "-i", f"mandelbrot=size=960x540:rate=25:start_scale={3 + i / 10}", "-t", "3"]
        subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", *args, "-c:v", "libx264", "-preset", "veryfast",
                        "-pix_fmt", "yuv420p", "-an", str(target)], check=True)
        paths.append(target)
    return paths


def nss_fps(video: Path, frames: int = 40) -> dict[str, float]:
    from threadpoolctl import threadpool_limits

    from vqstack.extract import nss_features as nf
    from vqstack.extract.reader import read_frames

    batch = read_frames(video, list(range(frames)))
    with threadpool_limits(1):
        nf.frame_features(batch[0])  # warm-up
        t0 = time.perf_counter()
        for f in batch:
            nf.frame_features(f)
        per_frame = (time.perf_counter() - t0) / len(batch)
        t0 = time.perf_counter()
        for a, b in itertools.pairwise(batch):
            nf.temporal_features(a, b)
        per_pair = (time.perf_counter() - t0) / (len(batch) - 1)
    return {"frame_features_fps_per_core": 1 / per_frame, "with_temporal_fps_per_core": 1 / (per_frame + per_pair),
            "height": float(batch.shape[1]), "width": float(batch.shape[2])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench_results"))
    parser.add_argument("--videos", type=int, default=12)
    args = parser.parse_args()
    from vqstack.extract.pipeline import ExtractorRequest, run_extract

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        videos = make_videos(work / "videos", args.videos)
        speed = nss_fps(videos[0])
        store = work / "store"
        first = run_extract(videos, [ExtractorRequest("nss")], store, progress=False)
        second = run_extract(videos, [ExtractorRequest("nss")], store, progress=False)
        rerun_share = second.seconds / first.seconds
        shutil.rmtree(work / "videos")
    results = {
        "nss_speed": speed,
        "extract_first_s": first.seconds, "extract_rerun_s": second.seconds, "rerun_share": rerun_share,
        "n_videos": len(videos), "rerun_cache_hits": second.cache_hits,
    }
    table = "\n".join([
        "| measure | value | target |", "|---|---|---|",
        f"| nss frame features at {int(speed['width'])}x{int(speed['height'])}, frames/s per core | "
        f"{speed['frame_features_fps_per_core']:.1f} | >= 20 |",
        f"| nss frame + frame-difference features, frames/s per core | {speed['with_temporal_fps_per_core']:.1f} | |",
        f"| first extract, {len(videos)} videos of 3 s 540p | {first.seconds:.2f} s | |",
        f"| second extract (all cache hits) / first | {100 * rerun_share:.2f} % | <= 2 % |",
    ])
    write_results(args.out, "bench_extract", results, table)


if __name__ == "__main__":
    main()
