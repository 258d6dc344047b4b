"""Decode benchmark: our frame extraction and streaming reader against the ffmpeg decode floor.

Measures, on bigbuckbunny.mp4 (if ../shared/data is present) and a 1080p 10 s x264 clip made here:
(a) ``ffmpeg -threads 2 -i X -f null -`` with the same binary (the floor), (b) ``vqstack frames`` at
2 fps (PNG and JPEG), (c) our streaming read of every frame (VideoReader, auto backend), (d) decord
and PyAV read directly. Each as a ratio to the floor measured in the same run. Then the peak RSS of
the streaming read of a 4K clip at 10 s and 40 s. Writes JSON + a markdown table.

    python scripts/bench_decode.py --out bench_results
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench_common import SHARED, reference_1080p, run_child, timed, write_results

from vqstack.extract.ffmpeg_bin import ffmpeg_exe
from vqstack.extract.frames import FrameDumpConfig, dump_video
from vqstack.extract.reader import VideoReader

STREAM_CODE = """
import sys
from vqstack.extract.reader import VideoReader
n = 0
for chunk in VideoReader(sys.argv[1]).iter_chunks():
    n += len(chunk.indices)
print(n)
"""


def make_4k(out_dir: Path) -> dict[int, Path]:
    exe = ffmpeg_exe()
    ten = out_dir / "uhd_10s.mp4"
    subprocess.run([exe, "-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=3840x2160:rate=25",
                    "-t", "10", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(ten)], check=True)
    forty = out_dir / "uhd_40s.mp4"
    subprocess.run([exe, "-y", "-loglevel", "error", "-stream_loop", "3", "-i", str(ten), "-c", "copy", str(forty)],
                   check=True)
    return {10: ten, 40: forty}


def bench_file(path: Path, work: Path, repeat: int) -> dict[str, float]:
    exe = ffmpeg_exe()

    def floor() -> None:
        subprocess.run([exe, "-loglevel", "error", "-threads", "2", "-i", str(path), "-f", "null", "-"], check=True)

    def frames(fmt: str) -> None:
        dest = work / f"frames_{fmt}"
        shutil.rmtree(dest, ignore_errors=True)
        dump_video(path, dest, FrameDumpConfig(fps=2.0, image_format=fmt), exe)  # type: ignore[arg-type]

    def stream(backend: str) -> None:
        for _ in VideoReader(path, backend=backend).iter_chunks():  # type: ignore[arg-type]
            pass

    def decord_direct() -> None:
        import decord

        vr = decord.VideoReader(str(path), num_threads=0)
        for start in range(0, len(vr), 32):
            vr.get_batch(list(range(start, min(len(vr), start + 32)))).asnumpy()

    def pyav_direct() -> None:
        import av

        with av.open(str(path)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            for f in c.decode(s):
                f.to_ndarray(format="rgb24")

    out = {"floor_s": timed(floor, repeat)}
    for name, fn in [("frames_2fps_png", lambda: frames("png")), ("frames_2fps_jpg", lambda: frames("jpg")),
                     ("stream_auto", lambda: stream("auto")), ("stream_pyav", lambda: stream("pyav")),
                     ("decord_direct", decord_direct), ("pyav_direct", pyav_direct)]:
        out[f"{name}_s"] = timed(fn, repeat)
        out[f"{name}_ratio"] = out[f"{name}_s"] / out["floor_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench_results"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bbb = SHARED / "videos" / "bigbuckbunny.mp4"
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = {"1080p 10 s x264": reference_1080p(work / "clip1080.mp4")}
        if bbb.exists():
            files = {"bigbuckbunny 720p 5.3 s": bbb, **files}
        for label, path in files.items():
            results[label] = bench_file(path, work, args.repeat)
        rss = {}
        for seconds, path in make_4k(work).items():
            wall, peak = run_child(STREAM_CODE, str(path))
            rss[f"{seconds}s"] = {"seconds": wall, "peak_rss_mib": peak}
    lines = ["| input | floor (s) | 2 fps PNG | 2 fps JPEG | stream (auto) | stream (PyAV) "
             "| decord direct | PyAV direct |",
             "|---|---|---|---|---|---|---|---|"]
    for label, r in results.items():
        lines.append(f"| {label} | {r['floor_s']:.2f} | " + " | ".join(
            f"{r[k + '_ratio']:.2f}x" for k in ("frames_2fps_png", "frames_2fps_jpg", "stream_auto", "stream_pyav",
                                                 "decord_direct", "pyav_direct")) + " |")
    lines += ["", "| 4K streaming read (every frame) | wall (s) | peak RSS (MiB) |", "|---|---|---|"]
    lines += [f"| {k} | {v['seconds']:.1f} | {v['peak_rss_mib']:.0f} |" for k, v in rss.items()]
    write_results(args.out, "bench_decode", {"files": results, "uhd_streaming": rss}, "\n".join(lines))


if __name__ == "__main__":
    main()
