"""Deterministic fragment (GMS + TFA) and aesthetic-view sampling for the ``fragments`` extractor.

The rules, faithful to upstream (``get_spatial_fragments``, ``FragmentSampleFrames`` /
``UnifiedFrameSampler`` in FAST-VQA and DOVER) except where upstream draws random numbers:

* Temporal (:func:`fragment_clip_indices`). FAST-VQA / DOVER (``t_frag = 1``): the video is cut
  into ``num_clips`` equal segments and each clip is ``clip_len`` frames ``frame_interval`` apart
  inside its segment. FasterVQA (``t_frag = 8``): each clip is ``t_frag`` runs of
  ``clip_len / t_frag`` frames, one run in each of ``t_frag`` equal segments. Upstream places a
  run at a random offset within its segment, even at test time; we centre it (with several
  FasterVQA clips, clip c sits at fraction (c + 1/2) / num_clips of the free range). Indices past
  the end wrap around (``mod num_frames``), as upstream.
* Spatial (:func:`patch_origins`, :func:`cut_fragments`). A frame smaller than 224 (7 x 32) in
  either dimension is first upsampled (bilinear, aspect kept) so its short side is 224. The frame
  is divided into a 7x7 grid of cells ``H // 7`` x ``W // 7``; from cell (i, j) a 32x32 patch is
  cut at ``min(i * (H // 7), H - 32) + offset`` (same for columns) and the 49 patches are spliced
  into one 224x224 fragment image. Offsets lie in ``[0, H // 7 - 32)`` and are shared by each
  *aligned group* of ``aligned`` consecutive sampled frames (temporal fragment alignment, TFA: 32
  for FAST-VQA/DOVER, 8 for FasterVQA). Upstream draws them with ``torch.randint`` on every call
  (FAST-VQA issue 38: a video scores differently on each run). Ours are a pure function of
  ``(offsets, seed, group)``: ``"seeded"`` draws a fraction ``u`` in [0, 1) per (group, cell, axis)
  from ``numpy.random.default_rng([seed, group])`` and uses ``floor(u * range)``, which keeps
  upstream's distribution of positions across clips but fixes it; ``"centre"`` uses ``u = 1/2``.
  Origins are then rounded down to even numbers, so that in 4:2:0 video a patch covers whole 2x2
  chroma blocks and can be cut from the decoded YUV planes: 49 patches converted to RGB instead of
  a whole frame (:func:`cut_fragments_yuv`, bit-identical to cutting the converted frame).
  Upstream also computes the grid from the size *before* upsampling (so a small video's fragments
  all come from its top-left corner); we use the upsampled size.
* Aesthetic (DOVER): one frame from the middle of each of 32 equal segments
  (:func:`vqstack.extract.sampling.segment_indices`; upstream picks a random frame per segment),
  resized to 224x224 without keeping the aspect ratio, bilinear without antialiasing as
  torchvision's tensor ``Resize`` did by default before 0.17, when DOVER was trained
  (``antialias`` makes it an option).

Memory: each frame is reduced to its 224x224x3 fragment image (or resized view) the moment it
arrives, so a FAST-VQA video keeps 128 x 147 KiB = 19 MiB whatever its resolution or length.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from vqstack.extract.torch_utils import resize_uint8

OffsetMode = Literal["seeded", "centre"]


def fragment_clip_indices(num_frames: int, *, clip_len: int = 32, frame_interval: int = 2, num_clips: int = 4,
                          t_frag: int = 1) -> np.ndarray:
    """Frame indices ``[num_clips, clip_len]`` of the technical (fragments) view; see module doc."""
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got num_frames={num_frames}")
    if clip_len < 1 or frame_interval < 1 or num_clips < 1 or t_frag < 1 or clip_len % t_frag:
        raise ValueError(f"invalid temporal sampling clip_len={clip_len}, frame_interval={frame_interval}, "
                         f"num_clips={num_clips}, t_frag={t_frag} (clip_len must be a multiple of t_frag)")
    if t_frag == 1:  # FAST-VQA / DOVER: one clip per segment, centred in it
        seg = num_frames // num_clips
        free = seg - clip_len * frame_interval
        offset = free // 2 if free > 0 else 0
        starts = np.arange(num_clips, dtype=np.int64) * seg + offset
        idx = starts[:, None] + np.arange(clip_len, dtype=np.int64)[None, :] * frame_interval
        return np.mod(idx, num_frames)
    run = clip_len // t_frag  # FasterVQA: t_frag runs of `run` frames per clip, one per segment
    seg = num_frames // t_frag
    free = seg - run * frame_interval
    clips = []
    for c in range(num_clips):
        offset = math.floor((c + 0.5) * free / num_clips) if free > 0 else 0
        starts = np.arange(t_frag, dtype=np.int64) * seg + offset
        clips.append((starts[:, None] + np.arange(run, dtype=np.int64)[None, :] * frame_interval).reshape(-1))
    return np.mod(np.stack(clips), num_frames)


def offset_fractions(mode: OffsetMode, seed: int, num_groups: int, fragments: int = 7) -> np.ndarray:
    """Fractions ``[num_groups, fragments, fragments, 2]`` in [0, 1) placing each patch in its cell."""
    if mode == "centre":
        return np.full((num_groups, fragments, fragments, 2), 0.5)
    if mode != "seeded":
        raise ValueError(f"offsets must be 'seeded' or 'centre', got {mode!r}")
    return np.stack([np.random.default_rng([seed, g]).random((fragments, fragments, 2)) for g in range(num_groups)])


def upsampled_size(height: int, width: int, min_size: int = 224) -> tuple[int, int]:
    """Size after upstream's fallback upsampling (short side to ``min_size``, aspect kept), or unchanged."""
    ratio = min(height / min_size, width / min_size)
    if ratio >= 1:
        return height, width
    return max(min_size, math.floor(height / ratio + 1e-6)), max(min_size, math.floor(width / ratio + 1e-6))


