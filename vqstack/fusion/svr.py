"""RBF support vector regression with a built-in, leak-free hyper-parameter search.

Why its own search instead of ``GridSearchCV(Pipeline(scaler, SVR))``: an RBF kernel depends on the
features only through squared distances, so for up to a few thousand videos the n x n distance matrix
is computed once per ``fit`` with one BLAS matrix product, and every (gamma, C, epsilon, fold)
candidate reuses it (``SVR(kernel="precomputed")``). On 1,000 videos x 5,000 features that turns
minutes of libsvm kernel evaluations into seconds. Candidates run on threads (libsvm releases the
GIL), so nothing is copied to worker processes. Larger sets fall back to libsvm's own kernel.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import validate_data

from vqstack.fusion._common import check_fitted, standardize_target

__all__ = ["MAX_PRECOMPUTED_SAMPLES", "SVRRegressor"]

MAX_PRECOMPUTED_SAMPLES = 6000
"""Largest training set for which ``kernel_mode="auto"`` precomputes the kernel (n x n float64 ~ 290 MB)."""


def _score(y_true: NDArray[np.float64], y_pred: NDArray[np.float64], scoring: str) -> float:
    """Inner-CV score: Spearman (a constant prediction scores 0, it ranks nothing) or negative MSE."""
    if scoring == "neg_mse":
        return -float(np.mean((y_true - y_pred) ** 2))
    if np.ptp(y_pred) == 0 or np.ptp(y_true) == 0:
        return 0.0
    return float(stats.spearmanr(y_true, y_pred)[0])


def _squared_distances(A: NDArray[np.float64], B: NDArray[np.float64]) -> NDArray[np.float64]:
    """Squared Euclidean distances between the rows of ``A`` and ``B`` (one matrix product)."""
    d = (A * A).sum(axis=1)[:, None] + (B * B).sum(axis=1)[None, :] - 2.0 * (A @ B.T)
    np.maximum(d, 0.0, out=d)
    return d


class SVRRegressor(RegressorMixin, BaseEstimator):
    """RBF support vector regression with standardisation and an inner grid search.

    Why built in: an SVR is only as good as its C/gamma/epsilon, and choosing them on the test split is
    the commonest leak in VQA papers. Features are standardised with the training split's statistics,
    the target too (so ``epsilon_grid`` is in units of the MOS standard deviation and one grid fits
    1-5 and 0-100 scales), and C, gamma, epsilon are chosen by seeded inner K-fold cross-validation on
    the training split only (each candidate scored by its mean over folds; ties go to the first in grid
    order), then refitted on the whole training split.

    ``gamma_grid`` is relative: ``gamma = g / n_features``, so ``g = 1`` is scikit-learn's
    ``gamma="scale"`` for standardised features. ``scoring``: ``"spearman"`` (default; VQA is judged by
    rank) or ``"neg_mse"``. With one value in every grid no search is run. ``kernel_mode``:
    ``"precomputed"`` (kernel matrix from one BLAS product, reused by every candidate), ``"libsvm"``
    (libsvm computes kernel values itself, memory O(n)), ``"auto"`` (precomputed up to
    :data:`MAX_PRECOMPUTED_SAMPLES` training samples). Both give the same model up to rounding.
    ``n_jobs`` threads evaluate the candidates.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "C_grid": ["array-like"],
        "gamma_grid": ["array-like"],
        "epsilon_grid": ["array-like"],
        "cv": [Interval(Integral, 2, None, closed="left")],
        "scoring": [StrOptions({"spearman", "neg_mse"})],
        "random_state": [None, Integral],
        "n_jobs": [None, Integral],
        "kernel_mode": [StrOptions({"auto", "precomputed", "libsvm"})],
        "cache_size": [Interval(Real, 1, None, closed="left")],
    }

    def __init__(
        self,
        *,
        C_grid: Sequence[float] = (1.0, 10.0, 100.0),
        gamma_grid: Sequence[float] = (0.25, 1.0, 4.0),
        epsilon_grid: Sequence[float] = (0.1,),
        cv: int = 5,
        scoring: Literal["spearman", "neg_mse"] = "spearman",
        random_state: int | None = 0,
        n_jobs: int | None = None,
        kernel_mode: Literal["auto", "precomputed", "libsvm"] = "auto",
        cache_size: float = 500.0,
    ) -> None:
        self.C_grid = C_grid
        self.gamma_grid = gamma_grid
        self.epsilon_grid = epsilon_grid
        self.cv = cv
        self.scoring = scoring
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.kernel_mode = kernel_mode
        self.cache_size = cache_size

    @staticmethod
    def _positive_grid(values: Sequence[float], name: str) -> list[float]:
        grid = [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]
        if not grid or not all(np.isfinite(v) and v > 0 for v in grid):
            raise ValueError(f"SVRRegressor {name} must be a non-empty list of positive numbers, got {values!r}")
        return grid

    def _svr(self, C: float, gamma: float, epsilon: float, precomputed: bool) -> Any:
        from sklearn.svm import SVR

        if precomputed:
            return SVR(kernel="precomputed", C=C, epsilon=epsilon, cache_size=self.cache_size)
        return SVR(kernel="rbf", C=C, gamma=gamma, epsilon=epsilon, cache_size=self.cache_size)

    def _search(
        self,
        Z: NDArray[np.float64],
        y: NDArray[np.float64],
        dist: NDArray[np.float64] | None,
        grid: list[tuple[float, float, float]],
    ) -> NDArray[np.float64]:
        """Mean inner-CV score of every grid point (gamma by gamma, so one kernel matrix at a time)."""
        from joblib import Parallel, delayed
        from sklearn.model_selection import KFold

        folds = list(KFold(self.cv, shuffle=True, random_state=self.random_state).split(Z))
        precomputed = dist is not None

        def fold_score(data: NDArray[np.float64], point: tuple[float, float, float], fold: int) -> float:
            C, gamma, epsilon = point
            train, val = folds[fold]
            model = self._svr(C, gamma, epsilon, precomputed)
            if precomputed:
                model.fit(data[np.ix_(train, train)], y[train])
                pred = model.predict(data[np.ix_(val, train)])
            else:
                pred = model.fit(data[train], y[train]).predict(data[val])
            return _score(y[val], pred, self.scoring)

        scores = np.full(len(grid), -np.inf)
        with Parallel(n_jobs=self.n_jobs, prefer="threads") as parallel:
            for gamma in dict.fromkeys(point[1] for point in grid):
                members = [k for k, point in enumerate(grid) if point[1] == gamma]
                data = np.exp(-gamma * dist) if dist is not None else Z
                values = parallel(
                    delayed(fold_score)(data, grid[k], fold) for k in members for fold in range(len(folds))
                )
                per_point = np.asarray(values, dtype=np.float64).reshape(len(members), len(folds))
                means = per_point.mean(axis=1)
                scores[members] = np.where(np.isfinite(means), means, -np.inf)
        return scores

    def fit(self, X: ArrayLike, y: ArrayLike) -> SVRRegressor:
        """Standardise, search C/gamma/epsilon by inner CV, refit the best on all of ``X``."""
        from sklearn.preprocessing import StandardScaler

        self._validate_params()
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        y_std, self.y_mean_, self.y_scale_ = standardize_target(np.asarray(y, dtype=np.float64))
        self.scaler_ = StandardScaler().fit(X)
        Z = self.scaler_.transform(X)
        n_samples, n_features = Z.shape
        grid = list(
            itertools.product(
                self._positive_grid(self.C_grid, "C_grid"),
                [g / n_features for g in self._positive_grid(self.gamma_grid, "gamma_grid")],
                self._positive_grid(self.epsilon_grid, "epsilon_grid"),
            )
        )
        mode = self.kernel_mode
        if mode == "auto":
            mode = "precomputed" if n_samples <= MAX_PRECOMPUTED_SAMPLES else "libsvm"
        self.kernel_mode_ = mode
        dist = _squared_distances(Z, Z) if mode == "precomputed" else None
        if len(grid) == 1:
            scores = np.array([math.nan])
            best = 0
        else:
            if n_samples < self.cv:
                raise ValueError(
                    f"SVRRegressor inner cv={self.cv} needs at least {self.cv} samples, got n_samples={n_samples}"
                )
            scores = self._search(Z, y_std, dist, grid)
            best = int(np.argmax(scores))
        C, gamma, epsilon = grid[best]
        self.best_params_ = {"C": C, "gamma": gamma, "epsilon": epsilon}
        self.best_score_ = float(scores[best]) if np.isfinite(scores[best]) else math.nan
        self.cv_results_ = {
            "params": [{"C": c, "gamma": g, "epsilon": e} for c, g, e in grid],
            "mean_score": np.where(np.isfinite(scores), scores, np.nan),
        }
        model = self._svr(C, gamma, epsilon, dist is not None)
        if dist is not None:
            model.fit(np.exp(-gamma * dist), y_std)
            self.support_vectors_ = Z[model.support_]
            self.dual_coef_ = np.asarray(model.dual_coef_, dtype=np.float64).reshape(-1)
            self.intercept_ = float(np.asarray(model.intercept_).reshape(-1)[0])
        else:
            self.svr_ = model.fit(Z, y_std)
        return self

    def predict(self, X: ArrayLike) -> NDArray[np.float64]:
        """Predicted MOS for each row of ``X``."""
        check_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        Z = self.scaler_.transform(X)
        if self.kernel_mode_ == "precomputed":
            kernel = np.exp(-self.best_params_["gamma"] * _squared_distances(Z, self.support_vectors_))
            pred = kernel @ self.dual_coef_ + self.intercept_
        else:
            pred = self.svr_.predict(Z)
        return pred * self.y_scale_ + self.y_mean_
