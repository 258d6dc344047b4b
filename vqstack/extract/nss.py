"""``nss``: handcrafted natural-scene-statistics features, no weights needed.

Per sampled frame (2 fps by default, every frame of a still image): BRISQUE MSCN statistics at two
scales plus sharpness, noise, colour, contrast and blockiness cues (:mod:`nss_features`). Per
sampled frame also the statistics of its difference with the *next* frame (frame-difference NSS,
motion energy): adjacent frames, not the next 2 fps sample, so the cue measures temporal
distortion rather than scene motion over half a second; among them the temporal noise left after
global-motion compensation and how much of the frame's sharpness that noise accounts for. Pooled
over time by mean, std, min, max and percentiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vqstack.extract import nss_features as nf
from vqstack.extract.base import Extractor, FrameConsumer
from vqstack.extract.pooling import pool_steps
from vqstack.extract.probe import VideoInfo
from vqstack.extract.sampling import fps_indices
from vqstack.features.records import VideoFeatures


@dataclass(frozen=True)
class NSSConfig:
    """``fps``: sampling rate; ``max_height``: larger frames are downscaled (area) before the
    statistics, which keeps 4K at the cost of 1080p (0 = always native resolution)."""

    fps: float = 2.0
    max_height: int = 1080

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.max_height < 0:
            raise ValueError(f"max_height must be >= 0, got {self.max_height}")


def _limit_height(frame: np.ndarray, max_height: int) -> np.ndarray:
    h, w = frame.shape[:2]
    if max_height <= 0 or h <= max_height:
        return frame
    factor = int(np.ceil(h / max_height))
    hh, ww = (h // factor) * factor, (w // factor) * factor
    view = frame[:hh, :ww].reshape(hh // factor, factor, ww // factor, factor, 3)
    return view.mean(axis=(1, 3)).round().astype(np.uint8)


class _NSSConsumer(FrameConsumer):
    def __init__(self, extractor: NSSExtractor, info: VideoInfo) -> None:
        self.cfg = extractor.config
        self.info = info
        self.samples = extractor.sample_indices(info)
        self.next_of = {int(i): int(min(i + 1, info.num_frames - 1)) for i in self.samples}
        self.pending: dict[int, np.ndarray] = {}  # sampled frame waiting for its successor
        self.frame_rows: dict[int, np.ndarray] = {}
        self.temporal_rows: dict[int, np.ndarray] = {}

    def consume(self, indices: np.ndarray, frames: np.ndarray) -> None:
        for idx, frame in zip(indices.tolist(), frames, strict=True):
            small = _limit_height(frame, self.cfg.max_height)
            for sample, waiting in list(self.pending.items()):
                if self.next_of[sample] == idx:
                    self.temporal_rows[sample] = nf.temporal_features(waiting, small)
                    del self.pending[sample]
            if idx in self.next_of:
                self.frame_rows[idx] = nf.frame_features(small)
                if self.next_of[idx] == idx:
                    self.temporal_rows[idx] = nf.temporal_features(small, small)
                else:
                    self.pending[idx] = small.copy()  # the reader reuses its frame buffer

    def finish(self) -> VideoFeatures:
        for sample, waiting in self.pending.items():  # successor past the decodable end
            self.temporal_rows[sample] = nf.temporal_features(waiting, waiting)
        order = sorted(self.frame_rows)
        steps = np.stack(
            [np.concatenate([self.frame_rows[i], self.temporal_rows[i]]) for i in order]
        ).astype(np.float32)
        fps = self.info.fps if self.info.fps > 0 else 1.0
        timestamps = np.asarray(order, dtype=np.float64) / fps
        return VideoFeatures(steps=steps, timestamps=timestamps, pooled=pool_steps(steps),
                             feature_names=list(nf.FRAME_FEATURE_NAMES) + list(nf.TEMPORAL_FEATURE_NAMES))


class NSSExtractor(Extractor):
    name = "nss"
    version = nf.FEATURES_VERSION
    config_cls = NSSConfig
    view_kind = "fps"
    description = "BRISQUE-style MSCN + sharpness/noise/colour/contrast/blockiness + frame-difference NSS"

    def sample_indices(self, info: VideoInfo) -> np.ndarray:
        if info.is_image:
            return np.zeros(1, dtype=np.int64)
        return fps_indices(info.num_frames, info.fps, self.config.fps)

    def frame_indices(self, info: VideoInfo) -> np.ndarray:
        samples = self.sample_indices(info)
        successors = np.minimum(samples + 1, info.num_frames - 1)
        return np.unique(np.concatenate([samples, successors]))

    def begin(self, info: VideoInfo) -> FrameConsumer:
        return _NSSConsumer(self, info)
