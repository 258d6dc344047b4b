"""Deterministic frame-index samplers: which frames each view needs.

Why indices and not frames: the pipeline takes the union of every requested extractor's indices
and decodes the video once, streaming; each extractor then receives exactly its frames. All
samplers are pure functions of (frame count, fps, parameters): the same video always gives the
same indices (upstream FAST-VQA draws random offsets at test time; we never do at inference).
"""

from __future__ import annotations

import math

import numpy as np


def _check(num_frames: int) -> None:
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got num_frames={num_frames}")


def fps_indices(num_frames: int, fps: float, target_fps: float = 2.0) -> np.ndarray:
    """Frames at times ``k / target_fps`` (k = 0, 1, ...) within the video, nearest frame each.

    Like ffmpeg's ``fps`` filter (Zoom-VQA's ``-r 2``): one frame every half second at 2 fps, the
    first frame always included. A video shorter than one sampling period gives its first frame.
    If the video's own rate is below ``target_fps`` no frame is repeated.
    """
    _check(num_frames)
    if fps <= 0 or target_fps <= 0:
        raise ValueError(f"fps and target_fps must be positive, got {fps}, {target_fps}")
    duration = num_frames / fps
    count = max(1, math.ceil(duration * target_fps - 1e-9))
    times = np.arange(count, dtype=np.float64) / target_fps
    idx = np.minimum(np.floor(times * fps + 0.5).astype(np.int64), num_frames - 1)
    return np.unique(idx)


def segment_indices(num_frames: int, num_segments: int) -> np.ndarray:
    """One frame from the middle of each of ``num_segments`` equal segments (DOVER, COVER).

    With fewer frames than segments, frames repeat: the result always has ``num_segments``
    entries so that a model sees a fixed-length input.
    """
    _check(num_frames)
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    centres = (np.arange(num_segments, dtype=np.float64) + 0.5) * num_frames / num_segments
    return np.minimum(np.floor(centres).astype(np.int64), num_frames - 1)


def chunk_indices(
    num_frames: int, fps: float, chunk_len: int = 32, min_chunks: int = 8
) -> np.ndarray:
    """SimpleVQA/KVQ 1-second chunks: ``chunk_len`` consecutive frames starting at each second.

    Returns ``[num_chunks, chunk_len]``. A chunk running past the end repeats the last frame; a
    video with fewer than ``min_chunks`` whole seconds is padded by repeating its last chunk.
    """
    _check(num_frames)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    seconds = max(1, math.floor(num_frames / fps + 1e-9))
    starts = np.floor(np.arange(seconds) * fps + 0.5).astype(np.int64)
    chunks = np.minimum(starts[:, None] + np.arange(chunk_len)[None, :], num_frames - 1)
    if chunks.shape[0] < min_chunks:
        pad = np.repeat(chunks[-1:], min_chunks - chunks.shape[0], axis=0)
        chunks = np.concatenate([chunks, pad], axis=0)
    return chunks


def keyframe_indices(num_frames: int, fps: float, count: int | None = None) -> np.ndarray:
    """One frame at the start of each second (SimpleVQA spatial key frames).

    ``count`` fixes the length (8 for LSVQ/KoNViD, 20 for YouTube-UGC): extra seconds are dropped
    evenly, missing ones are padded by repeating the last key frame.
    """
    _check(num_frames)
    seconds = max(1, math.floor(num_frames / fps + 1e-9))
    idx = np.minimum(np.floor(np.arange(seconds) * fps + 0.5).astype(np.int64), num_frames - 1)
    if count is None:
        return idx
    if len(idx) >= count:
        pick = np.floor((np.arange(count) + 0.5) * len(idx) / count).astype(np.int64)
        return idx[pick]
    return np.concatenate([idx, np.repeat(idx[-1:], count - len(idx))])


def all_indices(num_frames: int) -> np.ndarray:
    """Every frame."""
    _check(num_frames)
    return np.arange(num_frames, dtype=np.int64)
