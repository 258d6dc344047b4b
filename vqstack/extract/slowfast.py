"""``slowfast``: SlowFast R50 (Kinetics-400) motion features per 1-second chunk, as SimpleVQA and KVQ use them.

The seeds' rule (SimpleVQA ``extracted_SlowFast_features_VQA.py``, KVQ ``SlowFast_features.py``): chunk *i*
is the 32 consecutive frames starting at second *i*; a chunk running past the end repeats the last frame;
a video with fewer than ``min_chunks`` (8) whole seconds is padded by repeating its last chunk. Each frame
is resized to 224x224 (a plain resize, aspect ratio not kept: PIL bilinear in the seeds; here libswscale
resizes the decoded YUV frame while the reader decodes, by area averaging unless ``resize: bilinear``, see
``_ResizedView``), scaled to [0, 1] and normalised with mean 0.45 / std 0.225. The fast pathway sees all
32 frames, the slow pathway the 8 frames ``torch.linspace(0, 31, 8).long()`` = 0, 4, 8, 13, 17, 22, 26, 31
(not every 4th frame: the seeds' ``pack_pathway_output``, reproduced exactly).
The feature is what the seeds read before the classification head: the slow (2048 channels) and fast (256)
pathway outputs of the last stage, each averaged over time and space, concatenated: 2304-d per chunk.

Why streaming: the seeds decode and resize the whole video into one tensor before chunking (memory grows
with duration). Here frames arrive in increasing order, only resized frames still needed by a chunk not
yet computed are kept, and each chunk runs as soon as its last frame is in (``batch_size`` chunks per
forward pass). Padded chunks are exact copies of the last one, so they are computed once and repeated.
"""

from __future__ import annotations

import importlib.metadata
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from vqstack.errors import InputError, WeightsError
from vqstack.extract.base import Extractor, FrameConsumer, FrameView, WeightsSpec
from vqstack.extract.pooling import pool_steps
from vqstack.extract.probe import VideoInfo
from vqstack.extract.sampling import chunk_indices
from vqstack.extract.torch_utils import (
    autocast,
    fold_batch_norms,
    load_checkpoint,
    load_state_strict,
    resolve_device,
    torch_versions,
)
from vqstack.features.records import VideoFeatures

CHUNK_LEN = 32
SLOW_DIM = 2048
FAST_DIM = 256
MEAN = 0.45
STD = 0.225
SEED = 0

SLOWFAST_R50_WEIGHTS = WeightsSpec(
    file_name="SLOWFAST_8x8_R50.pyth",
    sha256=None,  # the pytorchvideo model zoo publishes no digest; the file's digest is recorded in the store
    url="https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/SLOWFAST_8x8_R50.pyth",
    meta={
        "architecture": "pytorchvideo.models.hub.slowfast_r50 (SlowFast 8x8, ResNet-50, alpha 4, beta 1/8)",
        "dataset": "Kinetics-400",
        "format": "torch.save dict; weights under 'model_state' in pytorchvideo's own key layout",
        "num_params": 34_566_488,
        "top1_kinetics400": 76.4,
        "licence": "Apache-2.0 (pytorchvideo)",
        "paper": "Feichtenhofer et al., SlowFast Networks for Video Recognition, ICCV 2019",
        "used_by": "SimpleVQA (Sun et al., ACM MM 2022), KVQ challenge baseline (NTIRE 2024)",
    },
)


@dataclass(frozen=True)
class SlowFastConfig:
    """How chunks are formed and fed to SlowFast.

    ``size``: frames are resized to ``size`` x ``size`` (224 in SimpleVQA's published runs; its script's own
    default is 112); any size >= 32 works because the pathways are averaged globally.
    ``min_chunks``: pad to at least this many chunks (8 for KoNViD-1k/LSVQ/KVQ, 20 for YouTube-UGC in SimpleVQA).
    ``chunk_fps``: ``exact`` starts chunk *i* at frame ``round(i * fps)`` (our sampler); ``rounded`` uses the
    seeds' integer frame rate, chunk *i* at ``i * round(fps)`` with ``num_frames // round(fps)`` chunks, which
    reproduces SimpleVQA/KVQ frame for frame on non-integer rates (29.97, 23.976).
    ``precision``: ``auto`` = bf16/fp16 autocast on CUDA, fp32 on CPU; others force it (e.g. CPU bf16).
    ``resize``: libswscale's filter for the shrink, from the decoded YUV frame. ``area`` (area averaging,
    antialiased) costs 0.26x of a bare 1080p decode on this project's 2-core benchmark; ``bilinear``
    (antialiased, the seeds' PIL kernel) 0.46x. On real frames the two differ from PIL's bilinear on
    RGB by 2.3 and 1.5 grey levels on average (most of it chroma, which the seeds resample after
    upsampling it to full size).
    """

    size: int = 224
    min_chunks: int = 8
    chunk_fps: Literal["exact", "rounded"] = "exact"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    resize: Literal["area", "bilinear"] = "area"

    def __post_init__(self) -> None:
        if self.size < 32:
            raise ValueError(f"size must be >= 32 (five stride-2 stages), got {self.size}")
        if self.min_chunks < 1:
            raise ValueError(f"min_chunks must be >= 1, got {self.min_chunks}")


