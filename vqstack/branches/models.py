"""Branch networks: a head over cached features, and wrappers that put that head on a backbone.

Every branch maps a batch to ``(score [B], pooled features [B, F])``:

* :class:`StepHead` — standardise each step's features with training statistics (buffers, so they
  travel in the checkpoint), ``Linear -> activation -> dropout -> Linear`` per step, mean over the
  valid steps. Head-only transfer trains only this, from the store, in seconds.
* :class:`FrameIQANet` — the ``frame_iqa`` extractor's computation made differentiable: the same
  backbone, taps, scales and spatial statistics (imported from :mod:`vqstack.extract.frame_iqa`, so
  the two cannot drift apart), then a :class:`StepHead`. Starting it from a head-only checkpoint
  (``init_head``) makes epoch 0 of a fine-tune reproduce the head-only predictions.
* :class:`FragmentNet` — FAST-VQA's Swin3D with GRPB on fragment clips and its ``VQAHead``; module
  names follow :class:`vqstack.models.vqa_heads.FragmentQualityModel` so official weights load.

Why the backbone and head parameters are separate: recipes give the backbone a smaller learning
rate (FAST-VQA: x0.1) or freeze it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from vqstack.branches.recipes import ModelRecipe
from vqstack.errors import ConfigError

FRAGMENT_MEAN = (123.675, 116.28, 103.53)
FRAGMENT_STD = (58.395, 57.12, 57.375)


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over dim 1 of ``[B, T, ...]``, counting only steps where ``mask [B, T]`` is true."""
    if mask is None:
        return x.mean(dim=1)
    m = mask.to(x.dtype).reshape(*mask.shape, *([1] * (x.dim() - 2)))
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


class StepHead(nn.Module):
    """Per-step regressor with built-in standardisation; mean of the step scores is the video score."""

    def __init__(self, in_dim: int, hidden: int = 128, activation: str = "gelu", dropout: float = 0.0) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("scale", torch.ones(in_dim))
        self.fc_hid = nn.Linear(in_dim, hidden)
        self.act = nn.GELU() if activation == "gelu" else nn.Identity()
        self.drop = nn.Dropout(dropout)
        self.fc_out = nn.Linear(hidden, 1)

    @torch.no_grad()
    def fit_standardizer(self, rows: Tensor) -> None:
        """Set the standardisation from training rows ``[N, D]`` (constant columns get scale 1)."""
        mean = rows.double().mean(0)
        std = rows.double().std(0, unbiased=False)
        std[~(std > 1e-12)] = 1.0
        self.mean.copy_(mean.float())
        self.scale.copy_(std.float())

    def steps(self, feats: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, T, D]`` -> (per-step scores ``[B, T]``, per-step hidden activations ``[B, T, hidden]``)."""
        x = (feats.float() - self.mean) / self.scale
        hid = self.act(self.fc_hid(x))
        return self.fc_out(self.drop(hid)).squeeze(-1), hid

    def forward(self, feats: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``[B, T, D]`` -> (score ``[B]``, hidden activations averaged over steps ``[B, hidden]``)."""
        step_scores, hid = self.steps(feats)
        return masked_mean(step_scores, mask), masked_mean(hid.float(), mask)


