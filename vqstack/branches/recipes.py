"""Training recipes (``configs/train/*.yml``) as dataclasses, read strictly by :func:`load_recipe`.

Why dataclasses and :func:`vqstack.config.load_config`: a misspelt key (``lerning_rate``) is an
error naming the key and the file, never a silently ignored setting, and the recipe stored in each
checkpoint is exactly what ran. Relative paths are taken from the directory the command runs in.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from vqstack.config import load_config
from vqstack.errors import ConfigError

# The damage kinds a recipe may name (vqstack/branches/damage.py implements them and imports these names).
# Declared here so that reading and checking a recipe never imports torch.
DAMAGE_KINDS = ("blur", "noise", "downscale", "jpeg", "motion", "exposure")
RANKIQA_KINDS = ("blur", "noise", "downscale")

Source = Literal["store", "videos", "frames"]
ModelKind = Literal["feature_head", "frame_iqa", "fragments"]


@dataclass(frozen=True)
class DataRecipe:
    """Where samples come from.

    ``source``: ``store`` = features cached by ``vqstack extract`` (head-only transfer: ``features``
    names extractors or tables, ``pooling`` the pooled vectors concatenated, or ``steps: true`` for
    per-step features concatenated over extractors, e.g. SlowFast + ResNet-50 for SimpleVQA);
    ``videos`` = decode the labelled files under ``videos_root``; ``frames`` = 2 fps frame folders
    under ``frames_root`` (``vqstack frames`` layout, one folder per video named by its stem).
    ``train_crop``: frame-IQA fine-tuning trains on one random frame per video and a random crop of
    this size at native resolution (0 = whole frame); evaluation always sees every sampled frame,
    whole, exactly as extraction does. ``normalize_mos``: train on z-scored MOS (training
    statistics are stored in the checkpoint; predictions come back on the MOS scale).
    """

    labels: Path
    id_column: str | None = None
    score_column: str | None = None
    source: Source = "store"
    store: Path = Path("features")
    videos_root: Path | None = None
    frames_root: Path | None = None
    features: list[str] = field(default_factory=lambda: ["frame_iqa"])
    pooling: list[str] = field(default_factory=lambda: ["mean"])
    steps: bool = False
    train_crop: int = 0
    num_workers: int = 0
    normalize_mos: bool = True


@dataclass(frozen=True)
class ModelRecipe:
    """The network.

    ``feature_head``: standardisation + ``Linear(D, hidden) -> activation -> dropout -> Linear(hidden, 1)``
    per step, mean over steps (SimpleVQA's regressor is ``hidden: 128, activation: none``).
    ``frame_iqa``: an ImageNet CNN (``backbone``) whose tapped feature maps are pooled exactly as the
    ``frame_iqa`` extractor pools them (``frame_iqa`` holds that extractor's config overrides), then
    the same head; ``init_head`` starts it from a head-only checkpoint trained on those features.
    ``fragments``: FAST-VQA's Swin3D on fragment clips (``arch``: ``fast-vqa-b`` or ``tiny`` for tests).
    ``freeze_bn`` keeps BatchNorm statistics fixed (small batches of unrelated photos).
    ``freeze_backbone`` (``frame_iqa``, ``fragments``) trains the head alone on the end-to-end input,
    for head-only transfer when the features are not cached (cached features train far faster).
    ``frozen_stages`` > 0 (``frame_iqa``) keeps the stem and the first that many backbone stages at their
    ImageNet weights and fine-tunes the rest (torchvision's ``trainable_backbone_layers``): the early,
    high-resolution stages cost most of the backward pass, and 240 photos are few to re-learn them from.
    """

    kind: ModelKind = "feature_head"
    hidden: int = 128
    activation: Literal["gelu", "none"] = "gelu"
    dropout: float = 0.0
    backbone: str = "efficientnet_lite0"
    frame_iqa: dict[str, Any] = field(default_factory=dict)
    arch: Literal["fast-vqa-b", "tiny"] = "fast-vqa-b"
    clip_len: int = 32
    frame_interval: int = 2
    train_clips: int = 1
    test_clips: int = 4
    pretrained: bool = True
    weights: Path | None = None
    drop_path: float = 0.0
    freeze_backbone: bool = False
    freeze_bn: bool = True
    frozen_stages: int = 0
    init_head: Path | None = None


@dataclass(frozen=True)
class OptimRecipe:
    """Optimiser, schedule and loss. ``lr`` is the head's; the backbone gets ``lr * backbone_lr_mult``.

    Schedule: linear warm-up over ``warmup_epochs`` then cosine to ``lr * min_lr_ratio``, per step.
    ``ema_decay`` > 0 keeps an exponential moving average of the weights, used for validation and
    saved as the branch (FAST-VQA). ``amp``: ``auto`` = bf16/fp16 autocast on CUDA, fp32 on CPU.
    ``loss``: ``plcc`` | ``smooth_l1`` | ``l1`` | ``mse``, plus ``rank_weight`` x the rank loss.
    ``damage_rank_weight`` > 0 (frame-IQA fine-tuning): plus that weight x a hinge asking each training
    crop to score above a synthetically damaged copy of itself (:mod:`vqstack.branches.damage`), damaged
    by one of ``damage_kinds`` drawn per crop (default: RankIQA's blur, noise and downscale).
    """

    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = 1e-3
    backbone_lr_mult: float = 0.1
    weight_decay: float = 0.05
    epochs: int = 30
    batch_size: int = 16
    warmup_epochs: float = 2.5
    min_lr_ratio: float = 0.0
    ema_decay: float = 0.0
    amp: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    grad_clip: float = 0.0
    loss: Literal["plcc", "smooth_l1", "l1", "mse"] = "plcc"
    rank_weight: float = 0.0
    damage_rank_weight: float = 0.0
    damage_kinds: list[str] = field(default_factory=lambda: list(RANKIQA_KINDS))
    eval_batch_size: int = 64


@dataclass(frozen=True)
class ProtocolRecipe:
    """How labelled videos are split.

    ``repeated-split``: ``n_repeats`` random splits (seeds ``seeds`` or 0..n-1), ``test_size`` held out;
    ``files``: ``train_labels`` / ``val_labels`` / ``test_labels`` files (ids as in ``data.labels``);
    ``all``: train on everything (a deployable branch). Wherever no validation file is given,
    ``val_size`` of the training part is held out to pick the best epoch by validation SROCC.
    """

    name: Literal["repeated-split", "files", "all"] = "repeated-split"
    n_repeats: int = 10
    test_size: float = 0.2
    seeds: list[int] | None = None
    val_size: float = 0.15
    train_labels: Path | None = None
    val_labels: Path | None = None
    test_labels: Path | None = None


@dataclass(frozen=True)
class Recipe:
    name: str
    data: DataRecipe
    model: ModelRecipe = field(default_factory=ModelRecipe)
    optim: OptimRecipe = field(default_factory=OptimRecipe)
    protocol: ProtocolRecipe = field(default_factory=ProtocolRecipe)
    seed: int = 42
    output: Path = Path("runs/train")
    tensorboard: bool = False

    def __post_init__(self) -> None:
        o, m, d = self.optim, self.model, self.data
        if o.epochs < 1 or o.batch_size < 2:
            raise ValueError(f"optim.epochs must be >= 1 and optim.batch_size >= 2, got {o.epochs}, {o.batch_size}")
        if o.lr <= 0 or not 0 <= o.ema_decay < 1 or o.warmup_epochs < 0:
            raise ValueError("optim.lr must be > 0, optim.ema_decay in [0, 1), optim.warmup_epochs >= 0")
        if not 0 <= m.dropout < 1 or not 0 <= m.drop_path < 1:
            raise ValueError("model.dropout and model.drop_path must be in [0, 1)")
        if m.kind == "feature_head" and d.source != "store":
            raise ValueError("model.kind feature_head trains on cached features: data.source must be 'store'")
        if m.kind != "feature_head" and d.source == "store":
            raise ValueError(f"model.kind {m.kind} needs frames: data.source must be 'videos' or 'frames'")
        if d.source == "frames" and d.frames_root is None:
            raise ValueError("data.source frames needs data.frames_root")
        if m.frozen_stages < 0 or (m.frozen_stages > 0 and m.kind != "frame_iqa"):
            raise ValueError(f"model.frozen_stages must be >= 0, and > 0 only for model.kind frame_iqa, got "
                             f"{m.frozen_stages} for {m.kind}")
        if m.freeze_backbone and (m.kind == "feature_head" or m.frozen_stages):
            raise ValueError("model.freeze_backbone applies to model.kind frame_iqa or fragments (a feature_head "
                             "has no backbone), and freezes all stages: drop model.frozen_stages")
        if o.damage_rank_weight < 0 or (o.damage_rank_weight > 0 and (m.kind != "frame_iqa" or m.freeze_backbone)):
            raise ValueError("optim.damage_rank_weight must be >= 0, and > 0 only for a frame_iqa fine-tune "
                             "(model.kind frame_iqa, backbone not frozen)")
        if o.damage_rank_weight > 0:
            unknown = sorted(set(o.damage_kinds) - set(DAMAGE_KINDS))
            if unknown or not o.damage_kinds:
                raise ValueError(f"optim.damage_kinds must be a non-empty list of {list(DAMAGE_KINDS)}, got "
                                 f"{o.damage_kinds}")
        if self.protocol.name == "files" and self.protocol.train_labels is None:
            raise ValueError("protocol files needs protocol.train_labels")


def load_recipe(path: str | Path, *, epochs: int | None = None, seed: int | None = None) -> Recipe:
    """Read and check a recipe; ``epochs`` overrides ``optim.epochs`` (``--epochs``), ``seed`` the
    recipe's ``seed`` (``--seed``: another draw of head initialisation, sample order, crops, damage and
    validation carve, on the same test splits).

    A seed other than the recipe's own also renames the run ``NAME_seedN``: it is another branch, and its
    predictions (the ``learner`` column) and store tables must not pass for the recipe's.
    """
    recipe = load_config(path, Recipe)
    if epochs is not None:
        if epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {epochs}")
        recipe = replace(recipe, optim=replace(recipe.optim, epochs=epochs))
    if seed is not None:
        if seed < 0:
            raise ConfigError(f"--seed must be >= 0, got {seed}")
        if seed != recipe.seed:
            recipe = replace(recipe, seed=seed, name=f"{recipe.name}_seed{seed}")
    return recipe


# Settings that change how a run is executed or logged, never what it computes: a resumed run may differ
# from the run it continues in these and nothing else (the sample order and crops are seeded per
# (seed, epoch, rank), not per worker, and ``--out`` may move a run).
RESUME_FREE_KEYS = frozenset({"output", "tensorboard", "data.num_workers", "optim.eval_batch_size"})


def recipe_differences(ran: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two recipes as plain data (:func:`vqstack.config.to_dict`),
    leaving out :data:`RESUME_FREE_KEYS`."""
    out = []
    for key in sorted(set(ran) | set(now)):
        dotted = prefix + str(key)
        if dotted in RESUME_FREE_KEYS:
            continue
        a, b = ran.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += recipe_differences(a, b, dotted + ".")
        elif a != b:
            out.append(dotted)
    return out
