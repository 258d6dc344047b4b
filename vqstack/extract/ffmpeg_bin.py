"""Where the ffmpeg binary comes from.

Why: a fresh machine has no system ffmpeg, but the PyPI package imageio-ffmpeg ships a static
build (with libvmaf). A user can point at another binary with ``--ffmpeg`` or ``VQSTACK_FFMPEG``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from vqstack.errors import ConfigError

ENV_VAR = "VQSTACK_FFMPEG"


def ffmpeg_exe(override: str | Path | None = None) -> str:
    """Path of the ffmpeg binary: ``override``, else ``$VQSTACK_FFMPEG``, else imageio-ffmpeg's."""
    chosen = override or os.environ.get(ENV_VAR)
    if chosen:
        found = shutil.which(str(chosen))
        if found is None:
            source = "--ffmpeg" if override else ENV_VAR
            raise ConfigError(f"{chosen}: ffmpeg binary given by {source} not found or not executable")
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()
