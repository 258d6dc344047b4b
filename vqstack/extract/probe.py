"""Probe a media file: what a sampler needs to know before decoding a single frame.

Why PyAV and not ffprobe: imageio-ffmpeg ships no ffprobe, and PyAV reads the display matrix
(rotation) and stream facts without spawning a process. Every failure becomes an
:class:`~vqstack.errors.InputError` with a reason a person can act on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from vqstack.errors import InputError
from vqstack.extract.media import is_image


@dataclass(frozen=True)
class VideoInfo:
    """Facts about one video (or image, as a one-frame video).

    ``width``/``height`` are the displayed size, after rotation; ``coded_width``/``coded_height``
    are the size as stored. ``num_frames`` is the container's count, or an estimate from duration
    and fps when the container has none (``frames_exact`` tells which).
    """

    path: str
    duration: float
    fps: float
    num_frames: int
    width: int
    height: int
    coded_width: int
    coded_height: int
    rotation: int
    pix_fmt: str
    codec: str
    is_image: bool = False
    frames_exact: bool = True
    file_size: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _normalise_rotation(angle: float | int | None) -> int:
    if angle is None:
        return 0
    value = round(float(angle)) % 360
    return value if value in (0, 90, 180, 270) else 0


def _check_file(path: Path) -> int:
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a folder, not a media file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(path, "empty file (0 bytes)")
    return size


def _probe_image(path: Path, size: int) -> VideoInfo:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            width, height = img.size
            mode = img.mode
            fmt = (img.format or path.suffix.lstrip(".")).lower()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputError(path, f"not a readable image ({exc.__class__.__name__}: {exc})") from exc
    return VideoInfo(
        path=str(path), duration=0.0, fps=1.0, num_frames=1, width=width, height=height,
        coded_width=width, coded_height=height, rotation=0, pix_fmt=mode.lower(), codec=fmt,
        is_image=True, frames_exact=True, file_size=size,
    )


def _looks_like_mp4(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(12)
    return head[4:8] in (b"ftyp", b"mdat", b"moov", b"free", b"wide")


def _av_error_reason(path: Path, exc: Exception) -> str:
    text = str(exc)
    if "moov atom not found" in text or _looks_like_mp4(path):
        return "truncated or corrupt MP4/MOV file (its index, the moov atom, is missing or unreadable)"
    if "Invalid data found" in text:
        return "not a video: the data is not in any container format ffmpeg knows"
    return f"cannot open ({exc.__class__.__name__}: {text})"


def probe(path: str | Path) -> VideoInfo:
    """Probe ``path``; raise :class:`InputError` naming the file and the reason if it is unusable."""
    path = Path(path)
    size = _check_file(path)
    if is_image(path):
        return _probe_image(path, size)
    import av

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(path, _av_error_reason(path, exc)) from exc
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams})
            detail = f" (it has {', '.join(kinds)} only)" if kinds else ""
            raise InputError(path, f"no video stream{detail}")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width <= 0 or height <= 0:
            raise InputError(path, "video stream has no frame size (corrupt header)")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * Fraction(stream.time_base))
        if duration <= 0 and container.duration is not None:
            duration = container.duration / 1_000_000
        frames = int(stream.frames or 0)
        exact = frames > 0
        if not exact:
            frames = max(1, round(duration * fps)) if fps > 0 else 0
        if fps <= 0 and duration > 0 and frames > 0:
            fps = frames / duration
        if duration <= 0 and fps > 0 and frames > 0:
            duration = frames / fps
        rotation = 0
        try:
            first = next(container.decode(stream))
            rotation = _normalise_rotation(getattr(first, "rotation", 0))
        except StopIteration as exc:
            raise InputError(path, "no decodable video frame (truncated or corrupt stream)") from exc
        except av.error.FFmpegError as exc:
            raise InputError(path, f"first frame cannot be decoded ({exc})") from exc
        if fps <= 0 or not math.isfinite(fps):
            raise InputError(path, "video stream has no frame rate")
        pix_fmt = ctx.pix_fmt or getattr(first.format, "name", "unknown")
        codec = ctx.name or "unknown"
    shown_w, shown_h = (height, width) if rotation in (90, 270) else (width, height)
    return VideoInfo(
        path=str(path), duration=float(duration), fps=float(fps), num_frames=int(frames),
        width=shown_w, height=shown_h, coded_width=width, coded_height=height, rotation=rotation,
        pix_fmt=str(pix_fmt), codec=str(codec), is_image=False, frames_exact=exact, file_size=size,
    )
