"""Probe and streaming reader on every bad-input case (fixtures built with ffmpeg at test time)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vqstack.errors import InputError
from vqstack.extract.base import FrameView
from vqstack.extract.ffmpeg_bin import ffmpeg_exe
from vqstack.extract.probe import probe
from vqstack.extract.reader import VideoReader, read_frames

FAILING = {
    "zero_byte": "empty file",
    "truncated": "truncated",
    "text_as_mp4": "not a video",
    "audio_only": "no video stream",
    "missing": "not found",
}
READABLE = ["good", "one_frame", "short", "rotated", "vfr", "ten_bit", "tiny_2x2", "tiny_7x5", "uhd_4k",
            "spaces_non_ascii"]


@pytest.mark.parametrize("case", sorted(FAILING))
def test_probe_rejects_bad_file_with_reason(bad_inputs: dict[str, Path], case: str) -> None:
    path = bad_inputs[case]
    with pytest.raises(InputError) as err:
        probe(path)
    message = str(err.value)
    assert str(path) in message
    assert FAILING[case] in message
    assert "\n" not in message


@pytest.mark.parametrize("case", READABLE)
def test_readable_cases_stream_every_frame(bad_inputs: dict[str, Path], case: str) -> None:
    info = probe(bad_inputs[case])
    reader = VideoReader(bad_inputs[case], info)
    count = 0
    for chunk in reader.iter_chunks():
        assert chunk.frames.dtype == np.uint8
        assert chunk.frames.shape[1:] == (info.height, info.width, 3)
        count += len(chunk.indices)
    assert count == info.num_frames
    assert reader.decode_passes == 1


def test_rotation_is_applied_like_ffmpeg(bad_inputs: dict[str, Path]) -> None:
    path = bad_inputs["rotated"]
    info = probe(path)
    assert info.rotation == 90 and (info.width, info.height) == (64, 96)
    raw = subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    ref = np.frombuffer(raw, np.uint8).reshape(96, 64, 3)
    for backend in ("decord", "pyav"):
        frame = read_frames(path, [0], backend=backend)[0]
        assert frame.shape == ref.shape
        assert np.abs(frame.astype(int) - ref).mean() < 1.0, backend


def test_backends_agree_and_fallback_for_10bit(bad_inputs: dict[str, Path]) -> None:
    a = read_frames(bad_inputs["good"], [0, 10, 49], backend="decord")
    b = read_frames(bad_inputs["good"], [0, 10, 49], backend="pyav")
    assert np.abs(a.astype(int) - b).max() <= 1
    reader = VideoReader(bad_inputs["ten_bit"])
    frames = np.concatenate([c.frames for c in reader.iter_chunks([0, 5])])
    assert reader.backend_used == "pyav"
    assert frames.shape == (2, 48, 64, 3) and frames.std() > 10  # a real picture, not garbage


def test_decord_only_backend_reports_failure_clearly(bad_inputs: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="decord"):
        list(VideoReader(bad_inputs["ten_bit"], backend="decord").iter_chunks([0]))


def test_streaming_chunks_are_bounded(bad_inputs: dict[str, Path]) -> None:
    info = probe(bad_inputs["uhd_4k"])
    frame_bytes = info.width * info.height * 3
    reader = VideoReader(bad_inputs["uhd_4k"], info, max_chunk_bytes=3 * frame_bytes)
    sizes = [len(c.indices) for c in reader.iter_chunks()]
    assert max(sizes) <= 3 and sum(sizes) == info.num_frames


def test_sparse_indices_and_duplicates(bad_inputs: dict[str, Path]) -> None:
    frames = read_frames(bad_inputs["good"], [3, 3, 40, 0])
    assert frames.shape[0] == 4
    assert np.array_equal(frames[0], frames[1])
    assert not np.array_equal(frames[0], frames[2])


def test_image_is_one_frame_video(tmp_path: Path) -> None:
    from PIL import Image

    img = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "x.png")
    info = probe(tmp_path / "x.png")
    assert info.is_image and info.num_frames == 1 and (info.width, info.height) == (30, 20)
    assert np.array_equal(read_frames(tmp_path / "x.png", [0])[0], img)


def test_corrupt_image_is_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(InputError, match=r"broken\.jpg"):
        probe(bad)


@pytest.mark.parametrize("case", ["good", "rotated", "uhd_4k", "ten_bit"])
def test_prefetch_serves_the_same_frames_and_never_overwrites_a_held_chunk(bad_inputs: dict[str, Path],
                                                                          case: str) -> None:
    import time

    info = probe(bad_inputs[case])
    frame_bytes = info.width * info.height * 3
    wanted = list(range(0, info.num_frames, 2))
    reference = read_frames(bad_inputs[case], wanted)
    reader = VideoReader(bad_inputs[case], info, max_chunk_bytes=3 * frame_bytes, prefetch=2)
    served: list[int] = []
    for chunk in reader.iter_chunks(wanted):
        snapshot = chunk.frames.copy()
        time.sleep(0.02)  # the decoding thread runs ahead meanwhile, into other buffers
        assert np.array_equal(chunk.frames, snapshot)
        rows = [wanted.index(i) for i in chunk.indices.tolist()]
        assert np.array_equal(chunk.frames, reference[rows])
        served += chunk.indices.tolist()
    assert served == wanted and reader.decode_passes == 1


def test_prefetch_passes_errors_on_and_stops_its_thread(bad_inputs: dict[str, Path]) -> None:
    import threading

    from vqstack.extract.reader import _prefetched

    def failing() -> Iterator[Any]:
        yield 1
        raise InputError("x.mp4", "broken")

    got = _prefetched(failing(), 1)
    assert next(got) == 1
    with pytest.raises(InputError, match="broken"):
        next(got)
    info = probe(bad_inputs["good"])
    reader = VideoReader(bad_inputs["good"], info, max_chunk_bytes=info.width * info.height * 3, prefetch=1)
    for _ in reader.iter_chunks():
        break  # the consumer stops early: the decoding thread must end, not hang
    chunks = reader.iter_chunks()
    next(chunks)
    chunks.close()
    assert not [t for t in threading.enumerate() if t.name == "vqstack-decode"]


class _SpyView(FrameView):
    """Records which path built each frame's view; returns (index, path, display shape)."""

    def from_rgb(self, index: int, rgb: np.ndarray) -> tuple[int, str, tuple[int, ...]]:
        return index, "rgb", rgb.shape

    def from_decoded(self, index: int, frame: object) -> tuple[int, str, tuple[int, ...]]:
        return index, "decoded", (frame.height, frame.width, 3)  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", ["good", "rotated", "ten_bit"])