class FrameIQANet(nn.Module):
    """ImageNet CNN -> ``frame_iqa`` feature statistics -> :class:`StepHead` (see module docstring)."""

    def __init__(self, recipe: ModelRecipe, *, random_init: bool = False, weights: str | None = None) -> None:
        super().__init__()
        from vqstack.extract import frame_iqa as fi

        overrides = dict(recipe.frame_iqa)
        overrides.setdefault("backbone", recipe.backbone)
        from vqstack.config import from_dict

        self.cfg = from_dict(fi.FrameIQAConfig, overrides, source="model.frame_iqa")
        self.backbone_name = self.cfg.backbone
        net = self._build(recipe.drop_path)
        if not random_init:
            chosen = {"efficientnet_lite0": fi.EFFICIENTNET_LITE0, "convnext_tiny": fi.CONVNEXT_TINY,
                      "resnet50": fi.RESNET50_WEIGHTS[self.cfg.resnet50_weights]}[self.backbone_name]
            from vqstack.extract.base import check_digest, resolve_weights
            from vqstack.extract.torch_utils import load_checkpoint, load_state_strict

            path = resolve_weights(chosen, weights, None)
            check_digest(chosen, path)
            load_state_strict(net, fi.convert_checkpoint(self.backbone_name, load_checkpoint(path)), path)
        self.tapped = fi._Tapped(self.backbone_name, net)
        mean, std = fi.input_norm(self.backbone_name)
        self.register_buffer("pix_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pix_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.head = StepHead(self.cfg.dim, recipe.hidden, recipe.activation, recipe.dropout)
        self.freeze_bn = recipe.freeze_bn
        if recipe.freeze_backbone:
            self.tapped.requires_grad_(False)
        elif recipe.frozen_stages:
            for module in self.tapped.leading_modules(recipe.frozen_stages):
                module.requires_grad_(False)

    def _build(self, drop_path: float) -> nn.Module:
        from vqstack.extract.frame_iqa import build_network

        if drop_path == 0:
            return build_network(self.backbone_name)
        if self.backbone_name != "convnext_tiny":
            raise ConfigError(f"model.drop_path needs a backbone with stochastic depth (convnext_tiny), "
                              f"not {self.backbone_name}")
        import torchvision

        return torchvision.models.convnext_tiny(weights=None, stochastic_depth_prob=drop_path)

    def backbone_parameters(self) -> list[nn.Parameter]:
        """The backbone's trainable parameters: ``freeze_backbone`` / ``frozen_stages`` leave the rest out
        of the optimiser (they are frozen here, when the model is built, so every user of the model,
        trainer, EMA and DDP alike, sees the same trainable set)."""
        return [p for p in self.tapped.parameters() if p.requires_grad]

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def train(self, mode: bool = True) -> FrameIQANet:
        super().train(mode)
        if mode and self.freeze_bn:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def frame_features(self, x: Tensor) -> Tensor:
        """Preprocessed frames ``[N, 3, H, W]`` in [0, 1] -> ``frame_iqa`` features ``[N, D]``."""
        from vqstack.extract.frame_iqa import rescale, spatial_stats

        x = (x - self.pix_mean) / self.pix_std
        out = []
        for scale in self.cfg.scales:
            maps = self.tapped(rescale(x, scale), self.cfg.taps)
            out += [spatial_stats(maps[t], self.cfg.pooling) for t in self.cfg.taps]
        return torch.cat(out, dim=1)

    def forward(self, frames: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``[B, T, 3, H, W]`` frames (equal sizes within the batch) -> (score, pooled hidden)."""
        b, t = frames.shape[:2]
        feats = self.frame_features(frames.flatten(0, 1)).reshape(b, t, -1)
        return self.head(feats, mask)


class FragmentNet(nn.Module):
    """FAST-VQA technical branch: fragment clips -> Swin3D-GRPB -> VQAHead map -> mean score."""

    def __init__(self, recipe: ModelRecipe, *, random_init: bool = False, weights: str | None = None) -> None:
        super().__init__()
        from vqstack.models.swin3d_grpb import SwinTransformer3dGRPB
        from vqstack.models.vqa_heads import VQAHead

        if recipe.arch == "tiny":  # tests and benchmarks: same code path, a few thousand parameters
            self.technical_backbone = SwinTransformer3dGRPB(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2),
                                                            window_size=(4, 7, 7))
            dim, hidden = 128, 16
        else:
            self.technical_backbone = SwinTransformer3dGRPB()
            dim, hidden = 768, 64
        self.technical_head = VQAHead(dim, hidden)
        self.drop_path = recipe.drop_path
        self.drop = nn.Dropout(recipe.dropout)
        self.register_buffer("pix_mean", torch.tensor(FRAGMENT_MEAN).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("pix_std", torch.tensor(FRAGMENT_STD).view(1, 3, 1, 1, 1), persistent=False)
        if not random_init and recipe.arch == "fast-vqa-b":
            from vqstack.extract.base import resolve_weights
            from vqstack.extract.fragments import WEIGHTS
            from vqstack.extract.torch_utils import load_checkpoint
            from vqstack.models.checkpoints import official_to_ours

            path = resolve_weights(WEIGHTS["fast-vqa-b"], weights, None)
            state = official_to_ours(load_checkpoint(path), "fast-vqa-b", str(path))
            own = {k: v for k, v in state.items() if k.startswith(("technical_backbone.", "technical_head."))}
            self.load_state_dict(own, strict=True)
        elif not random_init:
            raise ConfigError("model.arch tiny has no pretrained weights: set model.pretrained: false")
        if recipe.freeze_backbone:
            self.technical_backbone.requires_grad_(False)

    def backbone_parameters(self) -> list[nn.Parameter]:
        """The backbone's trainable parameters (none with ``freeze_backbone``)."""
        return [p for p in self.technical_backbone.parameters() if p.requires_grad]

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.technical_head.parameters())

    def forward(self, clips: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """uint8 ``[B, C, T, H, W, 3]`` fragment clips -> (mean clip score ``[B]``, pooled features ``[B, F]``)."""
        b, c = clips.shape[:2]
        x = clips.flatten(0, 1).permute(0, 4, 1, 2, 3).float()
        x = (x - self.pix_mean) / self.pix_std
        feats = (swin_forward_trainable(self.technical_backbone, x.contiguous(), self.drop_path)
                 if torch.is_grad_enabled() else self.technical_backbone(x.contiguous()))
        qmap = self.technical_head(self.drop(feats))
        scores = qmap.float().mean(dim=(1, 2, 3)).reshape(b, c)
        pooled = feats.float().mean(dim=(1, 2, 3)).reshape(b, c, -1)
        return scores.mean(1), pooled.mean(1)


def swin_forward_trainable(backbone: nn.Module, x: Tensor, drop_path: float = 0.0) -> Tensor:
    """:class:`SwinTransformer3dGRPB` forward that autograd can differentiate.

    The backbone's own block forward adds the MLP output in place into the tensor LayerNorm saved
    for backward (an inference-only memory saving); here the residuals are out of place, with the
    same parameters and the same windowed attention, and optional stochastic depth per block.
    """
    x = backbone.patch_embed(x)
    for layer in backbone.layers:
        for blk in layer.blocks:
            attn = blk.attn(blk.norm1(x))
            mlp_in = x + _drop_path(attn, drop_path)
            x = mlp_in + _drop_path(blk.mlp(blk.norm2(mlp_in)), drop_path)
        if layer.downsample is not None:
            x = layer.downsample(x)
    return backbone.norm(x)


def _drop_path(x: Tensor, p: float) -> Tensor:
    if p == 0:
        return x
    from torchvision.ops import stochastic_depth

    return stochastic_depth(x, p, "row", training=True)


def build_model(recipe: ModelRecipe, in_dim: int | None = None, *, random_init: bool | None = None,
                weights: str | None = None) -> nn.Module:
    """The branch network of a recipe; ``in_dim`` is the cached feature width (``feature_head`` only)."""
    rand = (not recipe.pretrained) if random_init is None else random_init
    weights = weights if weights is not None else (str(recipe.weights) if recipe.weights else None)
    if recipe.kind == "feature_head":
        if in_dim is None:
            raise ValueError("feature_head needs the feature width")
        return StepHead(in_dim, recipe.hidden, recipe.activation, recipe.dropout)
    if recipe.kind == "frame_iqa":
        return FrameIQANet(recipe, random_init=rand, weights=weights)
    return FragmentNet(recipe, random_init=rand, weights=weights)


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(backbone, head) trainable parameters (the models apply the recipe's freezing when built);
    a bare :class:`StepHead` is all head."""
    if isinstance(model, FrameIQANet | FragmentNet):
        backbone, head = model.backbone_parameters(), model.head_parameters()
    else:
        backbone, head = [], list(model.parameters())
    return backbone, [p for p in head if p.requires_grad]


def load_head_into(model: nn.Module, head_state: dict[str, Any]) -> None:
    """Start a :class:`FrameIQANet` from a head-only checkpoint's :class:`StepHead` weights."""
    if not isinstance(model, FrameIQANet):
        raise ConfigError("model.init_head applies to model.kind frame_iqa")
    model.head.load_state_dict(head_state, strict=True)