def slow_pathway_index(chunk_len: int = CHUNK_LEN) -> torch.Tensor:
    """The fast-pathway frames the slow pathway sees: the seeds' ``linspace(0, T-1, T//4).long()``."""
    return torch.linspace(0, chunk_len - 1, chunk_len // 4).long()


def feature_names() -> list[str]:
    return [f"slow_{i:04d}" for i in range(SLOW_DIM)] + [f"fast_{i:03d}" for i in range(FAST_DIM)]


def build_slowfast_r50() -> torch.nn.Module:
    """The full pytorchvideo ``slowfast_r50`` (head included, so the model-zoo file loads strictly); no download."""
    with warnings.catch_warnings():  # pytorchvideo scripts helpers with the deprecated torch.jit.script
        warnings.simplefilter("ignore", FutureWarning)
        from pytorchvideo.models.hub import slowfast_r50

        return slowfast_r50(pretrained=False)


def slowfast_state(path: str | Path) -> dict[str, Any]:
    """The state dict in a model-zoo file (``{"model_state": ...}``, as ``slowfast_r50(pretrained=True)`` reads it).

    A bare state dict is accepted too, and a ``module.`` prefix (DataParallel) is stripped.
    """
    obj = load_checkpoint(path)
    state = obj.get("model_state", obj)
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path}: 'model_state' is not a state dict ({type(state).__name__})")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


class SlowFastFeatures(torch.nn.Module):
    """SlowFast stages 1-5 (``blocks[0:5]``), then a global average of each pathway: ``[B, 2048 + 256]``.

    At 224x224 this equals the seeds' head pooling (``AvgPool3d((8, 7, 7))`` / ``((32, 7, 7))`` then
    ``AdaptiveAvgPool3d(1)``) up to float rounding; the global mean also works at other sizes.
    """

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.stages = torch.nn.Sequential(*list(net.blocks)[:5])

    def forward(self, slow: torch.Tensor, fast: torch.Tensor) -> torch.Tensor:
        slow_out, fast_out = self.stages([slow, fast])
        return torch.cat([slow_out.float().mean(dim=(2, 3, 4)), fast_out.float().mean(dim=(2, 3, 4))], dim=1)


class SlowFastOnDevice(torch.nn.Module):
    """uint8 chunks ``[B, 32, S, S, 3]`` -> features: normalisation, the two pathways' inputs and the
    network in one module, so the pixels travel to the device as uint8 (a quarter of the bytes)."""

    def __init__(self, features: SlowFastFeatures, slow_index: torch.Tensor) -> None:
        super().__init__()
        self.features = features
        self.register_buffer("mean", torch.tensor(MEAN), persistent=False)
        self.register_buffer("std", torch.tensor(STD), persistent=False)
        self.register_buffer("slow_index", slow_index, persistent=False)

    def forward(self, chunks: torch.Tensor) -> torch.Tensor:
        fast = (chunks.permute(0, 4, 1, 2, 3).float().div_(255.0) - self.mean) / self.std  # [B, 3, 32, S, S]
        slow = fast.index_select(2, self.slow_index).contiguous(memory_format=torch.channels_last_3d)
        return self.features(slow, fast.contiguous(memory_format=torch.channels_last_3d))


def chunk_layout(info: VideoInfo, config: SlowFastConfig) -> np.ndarray:
    """``[num_chunks, 32]`` frame indices of every chunk (padded chunks included)."""
    fps = info.fps if info.fps > 0 else 1.0
    if config.chunk_fps == "rounded":
        fps = float(max(1, round(fps)))  # the seeds' int(round(fps)); starts become i * fps exactly
    return chunk_indices(info.num_frames, fps, CHUNK_LEN, min_chunks=config.min_chunks)


class _ResizedView(FrameView):
    """Each frame resized to ``size`` x ``size`` by libswscale (``area`` or ``bilinear``, both antialiased
    when shrinking) straight from the decoded YUV frame: cheaper than converting the whole frame to
    RGB and resizing that, and done in the reader's thread while it decodes."""

    def __init__(self, size: int, resize: str = "area") -> None:
        self.size = size
        self.interpolation = resize.upper()

    def from_decoded(self, index: int, frame: Any) -> np.ndarray:
        return frame.to_ndarray(width=self.size, height=self.size, format="rgb24", interpolation=self.interpolation)

    def from_rgb(self, index: int, rgb: np.ndarray) -> np.ndarray:
        import av

        source = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        return source.to_ndarray(width=self.size, height=self.size, format="rgb24", interpolation=self.interpolation)


