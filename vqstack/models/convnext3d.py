"""ConvNeXt inflated to 3-D, as DOVER uses it: ConvNeXt-T (DOVER aesthetic) and ConvNeXt-V2-femto (DOVER-Mobile).

Facts from ``dover/models/conv_backbone.py`` (``ConvNeXt3D``, ``ConvNeXtV23D``): stem
``Conv3d(3, d0, (2, 4, 4), stride (2, 4, 4))`` + channels-first LayerNorm; downsampling
LayerNorm + ``Conv3d(d_i, d_i+1, (1, 2, 2), stride (1, 2, 2))`` (time is never reduced after the
stem); blocks with a depthwise ``(k, 7, 7)`` convolution where k follows the inflate strategy
``"131"`` (block j of a stage uses ``int("131"[j % 3])``), LayerNorm (eps 1e-6), Linear 4x, GELU,
[GRN in V2], Linear, [layer scale ``gamma`` in V1]; a final LayerNorm on the feature map (no
pooling: the VQA head reads every position). ConvNeXt-T: depths 3-3-9-3, dims 96-192-384-768;
V2-femto: depths 2-2-6-2, dims 48-96-192-384. ``ConvNeXtV23D`` also owns an ImageNet classifier
``head`` that its forward never uses; :mod:`vqstack.models.checkpoints` drops it.

One upstream quirk is kept on purpose: V2's GRN was written for ``[N, H, W, C]`` and DOVER applies
it to ``[N, T, H, W, C]``, so its L2 norm runs over dims (1, 2) = (T, H), not (H, W). The
published DOVER-Mobile weights were trained that way.

Why channels-last: the tensors stay ``[B, T, H, W, C]`` and convolutions see a
``channels_last_3d`` view of them; depthwise 3-D convolution is 3-7x faster on CPU in that layout
than in NCDHW, and LayerNorm / Linear need no permuted copies. Parameter names equal upstream's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LayerNorm(nn.Module):
    """LayerNorm over the last (channel) axis with upstream's parameter names (``weight``, ``bias``)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)


def _conv_cl(conv: nn.Conv3d, x: Tensor) -> Tensor:
    """Apply a Conv3d to channels-last ``[B, T, H, W, C]``; the result is channels-last too."""
    y = conv(x.permute(0, 4, 1, 2, 3))
    return y.permute(0, 2, 3, 4, 1).contiguous()  # a no-op when the conv kept channels_last_3d


