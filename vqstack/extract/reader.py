"""Streaming frame reader: PyAV first, decord when PyAV fails on a file (or on request).

Why streaming: a 4K 60 s video is 30 GB of RGB; frames come out in chunks bounded by
``max_chunk_bytes`` so memory stays flat whatever the duration. Why PyAV first: the seeds use decord,
and so did our first version, but on this project's benchmark (docs/benchmarks.md) decord 0.6 reads
every frame at 3.5-5x the ``ffmpeg -f null`` floor and a 2 fps sample at 2.5x, where PyAV (ffmpeg's
own decoders, threaded) is at about 1x; decord also converts 10-bit input wrongly. Both give
identical pixels on 8-bit 4:2:0 files (tested), so decord stays as the second backend, tried when
PyAV cannot open a file, and selectable with ``backend="decord"``. PyAV hands frames as coded, so we
apply the rotation; decord applies it itself. Frames are always uint8 RGB ``[N, H, W, 3]`` in
display orientation.

A chunk's ``frames`` array is only valid until the next chunk is requested: the PyAV path writes
into one reused buffer. Consumers copy what they keep.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from vqstack.errors import InputError
from vqstack.extract.probe import VideoInfo, probe

if TYPE_CHECKING:
    from vqstack.extract.base import FrameView

ViewRequests = Mapping[Hashable, tuple["FrameView", np.ndarray]]

log = logging.getLogger(__name__)

Backend = Literal["auto", "decord", "pyav"]
DEFAULT_CHUNK_BYTES = 48 * 1024 * 1024
VIEW_CHUNK = 64  # frames per chunk when only views (small outputs) are wanted


@dataclass
class FrameChunk:
    """Consecutive requested frames: ``indices[i]`` is the frame number of ``frames[i]``.

    ``frames`` rows hold RGB pixels only for frames that were asked for in RGB (``iter_chunks``'
    ``rgb``); ``views[key][i]`` is view ``key``'s output for ``indices[i]``, or None where that view
    did not ask for the frame.
    """

    indices: np.ndarray
    frames: np.ndarray
    views: dict[Hashable, list[Any]] = field(default_factory=dict)


def rotate_frames(frames: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display-matrix rotation (degrees counter-clockwise, as PyAV reports it).

    Works on one frame ``[H, W, 3]`` or a batch ``[N, H, W, 3]``; returns a contiguous array.
    """
    if rotation % 360 == 0:
        return frames
    axes = (0, 1) if frames.ndim == 3 else (1, 2)
    return np.ascontiguousarray(np.rot90(frames, k=(rotation // 90) % 4, axes=axes))


def _chunk_size(info: VideoInfo, max_chunk_bytes: int) -> int:
    frame_bytes = max(1, info.width * info.height * 3)
    return int(max(1, min(256, max_chunk_bytes // frame_bytes)))


class VideoReader:
    """Read selected frames of one video (or image) as a stream of :class:`FrameChunk`.

    ``decode_passes`` counts how many times the file was decoded from the start; the pipeline
    promises one pass per video for any number of extractors, and tests check it.
    """

    def __init__(
        self,
        path: str | Path,
        info: VideoInfo | None = None,
        *,
        backend: Backend = "auto",
        max_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        threads: int = 0,
        prefetch: int = 0,
    ) -> None:
        self.path = Path(path)
        self.info = info if info is not None else probe(self.path)
        if backend not in ("auto", "decord", "pyav"):
            raise ValueError(f"backend must be auto, decord or pyav, got {backend!r}")
        self.backend = backend
        self.max_chunk_bytes = max_chunk_bytes
        self.threads = threads
        if prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch}")
        self.prefetch = prefetch
        self.backend_used: str | None = None
        self.decode_passes = 0
        self.frames_decoded = 0

    def iter_chunks(self, indices: np.ndarray | list[int] | None = None, *, views: ViewRequests | None = None,
                    rgb: np.ndarray | list[int] | None = None) -> Iterator[FrameChunk]:
        """Yield the frames at ``indices`` (all frames if None), sorted and de-duplicated.

        ``views`` maps a key to a :class:`~vqstack.extract.base.FrameView` and the frame indices it
        wants (a subset of ``indices``): the view runs on those frames while they are decoded and its
        outputs come in ``chunk.views[key]``. ``rgb`` lists the frames to convert to RGB into
        ``chunk.frames`` (default: all of ``indices``); a frame only views want is never converted.

        The yielded ``frames`` may be a view of a reused buffer: copy what must outlive the chunk.
        With ``prefetch=k`` the decoding runs in a background thread up to ``k`` chunks ahead, so it
        overlaps the consumer's own work (a network on a GPU, or on the other CPU threads); a chunk
        is still valid only until the next one is requested.

        Indices past the last decodable frame are served with the last frame that decoded (a
        container may announce more frames than a truncated stream holds); a warning says so.
        """
        n = self.info.num_frames
        wanted = np.arange(n, dtype=np.int64) if indices is None else np.unique(np.asarray(indices, dtype=np.int64))
        if wanted.size and (wanted[0] < 0):
            raise ValueError(f"negative frame index {wanted[0]}")
        if wanted.size == 0:
            return
        plan = _Plan(wanted, views or {}, None if rgb is None else np.asarray(rgb, dtype=np.int64))
        self.decode_passes += 1
        if self.prefetch:
            yield from _prefetched(self._iter_wanted(wanted, plan), self.prefetch)
        else:
            yield from self._iter_wanted(wanted, plan)

    def _iter_wanted(self, wanted: np.ndarray, plan: _Plan) -> Iterator[FrameChunk]:
        if self.info.is_image:
            yield from plan.from_rgb_chunks(self._iter_image(wanted))
            return
        chunk = _chunk_size(self.info, self.max_chunk_bytes)
        if not plan.any_rgb and self.backend != "decord":
            # only views: no RGB chunk buffer bounds the chunk, and each chunk end waits for the
            # conversions in flight (the decoder idles meanwhile): fewer, longer chunks
            chunk = VIEW_CHUNK
        if self.backend == "decord":
            yield from plan.from_rgb_chunks(self._decord_or_error(wanted, chunk))
            return
        served = 0
        try:
            for part in self._iter_pyav(wanted, chunk, plan):
                served += len(part.indices)
                yield part
            self.backend_used = "pyav"
            return
        except InputError as exc:
            if self.backend == "pyav" or served:
                raise
            log.info("%s: PyAV failed (%s); trying decord", self.path, exc.reason)
            pyav_error = exc
        try:
            yield from plan.from_rgb_chunks(self._decord_or_error(wanted, chunk))
        except InputError:
            raise pyav_error from None

    def _decord_or_error(self, wanted: np.ndarray, chunk: int) -> Iterator[FrameChunk]:
        try:
            yield from self._iter_decord(wanted, chunk)
        except InputError:
            raise
        except Exception as exc:  # decord raises its own untyped errors on odd files
            raise InputError(self.path, f"decord cannot read it ({_short(exc)})") from exc
        self.backend_used = "decord"

    # -- backends -------------------------------------------------------------------------------

    def _iter_image(self, wanted: np.ndarray) -> Iterator[FrameChunk]:
        from PIL import Image, ImageOps

        try:
            with Image.open(self.path) as img:
                frame = np.asarray(ImageOps.exif_transpose(img).convert("RGB"), dtype=np.uint8)
        except OSError as exc:
            raise InputError(self.path, f"not a readable image ({exc})") from exc
        self.backend_used = "pillow"
        self.frames_decoded += 1
        frames = np.broadcast_to(frame, (len(wanted), *frame.shape))
        yield FrameChunk(indices=wanted, frames=frames)

    def _iter_decord(self, wanted: np.ndarray, chunk: int) -> Iterator[FrameChunk]:
        if self.info.pix_fmt not in ("yuv420p", "yuvj420p", "yuv422p", "yuv444p", "nv12"):
            # decord 0.6 converts high-bit-depth and exotic formats wrongly; let PyAV do them.
            raise RuntimeError(f"pixel format {self.info.pix_fmt} is left to PyAV")
        import decord

        vr = decord.VideoReader(str(self.path), ctx=decord.cpu(0), num_threads=self.threads)
        available = len(vr)
        if available < 1:
            raise RuntimeError("decord sees no frames")
        for start in range(0, len(wanted), chunk):
            part = wanted[start : start + chunk]
            clamped = np.minimum(part, available - 1)
            frames = vr.get_batch(clamped.tolist()).asnumpy()
            self.frames_decoded += len(np.unique(clamped))
            # decord applies the display matrix itself (checked against ffmpeg for 90/180/270).
            yield FrameChunk(indices=part, frames=frames)

    def _iter_pyav(self, wanted: np.ndarray, chunk: int, plan: _Plan) -> Iterator[FrameChunk]:
        """Decode sequentially; convert only the wanted (sorted, unique) frames, into one reused buffer.

        Reusing the chunk buffer matters: allocating a fresh multi-megabyte array per frame and
        keeping a chunk of them alive costs more (page faults, allocator growth) than the colour
        conversion itself, and made peak memory grow with the video's length.

        The colour conversion and the views run in one helper thread (PyAV releases the GIL in
        libswscale) while this thread goes on decoding: ffmpeg's frame-threaded decoder leaves about a
        quarter of two cores idle, and the conversion fills it (1080p, every frame wanted: 1.5x ->
        1.15x the time of a bare decode). At most one chunk of conversions is in flight; a chunk is
        yielded only once all its frames are converted.
        """
        import av

        if wanted.size == 0:
            return
        try:
            container = av.open(str(self.path), metadata_errors="ignore")
        except (av.error.FFmpegError, OSError) as exc:
            raise InputError(self.path, f"cannot open ({exc})") from exc
        rotation = self.info.rotation
        quarter_turn = (rotation // 90) % 2 == 1

        def convert(frame_no: int, frame: Any, out: np.ndarray, outputs: dict[Hashable, list[Any]], n: int) -> None:
            rgb = None
            if plan.wants_rgb(frame_no):
                rgb = out[...] = rotate_frames(frame.to_ndarray(format="rgb24"), rotation)
            for key, view in plan.views_of(frame_no):
                if rotation % 360 == 0:
                    outputs[key][n] = view.from_decoded(frame_no, frame)
                else:  # views build from coded-orientation frames; a rotated video goes through RGB
                    if rgb is None:
                        rgb = rotate_frames(frame.to_ndarray(format="rgb24"), rotation)
                    outputs[key][n] = view.from_rgb(frame_no, rgb)

        with container, ThreadPoolExecutor(1, thread_name_prefix="vqstack-rgb") as converter:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if self.threads:
                stream.codec_context.thread_count = self.threads
            pos = 0
            buf: np.ndarray | None = None
            # chunk buffers used in turn: one is enough when the consumer is done with a chunk before
            # the next is decoded; with prefetch the consumer holds one and the queue `prefetch` more
            ring: list[np.ndarray] = []
            turns = 0
            idx = np.empty(chunk, dtype=np.int64)
            n = 0
            outputs = plan.new_outputs(chunk)
            pending: list[Future[None]] = []
            yuv_bytes = max(1, self.info.width * self.info.height * 3 // 2)
            in_flight = int(max(2, min(chunk, self.max_chunk_bytes // yuv_bytes)))
            last_frame: Any = None  # the last wanted frame that decoded (serves indices past the end)

            def converted() -> None:
                for job in pending:
                    job.result()
                pending.clear()

            def next_buffer(shape: tuple[int, ...]) -> np.ndarray:
                nonlocal turns
                slot = turns % (self.prefetch + 2 if self.prefetch else 1)
                turns += 1
                shape = shape if plan.any_rgb else (1, 1, 3)  # views only: no frame is converted to RGB
                if slot == len(ring):
                    ring.append(np.empty((chunk, *shape), dtype=np.uint8))
                elif ring[slot].shape[1:] != shape:
                    ring[slot] = np.empty((chunk, *shape), dtype=np.uint8)
                return ring[slot]

            def emit(count: int) -> FrameChunk:
                nonlocal outputs
                assert buf is not None
                part = FrameChunk(idx[:count].copy(), buf[:count], plan.trim(outputs, count))
                outputs = plan.new_outputs(chunk)
                return part

            try:
                for frame_no, frame in enumerate(container.decode(stream)):
                    if pos >= len(wanted):
                        break
                    if frame_no != wanted[pos]:
                        continue
                    shape = (frame.width, frame.height, 3) if quarter_turn else (frame.height, frame.width, 3)
                    if n and buf is not None and plan.any_rgb and buf.shape[1:] != shape:  # size change mid-stream
                        converted()
                        yield emit(n)
                        n = 0
                    if n == 0:
                        buf = next_buffer(shape)
                    assert buf is not None
                    pending.append(converter.submit(convert, frame_no, frame, buf[n], outputs, n))
                    # a decoded frame stays alive until converted: bound those in flight (memory), so a
                    # converter slower than the decoder holds the decoder back instead of queueing frames
                    if len(pending) > in_flight and not pending[-in_flight - 1].done():
                        pending[-in_flight - 1].result()
                    last_frame = frame
                    self.frames_decoded += 1
                    idx[n] = frame_no
                    n += 1
                    pos += 1
                    if n == chunk:
                        converted()
                        yield emit(n)
                        n = 0
            except av.error.FFmpegError as exc:
                if last_frame is None:
                    raise InputError(self.path, f"no decodable frame ({exc})") from exc
                log.warning("%s: decoding stopped early (%s)", self.path, _short(exc))
            converted()
            if last_frame is None:
                raise InputError(self.path, "no decodable video frame")
            if pos < len(wanted):
                log.warning(
                    "%s: %d requested frames lie past the last decodable frame; repeating it",
                    self.path, len(wanted) - pos,
                )
                shape = rotate_frames(last_frame.to_ndarray(format="rgb24"), rotation).shape
                while pos < len(wanted):
                    if n == 0:
                        buf = next_buffer(shape)
                    assert buf is not None
                    convert(int(wanted[pos]), last_frame, buf[n], outputs, n)
                    idx[n] = wanted[pos]
                    n += 1
                    pos += 1
                    if n == chunk:
                        yield emit(n)
                        n = 0
            if n:
                yield emit(n)


class _Plan:
    """Which decoded frames become RGB and which feed which view (sets, for the per-frame checks)."""

    def __init__(self, wanted: np.ndarray, views: ViewRequests, rgb: np.ndarray | None) -> None:
        self.rgb = None if rgb is None else set(np.unique(rgb).tolist())
        self.views = {key: view for key, (view, _) in views.items()}
        self.by_frame: dict[int, list[tuple[Hashable, FrameView]]] = {}
        for key, (view, indices) in views.items():
            for i in np.unique(np.asarray(indices, dtype=np.int64)).tolist():
                self.by_frame.setdefault(i, []).append((key, view))

    @property
    def any_rgb(self) -> bool:
        return self.rgb is None or bool(self.rgb)

    def wants_rgb(self, index: int) -> bool:
        return self.rgb is None or index in self.rgb

    def views_of(self, index: int) -> list[tuple[Hashable, FrameView]]:
        return self.by_frame.get(index, [])

    def new_outputs(self, size: int) -> dict[Hashable, list[Any]]:
        return {key: [None] * size for key in self.views}

    @staticmethod
    def trim(outputs: dict[Hashable, list[Any]], count: int) -> dict[Hashable, list[Any]]:
        return {key: values[:count] for key, values in outputs.items()}

    def from_rgb_chunks(self, chunks: Iterator[FrameChunk]) -> Iterator[FrameChunk]:
        """Backends that hand RGB frames (images, decord): the views are built from those."""
        for part in chunks:
            outputs = self.new_outputs(len(part.indices))
            for n, i in enumerate(part.indices.tolist()):
                for key, view in self.views_of(i):
                    outputs[key][n] = view.from_rgb(i, part.frames[n])
            part.views = outputs
            yield part


def _prefetched(source: Iterator[FrameChunk], depth: int) -> Iterator[FrameChunk]:
    """Run ``source`` in a background thread, at most ``depth`` items ahead of the consumer.

    An exception in ``source`` is raised here, in the consumer's thread; a consumer that stops early
    (an error, ``break``) stops and joins the thread, which closes ``source`` (and its file).
    """
    import queue
    import threading

    items: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def offer(item: Any) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in source:
                if not offer(item):
                    return
            offer(done)
        except BaseException as exc:  # handed to the consumer, raised there
            offer(_Raised(exc))
        finally:
            source.close()  # type: ignore[attr-defined]

    worker = threading.Thread(target=produce, name="vqstack-decode", daemon=True)
    worker.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        worker.join()


@dataclass
class _Raised:
    exc: BaseException


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0][:200]}" if text else exc.__class__.__name__


def read_frames(path: str | Path, indices: np.ndarray | list[int], **kwargs: object) -> np.ndarray:
    """All frames at ``indices`` (in the order given, duplicates kept) as one array.

    Convenience for small samples and tests; pipelines should stream with :class:`VideoReader`.
    """
    reader = VideoReader(path, **kwargs)  # type: ignore[arg-type]
    order = np.asarray(indices, dtype=np.int64)
    got: dict[int, np.ndarray] = {}
    for part in reader.iter_chunks(order):
        for i, f in zip(part.indices.tolist(), part.frames, strict=True):
            got[i] = f.copy()
    return np.stack([got[int(i)] for i in order])
