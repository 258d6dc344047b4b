"""The ``fusion.yml`` schema: labels, store, feature groups, preprocessing, learners, protocol.

Why dataclasses: :func:`vqstack.config.load_config` checks every key against them, so a typo such
as ``poolng:`` is an error naming the key and the file, never a silently ignored setting. Relative
paths are taken from the directory the command runs in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vqstack.config import load_config
from vqstack.errors import ConfigError
from vqstack.fusion.preprocessing import PreprocessConfig


@dataclass(frozen=True)
class LabelsConfig:
    """A labels file (any format :func:`vqstack.fusion.labels.read_labels` reads) and its videos.

    ``videos_root``: where the labelled files are; ids are matched to stored features by content
    key when the files are there, else by the paths recorded in the store.
    """

    path: Path
    id_column: str | None = None
    score_column: str | None = None
    group_column: str | None = None
    videos_root: Path | None = None


@dataclass(frozen=True)
class FeatureGroup:
    """One block of columns: an extractor's table in the store and the poolings to concatenate.

    ``extractor`` is an extractor name (when the store holds one config of it) or a table name
    (``nss-1a2b3c4d``); ``config`` is the extractor config, used when features must be extracted.
    """

    extractor: str
    name: str | None = None
    pooling: list[str] = field(default_factory=lambda: ["mean"])
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name or self.extractor


@dataclass(frozen=True)
class LearnerConfig:
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    label: str | None = None

    @property
    def display(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class ProtocolConfig:
    """``name``: kfold, repeated-split, holdout, grouped-kfold, grouped-repeated-split, cross-dataset.

    ``test_labels`` is the second labels file of ``cross-dataset``.
    """

    name: str = "repeated-split"
    params: dict[str, Any] = field(default_factory=dict)
    test_labels: LabelsConfig | None = None


@dataclass(frozen=True)
class FusionConfig:
    labels: LabelsConfig
    features: list[FeatureGroup]
    store: Path = Path("features")
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    learners: list[LearnerConfig] = field(default_factory=lambda: [LearnerConfig("svr")])
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    final: str | None = None
    output: Path = Path("runs/fusion")
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.features:
            raise ValueError("features: at least one feature group is needed")
        if not self.learners:
            raise ValueError("learners: at least one learner is needed")
        labels = [g.label for g in self.features]
        if len(set(labels)) != len(labels):
            raise ValueError(f"features: group names must be distinct, got {labels} (set 'name:')")
        shown = [lc.display for lc in self.learners]
        if len(set(shown)) != len(shown):
            raise ValueError(f"learners: give repeated learners distinct 'label:'s, got {shown}")
        if self.final is not None and self.final not in shown:
            raise ValueError(f"final: '{self.final}' is not one of the learners {shown}")
        if self.protocol.name == "cross-dataset" and self.protocol.test_labels is None:
            raise ValueError("protocol: cross-dataset needs protocol.test_labels")

    @property
    def final_learner(self) -> LearnerConfig:
        name = self.final or self.learners[0].display
        return next(lc for lc in self.learners if lc.display == name)


def load_fusion_config(path: str | Path) -> FusionConfig:
    cfg = load_config(path, FusionConfig)
    if cfg.protocol.name == "cross-dataset" and cfg.protocol.params:
        raise ConfigError(f"{path}: protocol cross-dataset takes no params")
    return cfg
