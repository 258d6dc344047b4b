"""The training loop of one split: warm-up + cosine, EMA, AMP, DDP, CSV logs, exact resume.

Exact resume, and why it holds: everything random in an epoch is a pure function of
``(seed, epoch, rank)`` — the sample order (:func:`vqstack.branches.data.epoch_batches`), each
sample's crop/frame/offsets (per-sample generators), and the global torch generator (dropout),
which is re-seeded at the start of every epoch. A checkpoint written at the end of each epoch
holds the model, optimiser, scheduler, EMA weights, AMP scaler, best-so-far, the logs' length and
the RNG states (restored too, for anything outside that rule). So ``--resume`` after a kill restarts
at the first unfinished epoch and produces the same per-step losses as an uninterrupted run (on CPU,
bit for bit; tested). Checkpoints are written to a temporary file and renamed: a kill during the
write leaves the previous one intact.

DDP: when launched by ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in
:class:`torch.nn.parallel.DistributedDataParallel` (NCCL on GPUs, gloo on CPUs). Each rank takes
its positional share of every global batch; predictions are gathered (with gradients) before the
loss, because PLCC and rank losses are batch-level, so a 2-process run follows the 1-process one.
Only rank 0 evaluates and writes files.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from vqstack.branches.data import EpochDataset, collate, epoch_batches
from vqstack.branches.losses import make_loss
from vqstack.branches.models import split_parameters
from vqstack.branches.recipes import Recipe
from vqstack.config import to_dict

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "vqstack-branch"


def to_mos_scale(raw: np.ndarray, mos_norm: tuple[float, float] | list[float]) -> np.ndarray:
    """A network's raw scores back on the MOS scale.

    Training standardises the targets by ``mos_norm`` = (mean, std) of the training MOS (``(0, 1)``
    for scale-free losses), and every checkpoint stores it, so the trainer, ``--resume``'s backfill
    and the ``branch:`` extractor all map predictions back the same way.
    """
    mean, std = mos_norm
    return raw * std + mean


EPOCH_FIELDS = ["epoch", "train_loss", "lr", "val_srocc", "val_plcc", "best_epoch", "seconds"]
STEP_FIELDS = ["epoch", "step", "loss", "lr"]


# -- distributed -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init_distributed(device: str) -> DistContext:
    """Join the process group that ``torchrun`` describes in the environment (or run alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
    return DistContext(rank, world, local)


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        import torch.distributed as dist

        dist.barrier()


def gather_batch(ctx: DistContext, pred: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank's predictions (keeping their gradients) and targets, concatenated."""
    if not ctx.active:
        return pred, y
    import torch.distributed as dist
    import torch.distributed.nn.functional as dist_fn

    preds = torch.cat(list(dist_fn.all_gather(pred.contiguous())))
    ys = [torch.empty_like(y) for _ in range(ctx.world)]
    dist.all_gather(ys, y.contiguous())
    return preds, torch.cat(ys)


# -- schedule, EMA, RNG -----------------------------------------------------------------------------

def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float = 0.0) -> Callable[[int], float]:
    """LR factor per optimiser step: linear warm-up to 1, then half a cosine down to ``min_ratio``."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


class EMA:
    """Exponential moving average of a model's floating-point parameters and buffers (FAST-VQA)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_state = self.model.state_dict()
        for name, value in model.state_dict().items():
            target = ema_state[name]
            if target.dtype.is_floating_point:
                target.mul_(self.decay).add_(value.detach(), alpha=1 - self.decay)
            else:
                target.copy_(value)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return int(np.random.default_rng([seed, epoch, rank, 104729]).integers(2**62))


def atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def make_loader(dataset: EpochDataset, *, num_workers: int, **kwargs: Any) -> DataLoader:
    """A DataLoader whose worker processes start from a fresh interpreter (``spawn``), not a fork.

    Why: a forked worker shares the trainer's heap copy-on-write, and its own allocations land in
    the pages the trainer freed (last epoch's activations), copying them one by one. On a 400 px
    CLIVE fine-tune a forked worker held 10 GB of private memory beside the trainer's 10 GB (at
    500 px the kernel killed the run); a spawned one held 0.42 GB. The price is an interpreter start
    per epoch (a few seconds, against minutes of training). Samples do not depend on the worker
    (their random draws come from ``(seed, epoch, index)``), so the result is the same either way.
    """
    if num_workers > 0:
        kwargs["multiprocessing_context"] = "spawn"
    return DataLoader(dataset, collate_fn=collate, num_workers=num_workers, **kwargs)


# -- evaluation ------------------------------------------------------------------------------------

@torch.no_grad()
def predict(model: nn.Module, dataset: EpochDataset, *, device: torch.device, batch_size: int,
            amp: str = "auto", num_workers: int = 0) -> np.ndarray:
    """Scores of every sample of ``dataset`` in order (deterministic: no shuffling, no augmentation)."""
    from vqstack.extract.torch_utils import autocast

    model.eval()
    loader = make_loader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    out = []
    for batch in loader:
        with autocast(device, amp):
            score, _ = model(batch.x.to(device), None if batch.mask is None else batch.mask.to(device))
        out.append(score.float().cpu().numpy())
    return np.concatenate(out).astype(np.float64)


@torch.no_grad()
def fit_frame_standardizer(model: nn.Module, dataset: EpochDataset, device: torch.device) -> None:
    """Standardise a fresh frame-IQA head with the backbone's features of the training samples
    (the pooled statistics span orders of magnitude; an unscaled head would barely train)."""
    model.eval()
    dataset.set_epoch(0)
    rows = []
    for i in range(len(dataset)):
        x = dataset[i][0].to(device)
        rows.append(model.frame_features(x).float().cpu())  # type: ignore[operator]
    model.head.fit_standardizer(torch.cat(rows))  # type: ignore[union-attr, operator]


def correlations(pred: np.ndarray, mos: np.ndarray) -> dict[str, float]:
    from vqstack.metrics import plcc, srocc

    return {"srocc": float(srocc(pred, mos)), "plcc": float(plcc(pred, mos))}


# -- the loop --------------------------------------------------------------------------------------

@dataclass
class SplitData:
    """One split's datasets; ``meta`` goes into the branch checkpoint (feature spec, frame config)."""

    train: EpochDataset
    val: EpochDataset | None
    test: EpochDataset | None
    meta: dict[str, Any] = field(default_factory=dict)
    train_rows: torch.Tensor | None = None  # cached features, to fit the head's standardisation
    test_ids: list[str] | None = None  # names the rows of test_predictions.csv


@dataclass
class SplitResult:
    best_epoch: int
    val: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, Any]]
    seconds: float


