"""Training losses of the seeds, as pure functions over a batch of predictions and MOS.

* :func:`plcc_loss` — FAST-VQA's "PLCC loss" (``new_train.py``): both vectors are standardised
  (population std, eps 1e-8); it is the mean of two halves, the MSE between the standardised
  vectors and the MSE between the standardised MOS and the prediction scaled by their correlation
  ``rho``, each divided by 4. It is 0 exactly when the batch is perfectly linearly correlated and
  is scale-free, so MOS on any scale trains the same way.
* :func:`rank_loss` — FAST-VQA's pairwise rank loss: over all ordered pairs, the hinge
  ``relu((p_i - p_j) * sign(y_j - y_i))`` (positive only for a discordant pair), summed, divided
  by ``N (N - 1)`` and by ``1 + max`` of the hinges (the max is part of the graph, as upstream).
* :func:`smooth_l1_loss` — Zoom-VQA's IQA branch; :func:`l1_loss` — SimpleVQA (with the rank loss).

Why batch-level losses matter for DDP: PLCC and rank terms do not decompose over samples, so the
trainer gathers every rank's predictions before computing them (see :mod:`.trainer`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

EPS = 1e-8


def _standardise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    std, mean = torch.std_mean(x, unbiased=False)
    return (x - mean) / (std + EPS), std


def plcc_loss(pred: torch.Tensor, mos: torch.Tensor) -> torch.Tensor:
    """FAST-VQA PLCC loss of one batch (needs at least 2 samples); see the module docstring."""
    p, _ = _standardise(pred.float().reshape(-1))
    y, _ = _standardise(mos.float().reshape(-1))
    direct = F.mse_loss(p, y) / 4
    rho = (p * y).mean()
    scaled = F.mse_loss(rho * p, y) / 4
    return (direct + scaled) / 2


def rank_loss(pred: torch.Tensor, mos: torch.Tensor) -> torch.Tensor:
    """FAST-VQA pairwise rank loss of one batch (0 when the prediction orders every pair right)."""
    p = pred.float().reshape(-1, 1)
    y = mos.float().reshape(-1, 1)
    n = p.shape[0]
    if n < 2:
        return p.sum() * 0.0
    # hinge[i, j] > 0 when p_i > p_j although y_i < y_j (and symmetrically)
    hinge = F.relu((p - p.t()) * torch.sign(y.t() - y))
    return hinge.sum() / n / (n - 1) / (1 + hinge.max())


def smooth_l1_loss(pred: torch.Tensor, mos: torch.Tensor) -> torch.Tensor:
    return F.smooth_l1_loss(pred.float().reshape(-1), mos.float().reshape(-1))


def l1_loss(pred: torch.Tensor, mos: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(pred.float().reshape(-1), mos.float().reshape(-1))


def mse_loss(pred: torch.Tensor, mos: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred.float().reshape(-1), mos.float().reshape(-1))


BASE_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "plcc": plcc_loss, "smooth_l1": smooth_l1_loss, "l1": l1_loss, "mse": mse_loss,
}
SCALE_FREE = ("plcc",)


def make_loss(name: str, rank_weight: float = 0.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``base + rank_weight * rank`` (FAST-VQA: ``plcc`` + 0.3 rank; SimpleVQA: ``l1`` + rank)."""
    if name not in BASE_LOSSES:
        raise ValueError(f"loss must be one of {list(BASE_LOSSES)}, got {name!r}")
    base = BASE_LOSSES[name]
    if rank_weight == 0:
        return base

    def combined(pred: torch.Tensor, mos: torch.Tensor) -> torch.Tensor:
        return base(pred, mos) + rank_weight * rank_loss(pred, mos)

    return combined
