"""Run a recipe over its protocol: splits, datasets, one :class:`Trainer` per split, a summary.

Layout of ``OUT`` (the recipe's ``output`` or ``--out``)::

    OUT/recipe.yml            the recipe as run
    OUT/<split>/best.pt       branch checkpoint (best validation SROCC) -> `vqstack extract --feat branch:PATH`
    OUT/<split>/last.pt       resume state, rewritten every epoch
    OUT/<split>/epochs.csv    per-epoch loss, lr, validation SROCC/PLCC
    OUT/<split>/steps.csv     per-step loss and lr
    OUT/<split>/result.json   best epoch, validation and test metrics (a split with it is done)
    OUT/<split>/test_predictions.csv    the best checkpoint's score of each test video
    OUT/results.csv, OUT/summary.json   test metrics per split, median / min / max / IQR
    OUT/predictions.csv       every split's test predictions, in ``vqstack fuse fit``'s columns, so a
                              branch and a fusion compare split by split (scripts/compare_predictions.py)

Why the validation part is carved from the training part: the best epoch is chosen on data the
test metric never sees (seeded, so the carve is the same on resume and across DDP ranks).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from vqstack.branches.data import FeatureDataset, FragmentDataset, FrameDataset, read_cached
from vqstack.branches.models import build_model, load_head_into
from vqstack.branches.recipes import Recipe, recipe_differences
from vqstack.branches.trainer import DistContext, SplitData, SplitResult, Trainer, barrier, write_json
from vqstack.config import from_dict, to_dict
from vqstack.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedSplit:
    name: str
    train: np.ndarray
    val: np.ndarray | None
    test: np.ndarray | None


def carve_val(train: np.ndarray, val_size: float, seed: int, number: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Hold out ``val_size`` of ``train`` (at least 3 videos: SROCC needs them) for best-epoch selection."""
    if val_size <= 0:
        return train, None
    n_val = max(3, round(val_size * len(train)))
    if n_val >= len(train) - 1:
        raise ConfigError(f"protocol.val_size {val_size} leaves too few of {len(train)} training videos")
    order = np.random.default_rng([seed, number, 31]).permutation(len(train))
    return np.sort(train[order[n_val:]]), np.sort(train[order[:n_val]])


def plan_splits(recipe: Recipe, ids: list[str]) -> tuple[list[str], list[PlannedSplit]]:
    """The ids used and the splits (index arrays into them) the protocol defines."""
    p = recipe.protocol
    if p.name == "repeated-split":
        from vqstack.fusion.protocols import repeated_splits

        out = []
        for number, s in enumerate(repeated_splits(len(ids), n_repeats=p.n_repeats, test_size=p.test_size,
                                                   seeds=p.seeds)):
            train, val = carve_val(np.asarray(s.train_idx), p.val_size, recipe.seed, number)
            out.append(PlannedSplit(s.name, train, val, np.asarray(s.test_idx)))
        return ids, out
    if p.name == "all":
        train, val = carve_val(np.arange(len(ids)), p.val_size, recipe.seed, 0)
        return ids, [PlannedSplit("all", train, val, None)]
    from vqstack.fusion.labels import read_labels

    parts = {}
    for side in ("train", "val", "test"):
        path = getattr(p, f"{side}_labels")
        parts[side] = read_labels(path, id_column=recipe.data.id_column).ids if path else []
    where = {i: n for n, i in enumerate(ids)}
    missing = [i for side in parts.values() for i in side if i not in where]
    if missing:
        raise ConfigError(f"protocol files: {len(missing)} ids are not in {recipe.data.labels}: {missing[:5]}")
    index = {side: np.asarray([where[i] for i in v], dtype=np.intp) for side, v in parts.items()}
    train, val = index["train"], (index["val"] if len(index["val"]) else None)
    if val is None:
        train, val = carve_val(train, p.val_size, recipe.seed, 0)
    return ids, [PlannedSplit("files", train, val, index["test"] if len(index["test"]) else None)]


