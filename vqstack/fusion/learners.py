"""Fusion learners: regressors from cached features or branch scores to MOS.

Why these: the seed projects fuse with fixed weights (Zoom-VQA, DOVER, COVER); the classic small-set
VQA baselines fit an RBF SVR on pooled features; gradient boosting and ridge are the strong cheap
alternatives. All follow scikit-learn's contract (keyword-only ``__init__`` that only assigns,
parameters declared in ``_parameter_constraints`` and checked once per ``fit``, fitted state in
attributes ending in ``_``), so ``clone``, ``GridSearchCV`` and pipelines work on them.

LightGBM is imported inside ``fit`` so that importing this module stays cheap. The SVR lives in
:mod:`vqstack.fusion.svr` (re-exported here).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.validation import validate_data

from vqstack.fusion._common import FusionNotFittedError, check_fitted
from vqstack.fusion.svr import SVRRegressor

__all__ = [
    "AverageFusion",
    "FusionNotFittedError",
    "LightGBMRegressor",
    "RidgeRegressor",
    "SVRRegressor",
    "check_fitted",
    "resolve_monotone",
]

DEFAULT_RIDGE_ALPHAS: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)


class AverageFusion(RegressorMixin, BaseEstimator):
    """Weighted average of z-scored branch scores, as in Zoom-VQA's late fusion.

    Each column of ``X`` is one branch's score. Columns are z-scored with statistics from the training
    data (``zscore_on="train"``, default: a prediction does not depend on what else is in the batch) or
    over the data being predicted (``zscore_on="test"``, Zoom-VQA's choice; needs at least 2 samples per
    call). ``sigmoid=True`` maps each z-score through ``100 * sigmoid(z)`` first (Zoom-VQA).

    ``weights``: ``None`` for equal weights, a sequence (one per column, used as given, e.g. Zoom-VQA's
    0.5/0.5), or ``"nnls"`` to learn non-negative weights by least squares of the centred target on the
    centred (transformed) columns, normalised to sum 1.

    ``calibrate=True`` (default) adds a least-squares line from the fused score to the training MOS, so
    predictions are on the MOS scale (users of the seed projects complain about unclear score scales);
    set it False to reproduce Zoom-VQA's raw fused score.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "weights": [None, StrOptions({"nnls"}), "array-like"],
        "zscore_on": [StrOptions({"train", "test"})],
        "sigmoid": ["boolean"],
        "calibrate": ["boolean"],
    }

    def __init__(
        self,
        *,
        weights: Sequence[float] | Literal["nnls"] | None = None,
        zscore_on: Literal["train", "test"] = "train",
        sigmoid: bool = False,
        calibrate: bool = True,
    ) -> None:
        self.weights = weights
        self.zscore_on = zscore_on
        self.sigmoid = sigmoid
        self.calibrate = calibrate

    @staticmethod
    def _stats(X: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        scale[~(scale > 0)] = 1.0  # a constant branch contributes a constant, not a division by zero
        return mean, scale

    def _columns(self, X: NDArray[np.float64], mean: NDArray[np.float64], scale: NDArray[np.float64]) -> Any:
        z = (X - mean) / scale
        return 100.0 * special.expit(z) if self.sigmoid else z

    def fit(self, X: ArrayLike, y: ArrayLike) -> AverageFusion:
        """Learn the z-score statistics, the weights and (optionally) the calibration line."""
        self._validate_params()
        X, y = validate_data(self, X, y, y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        self.mean_, self.scale_ = self._stats(X)
        cols = self._columns(X, self.mean_, self.scale_)
        n_cols = X.shape[1]
        if self.weights is None:
            weights = np.full(n_cols, 1.0 / n_cols)
        elif isinstance(self.weights, str):
            centred = cols - cols.mean(axis=0)
            weights, _ = optimize.nnls(centred, y - y.mean())
            if weights.sum() <= 0:
                warnings.warn(
                    "AverageFusion: no branch correlates positively with the target; using equal weights",
                    UserWarning,
                    stacklevel=2,
                )
                weights = np.full(n_cols, 1.0 / n_cols)
            else:
                weights = weights / weights.sum()
        else:
            weights = np.asarray(self.weights, dtype=np.float64).reshape(-1)
            if weights.size != n_cols:
                raise ValueError(
                    f"AverageFusion got {weights.size} weights for {n_cols} columns; give one weight per column"
                )
            if not np.all(np.isfinite(weights)):
                raise ValueError("AverageFusion weights must be finite numbers")
        self.weights_ = weights
        fused = cols @ weights
        if self.calibrate and np.ptp(fused) > 0:
            slope, intercept = np.polyfit(fused, y, 1)
            self.calibration_ = (float(slope), float(intercept))
        elif self.calibrate:
            self.calibration_ = (0.0, float(y.mean()))
        else:
            self.calibration_ = (1.0, 0.0)
        return self

    def predict(self, X: ArrayLike) -> NDArray[np.float64]:
        """Fused score of each row of ``X`` (on the MOS scale when ``calibrate``)."""
        check_fitted(self)
        X = validate_data(self, X, reset=False)
        if self.zscore_on == "test":
            if X.shape[0] < 2:
                raise ValueError(
                    "AverageFusion with zscore_on='test' z-scores over the predicted batch and needs at "
                    f"least 2 samples, got {X.shape[0]}"
                )
            mean, scale = self._stats(X)
        else:
            mean, scale = self.mean_, self.scale_
        fused = self._columns(X, mean, scale) @ self.weights_
        slope, intercept = self.calibration_
        return slope * fused + intercept


def _check_monotone_spec(spec: Mapping[str, int] | Sequence[int] | None) -> None:
    """Signs must be -1, 0 or +1 and patterns valid regular expressions (checked before any fit)."""
    if spec is None:
        return
    signs = list(spec.values()) if isinstance(spec, Mapping) else list(np.asarray(spec).reshape(-1))
    for sign in signs:
        if isinstance(sign, bool) or not isinstance(sign, Integral | Real) or sign not in (-1, 0, 1):
            raise InvalidParameterError(
                f"LightGBMRegressor monotone: every sign must be -1 (prediction must not increase with the "
                f"feature), 0 (free) or +1 (must not decrease), got {sign!r}"
            )
    if isinstance(spec, Mapping):
        for pattern in spec:
            if not isinstance(pattern, str):
                raise InvalidParameterError(f"LightGBMRegressor monotone: patterns must be strings, got {pattern!r}")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise InvalidParameterError(
                    f"LightGBMRegressor monotone: {pattern!r} is not a valid regular expression ({exc})"
                ) from None


def resolve_monotone(
    spec: Mapping[str, int] | Sequence[int] | None, feature_names: Sequence[str] | None, n_features: int
) -> list[int] | None:
    """One sign per column from ``spec``: a sequence of signs as given, or ``{regex: sign}`` searched in
    ``feature_names`` (``re.search``; every pattern must match at least one name, and a column matched by
    two patterns must get the same sign from both)."""
    _check_monotone_spec(spec)
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        signs = [int(v) for v in np.asarray(spec).reshape(-1)]
        if len(signs) != n_features:
            raise ValueError(f"LightGBMRegressor monotone has {len(signs)} signs for {n_features} features")
        return signs
    if feature_names is None:
        raise ValueError(
            "LightGBMRegressor monotone patterns need feature names: fit it with fit(X, y, feature_names=...), "
            "through `vqstack fuse fit`, or give one sign per column instead of patterns"
        )
    names = [str(n) for n in feature_names]
    if len(names) != n_features:
        raise ValueError(f"{len(names)} feature names for {n_features} features")
    signs = [0] * n_features
    owner: dict[int, str] = {}
    for pattern, sign in spec.items():
        regex = re.compile(pattern)
        hits = [i for i, name in enumerate(names) if regex.search(name)]
        if not hits:
            shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
            raise ValueError(
                f"LightGBMRegressor monotone pattern {pattern!r} matches none of the {len(names)} features it is "
                f"fitted on ({shown}); columns dropped by preprocessing (constant ones) are not among them"
            )
        for i in hits:
            if i in owner and signs[i] != int(sign):
                raise ValueError(
                    f"LightGBMRegressor monotone: feature {names[i]!r} matches {owner[i]!r} and {pattern!r} "
                    "with different signs"
                )
            signs[i], owner[i] = int(sign), pattern
    return signs


class LightGBMRegressor(RegressorMixin, BaseEstimator):
    """Gradient-boosted trees (LightGBM) with defaults for a few hundred to a few thousand videos.

    Why a wrapper: LightGBM's own scikit-learn class takes ``**kwargs`` in ``__init__``, which breaks
    ``get_params``/``clone``; here every parameter is explicit and the booster is built in ``fit``
    (composition). Defaults favour small data: shallow trees (15 leaves, at least 10 samples each), a
    low learning rate with 400 rounds, row and column subsampling, 63 histogram bins per feature
    instead of LightGBM's 255 (with a few thousand samples 255 bins hold a handful of samples each,
    and on 1,000 x 5,000 features 63 bins halve the fit time), and ``deterministic=True`` so a
    seed gives the same model on every run. Logging is off.

    ``n_jobs`` defaults to 1: LightGBM's OpenMP threads spin while they wait, and when the cores are
    shared with other work a 2-thread fit was measured 10-50x slower than usual. Before giving it more
    threads on a shared machine, set ``OMP_WAIT_POLICY=PASSIVE`` in the environment before LightGBM is
    first imported.

    ``monotone``: domain knowledge as LightGBM monotone constraints, so that e.g. predicted quality
    never rises with a measured noise level or blockiness while every other feature stays the same.
    ``None`` (default), one sign per column (-1: prediction must not increase with the feature, 0: free,
    +1: must not decrease), or ``{regex: sign}`` with patterns searched in the feature names given to
    ``fit(X, y, feature_names=...)`` (``vqstack fuse fit`` passes the names that are left after
    preprocessing, e.g. ``nss-81236cea/mean/tnoise_mc_p10_log``). A pattern that matches no feature is
    an error. The resolved signs are in ``monotone_constraints_``. The constraint holds for the fitted
    booster in its input (after standardisation, which keeps the order of each column).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "num_leaves": [Interval(Integral, 2, None, closed="left")],
        "max_depth": [Integral],
        "min_child_samples": [Interval(Integral, 1, None, closed="left")],
        "subsample": [Interval(Real, 0, 1, closed="right")],
        "subsample_freq": [Interval(Integral, 0, None, closed="left")],
        "colsample_bytree": [Interval(Real, 0, 1, closed="right")],
        "max_bin": [Interval(Integral, 2, None, closed="left")],
        "reg_alpha": [Interval(Real, 0, None, closed="left")],
        "reg_lambda": [Interval(Real, 0, None, closed="left")],
        "random_state": [None, Integral],
        "n_jobs": [None, Integral],
        "deterministic": ["boolean"],
        "monotone": [None, dict, "array-like"],
    }

    def __init__(
        self,
        *,
        n_estimators: int = 400,
        learning_rate: float = 0.03,
        num_leaves: int = 15,
        max_depth: int = -1,
        min_child_samples: int = 10,
        subsample: float = 0.8,
        subsample_freq: int = 1,
        colsample_bytree: float = 0.8,
        max_bin: int = 63,
        reg_alpha: float = 0.0,
        reg_lambda: float = 0.0,
        random_state: int | None = 0,
        n_jobs: int | None = 1,
        deterministic: bool = True,
        monotone: Mapping[str, int] | Sequence[int] | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.max_depth = max_depth
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.subsample_freq = subsample_freq
        self.colsample_bytree = colsample_bytree
        self.max_bin = max_bin
        self.reg_alpha = reg_alpha
        self.reg_lambda = reg_lambda
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.deterministic = deterministic
        self.monotone = monotone

    def _validate_params(self) -> None:
        super()._validate_params()
        _check_monotone_spec(self.monotone)

    def fit(self, X: ArrayLike, y: ArrayLike, feature_names: Sequence[str] | None = None) -> LightGBMRegressor:
        """Train the booster on ``X``, ``y``; ``feature_names`` (one per column) resolve ``monotone`` patterns."""
        import lightgbm

        self._validate_params()
        X, y = validate_data(self, X, y, y_numeric=True)
        params = self.get_params(deep=False)
        params.pop("monotone")
        signs = resolve_monotone(self.monotone, feature_names, X.shape[1])
        if signs is not None and any(signs):
            params["monotone_constraints"] = signs
        model = lightgbm.LGBMRegressor(
            **params,
            verbose=-1,
            # LightGBM's docs: deterministic results also need a fixed histogram layout.
            force_row_wise=True,
        )
        model.fit(X, np.asarray(y, dtype=np.float64))
        self.model_ = model
        self.monotone_constraints_ = signs
        self.feature_importances_ = np.asarray(model.feature_importances_)
        return self

    def predict(self, X: ArrayLike) -> NDArray[np.float64]:
        """Predicted MOS for each row of ``X``."""
        check_fitted(self)
        X = validate_data(self, X, reset=False)
        return np.asarray(self.model_.predict(X), dtype=np.float64)


class RidgeRegressor(RegressorMixin, BaseEstimator):
    """Standardised ridge regression with the penalty chosen by efficient leave-one-out (``RidgeCV``).

    Why: the cheapest honest baseline for high-dimensional pooled features, and a good base learner
    for :class:`~vqstack.fusion.stacking.StackingFusion`.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "alphas": ["array-like"],
        "standardize": ["boolean"],
    }

    def __init__(self, *, alphas: Sequence[float] = DEFAULT_RIDGE_ALPHAS, standardize: bool = True) -> None:
        self.alphas = alphas
        self.standardize = standardize

    def fit(self, X: ArrayLike, y: ArrayLike) -> RidgeRegressor:
        """Fit the scaler and the ridge with the leave-one-out best alpha."""
        from sklearn.linear_model import RidgeCV
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        self._validate_params()
        X, y = validate_data(self, X, y, y_numeric=True)
        alphas = np.asarray(self.alphas, dtype=np.float64).reshape(-1)
        if alphas.size == 0 or not np.all(np.isfinite(alphas) & (alphas > 0)):
            raise ValueError(f"RidgeRegressor alphas must be a non-empty list of positive numbers, got {self.alphas!r}")
        steps: list[tuple[str, Any]] = [("scale", StandardScaler())] if self.standardize else []
        steps.append(("ridge", RidgeCV(alphas=alphas)))
        self.model_ = Pipeline(steps).fit(X, np.asarray(y, dtype=np.float64))
        ridge = self.model_.named_steps["ridge"]
        self.alpha_ = float(ridge.alpha_)
        self.coef_ = np.asarray(ridge.coef_)
        return self

    def predict(self, X: ArrayLike) -> NDArray[np.float64]:
        """Predicted MOS for each row of ``X``."""
        check_fitted(self)
        X = validate_data(self, X, reset=False)
        return np.asarray(self.model_.predict(X), dtype=np.float64)
