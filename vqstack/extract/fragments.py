"""``fragments``: FAST-VQA-B, FasterVQA, DOVER and DOVER-Mobile on deterministic fragment views.

Technical branch: grid mini-patch sampling (7x7 cells, 32x32 patches -> 224x224) with temporal
alignment, fed to Video Swin-T with gated relative position bias (FAST-VQA-B, FasterVQA, DOVER) or
ConvNeXt-V2-femto 3-D (DOVER-Mobile). Aesthetic branch (DOVER models): 32 frames, one per
segment, resized to 224x224, fed to inflated ConvNeXt-T (DOVER) or ConvNeXt-V2-femto (DOVER-Mobile).
Sampling rules: :mod:`vqstack.extract.fragment_sampling`; networks: :mod:`vqstack.models`;
official checkpoints load strictly through :mod:`vqstack.models.checkpoints`.

Output (:class:`VideoFeatures`):

* ``steps``: one row per technical clip, the backbone's feature map mean-pooled over (t, h, w):
  768-d (Swin) or 384-d (DOVER-Mobile). For DOVER models each row is followed by the aesthetic
  view's pooled features (one view per video, so the same vector on every row): 1536-d for DOVER,
  768-d for DOVER-Mobile. ``feature_names``: ``technical_<i>``, ``aesthetic_<i>``.
* ``timestamps``: the first frame of each clip, in seconds.
* ``pooled``: ``mean``, ``std``, ... of ``steps`` (:func:`pool_steps`), ``clip_scores`` (the
  technical score of each clip) and ``score``:
  FAST-VQA-B / FasterVQA ``[technical, technical_01]``, where ``technical`` is on the model's own
  scale (mean of the head's local quality map over clips and positions) and ``technical_01`` is
  upstream ``vqa.py``'s sigmoid rescaling ``1 / (1 + exp(-(s - mean) / std))``;
  DOVER / DOVER-Mobile ``[technical, aesthetic, overall]`` with upstream's fused
  ``overall = sigmoid(0.6104 (t - 0.1107) / 0.07355 + 0.3896 (a + 0.08285) / 0.03774)`` in [0, 1]
  (``evaluate_one_video.py``; its constants were fitted for DOVER and are applied to DOVER-Mobile
  too, as upstream does).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from vqstack.extract.base import Extractor, FrameConsumer, FrameView, WeightsSpec
from vqstack.extract.fragment_sampling import FragmentSampler, ResizeSampler, fragment_clip_indices
from vqstack.extract.pooling import pool_steps
from vqstack.extract.probe import VideoInfo
from vqstack.extract.sampling import segment_indices
from vqstack.extract.torch_utils import (
    autocast,
    batches,
    load_checkpoint,
    load_state_strict,
    resolve_device,
    torch_versions,
)
from vqstack.features.records import VideoFeatures

ModelName = Literal["fast-vqa-b", "fastervqa", "dover", "dover-mobile"]

# ImageNet mean / std on the 0-255 scale, as every upstream loader normalises.
_MEAN = (123.675, 116.28, 103.53)
_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class ModelSpec:
    """Fixed facts of one published model (its weights require them): sampling and score scales."""

    clip_len: int
    frame_interval: int
    t_frag: int
    aligned: int
    default_clips: int
    aesthetic: bool
    rescale: tuple[float, float] | None  # (mean, std) of upstream vqa.py's sigmoid rescaling


MODEL_SPECS: dict[str, ModelSpec] = {
    # options/fast/fast-b.yml (test: num_clips 4), vqa.py mean_stds["FAST-VQA"]
    "fast-vqa-b": ModelSpec(32, 2, 1, 32, 4, False, (-0.110198185, 0.04178565)),
    # options/fast/f3dvqa-b.yml: t_frag 8, aligned 8, 1 clip; vqa.py mean_stds["FasterVQA"]
    "fastervqa": ModelSpec(32, 2, 8, 8, 1, False, (0.14759505, 0.03613452)),
    # dover.yml / dover-mobile.yml: technical 3 clips x 32 frames, aligned 32; aesthetic 32 segments
    "dover": ModelSpec(32, 2, 1, 32, 3, True, None),
    "dover-mobile": ModelSpec(32, 2, 1, 32, 3, True, None),
}
AESTHETIC_SEGMENTS = 32

_FAST_URL = "https://github.com/VQAssessment/FAST-VQA-and-FasterVQA/releases/download/v2.0.0/"
_FAST_META = {"licence": "MIT (code); weights published with the code",
              "paper": "arXiv:2207.02595 (FAST-VQA, ECCV 2022)",
              "repo": "https://github.com/VQAssessment/FAST-VQA-and-FasterVQA"}
_DOVER_META = {"licence": "S-Lab License 1.0 (non-commercial)", "paper": "arXiv:2211.04894 (DOVER, ICCV 2023)",
               "repo": "https://github.com/VQAssessment/DOVER"}
WEIGHTS: dict[str, WeightsSpec] = {
    "fast-vqa-b": WeightsSpec("FAST_VQA_B_1_4.pth", None, _FAST_URL + "FAST_VQA_B_1_4.pth",
                              {**_FAST_META, "params": 28_127_901,
                               "format": "{'state_dict': fragments_backbone.*, vqa_head.*}",
                               "reported": {"KoNViD-1k": "SROCC 0.891 (fine-tuned)", "LSVQ_test": "SROCC 0.876"}}),
    "fastervqa": WeightsSpec("FAST_VQA_3D_1_1.pth", None, _FAST_URL + "FAST_VQA_3D_1_1.pth",
                             {**_FAST_META, "paper": "arXiv:2210.05357 (FasterVQA)", "params": 28_127_901,
                              "format": "{'state_dict': fragments_backbone.*, vqa_head.*}"}),
    "dover": WeightsSpec("DOVER.pth", None,
                         "https://github.com/QualityAssessment/DOVER/releases/download/v0.1.0/DOVER.pth",
                         {**_DOVER_META, "params": 56_218_302, "mirror": "https://huggingface.co/teowu/DOVER/resolve/main/DOVER.pth",
                          "format": "technical_backbone.*, aesthetic_backbone.*, technical_head.*, aesthetic_head.*",
                          "reported": {"KoNViD-1k": "PLCC 0.883", "LIVE-VQC": "PLCC 0.854"}}),
    "dover-mobile": WeightsSpec("DOVER-Mobile.pth", None,
                                "https://github.com/QualityAssessment/DOVER/releases/download/v0.5.0/DOVER-Mobile.pth",
                                {**_DOVER_META, "params": 9_904_546,
                                 "format": "as DOVER.pth, ConvNeXt-V2-femto backbones (+ unused head.*)",
                                 "reported": {"KoNViD-1k": "PLCC 0.853", "LIVE-VQC": "PLCC 0.835"}}),
}


@dataclass(frozen=True)
class FragmentsConfig:
    """``model``: which published model; ``num_clips``: technical clips (None = the model's test
    setting: 4 FAST-VQA-B, 1 FasterVQA, 3 DOVER / DOVER-Mobile); ``offsets``: patch placement
    (``seeded`` = fixed pseudo-random per aligned group, ``centre`` = cell centres; never random
    per run); ``seed``: the seed of ``seeded``; ``aesthetic_antialias``: antialias the aesthetic
    resize (upstream trained without); ``precision``: ``auto`` = fp32 on CPU, bf16/fp16 on CUDA."""

    model: ModelName = "fast-vqa-b"
    num_clips: int | None = None
    offsets: Literal["seeded", "centre"] = "seeded"
    seed: int = 0
    aesthetic_antialias: bool = False
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"

    def __post_init__(self) -> None:
        if self.model not in MODEL_SPECS:
            raise ValueError(f"model must be one of {', '.join(MODEL_SPECS)}, got {self.model!r}")
        if self.num_clips is None:  # resolved here so that the store key names the real setting
            object.__setattr__(self, "num_clips", MODEL_SPECS[self.model].default_clips)
        elif isinstance(self.num_clips, bool) or self.num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {self.num_clips}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


class FragmentsView(FrameView):
    """Per frame: its fragment images (cut from the YUV planes where it can) and its aesthetic frame."""

    def __init__(self, technical: FragmentSampler, aesthetic: ResizeSampler | None) -> None:
        self.technical, self.aesthetic = technical, aesthetic

    def _aesthetic(self, index: int, rgb: Callable[[], np.ndarray]) -> np.ndarray | None:
        return self.aesthetic.resize(rgb()) if self.aesthetic is not None and self.aesthetic.wants(index) else None

    def from_rgb(self, index: int, rgb: np.ndarray) -> tuple[dict[int, np.ndarray], np.ndarray | None]:
        return self.technical.cut(index, rgb), self._aesthetic(index, lambda: rgb)

    def from_decoded(self, index: int, frame: Any) -> tuple[dict[int, np.ndarray], np.ndarray | None]:
        return (self.technical.cut_decoded(index, frame),
                self._aesthetic(index, lambda: frame.to_ndarray(format="rgb24")))


class _FragmentsConsumer(FrameConsumer):
    def __init__(self, extractor: FragmentsExtractor, info: VideoInfo) -> None:
        cfg, spec = extractor.config, extractor.spec
        self.extractor = extractor
        self.info = info
        self.tech_indices = extractor.technical_indices(info)
        self.technical = FragmentSampler(self.tech_indices, aligned=spec.aligned, offsets=cfg.offsets, seed=cfg.seed)
        self.aesthetic = (ResizeSampler(extractor.aesthetic_indices(info), antialias=cfg.aesthetic_antialias)
                          if spec.aesthetic else None)
        self.view = FragmentsView(self.technical, self.aesthetic)

    def consume(self, indices: np.ndarray, frames: Any) -> None:
        for idx, (fragments, small) in zip(indices.tolist(), frames, strict=True):
            self.technical.place(idx, fragments)
            if self.aesthetic is not None and small is not None:
                self.aesthetic.place(idx, small)

    def finish(self) -> VideoFeatures:
        ex = self.extractor
        tech_feats, clip_scores = ex.run_technical(self.technical.clips())
        technical = float(np.mean(clip_scores))
        names = [f"technical_{i}" for i in range(tech_feats.shape[1])]
        steps = tech_feats
        if self.aesthetic is not None:
            aes_feat, aesthetic = ex.run_aesthetic(self.aesthetic.frames())
            steps = np.concatenate([tech_feats, np.repeat(aes_feat[None], len(tech_feats), axis=0)], axis=1)
            names += [f"aesthetic_{i}" for i in range(aes_feat.shape[0])]
            score = [technical, aesthetic, dover_fused_score(technical, aesthetic)]
        else:
            mean, std = ex.spec.rescale  # type: ignore[misc]
            score = [technical, _sigmoid((technical - mean) / std)]
        fps = self.info.fps if self.info.fps > 0 else 1.0
        pooled = pool_steps(steps)
        pooled["score"] = np.asarray(score, dtype=np.float32)
        pooled["clip_scores"] = clip_scores.astype(np.float32)
        return VideoFeatures(steps=steps.astype(np.float32), timestamps=self.tech_indices[:, 0] / fps,
                             pooled=pooled, feature_names=names)


def retain_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of returning it to the kernel (Linux only).

    Why: a forward pass allocates and frees the same few tens of MB hundreds of times; with
    glibc's defaults many of those blocks are ``mmap``-ed and ``munmap``-ed each time, so every
    reuse page-faults fresh zeroed pages. Serving blocks up to 32 MB (the largest threshold glibc
    accepts) from the heap and trimming the heap only past 1 GB of free space makes the model
    12-20% faster on CPU; the peak RSS is unchanged in kind (a process keeps its high-water mark),
    about +0.1 GB measured. Process-wide, idempotent, harmless elsewhere; returns whether it applied.
    """
    import ctypes
    import platform

    if platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))


