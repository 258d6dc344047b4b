"""A test extractor whose worker process dies on files whose name contains 'crash'."""

from __future__ import annotations

import os

from vqstack.extract.base import FrameConsumer
from vqstack.extract.nss import NSSExtractor
from vqstack.extract.probe import VideoInfo


class CrashOnNameExtractor(NSSExtractor):
    name = "crashy"

    def begin(self, info: VideoInfo) -> FrameConsumer:
        if "crash" in os.path.basename(info.path):
            os._exit(3)  # a hard death, as a decoder segfault or the OOM killer would cause
        return super().begin(info)