def test_views_get_their_frames_and_rgb_only_the_frames_asked(bad_inputs: dict[str, Path], case: str) -> None:
    path = bad_inputs[case]
    info = probe(path)
    wanted, for_view, for_rgb = [0, 2, 3, 5, 9], [2, 3, 9], [0, 3, 5]
    reference = read_frames(path, for_rgb)
    got_views: dict[int, tuple[int, str, tuple[int, ...]]] = {}
    got_rgb: dict[int, np.ndarray] = {}
    for chunk in VideoReader(path, info, max_chunk_bytes=1).iter_chunks(wanted, views={"spy": (_SpyView(), for_view)},
                                                                       rgb=for_rgb):
        for i, out, frame in zip(chunk.indices.tolist(), chunk.views["spy"], chunk.frames, strict=True):
            assert (out is None) == (i not in for_view)
            if out is not None:
                got_views[i] = out
            if i in for_rgb:
                got_rgb[i] = frame.copy()
    assert sorted(got_views) == for_view and all(out[0] == i for i, out in got_views.items())
    # display orientation either way; a rotated video's views are built from its rotated RGB frames
    assert {out[1] for out in got_views.values()} == {"rgb" if case == "rotated" else "decoded"}
    assert all(out[2] == (info.height, info.width, 3) for out in got_views.values())
    assert np.array_equal(np.stack([got_rgb[i] for i in for_rgb]), reference)


def test_views_only_reading_converts_no_frame_to_rgb(bad_inputs: dict[str, Path]) -> None:
    path = bad_inputs["good"]
    info = probe(path)
    chunks = list(VideoReader(path, info).iter_chunks(None, views={"spy": (_SpyView(), np.arange(5))}, rgb=[]))
    assert sum(len(c.indices) for c in chunks) == info.num_frames
    assert all(c.frames.shape[1:] == (1, 1, 3) for c in chunks)  # no RGB buffer at the frame size
    served = [out for c in chunks for out in c.views["spy"] if out is not None]
    assert [out[0] for out in served] == list(range(5))


def test_views_of_images_are_built_from_rgb(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.fromarray(np.full((20, 30, 3), 7, dtype=np.uint8)).save(path)
    chunk = next(VideoReader(path).iter_chunks([0], views={"spy": (_SpyView(), [0])}))
    assert chunk.views["spy"] == [(0, "rgb", (20, 30, 3))]
