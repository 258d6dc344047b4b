"""Build test media with ffmpeg at test time (no media is committed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from vqstack.extract.ffmpeg_bin import ffmpeg_exe


def ffmpeg(*args: str) -> None:
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-nostdin", *args]
    subprocess.run(cmd, check=True, capture_output=True)


def lavfi_video(out: Path, *, size: str = "64x48", rate: int = 25, seconds: float = 2.0,
                pix_fmt: str = "yuv420p", source: str = "testsrc2", extra: list[str] | None = None) -> Path:
    ffmpeg("-f", "lavfi", "-i", f"{source}=size={size}:rate={rate}", "-t", str(seconds),
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", pix_fmt, *(extra or []), str(out))
    return out


def make_bad_inputs(root: Path) -> dict[str, Path]:
    """Every bad-input case of the foundation issue, by name."""
    root.mkdir(parents=True, exist_ok=True)
    cases: dict[str, Path] = {}
    good = lavfi_video(root / "good.mp4", size="96x64", seconds=2)
    cases["good"] = good
    (root / "zero.mp4").write_bytes(b"")
    cases["zero_byte"] = root / "zero.mp4"
    data = good.read_bytes()
    # moov at the end (default for x264 mp4): cutting the tail loses the index
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    cases["truncated"] = root / "truncated.mp4"
    (root / "notes.mp4").write_text("this is a text file, not a video\n", encoding="utf-8")
    cases["text_as_mp4"] = root / "notes.mp4"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(root / "audio_only.mp4"))
    cases["audio_only"] = root / "audio_only.mp4"
    cases["one_frame"] = lavfi_video(root / "one_frame.mp4", seconds=0.04, extra=["-frames:v", "1"])
    cases["short"] = lavfi_video(root / "short.mp4", seconds=0.4)
    ffmpeg("-display_rotation", "90", "-i", str(good), "-c", "copy", str(root / "rotated.mp4"))
    cases["rotated"] = root / "rotated.mp4"
    # variable frame rate: frames at irregular times
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=30", "-t", "2",
           "-vf", "setpts='PTS+0.02*sin(N)/TB'", "-fps_mode", "vfr", "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(root / "vfr.mkv"))
    cases["vfr"] = root / "vfr.mkv"
    cases["ten_bit"] = lavfi_video(root / "tenbit.mp4", pix_fmt="yuv420p10le", size="64x48",
                                   extra=["-profile:v", "high10"])
    cases["tiny_2x2"] = lavfi_video(root / "tiny2x2.mp4", size="2x2", pix_fmt="yuv444p",
                                    extra=["-profile:v", "high444"])
    cases["tiny_7x5"] = lavfi_video(root / "tiny7x5.mp4", size="64x48", pix_fmt="yuv444p",
                                    extra=["-vf", "scale=7:5", "-profile:v", "high444"])
    cases["uhd_4k"] = lavfi_video(root / "uhd.mp4", size="3840x2160", seconds=0.5, source="testsrc2")
    spaced = root / "dir with spaces" / "vidéo été ü.mp4"
    spaced.parent.mkdir(exist_ok=True)
    cases["spaces_non_ascii"] = lavfi_video(spaced, seconds=1)
    cases["missing"] = root / "does_not_exist.mp4"
    return cases
