"""Small synthetic stores, labels and recipes for the training tests (fast on one CPU thread)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from vqstack.features import FeatureStore, VideoFeatures


def synth_key(i: int) -> str:
    return "s" + hashlib.blake2b(f"synth-{i}".encode(), digest_size=20).hexdigest()


def make_synthetic_store(root: Path, n: int = 48, d: int = 24, seed: int = 0) -> tuple[Path, Path]:
    """A store whose ``synth`` table predicts the MOS through a noisy non-linear map; returns (store, labels)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(d)
    store = FeatureStore(root / "store")
    rows = []
    with store.writer():
        table = store.table("synth", "1", {"d": d}, None)
        for i in range(n):
            t = 3 + i % 4
            steps = rng.standard_normal((t, d)).astype(np.float32)
            quality = float(steps.mean(0) @ w / np.sqrt(d) + 0.1 * rng.standard_normal())
            feats = VideoFeatures(steps=steps, timestamps=np.arange(t, dtype=np.float64),
                                  pooled={"mean": steps.mean(0), "std": steps.std(0)},
                                  video={"path": f"/synthetic/vid{i:03d}.mp4", "fps": 1.0, "num_frames": t})
            table.write(synth_key(i), feats)
            rows.append(f"vid{i:03d}.mp4,{50 + 10 * quality:.4f}")
    labels = root / "labels.csv"
    labels.write_text("video,mos\n" + "\n".join(rows) + "\n")
    return root / "store", labels


def head_recipe(root: Path, store: Path, labels: Path, **overrides: Any) -> Path:
    """A head-only recipe over the synthetic store (2 splits, a few epochs)."""
    recipe: dict[str, Any] = {
        "name": "synthetic_head",
        "data": {"labels": str(labels), "store": str(store), "features": ["synth"], "pooling": ["mean"]},
        "model": {"kind": "feature_head", "hidden": 16, "dropout": 0.1},
        "optim": {"lr": 1e-2, "epochs": 4, "batch_size": 8, "warmup_epochs": 1, "ema_decay": 0.9,
                  "loss": "plcc", "rank_weight": 0.3, "weight_decay": 0.01},
        "protocol": {"name": "repeated-split", "n_repeats": 2, "test_size": 0.25, "val_size": 0.2},
        "seed": 42,
        "output": str(root / "run"),
    }
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if name:
            recipe[section][name] = value
        else:
            recipe[section] = value
    path = root / "recipe.yml"
    path.write_text(yaml.safe_dump(recipe))
    return path