class Trainer:
    """Trains one model on one split and writes ``last.pt``, ``best.pt``, ``epochs.csv``, ``steps.csv``.

    ``on_epoch_end(epoch)`` is called after each checkpoint (tests use it to simulate a kill).
    """

    def __init__(self, recipe: Recipe, model: nn.Module, data: SplitData, out_dir: Path, *,
                 device: torch.device, ctx: DistContext | None = None,
                 on_epoch_end: Callable[[int], None] | None = None) -> None:
        self.recipe = recipe
        self.data = data
        self.out = Path(out_dir)
        self.device = device
        self.ctx = ctx or DistContext()
        self.on_epoch_end = on_epoch_end
        o = recipe.optim
        targets = data.train.targets
        if recipe.data.normalize_mos and o.loss not in ("plcc",):
            self.mos_norm = (float(targets.mean()), float(targets.std() or 1.0))
        else:
            self.mos_norm = (0.0, 1.0)
        torch.manual_seed(recipe.seed)
        self.model = model.to(device)
        if data.train_rows is not None and hasattr(model, "fit_standardizer"):
            model.fit_standardizer(data.train_rows)  # type: ignore[operator]
        elif hasattr(model, "frame_features") and recipe.model.init_head is None:
            fit_frame_standardizer(model, data.train, device)
        backbone, head = split_parameters(model)
        groups = [{"params": head, "lr": o.lr, "name": "head"}]
        if backbone:
            groups.append({"params": backbone, "lr": o.lr * o.backbone_lr_mult, "name": "backbone"})
        if o.optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(groups, lr=o.lr, momentum=0.9,
                                                                    weight_decay=o.weight_decay)
        elif o.optimizer == "adam":
            self.optimizer = torch.optim.Adam(groups, lr=o.lr, weight_decay=o.weight_decay)
        else:
            self.optimizer = torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)
        self.steps_per_epoch = len(self._batches(0))
        total = self.steps_per_epoch * o.epochs
        warm = round(o.warmup_epochs * self.steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_cosine(total, warm, o.min_lr_ratio))
        self.ema = EMA(model, o.ema_decay) if o.ema_decay > 0 else None
        fp16 = device.type == "cuda" and (o.amp == "fp16" or (o.amp == "auto" and not torch.cuda.is_bf16_supported()))
        self.scaler = torch.amp.GradScaler(device.type, enabled=fp16)
        self.loss_fn = make_loss(o.loss, o.rank_weight)
        self.train_model: nn.Module = model
        if self.ctx.active:
            from torch.nn.parallel import DistributedDataParallel

            self.train_model = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        self.start_epoch = 0
        self.best = {"epoch": -1, "srocc": -math.inf}
        self.history: list[dict[str, Any]] = []

    # -- pieces ------------------------------------------------------------------------------------

    def _batches(self, epoch: int) -> list[list[int]]:
        return epoch_batches(len(self.data.train), self.recipe.optim.batch_size, seed=self.recipe.seed,
                             epoch=epoch, rank=self.ctx.rank, world=self.ctx.world)

    def eval_model(self) -> nn.Module:
        return self.ema.model if self.ema is not None else self.model

    def _targets(self, y: torch.Tensor) -> torch.Tensor:
        mean, std = self.mos_norm
        return (y - mean) / std

    def _predict(self, dataset: EpochDataset) -> np.ndarray:
        o, src = self.recipe.optim, self.recipe.data.source
        batch = o.eval_batch_size if src == "store" else 1
        workers = self.recipe.data.num_workers if src != "store" else 0
        raw = predict(self.eval_model(), dataset, device=self.device, batch_size=batch, amp=o.amp,
                      num_workers=workers)
        return to_mos_scale(raw, self.mos_norm)

    def _train_scores(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores of a training batch, and the damage hinge when ``optim.damage_rank_weight`` > 0 (else None):
        the crops and their damaged copies then go through the model in one forward pass (one batch of
        2B, so BatchNorm and DDP see a single call)."""
        from vqstack.extract.torch_utils import autocast

        o = self.recipe.optim
        if o.damage_rank_weight == 0:
            with autocast(self.device, o.amp):
                score, _ = self.train_model(x, mask)
            return score, None
        from vqstack.branches.damage import damage_hinge, synthetic_damage

        b = x.shape[0]
        both = torch.cat([x, synthetic_damage(x, tuple(o.damage_kinds))])
        masks = None if mask is None else torch.cat([mask, mask])
        with autocast(self.device, o.amp):
            score, _ = self.train_model(both, masks)
        return score[:b], damage_hinge(score[:b], score[b:])

    def branch_checkpoint(self, epoch: int, val: dict[str, float]) -> dict[str, Any]:
        """What ``best.pt`` holds: enough to rebuild the branch as an extractor, nothing to resume."""
        return {"format": CHECKPOINT_FORMAT, "format_version": 1, "recipe": to_dict(self.recipe),
                "state_dict": {k: v.detach().cpu() for k, v in self.eval_model().state_dict().items()},
                "mos_norm": list(self.mos_norm), "epoch": epoch, "val": val, **self.data.meta}

    def _save_last(self, epoch: int) -> None:
        state = {"epoch": epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                 "ema": self.ema.model.state_dict() if self.ema is not None else None,
                 "best": self.best, "history": self.history, "rng": rng_state(),
                 "data_order": {"seed": self.recipe.seed, "next_epoch": epoch + 1,
                                "batches_per_epoch": self.steps_per_epoch},
                 "steps_logged": (epoch + 1) * self.steps_per_epoch, "mos_norm": list(self.mos_norm)}
        atomic_save(state, self.out / "last.pt")

    def resume(self) -> bool:
        """Load ``last.pt`` if there is one; True when training continues from it."""
        path = self.out / "last.pt"
        if not path.is_file():
            return False
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.model.load_state_dict(state["ema"])
        self.best, self.history = state["best"], state["history"]
        self.start_epoch = int(state["epoch"]) + 1
        self.mos_norm = tuple(state["mos_norm"])  # type: ignore[assignment]
        set_rng_state(state["rng"])
        if self.ctx.main:  # drop log rows written after the checkpoint (the epoch the kill interrupted)
            _truncate_csv(self.out / "steps.csv", STEP_FIELDS, int(state["steps_logged"]))
            _truncate_csv(self.out / "epochs.csv", EPOCH_FIELDS, self.start_epoch)
        log.info("%s: resuming at epoch %d", self.out, self.start_epoch)
        return True

    # -- run ---------------------------------------------------------------------------------------

    def fit(self) -> SplitResult:

        o = self.recipe.optim
        t0 = time.perf_counter()
        if self.ctx.main:
            self.out.mkdir(parents=True, exist_ok=True)
        barrier(self.ctx)
        writer = _tensorboard(self.out) if self.recipe.tensorboard and self.ctx.main else None
        for epoch in range(self.start_epoch, o.epochs):
            e0 = time.perf_counter()
            torch.manual_seed(epoch_seed(self.recipe.seed, epoch, self.ctx.rank))
            self.train_model.train()
            self.data.train.set_epoch(epoch)
            batches = self._batches(epoch)
            loader = make_loader(self.data.train, batch_sampler=batches, num_workers=self.recipe.data.num_workers)
            losses: list[float] = []
            step_rows = []
            for step, batch in enumerate(loader):
                x = batch.x.to(self.device, non_blocking=True)
                mask = None if batch.mask is None else batch.mask.to(self.device)
                y = self._targets(batch.y.to(self.device))
                score, damage_loss = self._train_scores(x, mask)
                pred, target = gather_batch(self.ctx, score.float(), y)
                loss = self.loss_fn(pred, target)
                if damage_loss is not None:
                    loss = loss + o.damage_rank_weight * damage_loss
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if o.grad_clip > 0:
                    self.scaler.unscale_(self.optimizer)
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), o.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                lr = self.optimizer.param_groups[0]["lr"]
                self.scheduler.step()
                if self.ema is not None:
                    self.ema.update(self.model)
                losses.append(float(loss.detach()))
                step_rows.append({"epoch": epoch, "step": epoch * self.steps_per_epoch + step,
                                  "loss": f"{losses[-1]:.9g}", "lr": f"{lr:.9g}"})
            val = {"srocc": float("nan"), "plcc": float("nan")}
            if self.ctx.main and self.data.val is not None:
                val = correlations(self._predict(self.data.val), self.data.val.targets)
            # NaN (a constant prediction) never counts as better, but some epoch must become best.pt
            improved = self.data.val is None or self.best["epoch"] < 0 or val["srocc"] > self.best["srocc"]
            if improved:
                score = val["srocc"] if self.data.val is not None and not math.isnan(val["srocc"]) else -math.inf
                self.best = {"epoch": epoch, "srocc": score}
            row = {"epoch": epoch, "train_loss": f"{np.mean(losses):.9g}",
                   "lr": f"{self.optimizer.param_groups[0]['lr']:.9g}",
                   "val_srocc": f"{val['srocc']:.6f}", "val_plcc": f"{val['plcc']:.6f}",
                   "best_epoch": self.best["epoch"], "seconds": f"{time.perf_counter() - e0:.3f}"}
            self.history.append(row)
            if self.ctx.main:
                if improved:
                    atomic_save(self.branch_checkpoint(epoch, val), self.out / "best.pt")
                _append_csv(self.out / "steps.csv", STEP_FIELDS, step_rows)
                _append_csv(self.out / "epochs.csv", EPOCH_FIELDS, [row])
                self._save_last(epoch)
                if writer is not None:
                    writer.add_scalar("loss/train", float(row["train_loss"]), epoch)
                    writer.add_scalar("srocc/val", val["srocc"], epoch)
                log.info("%s epoch %d: loss %s, val SROCC %.4f", self.out.name, epoch, row["train_loss"], val["srocc"])
            barrier(self.ctx)
            if self.on_epoch_end is not None:
                self.on_epoch_end(epoch)
        test: dict[str, float] = {}
        if self.ctx.main and self.data.test is not None:
            best = torch.load(self.out / "best.pt", map_location=self.device, weights_only=False)
            self.eval_model().load_state_dict(best["state_dict"])
            pred = self._predict(self.data.test)
            test = correlations(pred, self.data.test.targets)
            if self.data.test_ids is not None:
                write_predictions(self.out / "test_predictions.csv", self.data.test_ids, self.data.test.targets, pred)
        if writer is not None:
            writer.close()
        barrier(self.ctx)
        val_best = {"srocc": float(self.best["srocc"])}
        return SplitResult(int(self.best["epoch"]), val_best, test, self.history, time.perf_counter() - t0)


def _tensorboard(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard: not installed (pip install tensorboard); logging to CSV only")
        return None
    return SummaryWriter(str(out / "tb"))


def _append_csv(path: Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        if new:
            w.writeheader()
        w.writerows(rows)


def _truncate_csv(path: Path, fields: list[str], keep: int) -> None:
    if not path.exists():
        return
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))[:keep]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


PREDICTION_FIELDS = ["id", "mos", "prediction"]


def write_predictions(path: Path, ids: list[str], mos: np.ndarray, pred: np.ndarray) -> None:
    """A split's test predictions (the columns of ``vqstack fuse fit``'s predictions.csv), written atomically."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(PREDICTION_FIELDS)
        w.writerows((i, f"{m:.9g}", f"{p:.9g}") for i, m, p in zip(ids, mos, pred, strict=True))
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=float))
    os.replace(tmp, path)
