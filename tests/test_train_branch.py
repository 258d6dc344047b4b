"""Head-only branch on cached features -> `branch:PATH` extractor -> a fusion that uses its score."""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def noisy_videos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """16 tiny clips, quality falling with added noise; labels.csv with a matching MOS."""
    root = tmp_path_factory.mktemp("noisy")
    videos = root / "videos"
    videos.mkdir()
    rows = []
    for i in range(16):
        strength = 4 * i
        extra = ["-vf", f"noise=alls={strength}:allf=t"] if strength else []
        lavfi_video(videos / f"n{i:02d}.mp4", size="64x48", seconds=0.6, rate=10, extra=extra)
        rows.append(f"n{i:02d}.mp4,{90 - 4 * i + (i % 3):.1f}")
    (root / "labels.csv").write_text("video,mos\n" + "\n".join(rows) + "\n")
    return videos, root / "labels.csv"


def test_head_only_branch_is_an_extractor_and_fuses(noisy_videos: tuple[Path, Path], tmp_path: Path) -> None:
    videos, labels = noisy_videos
    store = tmp_path / "store"
    assert main(["extract", "--feat", "nss", "--videos", str(videos), "--store", str(store), "--no-progress"]) == 0
    recipe = {
        "name": "nss_head",
        "data": {"labels": str(labels), "store": str(store), "videos_root": str(videos), "features": ["nss"],
                 "pooling": ["mean"]},
        "model": {"kind": "feature_head", "hidden": 8},
        "optim": {"lr": 1e-2, "epochs": 3, "batch_size": 4, "warmup_epochs": 0.5, "loss": "smooth_l1"},
        "protocol": {"name": "all", "val_size": 0.25},
        "output": str(tmp_path / "run"),
    }
    (tmp_path / "recipe.yml").write_text(yaml.safe_dump(recipe))
    assert main(["train", "--config", str(tmp_path / "recipe.yml"), "--device", "cpu"]) == 0
    best = tmp_path / "run" / "all" / "best.pt"
    assert best.is_file() and (tmp_path / "run" / "all" / "epochs.csv").is_file()

    assert main(["extract", "--feat", f"branch:{best}", "--videos", str(videos), "--store", str(store),
                 "--no-progress"]) == 0
    from vqstack.branches.data import read_cached
    from vqstack.branches.recipes import load_recipe
    from vqstack.features.store import FeatureStore

    ids = [f"n{i:02d}.mp4" for i in range(16)]
    fs = FeatureStore(store)
    scores, _ = fs.read_matrix(ids, "branch.nss_head.all", "score", videos_root=videos)
    # the extractor recomputes nss from the videos and applies the head: same as the head on cached rows
    state = torch.load(best, weights_only=False)
    from vqstack.branches.models import StepHead

    head = StepHead(state["in_dim"], 8)
    head.load_state_dict(state["state_dict"])
    cached = read_cached(load_recipe(tmp_path / "recipe.yml").data, ids)
    with torch.no_grad():
        direct = head(torch.from_numpy(np.stack(cached.rows)))[0].numpy()
    mean, std = state["mos_norm"]
    np.testing.assert_allclose(scores[:, 0], direct * std + mean, rtol=1e-4, atol=1e-4)

    fusion = {
        "labels": {"path": str(labels), "videos_root": str(videos)},
        "store": str(store),
        "features": [{"extractor": "branch.nss_head.all", "pooling": ["score"]},
                     {"extractor": "nss", "pooling": ["mean"]}],
        # nss has a constant column on these clips: stacking filters it inside its nss group
        "learners": [{"name": "ridge"}, {"name": "svr"},
                     {"name": "stacking", "params": {"base_learner": "ridge", "cv": 3}}],
        "protocol": {"name": "repeated-split", "params": {"n_repeats": 2, "test_size": 0.25}},
        "final": "ridge",
        "output": str(tmp_path / "fusion"),
    }
    (tmp_path / "fusion.yml").write_text(yaml.safe_dump(fusion))
    assert main(["fuse", "fit", "--config", str(tmp_path / "fusion.yml"), "--no-plots"]) == 0
    fusion.update(features=[{"extractor": "branch.nss_head.all", "pooling": ["score"]}],
                  learners=[{"name": "average"}], final="average", output=str(tmp_path / "fusion_avg"))
    (tmp_path / "fusion_avg.yml").write_text(yaml.safe_dump(fusion))
    assert main(["fuse", "fit", "--config", str(tmp_path / "fusion_avg.yml"), "--no-plots"]) == 0