class _SlowFastConsumer(FrameConsumer):
    """Keeps resized frames of open chunks only; runs each chunk once its last frame has arrived."""

    def __init__(self, extractor: SlowFastExtractor, info: VideoInfo) -> None:
        self.ex = extractor
        self.info = info
        self.view = _ResizedView(extractor.config.size, extractor.config.resize)
        self.chunks = extractor.chunk_layout(info)
        unique, inverse = np.unique(self.chunks, axis=0, return_inverse=True)
        self.unique = unique  # sorted by start frame: rows are start + 0..31, clipped at the end
        self.inverse = np.asarray(inverse).reshape(-1)
        self.ends = unique.max(axis=1)
        self.needed = {int(i) for i in np.unique(unique)}
        self.frames: dict[int, np.ndarray] = {}
        self.next_chunk = 0
        self.ready: list[np.ndarray] = []
        self.outputs: list[np.ndarray] = []
        self.last_index = -1
        self.peak_frames = 0  # how many resized frames were held at once (tests check memory stays bounded)

    def consume(self, indices: np.ndarray, frames: Any) -> None:
        for i, small in zip(indices.tolist(), frames, strict=True):
            if i in self.needed and i not in self.frames:
                self.frames[i] = small
            self.last_index = max(self.last_index, i)  # close chunks frame by frame: at most one chunk held
            self.peak_frames = max(self.peak_frames, len(self.frames))
            self._close_chunks(self.last_index)

    def _close_chunks(self, upto: float) -> None:
        while self.next_chunk < len(self.unique) and self.ends[self.next_chunk] <= upto:
            self.ready.append(self._assemble(self.unique[self.next_chunk]))
            self.next_chunk += 1
            if len(self.ready) >= self.ex.chunk_batch:
                self._run()
        if self.next_chunk < len(self.unique):
            first_needed = int(self.unique[self.next_chunk, 0])
            for idx in [i for i in self.frames if i < first_needed]:
                del self.frames[idx]

    def _assemble(self, row: np.ndarray) -> np.ndarray:
        """``[32, S, S, 3]`` uint8; a frame that never arrived is replaced by the nearest earlier one."""
        out = []
        for idx in row.tolist():
            frame = self.frames.get(idx)
            if frame is None:
                if not self.frames:
                    raise InputError(self.info.path, f"slowfast: no frame of chunk {row[0]}..{row[-1]} was decoded")
                earlier = [i for i in self.frames if i <= idx]
                frame = self.frames[max(earlier) if earlier else min(self.frames)]
            out.append(frame)
        return np.stack(out)

    def _run(self) -> None:
        if self.ready:
            self.outputs.append(self.ex.embed_chunks(np.stack(self.ready)))
            self.ready = []

    def finish(self) -> VideoFeatures:
        self._close_chunks(float("inf"))
        self._run()
        self.frames.clear()
        per_unique = np.concatenate(self.outputs, axis=0)
        steps = per_unique[self.inverse].astype(np.float32)
        fps = self.info.fps if self.info.fps > 0 else 1.0
        timestamps = self.chunks[:, 0].astype(np.float64) / fps
        return VideoFeatures(steps=steps, timestamps=timestamps, pooled=pool_steps(steps),
                             feature_names=feature_names())


class SlowFastExtractor(Extractor):
    """SlowFast R50 8x8 Kinetics-400 features (slow 2048 + fast 256) of each 1-second, 32-frame chunk."""

    name = "slowfast"
    version = "3"  # 3: frames resized by libswscale from YUV while decoding (2: torch resize of RGB)
    config_cls = SlowFastConfig
    view_kind = "chunks"
    weights_spec = SLOWFAST_R50_WEIGHTS
    description = "SlowFast R50 (Kinetics-400) 2304-d per 1 s chunk of 32 frames (SimpleVQA/KVQ motion features)"

    def _setup(self) -> None:
        self.torch_device = resolve_device(self.device)
        self.chunk_batch = max(1, int(self.batch_size or 1))
        with torch.random.fork_rng(devices=[]):  # seeded random init, global RNG left as it was
            torch.manual_seed(SEED)
            net = build_slowfast_r50()
        if self.weights_path is not None:
            load_state_strict(net, slowfast_state(self.weights_path), self.weights_path)
        features = SlowFastFeatures(net).eval()
        fold_batch_norms(features)
        # channels-last 3-D: oneDNN's fast 3-D convolutions (measured 1.2x fp32, 3.4x with CPU bf16)
        features = features.to(memory_format=torch.channels_last_3d)
        self.model = SlowFastOnDevice(features, slow_pathway_index()).to(self.torch_device).eval()

    def chunk_layout(self, info: VideoInfo) -> np.ndarray:
        return chunk_layout(info, self.config)

    def frame_indices(self, info: VideoInfo) -> np.ndarray:
        return np.unique(self.chunk_layout(info))

    def begin(self, info: VideoInfo) -> FrameConsumer:
        return _SlowFastConsumer(self, info)

    def embed_chunks(self, chunks: np.ndarray) -> np.ndarray:
        """uint8 ``[B, 32, S, S, 3]`` resized chunks -> float32 ``[B, 2304]`` features."""
        with torch.inference_mode():
            x = torch.from_numpy(chunks).to(self.torch_device, non_blocking=True)
            with autocast(self.torch_device, self.config.precision):
                out = self.model(x)
        return out.float().cpu().numpy()

    def library_versions(self) -> dict[str, str]:
        return {**torch_versions(), "pytorchvideo": importlib.metadata.version("pytorchvideo")}
