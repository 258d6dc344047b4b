"""Frame-IQA fine-tuning path: images / 2 fps frame folders decoded in workers, random init, tiny inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageFilter

from vqstack.cli import main


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """8 small photos blurred more and more (MOS falls), their frame folders, and labels."""
    root = tmp_path_factory.mktemp("photos")
    images, frames = root / "images", root / "frames"
    images.mkdir()
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (72, 96, 3), dtype=np.uint8)).filter(ImageFilter.GaussianBlur(1))
    rows = []
    for i in range(8):
        img = base.filter(ImageFilter.GaussianBlur(0.6 * i)) if i else base
        img.save(images / f"p{i}.png")
        folder = frames / f"p{i}"
        folder.mkdir(parents=True)
        img.save(folder / "000001.png")
        img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "000002.png")
        rows.append(f"p{i}.png,{70 - 5 * i}")
    (root / "labels.csv").write_text("image,mos\n" + "\n".join(rows) + "\n")
    return images, frames, root / "labels.csv"


@pytest.mark.parametrize("source", ["videos", "frames"])
def test_frame_iqa_finetune_runs_and_is_an_extractor(photos: tuple[Path, Path, Path], tmp_path: Path,
                                                      source: str) -> None:
    images, frames, labels = photos
    recipe = {
        "name": f"fiqa_{source}",
        "data": {"labels": str(labels), "videos_root": str(images), "source": source, "frames_root": str(frames),
                 "train_crop": 48, "num_workers": 1},
        "model": {"kind": "frame_iqa", "backbone": "efficientnet_lite0", "pretrained": False, "hidden": 8,
                  "frame_iqa": {"taps": ["stage3", "head"], "pooling": ["mean", "std"]}},
        "optim": {"lr": 1e-3, "epochs": 2, "batch_size": 4, "warmup_epochs": 0.5, "loss": "plcc", "rank_weight": 0.3},
        "protocol": {"name": "all", "val_size": 0.25},
        "output": str(tmp_path / "run"),
    }
    (tmp_path / "recipe.yml").write_text(yaml.safe_dump(recipe))
    assert main(["train", "--config", str(tmp_path / "recipe.yml"), "--device", "cpu"]) == 0
    best = tmp_path / "run" / "all" / "best.pt"
    state = torch.load(best, weights_only=False)
    assert state["kind"] == "frame_iqa" and state["frame_iqa"]["taps"] == ["stage3", "head"]
    assert main(["extract", "--feat", f"branch:{best}", "--videos", str(images), "--store", str(tmp_path / "s"),
                 "--no-progress"]) == 0

    from vqstack.branches.data import FrameDataset
    from vqstack.branches.extractor import BranchExtractor, branch_extractor_class
    from vqstack.branches.trainer import predict
    from vqstack.features.store import FeatureStore

    ex: BranchExtractor = branch_extractor_class(str(best))()
    ids = [f"p{i}.png" for i in range(8)]
    stored, _ = FeatureStore(tmp_path / "s").read_matrix(ids, ex.name, "score", videos_root=images)
    ds = FrameDataset([images / i for i in ids], np.zeros(8), ex.frame_cfg, train=False, seed=0)
    mean, std = state["mos_norm"]
    direct = predict(ex.model, ds, device=torch.device("cpu"), batch_size=1) * std + mean
    np.testing.assert_allclose(stored[:, 0], direct, rtol=1e-4, atol=1e-4)


def test_worker_batches_equal_in_process_batches_and_workers_are_spawned(photos: tuple[Path, Path, Path]) -> None:
    """Training crops decoded in a spawned worker are the same tensors as decoded in the trainer, so the
    start method (chosen for memory, see make_loader) cannot change a run."""
    from vqstack.branches.data import FrameDataset
    from vqstack.branches.trainer import make_loader
    from vqstack.config import from_dict
    from vqstack.extract.frame_iqa import FrameIQAConfig

    images, _, _ = photos
    cfg = from_dict(FrameIQAConfig, {"backbone": "efficientnet_lite0"}, source="test")
    ds = FrameDataset(sorted(images.iterdir()), np.arange(8.0), cfg, train=True, seed=3, crop=48)
    ds.set_epoch(2)
    batches = [[0, 5, 2], [7, 1, 3]]
    in_process = [b.x for b in make_loader(ds, batch_sampler=batches, num_workers=0)]
    loader = make_loader(ds, batch_sampler=batches, num_workers=1)
    assert loader.multiprocessing_context.get_start_method() == "spawn"
    in_worker = [b.x for b in loader]
    assert len(in_worker) == 2 and all(torch.equal(a, b) for a, b in zip(in_process, in_worker, strict=True))


_STEM_AND_STAGES_1_2 = ("tapped.net.stem.", "tapped.net.blocks.0.", "tapped.net.blocks.1.", "tapped.net.blocks.2.")
_STAGE_3 = ("tapped.net.blocks.3.", "tapped.net.blocks.4.")  # EfficientNet-Lite0's blocks 3-4


@pytest.mark.parametrize(("freezing", "frozen", "learning"), [
    ({"frozen_stages": 2}, _STEM_AND_STAGES_1_2, (*_STAGE_3, "head.")),
    ({"freeze_backbone": True}, ("tapped.",), ("head.",)),
])
def test_frozen_weights_stay_and_the_rest_learns(photos: tuple[Path, Path, Path], tmp_path: Path,
                                                 freezing: dict, frozen: tuple, learning: tuple) -> None:
    """``model.frozen_stages: 2``: after fine-tuning, the stem and stages 1-2 equal the initial network
    bit for bit, while stage 3 (tapped) and the head moved; ``model.freeze_backbone``: the whole
    backbone stays and the head moves. The optimiser never saw the frozen weights."""
    from vqstack.branches.models import build_model
    from vqstack.branches.recipes import load_recipe

    images, _, labels = photos
    recipe = {
        "name": "fiqa_partial",
        "data": {"labels": str(labels), "videos_root": str(images), "source": "videos", "train_crop": 48,
                 "num_workers": 0},
        "model": {"kind": "frame_iqa", "backbone": "efficientnet_lite0", "pretrained": False, "hidden": 8,
                  **freezing, "frame_iqa": {"taps": ["stage3"], "pooling": ["mean", "std"]}},
        "optim": {"lr": 1e-2, "backbone_lr_mult": 1.0, "epochs": 2, "batch_size": 4, "warmup_epochs": 0},
        "protocol": {"name": "all", "val_size": 0.25},
        "seed": 5,
        "output": str(tmp_path / "run"),
    }
    (tmp_path / "recipe.yml").write_text(yaml.safe_dump(recipe))
    assert main(["train", "--config", str(tmp_path / "recipe.yml"), "--device", "cpu"]) == 0
    last = torch.load(tmp_path / "run" / "all" / "last.pt", weights_only=False)
    torch.manual_seed(5)  # the protocol builds each split's model right after seeding with the recipe's seed
    initial = build_model(load_recipe(tmp_path / "recipe.yml").model).state_dict()
    trained = last["model"]
    weights = [k for k in trained if k.endswith(".weight")]
    assert any(k.startswith(frozen) for k in weights) and any(k.startswith(learning) for k in weights)
    for key in weights:
        if key.startswith(frozen):
            assert torch.equal(trained[key], initial[key]), key
        elif key.startswith(learning) and ".bn." not in key:
            assert not torch.equal(trained[key], initial[key]), key
    n_trainable = sum(len(g["params"]) for g in last["optimizer"]["param_groups"])
    assert n_trainable == sum(p.requires_grad for p in build_model(load_recipe(tmp_path / "recipe.yml").model,
                                                                  random_init=True).parameters())


@pytest.mark.parametrize(("model", "message"), [
    ({"kind": "feature_head", "frozen_stages": 2}, "model.frozen_stages .* only for model.kind frame_iqa"),
    ({"kind": "frame_iqa", "frozen_stages": -1}, "model.frozen_stages must be >= 0"),
    ({"kind": "feature_head", "freeze_backbone": True}, "a feature_head has no backbone"),
    ({"kind": "frame_iqa", "freeze_backbone": True, "frozen_stages": 2}, "drop model.frozen_stages"),
])
def test_frozen_stages_is_checked_with_the_recipe(tmp_path: Path, model: dict, message: str) -> None:
    from vqstack.branches.recipes import load_recipe
    from vqstack.errors import ConfigError

    recipe = {"name": "bad", "data": {"labels": "l.csv", "source": "store" if model["kind"] == "feature_head"
                                      else "videos", "features": ["nss"]}, "model": model}
    (tmp_path / "bad.yml").write_text(yaml.safe_dump(recipe))
    with pytest.raises(ConfigError, match=message):
        load_recipe(tmp_path / "bad.yml")


@pytest.mark.parametrize(("backbone", "stages", "first_trainable"), [
    ("efficientnet_lite0", 7, None), ("efficientnet_lite0", 3, "net.blocks.5."),
    ("resnet50", 2, "net.layer3."), ("convnext_tiny", 4, None),
])
def test_leading_modules_stop_at_the_named_stage(backbone: str, stages: int, first_trainable: str | None) -> None:
    from vqstack.errors import ConfigError
    from vqstack.extract.frame_iqa import _Tapped, build_network

    tapped = _Tapped(backbone, build_network(backbone))
    for module in tapped.leading_modules(stages):
        module.requires_grad_(False)
    unused = ("net.fc.", "net.classifier", "net.head.")  # after the last tap: never trained
    names = [n for n, p in tapped.named_parameters() if p.requires_grad and not n.startswith(unused)]
    assert names[0].startswith(first_trainable) if first_trainable else names == []
    with pytest.raises(ConfigError, match=r"has stages 1\.\.\d: cannot freeze the first 99"):
        tapped.leading_modules(99)
