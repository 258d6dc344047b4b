"""FAST-VQA's PLCC and rank losses, the schedule, recipes: checked against independent numpy versions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vqstack.branches.losses import make_loss, plcc_loss, rank_loss
from vqstack.branches.trainer import warmup_cosine
from vqstack.errors import ConfigError


def _plcc_np(p: np.ndarray, y: np.ndarray) -> float:
    p = (p - p.mean()) / (p.std() + 1e-8)
    y = (y - y.mean()) / (y.std() + 1e-8)
    rho = np.mean(p * y)
    return float((np.mean((p - y) ** 2) / 4 + np.mean((rho * p - y) ** 2) / 4) / 2)


def _rank_np(p: np.ndarray, y: np.ndarray) -> float:
    n = len(p)
    hinge = np.array([[max(0.0, (p[i] - p[j]) * np.sign(y[j] - y[i])) for j in range(n)] for i in range(n)])
    return float(hinge.sum() / n / (n - 1) / (1 + hinge.max()))


def test_losses_match_reference_formulas() -> None:
    rng = np.random.default_rng(0)
    p, y = rng.standard_normal(9), rng.standard_normal(9)
    tp, ty = torch.tensor(p), torch.tensor(y)
    assert float(plcc_loss(tp, ty)) == pytest.approx(_plcc_np(p, y), rel=1e-5)
    assert float(rank_loss(tp, ty)) == pytest.approx(_rank_np(p, y), rel=1e-5)
    combined = make_loss("plcc", 0.3)(tp, ty)
    assert float(combined) == pytest.approx(_plcc_np(p, y) + 0.3 * _rank_np(p, y), rel=1e-5)


def test_losses_vanish_on_perfect_predictions_and_are_scale_free() -> None:
    y = torch.tensor([1.0, 3.0, 2.0, 5.0])
    assert float(plcc_loss(2 * y + 7, y)) == pytest.approx(0.0, abs=1e-6)
    assert float(rank_loss(torch.exp(y), y)) == 0.0
    assert float(rank_loss(-y, y)) > 0
    p = torch.tensor([0.3, -1.0, 2.0, 0.1])
    assert float(plcc_loss(p, y)) == pytest.approx(float(plcc_loss(p, 100 * y - 4)), rel=1e-5)


def test_warmup_then_cosine() -> None:
    f = warmup_cosine(total_steps=10, warmup_steps=2, min_ratio=0.0)
    assert [round(f(s), 4) for s in (0, 1)] == [0.5, 1.0]
    assert f(2) == pytest.approx(1.0) and f(10) == pytest.approx(0.0, abs=1e-9)
    assert all(f(s) >= f(s + 1) for s in range(2, 10))


def test_recipe_typo_is_an_error(tmp_path: Path) -> None:
    from vqstack.branches.recipes import load_recipe

    path = tmp_path / "r.yml"
    path.write_text("name: x\ndata: {labels: l.csv}\noptim: {lerning_rate: 0.1}\n")
    with pytest.raises(ConfigError, match="lerning_rate"):
        load_recipe(path)
    path.write_text("name: x\ndata: {labels: l.csv, source: videos}\nmodel: {kind: feature_head}\n")
    with pytest.raises(ConfigError, match="feature_head"):
        load_recipe(path)
