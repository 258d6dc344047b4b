"""Video Swin-T with gated relative position bias (GRPB), the FAST-VQA / DOVER technical backbone.

What GRPB is (FAST-VQA, Wu et al. 2022, read from ``fastvqa/models/swin_backbone.py``): a fragment
image splices 7x7 patches from unrelated places of a frame, so the usual relative position bias
would treat tokens of two different patches as neighbours. Stages 1-3 therefore carry a second
table, ``fragment_position_bias_table`` (same shape as ``relative_position_bias_table``), and the
bias between tokens i and j of a window is

    bias = rpb[i, j] * g + fpb[i, j] * (1 - g),   g = |f_i - f_j|_1

where ``f`` is the (row, column) index of the fragment a token belongs to, obtained by nearest
interpolation of a (1, Wh, Ww) grid over the padded (and cyclically shifted) token map. Note that
``g`` is the L1 distance between fragment indices, not a 0/1 gate: it is 0 inside one fragment (the
fragment table applies) and 1, 2, ... across fragments (the plain table scaled, minus the fragment
table scaled). We reproduce that exactly, since the published weights were trained with it.

Why torchvision's blocks: :class:`~torchvision.models.video.swin_transformer.PatchEmbed3d`,
:class:`~torchvision.models.swin_transformer.PatchMerging` and
:class:`~torchvision.models.swin_transformer.SwinTransformerBlock` match the official modules
(norm, padding, merge order ``x0..x3``, LayerNorm eps 1e-5, exact GELU), so they are reused as they
are or subclassed: :class:`GRPBWindowAttention3d` adds the fragment table to torchvision's
``ShiftedWindowAttention3d``, and :class:`GRPBSwinBlock` keeps torchvision's block parameters but
streams its forward: chunks of windows are gathered (shift and partition in one index), normalised,
projected to qkv, attended with their biases through ``scaled_dot_product_attention`` (a fused
kernel on CPU and GPU) and added back in place; the MLP runs over chunks of tokens. Neither the
qkv tensor, the ``[windows, heads, N, N]`` bias nor the 4x-wide MLP activations exist for a whole
clip, which is what lets four clips share one pass (and its biases) in ~1.5 GB. Parameter names
equal the official ones except torchvision's MLP (``mlp.0`` / ``mlp.3`` for ``mlp.fc1`` /
``mlp.fc2``), mapped by :mod:`vqstack.models.checkpoints`.

Input size: the extractor always feeds 32x224x224 clips, where the windows are (8, 7, 7) in every
stage (stage 4 is 7x7 tokens, so its window covers it and only time is shifted). Upstream also
rescales the window with the input size (``get_adaptive_window_size``); here windows are clipped to
the feature map as in torchvision's Swin, which is identical at 32x224x224.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.swin_transformer import PatchMerging, SwinTransformerBlock
from torchvision.models.video.swin_transformer import (
    PatchEmbed3d,
    ShiftedWindowAttention3d,
    _get_window_and_shift_size,
)

# Elements of one chunk of the per-window bias (64 MB in fp32): bounds attention memory.
_BIAS_CHUNK_ELEMENTS = 8 * 1024 * 1024
# Elements of one chunk of the MLP hidden activations (64 MB in fp32).
_MLP_CHUNK_ELEMENTS = 8 * 1024 * 1024


def _window_partition_ids(ids: Tensor, window: Sequence[int]) -> Tensor:
    """``[D, H, W, K]`` -> ``[nW, N, K]`` in torchvision's window order (d, h, w major)."""
    d, h, w, k = ids.shape
    v = ids.view(d // window[0], window[0], h // window[1], window[1], w // window[2], window[2], k)
    return v.permute(0, 2, 4, 1, 3, 5, 6).reshape(-1, window[0] * window[1] * window[2], k)


def relative_position_index(window: Sequence[int]) -> Tensor:
    """``[N, N]`` index into a ``(2Wd-1)(2Wh-1)(2Ww-1)`` table, as upstream and torchvision build it."""
    coords = torch.stack(torch.meshgrid(*[torch.arange(int(w)) for w in window], indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # N, N, 3
    rel = rel + torch.tensor([w - 1 for w in window])
    return rel[..., 0] * ((2 * window[1] - 1) * (2 * window[2] - 1)) + rel[..., 1] * (2 * window[2] - 1) + rel[..., 2]


def fragment_gate(padded: Sequence[int], window: Sequence[int], shift: Sequence[int],
                  device: torch.device | None = None) -> Tensor:
    """GRPB gate ``[nW, N, N]`` (uint8): L1 distance between the fragment indices of two tokens.

    Fragments are the cells of a ``(1, Wh, Ww)`` grid stretched over the padded token map by
    nearest interpolation (as upstream, which uses the window's own height and width as the grid),
    then rolled by the cyclic shift and partitioned into windows like the tokens.
    """
    dp, hp, wp = (int(s) for s in padded)
    axes = []
    for cells, size in ((1, dp), (window[1], hp), (window[2], wp)):
        grid = torch.arange(cells, dtype=torch.float32).view(1, 1, cells)
        axes.append(F.interpolate(grid, size=size, mode="nearest").view(size).long())
    ids = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # D, H, W, 3
    if any(s > 0 for s in shift):
        ids = torch.roll(ids, shifts=tuple(-int(s) for s in shift), dims=(0, 1, 2))
    win = _window_partition_ids(ids.to(torch.int16), window)  # nW, N, 3; int16 keeps [nW, N, N] temporaries small
    gate = torch.zeros(win.shape[0], win.shape[1], win.shape[1], dtype=torch.int16)
    for axis in range(3):
        gate += (win[:, None, :, axis] - win[:, :, None, axis]).abs_()
    return gate.to(torch.uint8).to(device) if device is not None else gate.to(torch.uint8)


def shift_mask(padded: Sequence[int], window: Sequence[int], shift: Sequence[int],
               device: torch.device | None = None) -> Tensor:
    """Shifted-window mask ``[nW, N, N]`` (bool, True = tokens from different regions: add -100).

    Same regions as upstream's ``compute_mask``: per axis ``[:-w]``, ``[-w:-s]``, ``[-s:]`` (with
    ``s = 0`` the last slice covers the whole axis, so that axis adds no split).
    """
    dp, hp, wp = (int(s) for s in padded)
    labels = torch.zeros(dp, hp, wp, 1, dtype=torch.int64)
    count = 0
    slices = [(slice(0, -w), slice(-w, -s), slice(-s, None)) for w, s in zip(window, shift, strict=True)]
    for sd in slices[0]:
        for sh in slices[1]:
            for sw in slices[2]:
                labels[sd, sh, sw] = count
                count += 1
    win = _window_partition_ids(labels, window)[..., 0]  # nW, N
    mask = win[:, None, :] != win[:, :, None]
    return mask.to(device) if device is not None else mask


class WindowGeometry:
    """Per-input-size constants shared by all blocks of a backbone: gates, masks, window orders.

    Why shared: they depend only on the padded token map, the window and the shift, not on a
    block's weights, so twelve blocks reuse a handful of tensors (~50 MB at 32x224x224).
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[Any, ...], Tensor] = {}

    def _get(self, kind: str, padded: tuple[int, ...], window: tuple[int, ...], shift: tuple[int, ...],
             device: torch.device) -> Tensor:
        key = (kind, padded, window, shift, str(device))
        if key not in self._cache:
            if kind == "gate":
                value = fragment_gate(padded, window, shift, device)
            elif kind == "mask":
                value = shift_mask(padded, window, shift, device)
            else:
                order = window_order(padded, window, shift)
                value = (order if kind == "order" else torch.argsort(order)).to(device)
            self._cache[key] = value
        return self._cache[key]

    def gate(self, padded: tuple[int, ...], window: tuple[int, ...], shift: tuple[int, ...],
             device: torch.device) -> Tensor:
        return self._get("gate", padded, window, shift, device)

    def mask(self, padded: tuple[int, ...], window: tuple[int, ...], shift: tuple[int, ...],
             device: torch.device) -> Tensor:
        return self._get("mask", padded, window, shift, device)

    def order(self, padded: tuple[int, ...], window: tuple[int, ...], shift: tuple[int, ...],
              device: torch.device, inverse: bool = False) -> Tensor:
        return self._get("inverse" if inverse else "order", padded, window, shift, device)


def window_order(padded: Sequence[int], window: Sequence[int], shift: Sequence[int]) -> Tensor:
    """``[L]`` source token of each position of the cyclically shifted, window-partitioned map.

    ``x.flatten(1, 3).index_select(1, order)`` equals torchvision's roll + window partition in a
    single gather (and ``argsort(order)`` undoes it), saving four full copies per block.
    """
    dp, hp, wp = (int(s) for s in padded)
    ids = torch.arange(dp * hp * wp).view(dp, hp, wp, 1)
    if any(s > 0 for s in shift):
        ids = torch.roll(ids, shifts=tuple(-int(s) for s in shift), dims=(0, 1, 2))
    return _window_partition_ids(ids, window).reshape(-1)


class GRPBWindowAttention3d(ShiftedWindowAttention3d):
    """torchvision's 3-D shifted-window attention plus the GRPB fragment table (stages 1-3).

    Parameters: ``qkv``, ``proj``, ``relative_position_bias_table``, the persistent buffer
    ``relative_position_index`` (all as torchvision and upstream) and, when ``frag_bias``,
    ``fragment_position_bias_table`` (zeros at init, as upstream).
    """

    def __init__(self, dim: int, window_size: list[int], shift_size: list[int], num_heads: int,
                 qkv_bias: bool = True, proj_bias: bool = True, attention_dropout: float = 0.0,
                 dropout: float = 0.0, *, frag_bias: bool = False, geometry: WindowGeometry | None = None) -> None:
        super().__init__(dim, list(window_size), list(shift_size), num_heads, qkv_bias=qkv_bias,
                         proj_bias=proj_bias, attention_dropout=attention_dropout, dropout=dropout)
        if frag_bias:
            self.fragment_position_bias_table = nn.Parameter(torch.zeros_like(self.relative_position_bias_table))
        self.has_frag_bias = frag_bias
        self.geometry = geometry if geometry is not None else WindowGeometry()

    def _table_bias(self, table: Tensor, window: list[int]) -> Tensor:
        """``[nH, N, N]`` bias of a (possibly clipped) window: the sub-window of the full index."""
        full = list(self.window_size)
        index = self.relative_position_index
        if window != full:
            d, h, w = window
            index = index.view(*full, *full)[:d, :h, :w, :d, :h, :w]
        n = window[0] * window[1] * window[2]
        return table[index.reshape(-1)].view(n, n, -1).permute(2, 0, 1).contiguous()

    def _biases(self, window: list[int]) -> tuple[Tensor, Tensor | None]:
        """(fragment bias, plain - fragment bias) of this block, or (plain bias, None) without GRPB.

        Recomputed per call (a gather of ``N * N * nH`` values): caching them for every block would
        hold ~140 MB for a ~3% gain.
        """
        rpb = self._table_bias(self.relative_position_bias_table, window)
        if not self.has_frag_bias:
            return rpb, None
        fpb = self._table_bias(self.fragment_position_bias_table, window)
        return fpb, rpb - fpb

    def forward(self, x: Tensor) -> Tensor:
        """torchvision's contract: ``[B, T, H, W, C]`` (already normalised) -> attention output."""
        out = torch.zeros_like(x)
        self.accumulate(x, nn.Identity(), out)
        return out

    def accumulate(self, x: Tensor, norm: nn.Module, out: Tensor) -> Tensor:
        """``out += W-MSA(norm(x))`` for ``[B, T, H, W, C]`` tensors, streamed over chunks of windows.

        Each chunk gathers its (shifted, window-ordered) tokens, normalises them, runs qkv, the
        biased attention and the projection, and adds the result back at the tokens' places
        (``index_add_``), so no full-size qkv, attention or partitioned copy exists at once. With
        padding (not at 32x224x224) the padded map is normalised first, as upstream pads after norm1.
        """
        b, t, h, w, c = x.shape
        window, shift = _get_window_and_shift_size(list(self.shift_size), [t, h, w], list(self.window_size))
        pads = [(window[i] - s % window[i]) % window[i] for i, s in enumerate((t, h, w))]
        padded, wkey, skey = (t + pads[0], h + pads[1], w + pads[2]), tuple(window), tuple(shift)
        if any(pads):
            src = F.pad(norm(x), (0, 0, 0, pads[2], 0, pads[1], 0, pads[0])).reshape(b, -1, c)
            dst = torch.zeros(src.shape, dtype=out.dtype, device=out.device)
            norm = nn.Identity()
        else:
            src, dst = x.reshape(b, -1, c), out.view(b, -1, c)
        n_win = (padded[0] // window[0]) * (padded[1] // window[1]) * (padded[2] // window[2])
        n = window[0] * window[1] * window[2]
        geo, heads = self.geometry, self.num_heads
        order = geo.order(padded, wkey, skey, x.device)
        base, diff = self._biases(window)  # fragment table + (plain - fragment) * gate, or plain only
        gate = geo.gate(padded, wkey, skey, x.device) if diff is not None else None
        mask = geo.mask(padded, wkey, skey, x.device) if any(s > 0 for s in shift) else None
        bias_dtype: torch.dtype | None = None
        chunk = max(1, _BIAS_CHUNK_ELEMENTS // (heads * n * n))
        for s in range(0, n_win, chunk):
            e = min(n_win, s + chunk)
            cw = e - s
            idx = order[s * n:e * n]
            tokens = norm(src.index_select(1, idx))  # B, cw * N, C
            qkv = F.linear(tokens, self.qkv.weight, self.qkv.bias).view(b * cw, n, 3, heads, c // heads)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B*cw, nH, N, hd], strided views
            if bias_dtype is None:  # built in the compute dtype (bf16 under autocast): half the traffic
                bias_dtype = q.dtype
                base = base.to(bias_dtype)
                diff = diff.to(bias_dtype) if diff is not None else None
            # upstream adds -100 between tokens of different shifted regions; their softmax weight
            # (e^-100 relative) vanishes in fp32 either way, so the bias there is simply replaced
            if gate is not None:
                bias = torch.addcmul(base, diff, gate[s:e, None].to(bias_dtype))  # type: ignore[arg-type]
                if mask is not None:
                    bias.masked_fill_(mask[s:e, None], -100.0)
            elif mask is not None:
                bias = base.expand(cw, heads, n, n).masked_fill(mask[s:e, None], -100.0)
            else:
                bias = base.unsqueeze(0)  # the same for every window: broadcast
            for i in range(b):
                lo, hi = i * cw, (i + 1) * cw
                o = F.scaled_dot_product_attention(q[lo:hi], k[lo:hi], v[lo:hi], attn_mask=bias)
                # the kernel's output is laid out [cw, N, nH, hd]: heads merge without a copy
                y = F.linear(o.transpose(1, 2).reshape(cw * n, c), self.proj.weight, self.proj.bias)
                dst[i].index_add_(0, idx, y.to(dst.dtype))
        if any(pads):
            out += dst.view(b, *padded, c)[:, :t, :h, :w]
        return out


class GRPBSwinBlock(SwinTransformerBlock):
    """torchvision's block (same parameters: ``norm1``, ``attn``, ``norm2``, ``mlp``), inference-only forward.

    ``x + attn(norm1(x))`` is accumulated window chunk by window chunk and ``x + mlp(norm2(x))``
    token chunk by token chunk, in place on one copy of ``x``: the 4x-wide MLP activations and the
    qkv tensor never exist for the whole clip (stochastic depth is the identity at inference).
    """

    def forward(self, x: Tensor) -> Tensor:
        out = x.clone()
        self.attn.accumulate(x, self.norm1, out)  # type: ignore[operator]
        flat = out.view(-1, out.shape[-1])
        rows = max(1024, _MLP_CHUNK_ELEMENTS // (4 * flat.shape[1]))
        for s in range(0, flat.shape[0], rows):
            seg = flat[s:s + rows]
            seg += self.mlp(self.norm2(seg)).to(seg.dtype)
        return out


class SwinStage(nn.Module):
    """One stage: ``blocks`` then an optional ``downsample`` (names as upstream's ``BasicLayer``)."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: Sequence[int], *, frag_bias: bool,
                 downsample: bool, geometry: WindowGeometry) -> None:
        super().__init__()
        window = list(window_size)
        half = [s // 2 for s in window]
        attn = partial(GRPBWindowAttention3d, frag_bias=frag_bias, geometry=geometry)
        norm = partial(nn.LayerNorm, eps=1e-5)
        self.blocks = nn.ModuleList(
            GRPBSwinBlock(dim, num_heads, window, [0, 0, 0] if i % 2 == 0 else half, mlp_ratio=4.0,
                                 stochastic_depth_prob=0.0, norm_layer=norm, attn_layer=attn)
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim, norm_layer=norm) if downsample else None

    def forward(self, x: Tensor) -> Tensor:
        for blk in self.blocks:
            x = blk(x)
        if self.downsample is not None:
            x = self.downsample(x)
        return x


class SwinTransformer3dGRPB(nn.Module):
    """Video Swin-T (patch (2,4,4), dim 96, depths 2-2-6-2, heads 3-6-12-24, window (8,7,7)) with GRPB.

    ``forward`` takes normalised clips ``[B, 3, T, H, W]`` and returns the final LayerNorm'd feature
    map channels-last, ``[B, T/2, H/32, W/32, 768]`` (``[B, 16, 7, 7, 768]`` for 32x224x224).
    """

    def __init__(self, *, patch_size: Sequence[int] = (2, 4, 4), embed_dim: int = 96,
                 depths: Sequence[int] = (2, 2, 6, 2), num_heads: Sequence[int] = (3, 6, 12, 24),
                 window_size: Sequence[int] = (8, 7, 7),
                 frag_biases: Sequence[bool] = (True, True, True, False)) -> None:
        super().__init__()
        self.geometry = WindowGeometry()
        norm = partial(nn.LayerNorm, eps=1e-5)
        self.patch_embed = PatchEmbed3d(list(patch_size), embed_dim=embed_dim, norm_layer=norm)
        self.layers = nn.ModuleList(
            SwinStage(embed_dim * 2**i, depths[i], num_heads[i], window_size, frag_bias=bool(frag_biases[i]),
                      downsample=i < len(depths) - 1, geometry=self.geometry)
            for i in range(len(depths))
        )
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = norm(self.num_features)
        self.apply(_init_weights)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)  # B, T, H, W, C
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


def _init_weights(m: nn.Module) -> None:
    """Upstream's init (truncated normal 0.02 for linear layers, unit LayerNorm): for random-init runs."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
