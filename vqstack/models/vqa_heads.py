"""FAST-VQA / DOVER regression head, the assembled one- or two-branch model, and its offline builder.

Upstream (``VQAHead`` in ``fastvqa/models/head.py`` and ``dover/models/head.py``) applies
``Conv3d(C, hidden, 1) -> GELU -> Conv3d(hidden, 1, 1)`` at every (t, h, w) position of the
backbone's feature map (dropout 0.5 around it is inactive at inference) and the video score is the
mean of that map. FAST-VQA-B and DOVER use C=768, hidden=64; DOVER-Mobile C=384, hidden=32.

Why Conv3d parameters on a channels-last map: the parameters keep upstream's names and shapes
(``fc_hid.weight`` is ``[hidden, C, 1, 1, 1]``) so checkpoints load strictly, while the 1x1x1
convolutions run as matrix products on the ``[B, T, H, W, C]`` map our backbones return.

:class:`FragmentQualityModel` puts backbones and heads together under upstream DOVER's names;
:func:`build_quality_model` builds it on the ``meta`` device (no init cost) and either leaves it to
a strict checkpoint load or fills it deterministically (:func:`init_random_`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class VQAHead(nn.Module):
    """``[B, T, H, W, C]`` features -> ``[B, T, H, W]`` local quality map."""

    def __init__(self, in_channels: int = 768, hidden_channels: int = 64) -> None:
        super().__init__()
        self.fc_hid = nn.Conv3d(in_channels, hidden_channels, (1, 1, 1))
        self.fc_last = nn.Conv3d(hidden_channels, 1, (1, 1, 1))

    def forward(self, feats: Tensor) -> Tensor:
        hid = F.gelu(F.linear(feats, self.fc_hid.weight.flatten(1), self.fc_hid.bias))
        return F.linear(hid, self.fc_last.weight.flatten(1), self.fc_last.bias).squeeze(-1)


MODEL_NAMES = ("fast-vqa-b", "fastervqa", "dover", "dover-mobile")


class FragmentQualityModel(nn.Module):
    """FAST-VQA / FasterVQA (technical branch only) or DOVER / DOVER-Mobile (technical + aesthetic).

    Submodule names are upstream DOVER's (``technical_backbone``, ``technical_head``,
    ``aesthetic_backbone``, ``aesthetic_head``); FAST-VQA's ``fragments_backbone`` / ``vqa_head``
    are renamed by the converter. Each branch returns the feature map mean-pooled over (t, h, w)
    and the head's local quality map; a clip's score is the mean of its map (upstream's reduction).
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        from vqstack.models.convnext3d import convnext3d_tiny, convnextv2_3d_femto
        from vqstack.models.swin3d_grpb import SwinTransformer3dGRPB

        if name not in MODEL_NAMES:
            raise ValueError(f"unknown fragments model '{name}'; expected one of {', '.join(MODEL_NAMES)}")
        self.name = name
        self.technical_backbone: nn.Module
        if name == "dover-mobile":
            self.technical_backbone = convnextv2_3d_femto()
            self.aesthetic_backbone: nn.Module | None = convnextv2_3d_femto()
            dim, hidden = 384, 32
        else:
            self.technical_backbone = SwinTransformer3dGRPB()
            self.aesthetic_backbone = convnext3d_tiny() if name == "dover" else None
            dim, hidden = 768, 64
        self.feature_dim = dim
        self.technical_head = VQAHead(dim, hidden)
        self.aesthetic_head = VQAHead(dim, hidden) if self.aesthetic_backbone is not None else None

    @property
    def has_aesthetic(self) -> bool:
        return self.aesthetic_backbone is not None

    def technical(self, clips: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised ``[B, 3, T, 224, 224]`` fragments -> (pooled ``[B, C]``, score map ``[B, T', 7, 7]``)."""
        feats = self.technical_backbone(clips)
        return feats.float().mean(dim=(1, 2, 3)), self.technical_head(feats).float()

    def aesthetic(self, clips: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised ``[B, 3, T, 224, 224]`` resized frames -> (pooled ``[B, C]``, score map)."""
        if self.aesthetic_backbone is None or self.aesthetic_head is None:
            raise ValueError(f"model '{self.name}' has no aesthetic branch")
        feats = self.aesthetic_backbone(clips)
        return feats.float().mean(dim=(1, 2, 3)), self.aesthetic_head(feats).float()


def build_quality_model(name: str, device: torch.device | str = "cpu", *, random_seed: int | None = None
                        ) -> FragmentQualityModel:
    """Build without paying for an init that a checkpoint will overwrite.

    The modules are created on the ``meta`` device (no memory, no init: upstream-style truncated
    normal init of 28 M parameters costs seconds on a CPU) and materialised on ``device``
    uninitialised. Then either the caller loads every parameter and buffer strictly from a
    checkpoint, or ``random_seed`` fills them deterministically (:func:`init_random_`).
    """
    with torch.device("meta"):
        model = FragmentQualityModel(name)
    model.to_empty(device=device)
    if random_seed is not None:
        init_random_(model, random_seed)
    return model


def init_random_(model: nn.Module, seed: int = 0) -> None:
    """Deterministic random init with upstream's rules, from a local generator (global RNG untouched).

    Linear / conv weights N(0, 0.02) (upstream's ``trunc_normal_(std=0.02)`` truncates at +-2 in
    absolute value, i.e. not at all at this std), biases 0, LayerNorm 1 / 0, relative position
    tables N(0, 0.02), GRPB fragment tables 0, ConvNeXt layer scale 1e-6, GRN 0; the relative
    position index buffers are recomputed. Raises if a parameter is left uncovered.
    """
    from vqstack.models.convnext3d import GRN, Block3D
    from vqstack.models.convnext3d import LayerNorm as ChannelNorm
    from vqstack.models.swin3d_grpb import GRPBWindowAttention3d, relative_position_index

    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    done: set[int] = set()
    indices: dict[tuple[int, ...], Tensor] = {}

    def normal(p: Tensor) -> None:
        p.normal_(0.0, 0.02, generator=gen)
        done.add(id(p))

    def const(p: Tensor, value: float) -> None:
        p.fill_(value)
        done.add(id(p))

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear | nn.Conv3d):
                normal(m.weight)
                if m.bias is not None:
                    const(m.bias, 0.0)
            elif isinstance(m, nn.LayerNorm | ChannelNorm):
                const(m.weight, 1.0)
                const(m.bias, 0.0)
            elif isinstance(m, GRN):
                const(m.gamma, 0.0)
                const(m.beta, 0.0)
            elif isinstance(m, Block3D) and m.gamma is not None:
                const(m.gamma, 1e-6)
            elif isinstance(m, GRPBWindowAttention3d):
                normal(m.relative_position_bias_table)
                if m.has_frag_bias:
                    const(m.fragment_position_bias_table, 0.0)
                window = tuple(m.window_size)
                if window not in indices:
                    indices[window] = relative_position_index(window)
                m.relative_position_index.copy_(indices[window])
    left = [n for n, p in model.named_parameters() if id(p) not in done]
    if left:
        raise RuntimeError(f"init_random_ does not cover: {', '.join(left[:5])}")