class DataSource:
    """Builds each split's datasets from one labels file (cached features are read once)."""

    def __init__(self, recipe: Recipe) -> None:
        from vqstack.fusion.labels import read_labels

        d = recipe.data
        self.recipe = recipe
        labels = read_labels(d.labels, id_column=d.id_column, score_column=d.score_column)
        self.ids, self.mos = list(labels.ids), np.asarray(labels.mos, dtype=np.float64)
        self.meta: dict[str, Any] = {"kind": recipe.model.kind}
        self.cached = None
        if d.source == "store":
            self.cached = read_cached(d, self.ids)
            self.meta.update(in_dim=self.cached.dim, features=self.cached.tables, pooling=self.cached.pooling,
                             steps=self.cached.steps)
        else:
            root = d.videos_root or Path(d.labels).parent
            self.paths = [Path(root) / i for i in self.ids]
            if recipe.model.kind == "frame_iqa":
                from vqstack.config import from_dict
                from vqstack.extract.frame_iqa import FrameIQAConfig

                cfg = from_dict(FrameIQAConfig, {"backbone": recipe.model.backbone, **recipe.model.frame_iqa},
                                source="model.frame_iqa")
                self.frame_cfg = cfg
                self.meta.update(frame_iqa=to_dict(cfg), in_dim=cfg.dim)

    def dataset(self, index: np.ndarray | None, *, train: bool) -> Any:
        if index is None:
            return None
        r, y = self.recipe, self.mos[index]
        if self.cached is not None:
            return FeatureDataset([self.cached.rows[i] for i in index], y, train=train, seed=r.seed)
        paths = [self.paths[i] for i in index]
        if r.model.kind == "frame_iqa":
            frames_root = r.data.frames_root if r.data.source == "frames" else None
            return FrameDataset(paths, y, self.frame_cfg, train=train, seed=r.seed, crop=r.data.train_crop,
                                frames_root=frames_root)
        return FragmentDataset(paths, y, r.model, train=train, seed=r.seed)

    def split_data(self, split: PlannedSplit) -> SplitData:
        rows = None
        if self.cached is not None:
            rows = torch.from_numpy(np.concatenate([self.cached.rows[i] for i in split.train]))
        test_ids = None if split.test is None else [self.ids[i] for i in split.test]
        return SplitData(self.dataset(split.train, train=True), self.dataset(split.val, train=False),
                         self.dataset(split.test, train=False), {**self.meta, "split": split.name}, rows, test_ids)

    def backfill_predictions(self, split: PlannedSplit, split_dir: Path, device: torch.device) -> None:
        """Write ``test_predictions.csv`` of a split finished before trainers wrote it (``--resume``),
        from its ``best.pt``: the same evaluation the trainer runs after its last epoch."""
        from vqstack.branches.trainer import predict, to_mos_scale, write_predictions

        best = split_dir / "best.pt"
        if split.test is None or (split_dir / "test_predictions.csv").is_file() or not best.is_file():
            return
        state = torch.load(best, map_location="cpu", weights_only=False)
        model = build_branch_model(self.recipe, {**self.meta, "split": split.name})
        model.load_state_dict(state["state_dict"], strict=True)
        dataset = self.dataset(split.test, train=False)
        batch = self.recipe.optim.eval_batch_size if self.cached is not None else 1
        raw = predict(model.to(device), dataset, device=device, batch_size=batch, amp=self.recipe.optim.amp)
        write_predictions(split_dir / "test_predictions.csv", [self.ids[i] for i in split.test], dataset.targets,
                          to_mos_scale(raw, state["mos_norm"]))