def patch_origins(height: int, width: int, fractions: np.ndarray, *, fragments: int = 7,
                  fsize: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Top-left rows and columns ``[fragments, fragments]`` of each cell's patch in a frame of that size."""
    origins = []
    for axis, size in enumerate((height, width)):
        cell = size // fragments
        base = np.minimum(cell * np.arange(fragments), size - fsize)
        free = cell - fsize
        off = np.floor(fractions[..., axis] * free).astype(np.int64) if free > 0 else np.zeros((fragments, fragments),
                                                                                               np.int64)
        grid = base[:, None] if axis == 0 else base[None, :]
        origin = grid + off
        # even, for whole chroma blocks (module doc): one up where the cell and frame allow, else one down
        top = np.minimum(grid + max(free, 0), size - fsize)
        odd = origin % 2 == 1
        origin = np.where(odd & (origin + 1 <= top), origin + 1, np.where(odd, origin - 1, origin))
        origins.append(np.maximum(origin, 0))
    return origins[0], origins[1]


def cut_fragments(frame: np.ndarray, rows: np.ndarray, cols: np.ndarray, fsize: int = 32,
                  out: np.ndarray | None = None) -> np.ndarray:
    """Splice the patches at ``rows``/``cols`` (``[F, F]`` top-left corners) into one ``[F*fs, F*fs, 3]`` image.

    One block copy per patch straight into ``out`` (49 for 7 x 7): about 6x faster than one
    fancy-indexed gather of all patch pixels, and no intermediate array.
    """
    f = rows.shape[0]
    if out is None:
        out = np.empty((f * fsize, f * fsize, frame.shape[2]), dtype=frame.dtype)
    for i, (row_starts, col_starts) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
        for j, (r, c) in enumerate(zip(row_starts, col_starts, strict=True)):
            out[i * fsize:(i + 1) * fsize, j * fsize:(j + 1) * fsize] = frame[r:r + fsize, c:c + fsize]
    return out


def _plane(plane: Any) -> np.ndarray:
    """A decoded frame's plane as a ``[height, width]`` uint8 array, without copying."""
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width]


