from __future__ import annotations

import numpy as np
import pytest

from vqstack.extract import sampling as s


def test_fps_indices_two_per_second_at_25fps() -> None:
    idx = s.fps_indices(250, 25.0, 2.0)  # 10 s
    assert len(idx) == 20
    assert idx[0] == 0
    assert np.all(np.diff(idx) == np.array([12, 13] * 10)[:19]) or np.all(np.abs(np.diff(idx) - 12.5) <= 0.5)
    assert idx[-1] <= 249


def test_fps_indices_short_and_single_frame() -> None:
    assert s.fps_indices(1, 25.0).tolist() == [0]
    assert s.fps_indices(10, 25.0).tolist() == [0]  # 0.4 s video: one sample
    assert s.fps_indices(13, 25.0).tolist() == [0, 12]  # 0.52 s: two half-second slots


def test_fps_indices_low_frame_rate_never_repeats() -> None:
    idx = s.fps_indices(10, 1.0, 2.0)
    assert len(idx) == len(np.unique(idx))


def test_segment_indices_centres_and_repeat() -> None:
    assert s.segment_indices(100, 4).tolist() == [12, 37, 62, 87]
    short = s.segment_indices(3, 8)
    assert len(short) == 8 and short.max() <= 2 and short.min() == 0


def test_chunk_indices_simplevqa_layout() -> None:
    chunks = s.chunk_indices(250, 25.0, chunk_len=32, min_chunks=8)  # 10 s
    assert chunks.shape == (10, 32)
    assert chunks[1, 0] == 25 and np.all(np.diff(chunks[1]) == 1)
    assert chunks[-1, -1] == 249  # runs past the end: last frame repeated
    padded = s.chunk_indices(75, 25.0)  # 3 s -> padded to 8 chunks by repeating the last
    assert padded.shape == (8, 32)
    assert np.array_equal(padded[3], padded[2]) and np.array_equal(padded[7], padded[2])


def test_keyframe_indices_count() -> None:
    assert s.keyframe_indices(250, 25.0).tolist() == [i * 25 for i in range(10)]
    assert len(s.keyframe_indices(250, 25.0, count=8)) == 8
    assert s.keyframe_indices(50, 25.0, count=4).tolist() == [0, 25, 25, 25]


def test_samplers_are_deterministic() -> None:
    a = s.chunk_indices(1000, 29.97)
    b = s.chunk_indices(1000, 29.97)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("bad", [0, -3])
def test_samplers_reject_empty_video(bad: int) -> None:
    with pytest.raises(ValueError):
        s.fps_indices(bad, 25.0)