class _Normalised(torch.nn.Module):
    """uint8 clips ``[B, T, H, W, 3]`` -> one branch of the quality model, normalising on the device
    (ImageNet mean/std on 0-255 pixels, as upstream) inside the module, so the network's call is all
    the device work of a batch."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1, 1), persistent=False)

    def forward(self, frames: torch.Tensor, branch: str) -> tuple[torch.Tensor, torch.Tensor]:
        src = frames.permute(0, 4, 1, 2, 3)
        x = torch.empty(src.shape, dtype=torch.float32, device=src.device).copy_(src)
        x.sub_(self.mean).div_(self.std)
        return getattr(self.model, branch)(x)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def dover_fused_score(technical: float, aesthetic: float) -> float:
    """DOVER's overall score in [0, 1] from the raw branch scores (``evaluate_one_video.py``)."""
    t = (technical - 0.1107) / 0.07355
    a = (aesthetic + 0.08285) / 0.03774
    return _sigmoid(0.6104 * t + 0.3896 * a)


class FragmentsExtractor(Extractor):
    name = "fragments"
    version = "2"  # 2: even patch origins (fragments cut from the YUV planes)
    config_cls = FragmentsConfig
    view_kind = "fragments"
    weights_spec: ClassVar[WeightsSpec | None] = WEIGHTS["fast-vqa-b"]
    description = "FAST-VQA-B / FasterVQA / DOVER / DOVER-Mobile on deterministic fragments (+ aesthetic view)"

    def _setup(self) -> None:
        self.spec = MODEL_SPECS[self.config.model]
        self.torch_device = resolve_device(self.device)
        if self.torch_device.type == "cpu":
            retain_freed_memory()
        self.model = self._build_model()
        self.on_device = _Normalised(self.model).to(self.torch_device)

    # -- weights ----------------------------------------------------------------------------------

    def selected_weights(self) -> WeightsSpec | None:
        return WEIGHTS[self.config.model]

    @classmethod
    def known_weights(cls) -> list[WeightsSpec]:
        return list(WEIGHTS.values())

    def _build_model(self) -> torch.nn.Module:
        from vqstack.models.checkpoints import official_to_ours
        from vqstack.models.vqa_heads import build_quality_model

        if self.weights_path is None:  # random init: deterministic, from a local generator
            model = build_quality_model(self.config.model, self.torch_device, random_seed=0)
        else:
            state = official_to_ours(load_checkpoint(self.weights_path), self.config.model, str(self.weights_path))
            model = build_quality_model(self.config.model, self.torch_device)
            load_state_strict(model, state, self.weights_path)
        return model.eval().requires_grad_(False)

    def library_versions(self) -> dict[str, str]:
        return torch_versions()

    # -- sampling ---------------------------------------------------------------------------------

    def technical_indices(self, info: VideoInfo) -> np.ndarray:
        """``[num_clips, clip_len]`` frame indices of the fragments view."""
        s = self.spec
        return fragment_clip_indices(info.num_frames, clip_len=s.clip_len, frame_interval=s.frame_interval,
                                     num_clips=int(self.config.num_clips), t_frag=s.t_frag)

    def aesthetic_indices(self, info: VideoInfo) -> np.ndarray:
        return segment_indices(info.num_frames, AESTHETIC_SEGMENTS)

    def frame_indices(self, info: VideoInfo) -> np.ndarray:
        parts = [self.technical_indices(info).reshape(-1)]
        if self.spec.aesthetic:
            parts.append(self.aesthetic_indices(info))
        return np.unique(np.concatenate(parts))

    def begin(self, info: VideoInfo) -> FrameConsumer:
        return _FragmentsConsumer(self, info)

    # -- model ------------------------------------------------------------------------------------

    def _to_device(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 ``[B, T, H, W, 3]`` on the device: the pixels travel as uint8 (a quarter of the bytes)."""
        return torch.from_numpy(frames).to(self.torch_device, non_blocking=True)

    def run_technical(self, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 fragment clips ``[N, T, 224, 224, 3]`` -> pooled features ``[N, C]`` and clip scores ``[N]``.

        ``batch_size`` clips go through the network together (default: all clips, at most 4), which
        shares the per-window attention biases between them; the blocks stream their activations,
        so four 32x224x224 clips peak at ~1.5 GB.
        """
        feats, scores = [], []
        with torch.inference_mode(), autocast(self.torch_device, self.config.precision):
            for sl in batches(len(clips), self.batch_size or min(len(clips), 4)):
                pooled, qmap = self.on_device(self._to_device(clips[sl]), "technical")
                feats.append(pooled.cpu().numpy())
                scores.append(qmap.mean(dim=(1, 2, 3)).cpu().numpy())
        return np.concatenate(feats).astype(np.float64), np.concatenate(scores).astype(np.float64)

    def run_aesthetic(self, frames: np.ndarray) -> tuple[np.ndarray, float]:
        """uint8 resized frames ``[T, 224, 224, 3]`` -> pooled features ``[C]`` and the aesthetic score."""
        with torch.inference_mode(), autocast(self.torch_device, self.config.precision):
            pooled, qmap = self.on_device(self._to_device(frames[None]), "aesthetic")
        return pooled[0].cpu().numpy().astype(np.float64), float(qmap.mean())
