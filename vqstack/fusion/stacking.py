"""Stacked generalisation over feature groups (one base learner per extractor, a meta-learner on top).

Why: the features in a vqstack store come in blocks (fragment backbone, frame IQA, SlowFast, ...) of
very different sizes; one learner on the concatenation lets the 7168-d block drown the 768-d one.
Stacking fits one base learner per block and lets a small meta-learner weigh their *out-of-fold*
predictions (Wolpert 1992; Breiman 1996 for the non-negative combination), so the weights are learned
on predictions the base learners did not train on.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import validate_data

from vqstack.fusion._common import check_fitted
from vqstack.fusion.learners import RidgeRegressor

__all__ = ["GroupSpec", "StackingFusion", "resolve_groups"]

GroupSpec = Sequence[int] | slice | str
"""One feature group: a list of column indices, a ``slice``, or a ``"start:stop"`` string (YAML)."""


def _parse_group(spec: GroupSpec, n_features: int, position: int) -> NDArray[np.intp]:
    if isinstance(spec, str):
        parts = spec.split(":")
        if len(parts) != 2:
            raise ValueError(f"feature group {position}: {spec!r} is not of the form 'start:stop'")
        try:
            start = int(parts[0]) if parts[0].strip() else None
            stop = int(parts[1]) if parts[1].strip() else None
        except ValueError as exc:
            raise ValueError(f"feature group {position}: {spec!r} is not of the form 'start:stop'") from exc
        spec = slice(start, stop)
    if isinstance(spec, slice):
        cols = np.arange(n_features)[spec]
    else:
        cols = np.asarray(spec)
        if cols.ndim != 1 or (cols.size and not np.issubdtype(cols.dtype, np.integer)):
            raise ValueError(f"feature group {position} must be a list of column indices, got {spec!r}")
        cols = cols.astype(np.intp)
        out_of_range = cols[(cols < 0) | (cols >= n_features)]
        if out_of_range.size:
            raise ValueError(
                f"feature group {position} names column(s) {out_of_range.tolist()[:10]} "
                f"outside the {n_features} features"
            )
    if cols.size == 0:
        raise ValueError(f"feature group {position} ({spec!r}) selects no columns of the {n_features} features")
    return cols


def resolve_groups(groups: Sequence[GroupSpec] | None, n_features: int) -> list[NDArray[np.intp]]:
    """Column indices of each group; ``None`` means one group of all columns."""
    if groups is None:
        return [np.arange(n_features, dtype=np.intp)]
    if isinstance(groups, str | slice) or len(groups) == 0:
        raise ValueError("groups must be a non-empty list of feature groups")
    return [_parse_group(spec, n_features, i) for i, spec in enumerate(groups)]


class StackingFusion(RegressorMixin, BaseEstimator):
    """One base learner per feature group; a meta-learner on their out-of-fold predictions.

    ``groups``: list of column groups (index lists, slices or ``"start:stop"`` strings); ``None`` = all
    columns as one group. ``base_learner``: an estimator cloned for every group, a list with one
    estimator per group, or a registry name (see :func:`vqstack.fusion.registry.make_learner`);
    default :class:`~vqstack.fusion.learners.RidgeRegressor`. ``meta_learner``: default a linear
    regression with non-negative weights (a base learner that anti-correlates with MOS is switched off
    rather than flipped). Out-of-fold predictions come from a seeded shuffled ``KFold(cv)``; afterwards
    every base learner is refitted on all training data. ``base_preprocessor``: a transformer cloned in
    front of every base learner, so each group is filtered, scaled (and reduced) on its own columns;
    ``fuse fit`` passes its preprocessing here, because a filter that drops columns in front of the
    stacker would shift the group indices.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "groups": [None, list, tuple],
        "base_learner": [None, str, list, tuple, HasMethods(["fit", "predict"])],
        "meta_learner": [None, StrOptions({"nonneg-linear", "ridge"}), HasMethods(["fit", "predict"])],
        "cv": [Interval(Integral, 2, None, closed="left")],
        "random_state": [None, Integral],
        "n_jobs": [None, Integral],
        "base_preprocessor": [None, HasMethods(["fit", "transform"])],
    }

    def __init__(
        self,
        *,
        groups: Sequence[GroupSpec] | None = None,
        base_learner: Any = None,
        meta_learner: Any = None,
        cv: int = 5,
        random_state: int | None = 0,
        n_jobs: int | None = None,
        base_preprocessor: Any = None,
    ) -> None:
        self.groups = groups
        self.base_learner = base_learner
        self.meta_learner = meta_learner
        self.cv = cv
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.base_preprocessor = base_preprocessor

    def _base_estimators(self, n_groups: int) -> list[Any]:
        from vqstack.fusion.registry import make_learner

        base = self.base_learner
        if isinstance(base, list | tuple):
            if len(base) != n_groups:
                raise ValueError(f"StackingFusion got {len(base)} base learners for {n_groups} feature groups")
            items = list(base)
        else:
            items = [base] * n_groups
        out = []
        for item in items:
            if item is None:
                out.append(RidgeRegressor())
            elif isinstance(item, str):
                out.append(make_learner(item))
            else:
                out.append(clone(item))
        if self.base_preprocessor is not None:
            from sklearn.pipeline import Pipeline

            out = [Pipeline([("preprocess", clone(self.base_preprocessor)), ("learner", b)]) for b in out]
        return out

    def _meta_estimator(self) -> Any:
        from sklearn.linear_model import LinearRegression, RidgeCV

        if self.meta_learner is None or self.meta_learner == "nonneg-linear":
            return LinearRegression(positive=True)
        if self.meta_learner == "ridge":
            return RidgeCV(alphas=np.logspace(-3, 3, 7))
        return clone(self.meta_learner)

    def fit(self, X: ArrayLike, y: ArrayLike) -> StackingFusion:
        """Out-of-fold base predictions -> meta-learner; then refit every base learner on all data."""
        from sklearn.model_selection import KFold, cross_val_predict

        self._validate_params()
        X, y = validate_data(self, X, y, y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        if X.shape[0] < self.cv:
            raise ValueError(
                f"StackingFusion cv={self.cv} needs at least {self.cv} samples, got n_samples={X.shape[0]}"
            )
        self.group_indices_ = resolve_groups(self.groups, X.shape[1])
        bases = self._base_estimators(len(self.group_indices_))
        folds = KFold(self.cv, shuffle=True, random_state=self.random_state)
        oof = np.column_stack(
            [
                cross_val_predict(base, X[:, cols], y, cv=folds, n_jobs=self.n_jobs)
                for base, cols in zip(bases, self.group_indices_, strict=True)
            ]
        )
        self.oof_predictions_ = oof
        self.meta_learner_ = self._meta_estimator().fit(oof, y)
        coef = getattr(self.meta_learner_, "coef_", None)
        self.meta_weights_ = (
            np.asarray(coef, dtype=np.float64).reshape(-1) if coef is not None else np.full(oof.shape[1], np.nan)
        )
        self.base_learners_ = [
            clone(base).fit(X[:, cols], y) for base, cols in zip(bases, self.group_indices_, strict=True)
        ]
        return self

    def _base_predictions(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.column_stack(
            [base.predict(X[:, cols]) for base, cols in zip(self.base_learners_, self.group_indices_, strict=True)]
        )

    def predict(self, X: ArrayLike) -> NDArray[np.float64]:
        """Meta-learner prediction from the base learners' predictions on ``X``."""
        check_fitted(self)
        X = validate_data(self, X, reset=False)
        return np.asarray(self.meta_learner_.predict(self._base_predictions(X)), dtype=np.float64)
