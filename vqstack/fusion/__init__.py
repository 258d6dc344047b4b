"""Fusion stage: fit learners on cached features or branch scores, under explicit split protocols.

Modules (import them directly; nothing heavy happens on ``import vqstack.fusion``):

- :mod:`~vqstack.fusion.learners`: AverageFusion, SVRRegressor, LightGBMRegressor, RidgeRegressor;
  :mod:`~vqstack.fusion.stacking`: StackingFusion; :mod:`~vqstack.fusion.registry`: make_learner.
- :mod:`~vqstack.fusion.preprocessing`: non-finite handling, constant-column filter, scaling, PCA.
- :mod:`~vqstack.fusion.protocols`: k-fold, repeated, holdout, cross-dataset and grouped splits.
- :mod:`~vqstack.fusion.evaluation`: run_protocol -> list[SplitResult], summarize.
- :mod:`~vqstack.fusion.labels`: read_labels -> Labels.
- :mod:`~vqstack.fusion.report`: metrics JSON, markdown, predictions CSV, scatter PNG.

Why lazy: the CLI imports this package to list commands; scikit-learn, LightGBM and matplotlib cost
seconds to import and torch is never needed here. The names below resolve on first attribute access
(PEP 562), each from the module that defines it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "AverageFusion": "learners",
    "LightGBMRegressor": "learners",
    "RidgeRegressor": "learners",
    "SVRRegressor": "learners",
    "StackingFusion": "stacking",
    "available_learners": "registry",
    "make_learner": "registry",
    "PreprocessConfig": "preprocessing",
    "check_features": "preprocessing",
    "make_preprocessor": "preprocessing",
    "with_preprocessing": "preprocessing",
    "Split": "protocols",
    "cross_dataset_split": "protocols",
    "grouped_kfold_splits": "protocols",
    "grouped_repeated_splits": "protocols",
    "holdout_splits": "protocols",
    "kfold_splits": "protocols",
    "make_splits": "protocols",
    "repeated_splits": "protocols",
    "SplitResult": "evaluation",
    "run_protocol": "evaluation",
    "summarize": "evaluation",
    "Labels": "labels",
    "read_labels": "labels",
    "write_report": "report",
}

__all__ = [
    "AverageFusion",
    "Labels",
    "LightGBMRegressor",
    "PreprocessConfig",
    "RidgeRegressor",
    "SVRRegressor",
    "Split",
    "SplitResult",
    "StackingFusion",
    "available_learners",
    "check_features",
    "cross_dataset_split",
    "grouped_kfold_splits",
    "grouped_repeated_splits",
    "holdout_splits",
    "kfold_splits",
    "make_learner",
    "make_preprocessor",
    "make_splits",
    "read_labels",
    "repeated_splits",
    "run_protocol",
    "summarize",
    "with_preprocessing",
    "write_report",
]

if TYPE_CHECKING:
    from vqstack.fusion.evaluation import SplitResult, run_protocol, summarize
    from vqstack.fusion.labels import Labels, read_labels
    from vqstack.fusion.learners import AverageFusion, LightGBMRegressor, RidgeRegressor, SVRRegressor
    from vqstack.fusion.preprocessing import (
        PreprocessConfig,
        check_features,
        make_preprocessor,
        with_preprocessing,
    )
    from vqstack.fusion.protocols import (
        Split,
        cross_dataset_split,
        grouped_kfold_splits,
        grouped_repeated_splits,
        holdout_splits,
        kfold_splits,
        make_splits,
        repeated_splits,
    )
    from vqstack.fusion.registry import available_learners, make_learner
    from vqstack.fusion.report import write_report
    from vqstack.fusion.stacking import StackingFusion


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vqstack.fusion' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"vqstack.fusion.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
