"""The unit of storage: what one extractor produced for one video.

Why a plain dataclass here: the store (``vqstack.features``) must not depend on the extractors
(``vqstack.extract``) nor on torch; extractors fill this record with numpy arrays and the store
persists it. Fusion reads it back without knowing which network made it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class VideoFeatures:
    """Features of one video from one extractor configuration.

    steps: per-step features ``[T, D]`` (a step is a frame, a chunk or a clip, as the view says).
    timestamps: ``[T]`` seconds of each step's first frame in the video.
    pooled: named pooled vectors (e.g. ``mean``, ``std``, ``p10``, ``score``), each 1-D.
    feature_names: optional names of the ``D`` step features (same order as the columns).
    video: facts about the source file (path, duration, fps, width, height, ...), stored as attributes.
    """

    steps: np.ndarray
    timestamps: np.ndarray
    pooled: dict[str, np.ndarray]
    feature_names: list[str] | None = None
    video: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.steps = np.asarray(self.steps)
        if self.steps.ndim != 2:
            raise ValueError(f"steps must be 2-D [T, D], got shape {self.steps.shape}")
        self.timestamps = np.asarray(self.timestamps, dtype=np.float64)
        if self.timestamps.shape != (self.steps.shape[0],):
            raise ValueError(
                f"timestamps must have shape ({self.steps.shape[0]},), got {self.timestamps.shape}"
            )
        self.pooled = {k: np.atleast_1d(np.asarray(v)) for k, v in self.pooled.items()}
        if self.feature_names is not None and len(self.feature_names) != self.steps.shape[1]:
            raise ValueError(
                f"{len(self.feature_names)} feature names for {self.steps.shape[1]} columns"
            )
