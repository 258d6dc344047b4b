"""Finding the media files a command should work on.

Why one function: every command (frames, extract, fuse predict) takes ``--videos DIR|LIST|FILE``
and must treat a single video and a folder through the same code path.
"""

from __future__ import annotations

from pathlib import Path

from vqstack.errors import InputError

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp", ".y4m"}
)
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS
LIST_EXTENSIONS = frozenset({".txt", ".lst", ".list", ".csv"})


def is_image(path: str | Path) -> bool:
    """True for still images, which vqstack treats as one-frame videos."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _read_list(list_file: Path) -> list[Path]:
    """A list file: one path per line (first CSV column), relative paths resolved from its folder."""
    paths: list[Path] = []
    for raw in list_file.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        first = line.split(",")[0].strip()
        if first.lower() in {"path", "video", "filename", "image", "name", "id"}:
            continue  # a CSV header
        candidate = Path(first)
        paths.append(candidate if candidate.is_absolute() else list_file.parent / candidate)
    return paths


def discover(source: str | Path, *, recursive: bool = True) -> list[Path]:
    """Media files named by ``source``: a folder (searched recursively), a list file, or one file.

    A single media file is returned even if it does not exist, so that the caller reports it as a
    failure of that file (missing) like any other bad input. A folder with no media is an error.
    """
    src = Path(source)
    if src.is_dir():
        pattern = "**/*" if recursive else "*"
        found = sorted(
            p for p in src.glob(pattern) if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS
        )
        if not found:
            raise InputError(src, "folder has no videos or images (looked for " +
                             ", ".join(sorted(MEDIA_EXTENSIONS)) + ")")
        return found
    if src.suffix.lower() in LIST_EXTENSIONS and src.is_file():
        listed = _read_list(src)
        if not listed:
            raise InputError(src, "list file names no videos")
        return listed
    if src.suffix.lower() in LIST_EXTENSIONS and not src.exists():
        raise InputError(src, "list file not found")
    return [src]


def relative_name(path: Path, root: Path | None) -> str:
    """A stable, human-readable id for ``path``: relative to ``root`` when inside it, else its name."""
    if root is not None and root.is_dir():
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return path.name