def build_branch_model(recipe: Recipe, meta: dict[str, Any]) -> torch.nn.Module:
    """A fresh, deterministically initialised model for one split.

    ``model.init_head`` may contain ``{split}``: each split then starts from the head-only branch of
    the same split, so no test video of that split was ever seen by its starting point.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        model = build_model(recipe.model, meta.get("in_dim"))
    if recipe.model.init_head is not None:
        path = Path(str(recipe.model.init_head).replace("{split}", str(meta.get("split", "all"))))
        if not path.is_file():
            raise ConfigError(f"model.init_head: {path} not found (train the head-only recipe first)")
        state = torch.load(path, map_location="cpu", weights_only=False)
        load_head_into(model, state["state_dict"])
    return model


def run_recipe(recipe: Recipe, *, out: Path | None = None, resume: bool = False, device: str = "auto",
               ctx: DistContext | None = None, on_epoch_end: Callable[[str, int], None] | None = None
               ) -> dict[str, Any]:
    """Train every split of the recipe; returns the summary (also written to ``OUT/summary.json``)."""
    from vqstack.extract.torch_utils import resolve_device

    ctx = ctx or DistContext()
    out = Path(out or recipe.output)
    dev = resolve_device(device)
    if dev.type == "cuda" and ctx.active:
        dev = torch.device("cuda", ctx.local_rank)
    if resume:  # every rank checks (they read the same file), and none reads while rank 0 rewrites it
        check_same_recipe(out / "recipe.yml", recipe)
        barrier(ctx)
    if ctx.main:
        out.mkdir(parents=True, exist_ok=True)
        # the recipe as run: with the folder it ran into, which --out may have changed
        (out / "recipe.yml").write_text(yaml.safe_dump(to_dict(replace(recipe, output=out)), sort_keys=False))
    source = DataSource(recipe)
    _, splits = plan_splits(recipe, source.ids)
    results: dict[str, SplitResult | dict[str, Any]] = {}
    for split in splits:
        split_dir = out / split.name
        done = split_dir / "result.json"
        if resume and done.is_file():
            import json

            results[split.name] = json.loads(done.read_text())
            if ctx.main:
                source.backfill_predictions(split, split_dir, dev)
            continue
        data = source.split_data(split)
        model = build_branch_model(recipe, data.meta)
        hook = (lambda epoch, _name=split.name: on_epoch_end(_name, epoch)) if on_epoch_end else None
        trainer = Trainer(recipe, model, data, split_dir, device=dev, ctx=ctx, on_epoch_end=hook)
        if resume:
            trainer.resume()
        result = trainer.fit()
        val_srocc = result.val["srocc"] if np.isfinite(result.val["srocc"]) else None
        record = {"split": split.name, "best_epoch": result.best_epoch, "val_srocc": val_srocc,
                  "test_srocc": result.test.get("srocc"), "test_plcc": result.test.get("plcc"),
                  "n_train": len(split.train), "n_val": 0 if split.val is None else len(split.val),
                  "n_test": 0 if split.test is None else len(split.test), "seconds": result.seconds}
        if ctx.main:
            write_json(done, record)
        results[split.name] = record
    summary = summarise([r if isinstance(r, dict) else {} for r in results.values()])
    summary["recipe"] = recipe.name
    if ctx.main:
        _write_results(out / "results.csv", list(results.values()))  # type: ignore[arg-type]
        _gather_predictions(out, [s.name for s in splits], recipe.name)
        write_json(out / "summary.json", summary)
    return summary


def check_same_recipe(ran_path: Path, recipe: Recipe) -> None:
    """Refuse to ``--resume`` a run with a recipe other than the one that started it.

    Why: a resumed split continues the checkpoint's optimiser, schedule and RNG, and finished splits are
    kept as they are, so a changed seed, learning rate or epoch count would leave a run that no recipe
    describes. Runtime-only settings (:data:`RESUME_FREE_KEYS`) may change.
    """
    if not ran_path.is_file():
        return
    # read through the dataclass, so keys a run from an older version did not write take their defaults
    ran = to_dict(from_dict(Recipe, yaml.safe_load(ran_path.read_text()) or {}, source=str(ran_path)))
    differ = recipe_differences(ran, to_dict(recipe))
    if differ:
        raise ConfigError(f"{ran_path}: --resume with a recipe that differs from the one this run started with "
                          f"({', '.join(differ)}); resume with that recipe, or start a new run with --out")


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Median, min, max and IQR of the test metrics over splits (the literature's small-set report)."""
    out: dict[str, Any] = {"splits": len(records)}
    for key in ("test_srocc", "test_plcc", "val_srocc"):
        vals = np.asarray([r[key] for r in records if r.get(key) is not None], dtype=np.float64)
        if vals.size:
            q1, med, q3 = np.percentile(vals, [25, 50, 75])
            out[key] = {"median": float(med), "min": float(vals.min()), "max": float(vals.max()),
                        "iqr": float(q3 - q1)}
    return out


def _write_results(path: Path, records: list[dict[str, Any]]) -> None:
    fields = ["split", "best_epoch", "val_srocc", "test_srocc", "test_plcc", "n_train", "n_val", "n_test", "seconds"]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(records)


def _gather_predictions(out: Path, split_names: list[str], learner: str) -> None:
    """``OUT/predictions.csv``: the splits' test predictions with ``split`` and ``learner`` columns."""
    rows = []
    for name in split_names:
        path = out / name / "test_predictions.csv"
        if path.is_file():
            with open(path, newline="") as fh:
                rows += [{**r, "split": name, "learner": learner} for r in csv.DictReader(fh)]
    if not rows:
        return
    with open(out / "predictions.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "mos", "prediction", "split", "learner"])
        w.writeheader()
        w.writerows(rows)