def cut_fragments_yuv(frame: Any, rows: np.ndarray, cols: np.ndarray, fsize: int = 32) -> np.ndarray:
    """:func:`cut_fragments` straight from a PyAV ``yuv420p`` frame: the patches' Y, U and V samples are
    spliced into a small 4:2:0 image, which libswscale converts to RGB.

    Bit-identical to converting the whole frame and then cutting (the unscaled 4:2:0 converter maps
    each 2x2 block through its own chroma sample, and even origins keep blocks whole; tested), at a
    fraction of the cost: a 1080p frame has 40x the pixels of a 7x7 fragment image.
    """
    import av

    f = rows.shape[0]
    side, half = f * fsize, fsize // 2
    y, u, v = (_plane(p) for p in frame.planes)
    packed = np.empty(side * side * 3 // 2, dtype=np.uint8)
    ys = packed[:side * side].reshape(side, side)
    us = packed[side * side:side * side * 5 // 4].reshape(side // 2, side // 2)
    vs = packed[side * side * 5 // 4:].reshape(side // 2, side // 2)
    for i, (row_starts, col_starts) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
        for j, (r, c) in enumerate(zip(row_starts, col_starts, strict=True)):
            ys[i * fsize:(i + 1) * fsize, j * fsize:(j + 1) * fsize] = y[r:r + fsize, c:c + fsize]
            rc, cc = r // 2, c // 2
            us[i * half:(i + 1) * half, j * half:(j + 1) * half] = u[rc:rc + half, cc:cc + half]
            vs[i * half:(i + 1) * half, j * half:(j + 1) * half] = v[rc:rc + half, cc:cc + half]
    mosaic = av.VideoFrame.from_ndarray(packed.reshape(side * 3 // 2, side), format="yuv420p")
    mosaic.colorspace = frame.colorspace
    mosaic.color_range = frame.color_range
    return mosaic.to_ndarray(format="rgb24")


def yuv_cuttable(frame: Any, fsize: int = 32, fragments: int = 7) -> bool:
    """Whether :func:`cut_fragments_yuv` applies: 8-bit 4:2:0 and no upsampling needed."""
    side = fragments * fsize
    return frame.format.name == "yuv420p" and frame.height >= side and frame.width >= side and fsize % 2 == 0


class FragmentSampler:
    """Per-video state of the technical view: which slots each frame fills, and the fragment buffer.

    ``indices`` is ``[num_clips, clip_len]``; slot ``k`` (row-major) belongs to aligned group
    ``k // aligned``. Frames must come in increasing index order (a frame may fill several slots).
    """

    def __init__(self, indices: np.ndarray, *, aligned: int, offsets: OffsetMode, seed: int,
                 fragments: int = 7, fsize: int = 32) -> None:
        self.indices = np.asarray(indices, dtype=np.int64)
        flat = self.indices.reshape(-1)
        if flat.size % aligned:
            raise ValueError(f"{flat.size} sampled frames do not split into aligned groups of {aligned}")
        self.aligned, self.fragments, self.fsize = aligned, fragments, fsize
        self.fractions = offset_fractions(offsets, seed, flat.size // aligned, fragments)
        self.slots: dict[int, list[int]] = {}
        for k, idx in enumerate(flat.tolist()):
            self.slots.setdefault(idx, []).append(k)
        side = fragments * fsize
        self.buffer = np.zeros((flat.size, side, side, 3), dtype=np.uint8)
        self.filled = np.zeros(flat.size, dtype=bool)
        self._origins: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = {}

    def origins(self, height: int, width: int, group: int) -> tuple[np.ndarray, np.ndarray]:
        key = (height, width, group)
        if key not in self._origins:
            self._origins[key] = patch_origins(height, width, self.fractions[group], fragments=self.fragments,
                                               fsize=self.fsize)
        return self._origins[key]

    def add(self, index: int, frame: np.ndarray) -> None:
        """Cut the fragment image(s) of frame ``index`` (uint8 ``[H, W, 3]``) if the view needs it."""
        self.place(index, self.cut(index, frame))

    def cut(self, index: int, frame: np.ndarray) -> dict[int, np.ndarray]:
        """The fragment images of frame ``index`` from RGB, per slot (none if the view skips it)."""
        slots = self.slots.get(int(index), [])
        if not slots:
            return {}
        side = self.fragments * self.fsize
        h, w = upsampled_size(frame.shape[0], frame.shape[1], side)
        if (h, w) != frame.shape[:2]:
            frame = resize_uint8(frame, (h, w))
        return {k: cut_fragments(frame, *self.origins(h, w, k // self.aligned), self.fsize) for k in slots}

    def cut_decoded(self, index: int, frame: Any) -> dict[int, np.ndarray]:
        """:meth:`cut` from a PyAV frame in coded orientation: from its YUV planes where it can."""
        slots = self.slots.get(int(index), [])
        if not slots:
            return {}
        if not yuv_cuttable(frame, self.fsize, self.fragments):
            return self.cut(index, frame.to_ndarray(format="rgb24"))
        return {k: cut_fragments_yuv(frame, *self.origins(frame.height, frame.width, k // self.aligned), self.fsize)
                for k in slots}

    def place(self, index: int, images: dict[int, np.ndarray]) -> None:
        """Store fragment images made by :meth:`cut` / :meth:`cut_decoded` in their slots."""
        for k, image in images.items():
            self.buffer[k] = image
            self.filled[k] = True

    def clips(self) -> np.ndarray:
        """``[num_clips, clip_len, 224, 224, 3]`` uint8 (slots never served repeat the last filled one)."""
        _fill_missing(self.buffer, self.filled)
        return self.buffer.reshape(*self.indices.shape, *self.buffer.shape[1:])


class ResizeSampler:
    """Per-video state of the aesthetic view: ``indices`` frames resized to ``size`` (uint8)."""

    def __init__(self, indices: np.ndarray, *, size: tuple[int, int] = (224, 224), antialias: bool = False) -> None:
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        self.size, self.antialias = size, antialias
        self.slots: dict[int, list[int]] = {}
        for k, idx in enumerate(self.indices.tolist()):
            self.slots.setdefault(idx, []).append(k)
        self.buffer = np.zeros((self.indices.size, *size, 3), dtype=np.uint8)
        self.filled = np.zeros(self.indices.size, dtype=bool)

    def wants(self, index: int) -> bool:
        return int(index) in self.slots

    def resize(self, frame: np.ndarray) -> np.ndarray:
        return resize_uint8(frame, self.size, antialias=self.antialias)

    def place(self, index: int, small: np.ndarray) -> None:
        for k in self.slots.get(int(index), []):
            self.buffer[k] = small
            self.filled[k] = True

    def add(self, index: int, frame: np.ndarray) -> None:
        slots = self.slots.get(int(index))
        if not slots:
            return
        self.place(index, self.resize(frame))

    def frames(self) -> np.ndarray:
        _fill_missing(self.buffer, self.filled)
        return self.buffer


def _fill_missing(buffer: np.ndarray, filled: np.ndarray) -> None:
    """Slots whose frame never arrived (a truncated stream) take the nearest earlier filled slot."""
    if filled.all():
        return
    if not filled.any():
        raise ValueError("no sampled frame could be decoded")
    last = int(np.flatnonzero(filled)[0])
    for k in range(buffer.shape[0]):
        if filled[k]:
            last = k
        else:
            buffer[k] = buffer[last]
