"""The RankIQA-style side task: synthetic damage of training crops and the hinge that ranks them."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageFilter

from vqstack.branches.damage import (
    DAMAGE_KINDS,
    RANKIQA_KINDS,
    damage_hinge,
    damage_one,
    motion_kernel,
    synthetic_damage,
)
from vqstack.branches.recipes import load_recipe
from vqstack.cli import main


def _texture(seed: int = 0, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, size, size, generator=g)


def _lap_energy(x: torch.Tensor) -> float:
    lap = x[:, 1:-1, :-2] + x[:, 1:-1, 2:] + x[:, :-2, 1:-1] + x[:, 2:, 1:-1] - 4 * x[:, 1:-1, 1:-1]
    return float(lap.var())


@pytest.mark.parametrize("kind", DAMAGE_KINDS)
def test_each_damage_changes_the_image_and_keeps_its_range(kind: str) -> None:
    x = _texture()
    torch.manual_seed(0)
    y = damage_one(x, kind)
    assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert float((y - x).abs().mean()) > 0.01
    if kind == "noise":  # noise adds high frequencies to a smooth image
        smooth = torch.nn.functional.avg_pool2d(x[None], 5, 1, 2)[0]
        assert _lap_energy(damage_one(smooth, kind)) > 2 * _lap_energy(smooth)
    elif kind == "exposure":  # the whole image gets much darker or much brighter, never both
        shifts = []
        for seed in range(8):
            torch.manual_seed(seed)
            shifts.append(float(damage_one(x, kind).mean() - x.mean()))
        assert all(abs(s) > 0.1 for s in shifts) and min(shifts) < 0 < max(shifts)
    else:  # blur, downscale, motion and strong JPEG remove high frequencies from a sharp one
        assert _lap_energy(y) < 0.5 * _lap_energy(x)
    if kind == "jpeg":  # decoded 8-bit pixels
        assert torch.equal(y * 255, (y * 255).round())


def test_motion_kernel_is_a_normalised_line_through_the_centre() -> None:
    flat = motion_kernel(7, 0.0)
    assert flat.shape == (7, 7) and float(flat.sum()) == pytest.approx(1.0)
    assert float(flat[3].sum()) == pytest.approx(1.0)  # angle 0: only the middle row
    diagonal = motion_kernel(9, torch.pi / 4)
    assert torch.allclose(diagonal, diagonal.T, atol=1e-6)  # symmetric about the 45-degree line
    assert torch.allclose(diagonal, diagonal.flip(0, 1), atol=1e-6)  # and about the centre
    assert float(diagonal[0, 8] + diagonal[8, 0]) == 0.0  # nothing on the other diagonal's ends


def test_default_kinds_are_rankiqas_three_and_a_subset_draws_only_from_itself() -> None:
    frames = torch.stack([_texture(s) for s in range(6)])
    torch.manual_seed(1)
    default = synthetic_damage(frames)
    torch.manual_seed(1)
    assert torch.equal(default, synthetic_damage(frames, RANKIQA_KINDS))
    torch.manual_seed(1)
    only_noise = synthetic_damage(frames, ("noise",))
    torch.manual_seed(1)
    torch.randint(0, 1, (6,))  # the same draws synthetic_damage makes before damaging
    assert torch.equal(only_noise, torch.stack([damage_one(f, "noise") for f in frames]))


def test_synthetic_damage_is_reproducible_from_the_torch_seed() -> None:
    frames = torch.stack([_texture(s) for s in range(6)]).reshape(3, 2, 3, 64, 64)  # [B, T, 3, H, W]
    torch.manual_seed(5)
    a = synthetic_damage(frames)
    torch.manual_seed(5)
    b = synthetic_damage(frames)
    torch.manual_seed(6)
    c = synthetic_damage(frames)
    assert a.shape == frames.shape
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_damage_hinge_is_scale_free_and_asks_for_the_original_first() -> None:
    original = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert float(damage_hinge(original, original - 10.0)) == 0.0  # far below: satisfied
    reversed_ = float(damage_hinge(original, original + 1.0))
    assert reversed_ > 0.5  # the damaged copy scores higher: penalised
    assert float(damage_hinge(10 * original, 10 * original + 10.0)) == pytest.approx(reversed_)
    tied = float(damage_hinge(original, original.clone()))
    assert 0.0 < tied < reversed_  # a tie misses the margin


def test_recipe_rejects_damage_ranking_without_a_trainable_frame_backbone(tmp_path: Path) -> None:
    recipe = {"name": "x", "data": {"labels": "l.csv", "source": "store"}, "model": {"kind": "feature_head"},
              "optim": {"damage_rank_weight": 0.3}}
    (tmp_path / "r.yml").write_text(yaml.safe_dump(recipe))
    with pytest.raises(Exception, match="damage_rank_weight"):
        load_recipe(tmp_path / "r.yml")


def test_recipe_rejects_an_unknown_damage_kind(tmp_path: Path) -> None:
    recipe = {"name": "x", "data": {"labels": "l.csv", "source": "videos"}, "model": {"kind": "frame_iqa"},
              "optim": {"damage_rank_weight": 0.3, "damage_kinds": ["blur", "vignette"]}}
    (tmp_path / "r.yml").write_text(yaml.safe_dump(recipe))
    with pytest.raises(Exception, match=r"damage_kinds.*vignette"):
        load_recipe(tmp_path / "r.yml")


def test_frame_iqa_finetune_with_damage_ranking_trains_and_differs(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (72, 96, 3), dtype=np.uint8)).filter(ImageFilter.GaussianBlur(1))
    rows = []
    for i in range(8):
        (base.filter(ImageFilter.GaussianBlur(0.6 * i)) if i else base).save(images / f"p{i}.png")
        rows.append(f"p{i}.png,{70 - 5 * i}")
    (tmp_path / "labels.csv").write_text("image,mos\n" + "\n".join(rows) + "\n")
    losses = {}
    for weight in (0.0, 0.5):
        recipe = {
            "name": "fiqa", "seed": 3,
            "data": {"labels": str(tmp_path / "labels.csv"), "videos_root": str(images), "source": "videos",
                     "train_crop": 48},
            "model": {"kind": "frame_iqa", "backbone": "efficientnet_lite0", "pretrained": False, "hidden": 8,
                      "frame_iqa": {"taps": ["stage3", "head"], "pooling": ["mean", "std"]}},
            "optim": {"lr": 1e-3, "epochs": 2, "batch_size": 4, "warmup_epochs": 0.5, "loss": "plcc",
                      "rank_weight": 0.3, "damage_rank_weight": weight, "damage_kinds": list(DAMAGE_KINDS)},
            "protocol": {"name": "all", "val_size": 0.25},
            "output": str(tmp_path / f"run{weight}"),
        }
        (tmp_path / "recipe.yml").write_text(yaml.safe_dump(recipe))
        assert main(["train", "--config", str(tmp_path / "recipe.yml"), "--device", "cpu"]) == 0
        with (tmp_path / f"run{weight}" / "all" / "epochs.csv").open() as fh:
            losses[weight] = [float(r["train_loss"]) for r in csv.DictReader(fh)]
    assert all(np.isfinite(v).all() for v in losses.values())
    assert losses[0.0] != losses[0.5]  # the side task is part of the optimised loss


def test_recipe_default_damage_kinds_are_rankiqas_three() -> None:
    from vqstack.branches.recipes import OptimRecipe

    assert tuple(OptimRecipe().damage_kinds) == RANKIQA_KINDS  # old recipes keep training exactly as before
