"""2 fps frame extraction, as Zoom-VQA does it (``ffmpeg -i v -r 2 dir/%06d.png``), made resumable.

Why ffmpeg and not our reader: this is the seeds' on-disk format for training the frame-IQA branch,
and ffmpeg's ``fps`` filter writes it at close to the decode floor. Each video goes to
``OUT/<relative path without extension>/000001.png ...``: frames are written into a ``.partial``
folder that is renamed when ffmpeg finished, with a ``_done.json`` record; a complete folder is
skipped on the next run, a ``.partial`` one is redone.

PNG is written with zlib level 0 by default: still lossless, and it keeps extraction at the decode
floor (level 6 costs about 4x the decode time on 1080p, for files about 3x smaller). JPEG is
offered for space, but it adds its own compression artefacts to frames meant for quality models.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vqstack.batch import BatchReport
from vqstack.errors import InputError
from vqstack.extract.ffmpeg_bin import ffmpeg_exe
from vqstack.extract.media import relative_name
from vqstack.extract.probe import VideoInfo, probe

ImageFormat = Literal["png", "jpg"]
DONE_FILE = "_done.json"


@dataclass(frozen=True)
class FrameDumpConfig:
    fps: float = 2.0
    image_format: ImageFormat = "png"
    png_level: int = 0
    jpeg_quality: int = 2
    threads: int = 2


def output_dir_for(video: Path, videos_root: Path | None, out_root: Path) -> Path:
    """Folder of one video's frames: its path relative to the input root, extension dropped."""
    rel = Path(relative_name(video, videos_root))
    return out_root / rel.with_suffix("")


def is_complete(folder: Path) -> bool:
    return (folder / DONE_FILE).is_file()


def build_command(video: Path, dest: Path, info: VideoInfo, cfg: FrameDumpConfig, exe: str) -> list[str]:
    """The ffmpeg command line (built with ffmpeg-python) for one video."""
    import ffmpeg

    pattern = str(dest / f"%06d.{cfg.image_format}")
    stream = ffmpeg.input(str(video), threads=cfg.threads)
    if not info.is_image and info.num_frames > 1:  # ffmpeg's fps filter can drop a lone frame
        stream = stream.filter("fps", fps=cfg.fps)
    if cfg.image_format == "png":
        out = stream.output(pattern, pix_fmt="rgb24", compression_level=cfg.png_level, pred="none",
                            start_number=1, **{"fps_mode": "passthrough"})
    else:
        out = stream.output(pattern, pix_fmt="yuvj444p", **{"q:v": cfg.jpeg_quality},
                            start_number=1, **{"fps_mode": "passthrough"})
    args = out.global_args("-hide_banner", "-nostdin", "-loglevel", "error", "-an", "-sn").get_args()
    return [exe, *args]


def dump_video(video: Path, dest: Path, cfg: FrameDumpConfig, exe: str) -> int:
    """Extract one video's frames into ``dest`` atomically; returns the number of frames written."""
    info = probe(video)  # clear errors (missing, empty, not a video, audio only, ...) before ffmpeg
    partial = dest.with_name(dest.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    cmd = build_command(video, partial, info, cfg, exe)
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    written = sorted(partial.glob(f"*.{cfg.image_format}"))
    if proc.returncode != 0 or not written:
        shutil.rmtree(partial, ignore_errors=True)
        detail = (proc.stderr.strip().splitlines() or ["no frame written"])[-1]
        raise InputError(video, f"ffmpeg could not extract frames ({detail})")
    record = {
        "source": str(video), "fps": cfg.fps, "format": cfg.image_format, "frames": len(written),
        "video": info.as_dict(),
    }
    (partial / DONE_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")
    if dest.exists():
        shutil.rmtree(dest)
    partial.rename(dest)
    return len(written)


def extract_frames(
    videos: list[Path],
    out_root: Path,
    *,
    videos_root: Path | None = None,
    cfg: FrameDumpConfig | None = None,
    workers: int | None = None,
    ffmpeg: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    engine: str = "local",
    address: str | None = None,
) -> BatchReport:
    """Dump frames of every video, ``workers`` ffmpeg processes at a time; never stops on a bad file.

    ``engine="ray"`` runs the ffmpeg processes on the workers of a Ray cluster at ``address``,
    which write the folders themselves (``out_root`` must be on a file system they all mount);
    ``workers`` None means 1 locally, every CPU slot on Ray.
    """
    from tqdm import tqdm

    from vqstack.extract.ray_engine import check_engine

    check_engine(engine, address)
    cfg = cfg or FrameDumpConfig()
    exe = ffmpeg_exe(ffmpeg)
    report = BatchReport()
    todo: list[tuple[Path, Path]] = []
    for video in videos:
        dest = output_dir_for(video, videos_root, out_root)
        if is_complete(dest) and not overwrite:
            report.skipped.append(str(video))
        else:
            todo.append((video, dest))
    if engine == "ray":
        from vqstack.extract.ray_engine import run_frames_ray

        with tqdm(total=len(todo), desc="frames", unit="video", disable=not progress) as bar:
            run_frames_ray(todo, cfg, report, bar, out_root=out_root, ffmpeg=ffmpeg, workers=workers,
                           address=address)
        return report
    with tqdm(total=len(todo), desc="frames", unit="video", disable=not progress) as bar, \
            ThreadPoolExecutor(max_workers=max(1, workers or 1)) as pool:
        futures = {pool.submit(dump_video, v, d, cfg, exe): v for v, d in todo}
        for fut in as_completed(futures):
            video = futures[fut]
            try:
                fut.result()
                report.done.append(str(video))
            except InputError as exc:
                report.fail(video, exc.reason)
            except OSError as exc:
                report.fail(video, f"{exc.__class__.__name__}: {exc}")
            bar.update(1)
    return report
