"""Synthetic damage for a ranking side task (RankIQA, Liu et al. 2017): a photo beats its damaged copy.

Why: a frame-IQA branch fine-tuned on a few hundred rated photos (CLIVE dev: 240 per split) sees few
examples of each kind of damage, and its head can fit the MOS without the backbone learning much about
quality. Pairs of a training crop and a copy damaged on the fly (Gaussian blur, Gaussian noise, or an
area downscale followed by a bilinear upscale) carry a label for free: the copy is worse. The hinge
:func:`damage_hinge` asks for that order, on the same scale-free footing as the PLCC loss.

All randomness comes from the global torch generator, which the trainer seeds per epoch and stores in
its checkpoints: the damage is reproducible and an exact resume repeats it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

BLUR_SIGMA = (1.0, 2.5)
NOISE_STD = (0.02, 0.06)  # on [0, 1] pixels: 5-15 grey levels
DOWNSCALE = (2.0, 3.5)
DAMAGE_KINDS = ("blur", "noise", "downscale")


def _uniform(low: float, high: float) -> float:
    return float(torch.empty(()).uniform_(low, high))


def damage_one(x: torch.Tensor, kind: str) -> torch.Tensor:
    """One ``[3, H, W]`` image in [0, 1] damaged by ``kind`` at a random strength."""
    if kind == "blur":
        sigma = _uniform(*BLUR_SIGMA)
        return gaussian_blur(x, [9, 9], [sigma, sigma])
    if kind == "noise":
        return (x + _uniform(*NOISE_STD) * torch.randn_like(x)).clamp(0.0, 1.0)
    if kind == "downscale":
        h, w = x.shape[-2:]
        f = _uniform(*DOWNSCALE)
        small = F.interpolate(x[None], size=(max(int(h / f), 1), max(int(w / f), 1)), mode="area")
        return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[0]
    raise ValueError(f"damage kind must be one of {DAMAGE_KINDS}, got {kind!r}")


def synthetic_damage(frames: torch.Tensor) -> torch.Tensor:
    """A damaged copy of ``[..., 3, H, W]`` images in [0, 1]: one random kind and strength per image."""
    flat = frames.reshape(-1, *frames.shape[-3:])
    kinds = torch.randint(0, len(DAMAGE_KINDS), (flat.shape[0],)).tolist()
    return torch.stack([damage_one(img, DAMAGE_KINDS[k]) for img, k in zip(flat, kinds, strict=True)]).reshape(
        frames.shape)


def damage_hinge(original: torch.Tensor, damaged: torch.Tensor, margin: float = 0.5) -> torch.Tensor:
    """Mean hinge ``relu(margin - (original - damaged))`` in units of the batch's score spread.

    Scale-free like the PLCC loss (the branch's scores have no fixed scale during training): the margin
    and the result are both divided by the standard deviation of the original scores (held constant).
    """
    spread = original.detach().float().std() + 1e-6
    return F.relu(margin - (original.float() - damaged.float()) / spread).mean()
