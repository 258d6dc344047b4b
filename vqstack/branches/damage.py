"""Synthetic damage for a ranking side task (RankIQA, Liu et al. 2017): a photo beats its damaged copy.

Why: a frame-IQA branch fine-tuned on a few hundred rated photos (CLIVE dev: 240 per split) sees few
examples of each kind of damage, and its head can fit the MOS without the backbone learning much about
quality. Pairs of a training crop and a copy damaged on the fly carry a label for free: the copy is
worse. The hinge :func:`damage_hinge` asks for that order, on the same scale-free footing as the PLCC loss.

The kinds (``optim.damage_kinds``): the first three are RankIQA's synthetic ones; the last three imitate
what in-the-wild photos (CLIVE, KonIQ) mostly suffer from, at strengths that make any photo worse.

* ``blur``: Gaussian, sigma 1-2.5 px (defocus).
* ``noise``: Gaussian, 5-15 grey levels.
* ``downscale``: area downscale by 2-3.5x and bilinear upscale (a low-resolution sensor or upload).
* ``jpeg``: JPEG at quality 10-35 (libjpeg through Pillow: deterministic).
* ``motion``: a straight-line blur kernel 7-15 px long at a random angle (camera shake).
* ``exposure``: under-exposure (linear light x 0.15-0.4) or over-exposure (x 2-4, highlights clipped).

All randomness comes from the global torch generator, which the trainer seeds per epoch and stores in
its checkpoints: the damage is reproducible and an exact resume repeats it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from vqstack.branches.recipes import DAMAGE_KINDS, RANKIQA_KINDS

BLUR_SIGMA = (1.0, 2.5)
NOISE_STD = (0.02, 0.06)  # on [0, 1] pixels: 5-15 grey levels
DOWNSCALE = (2.0, 3.5)
JPEG_QUALITY = (10, 35)
MOTION_LENGTH = (7, 15)
UNDER_EXPOSURE = (0.15, 0.4)
OVER_EXPOSURE = (2.0, 4.0)
GAMMA = 2.2


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
    if kind == "jpeg":
        return jpeg_round_trip(x, int(torch.randint(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1, ())))
    if kind == "motion":
        kernel = motion_kernel(int(torch.randint(MOTION_LENGTH[0], MOTION_LENGTH[1] + 1, ())),
                               _uniform(0.0, math.pi)).to(x)
        pad = kernel.shape[-1] // 2
        padded = F.pad(x[:, None], (pad, pad, pad, pad), mode="replicate")
        return F.conv2d(padded, kernel[None, None])[:, 0]
    if kind == "exposure":
        over = bool(torch.rand(()) < 0.5)
        gain = _uniform(*(OVER_EXPOSURE if over else UNDER_EXPOSURE))
        return ((x.clamp(0.0, 1.0) ** GAMMA * gain).clamp(0.0, 1.0)) ** (1.0 / GAMMA)
    raise ValueError(f"damage kind must be one of {DAMAGE_KINDS}, got {kind!r}")


def jpeg_round_trip(x: torch.Tensor, quality: int) -> torch.Tensor:
    """``[3, H, W]`` in [0, 1] encoded as JPEG at ``quality`` by Pillow (libjpeg: deterministic) and decoded."""
    import io

    import numpy as np
    from PIL import Image

    pixels = (x.detach().permute(1, 2, 0) * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(decoded).permute(2, 0, 1).to(x)


def motion_kernel(length: int, angle: float) -> torch.Tensor:
    """A ``length`` x ``length`` kernel (odd size) that averages along a line through its centre at
    ``angle`` radians: the line is sampled densely and each sample is split bilinearly over its pixels."""
    size = length | 1
    centre = size // 2
    kernel = torch.zeros(size, size, dtype=torch.float64)
    for t in torch.linspace(-(length - 1) / 2, (length - 1) / 2, 4 * length, dtype=torch.float64).tolist():
        px, py = centre + t * math.cos(angle), centre + t * math.sin(angle)
        x0, y0 = math.floor(px), math.floor(py)
        fx, fy = px - x0, py - y0
        for dy, dx, w in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
            if 0 <= y0 + dy < size and 0 <= x0 + dx < size:
                kernel[y0 + dy, x0 + dx] += w
    return (kernel / kernel.sum()).float()


def synthetic_damage(frames: torch.Tensor, kinds: tuple[str, ...] = RANKIQA_KINDS) -> torch.Tensor:
    """A damaged copy of ``[..., 3, H, W]`` images in [0, 1]: one random kind of ``kinds`` and strength per image."""
    flat = frames.reshape(-1, *frames.shape[-3:])
    picks = torch.randint(0, len(kinds), (flat.shape[0],)).tolist()
    return torch.stack([damage_one(img, kinds[k]) for img, k in zip(flat, picks, strict=True)]).reshape(frames.shape)


def damage_hinge(original: torch.Tensor, damaged: torch.Tensor, margin: float = 0.5) -> torch.Tensor:
    """Mean hinge ``relu(margin - (original - damaged))`` in units of the batch's score spread.

    Scale-free like the PLCC loss (the branch's scores have no fixed scale during training): the margin
    and the result are both divided by the standard deviation of the original scores (held constant).
    """
    spread = original.detach().float().std() + 1e-6
    return F.relu(margin - (original.float() - damaged.float()) / spread).mean()