class GRN(nn.Module):
    """ConvNeXt-V2 global response normalisation, with DOVER's (T, H) norm axes (see module doc)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: Tensor) -> Tensor:
        gx = torch.linalg.vector_norm(x, 2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        # gamma * (x * nx) + beta + x, as one pass over x: x * (gamma * nx + 1) + beta
        return torch.addcmul(self.beta, x, self.gamma * nx + 1.0)


class Block3D(nn.Module):
    """ConvNeXt (V1: layer scale ``gamma``) or V2 (``grn``) block on channels-last tensors."""

    def __init__(self, dim: int, inflate_len: int, *, v2: bool, layer_scale: float = 1e-6) -> None:
        super().__init__()
        self.dwconv = nn.Conv3d(dim, dim, kernel_size=(inflate_len, 7, 7), padding=(inflate_len // 2, 3, 3),
                                groups=dim)
        self.norm = LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.grn = GRN(4 * dim) if v2 else None
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = None if v2 else nn.Parameter(layer_scale * torch.ones(dim))

    def _dwconv(self, x: Tensor) -> Tensor:
        if self.dwconv.kernel_size[0] == 1:  # a per-frame 2-D depthwise conv is faster on CPU
            b, t, h, w, c = x.shape
            y = F.conv2d(x.reshape(b * t, h, w, c).permute(0, 3, 1, 2), self.dwconv.weight[:, :, 0],
                         self.dwconv.bias, padding=3, groups=c)
            return y.permute(0, 2, 3, 1).reshape(b, t, h, w, c)
        return _conv_cl(self.dwconv, x)

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(self._dwconv(x))
        y = F.gelu(self.pwconv1(y))
        if self.grn is not None:
            y = self.grn(y)
        y = self.pwconv2(y)
        if self.gamma is not None:
            return torch.addcmul(x, y, self.gamma)  # x + gamma * y in one pass
        return x + y


def _patchify(conv: nn.Conv3d, x: Tensor) -> Tensor:
    """A non-overlapping ``(1, k, k)`` Conv3d on channels-last ``x`` as one matrix product.

    PyTorch runs a strided 3-D convolution on ``channels_last_3d`` input through its slow
    im2col path; folding each k x k patch into channels (in the weight's ``(C, kh, kw)`` order)
    makes it a plain Linear. Sizes that do not divide fall back to the convolution.
    """
    kt, kh, kw = conv.kernel_size
    b, t, h, w, c = x.shape
    if kt != 1 or conv.stride != conv.kernel_size or h % kh or w % kw:
        return _conv_cl(conv, x)
    patches = x.view(b, t, h // kh, kh, w // kw, kw, c).permute(0, 1, 2, 4, 6, 3, 5)
    return F.linear(patches.reshape(b, t, h // kh, w // kw, c * kh * kw), conv.weight.flatten(1), conv.bias)


class _Downsample(nn.Module):
    """``Sequential``-like container keeping upstream's ``downsample_layers.i.0/1`` names."""

    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.add_module("0", first)
        self.add_module("1", second)

    def forward(self, x: Tensor) -> Tensor:
        first, second = self._modules["0"], self._modules["1"]
        x = _conv_cl(first, x) if isinstance(first, nn.Conv3d) else first(x)  # type: ignore[misc]
        return _patchify(second, x) if isinstance(second, nn.Conv3d) else second(x)  # type: ignore[misc]


class ConvNeXt3D(nn.Module):
    """Inflated ConvNeXt; ``forward`` takes ``[B, 3, T, H, W]`` and returns ``[B, T/2, H/32, W/32, C]``.

    ``classifier_head`` adds the unused ``head`` Linear of upstream's V2 class (off by default: the
    converter drops it instead of carrying 0.4 M dead parameters).
    """

    def __init__(self, depths: Sequence[int], dims: Sequence[int], *, v2: bool, inflate_strategy: str = "131",
                 classifier_head: bool = False) -> None:
        super().__init__()
        self.dims = tuple(dims)
        layers = [_Downsample(nn.Conv3d(3, dims[0], kernel_size=(2, 4, 4), stride=(2, 4, 4)), LayerNorm(dims[0]))]
        layers += [_Downsample(LayerNorm(dims[i]), nn.Conv3d(dims[i], dims[i + 1], kernel_size=(1, 2, 2),
                                                             stride=(1, 2, 2))) for i in range(3)]
        self.downsample_layers = nn.ModuleList(layers)
        self.stages = nn.ModuleList(
            nn.Sequential(*[Block3D(dims[i], int(inflate_strategy[j % len(inflate_strategy)]), v2=v2)
                            for j in range(depths[i])])
            for i in range(4)
        )
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        if classifier_head:
            self.head = nn.Linear(dims[-1], 1000)
        self.apply(_init_weights)

    @property
    def num_features(self) -> int:
        return self.dims[-1]

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 4, 1)  # channels-last view of the NCDHW input
        for down, stage in zip(self.downsample_layers, self.stages, strict=True):
            x = stage(down(x))
        return self.norm(x)


def convnext3d_tiny() -> ConvNeXt3D:
    """DOVER's aesthetic backbone (``convnext_3d_tiny``): ConvNeXt-T inflated, 3-3-9-3, 96..768."""
    return ConvNeXt3D((3, 3, 9, 3), (96, 192, 384, 768), v2=False)


def convnextv2_3d_femto() -> ConvNeXt3D:
    """DOVER-Mobile's backbone for both views (``convnextv2_3d_femto``): 2-2-6-2, 48..384."""
    return ConvNeXt3D((2, 2, 6, 2), (48, 96, 192, 384), v2=True)


def _init_weights(m: nn.Module) -> None:
    """Upstream's init (truncated normal 0.02, zero bias) for random-init runs."""
    if isinstance(m, nn.Conv3d | nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
