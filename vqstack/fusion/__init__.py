"""Fusion stage: fit learners on cached features or branch scores, under explicit split protocols.

Modules (import them directly; nothing heavy happens on ``import vqstack.fusion``):

- :mod:`~vqstack.fusion.learners`: AverageFusion, SVRRegressor, LightGBMRegressor, RidgeRegressor;
  :mod:`~vqstack.fusion.stacking`: StackingFusion; :mod:`~vqstack.fusion.registry`: make_learner.
- :mod:`~vqstack.fusion.preprocessing`: non-finite handling, constant-column filter, scaling, PCA.
- :mod:`~vqstack.fusion.protocols`: k-fold, repeated, holdout, cross-dataset and grouped splits.
- :mod:`~vqstack.fusion.evaluation`: run_protocol -> list[SplitResult], summarize.
- :mod:`~vqstack.fusion.labels`: read_labels -> Labels.
- :mod:`~vqstack.fusion.report`: metrics JSON, markdown, predictions CSV, scatter PNG.

Why no re-exports here: the CLI imports this package to list commands, and scikit-learn, LightGBM and
matplotlib cost seconds to import (torch is never needed in fusion); each name lives in, and is
imported from, the one module that defines it.
"""
