"""Fragment branch (FAST-VQA code path, a tiny Swin3D): trains on decoded clips, loss falls, extracts."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from media import lavfi_video

from vqstack.cli import main


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_trainable_swin_forward_matches_inference_forward() -> None:
    from vqstack.branches.models import FragmentNet, swin_forward_trainable
    from vqstack.branches.recipes import ModelRecipe

    torch.manual_seed(0)
    net = FragmentNet(ModelRecipe(kind="fragments", arch="tiny", pretrained=False), random_init=True).eval()
    x = torch.randn(1, 3, 8, 224, 224)
    with torch.no_grad():
        ref = net.technical_backbone(x)
        got = swin_forward_trainable(net.technical_backbone, x)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_freeze_backbone_leaves_only_the_head_trainable() -> None:
    """``model.freeze_backbone`` is applied by the model itself, so the trainer's optimiser, EMA and
    DDP all see the same trainable set: the VQA head alone."""
    from vqstack.branches.models import FragmentNet, split_parameters
    from vqstack.branches.recipes import ModelRecipe

    free = FragmentNet(ModelRecipe(kind="fragments", arch="tiny", pretrained=False), random_init=True)
    net = FragmentNet(ModelRecipe(kind="fragments", arch="tiny", pretrained=False, freeze_backbone=True),
                      random_init=True)
    backbone, head = split_parameters(net)
    assert backbone == [] and len(split_parameters(free)[0]) == len(list(free.technical_backbone.parameters()))
    assert not any(p.requires_grad for p in net.technical_backbone.parameters())
    assert head and all(p.requires_grad for p in head)


def test_fragment_branch_trains_with_falling_loss_and_extracts(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    rows = []
    for i in range(8):  # a small distortion ladder: more noise, lower MOS
        extra = ["-vf", f"noise=alls={8 * i}:allf=t"] if i else []
        lavfi_video(videos / f"l{i}.mp4", size="96x64", seconds=1.0, rate=12, extra=extra)
        rows.append(f"l{i}.mp4,{80 - 8 * i}")
    labels = tmp_path / "labels.csv"
    labels.write_text("video,mos\n" + "\n".join(rows) + "\n")
    recipe = {
        "name": "frag_tiny",
        "data": {"labels": str(labels), "videos_root": str(videos), "source": "videos", "num_workers": 1},
        "model": {"kind": "fragments", "arch": "tiny", "clip_len": 8, "frame_interval": 1, "train_clips": 1,
                  "test_clips": 1, "pretrained": False},
        "optim": {"lr": 2e-3, "epochs": 8, "batch_size": 4, "warmup_epochs": 0.5, "ema_decay": 0.5,
                  "loss": "plcc", "rank_weight": 0.3},
        "protocol": {"name": "all", "val_size": 0.0},
        "output": str(tmp_path / "run"),
    }
    (tmp_path / "recipe.yml").write_text(yaml.safe_dump(recipe))
    assert main(["train", "--config", str(tmp_path / "recipe.yml"), "--device", "cpu"]) == 0
    with open(tmp_path / "run" / "all" / "steps.csv", newline="") as fh:
        losses = np.asarray([float(r["loss"]) for r in csv.DictReader(fh)])
    assert losses.size == 16
    assert losses[-4:].mean() < losses[:4].mean()  # last two epochs vs first two

    best = tmp_path / "run" / "all" / "best.pt"
    store = tmp_path / "store"
    assert main(["extract", "--feat", f"branch:{best}", "--videos", str(videos / "l0.mp4"), "--store", str(store),
                 "--no-progress"]) == 0
    from vqstack.features.store import FeatureStore

    X, _cols = FeatureStore(store).read_matrix(["l0.mp4"], "branch.frag_tiny.all", ["score", "mean"])
    assert X.shape == (1, 1 + 1 + 128) and np.isfinite(X).all()
