"""Feature preprocessing before fusion: non-finite handling, constant-column filter, scaling, clipping, PCA.

Why a pipeline builder: every step learns something from data (medians, which columns vary, means,
principal axes), so every step must be fitted on the training split only and re-applied to the test
split. Building them into one scikit-learn ``Pipeline`` with the learner makes that automatic inside
:func:`vqstack.fusion.protocols.run_protocol`.

Non-finite values are an error by default: a NaN feature usually means an extractor failed on a video,
and imputing it silently hides the failure. :func:`check_features` names the offending ids and
columns; ``nonfinite="median"`` imputes training medians instead, with a warning.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from collections.abc import Sequence
from numbers import Real
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import validate_data

from vqstack.errors import InputError
from vqstack.fusion._common import check_fitted

__all__ = [
    "NamedPipeline",
    "NonFiniteHandler",
    "PreprocessConfig",
    "PreprocessWarning",
    "VarianceFilter",
    "ZScoreClipper",
    "check_features",
    "find_nonfinite",
    "make_preprocessor",
    "with_preprocessing",
]

_SHOW = 10  # how many ids / columns an error message lists before "..."


class PreprocessWarning(UserWarning):
    """Preprocessing changed the data (dropped columns, imputed values)."""


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """The ``preprocess`` section of a fusion config (loadable with :func:`vqstack.config.from_dict`).

    ``nonfinite``: ``"error"`` (default) or ``"median"``; ``variance_threshold``: columns whose training
    variance is at most this are dropped; ``standardize``: z-score columns; ``clip``: ``None`` or a
    positive number ``c``, z-scores are then limited to ``[-c, c]`` (:class:`ZScoreClipper`; needs
    ``standardize``); ``pca``: ``None``, a number of components (int >= 1) or a fraction of variance to
    keep (0 < float < 1); ``seed`` for PCA.
    """

    nonfinite: Literal["error", "median"] = "error"
    variance_threshold: float = 0.0
    standardize: bool = True
    clip: float | None = None
    pca: int | float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.nonfinite not in ("error", "median"):
            raise ValueError(f"preprocess.nonfinite must be 'error' or 'median', got {self.nonfinite!r}")
        if not self.variance_threshold >= 0:
            raise ValueError(f"preprocess.variance_threshold must be >= 0, got {self.variance_threshold}")
        if self.clip is not None:
            if isinstance(self.clip, bool) or not (isinstance(self.clip, int | float) and self.clip > 0):
                raise ValueError(
                    f"preprocess.clip must be null or a positive number of standard deviations, got {self.clip!r}"
                )
            if not self.standardize:
                raise ValueError("preprocess.clip limits z-scores and needs preprocess.standardize: true")
        if self.pca is not None:
            if isinstance(self.pca, bool):
                raise ValueError("preprocess.pca must be null, an integer >= 1 or a fraction in (0, 1)")
            if isinstance(self.pca, int) and self.pca < 1:
                raise ValueError(f"preprocess.pca as a number of components must be >= 1, got {self.pca}")
            if isinstance(self.pca, float) and not 0 < self.pca < 1:
                raise ValueError(f"preprocess.pca as a variance fraction must be in (0, 1), got {self.pca}")


def find_nonfinite(X: ArrayLike) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Row and column positions of NaN / inf entries of a 2-D array."""
    arr = np.asarray(X, dtype=np.float64)
    rows, cols = np.nonzero(~np.isfinite(arr))
    return rows.astype(np.intp), cols.astype(np.intp)


def _listing(items: Sequence[Any]) -> str:
    shown = ", ".join(str(v) for v in items[:_SHOW])
    return shown + (f", ... ({len(items)} in all)" if len(items) > _SHOW else "")


def _describe_nonfinite(
    rows: NDArray[np.intp],
    cols: NDArray[np.intp],
    ids: Sequence[str] | None,
    feature_names: Sequence[str] | None,
) -> str:
    bad_rows = np.unique(rows)
    bad_cols = np.unique(cols)
    row_names = [repr(ids[r]) for r in bad_rows] if ids is not None else [f"row {r}" for r in bad_rows]
    col_names = [str(feature_names[c]) for c in bad_cols] if feature_names is not None else [str(c) for c in bad_cols]
    return (
        f"{rows.size} non-finite value(s) (NaN or inf) in {bad_rows.size} sample(s): {_listing(row_names)}; "
        f"column(s): {_listing(col_names)}"
    )


def check_features(
    X: ArrayLike,
    *,
    ids: Sequence[str] | None = None,
    feature_names: Sequence[str] | None = None,
    nonfinite: Literal["error", "median"] = "error",
    source: str = "features",
) -> None:
    """Check a feature matrix before any fit, naming the samples and columns that hold NaN / inf.

    With ``nonfinite="error"`` raises :class:`~vqstack.errors.InputError` (``source`` is its path);
    with ``"median"`` only warns (the pipeline will impute). Call it once on the whole matrix, where
    the video ids are known; the pipeline steps only know row positions.
    """
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2:
        raise InputError(source, f"features must be a 2-D matrix, got shape {arr.shape}")
    if ids is not None and len(ids) != arr.shape[0]:
        raise ValueError(f"{len(ids)} ids for {arr.shape[0]} feature rows")
    if feature_names is not None and len(feature_names) != arr.shape[1]:
        raise ValueError(f"{len(feature_names)} feature names for {arr.shape[1]} columns")
    rows, cols = find_nonfinite(arr)
    if rows.size == 0:
        return
    message = _describe_nonfinite(rows, cols, ids, feature_names)
    if nonfinite == "error":
        raise InputError(source, message + " (set preprocess.nonfinite: median to impute them)")
    warnings.warn(f"{source}: {message}; they will be imputed with training medians", PreprocessWarning, stacklevel=2)


class NonFiniteHandler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Reject (``policy="error"``) or median-impute (``"median"``) NaN and inf values.

    Medians are those of the training split. A column with no finite training value is filled with 0
    (and then dropped by :class:`VarianceFilter` as constant).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {"policy": [StrOptions({"error", "median"})]}

    def __init__(self, *, policy: Literal["error", "median"] = "error") -> None:
        self.policy = policy

    def _check(self, X: NDArray[np.float64]) -> None:
        rows, cols = find_nonfinite(X)
        if rows.size:
            raise ValueError(
                f"{type(self).__name__}: {_describe_nonfinite(rows, cols, None, None)}; use policy='median' to impute"
            )

    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> NonFiniteHandler:
        """Learn the training medians (``median``) or check there is nothing to impute (``error``)."""
        self._validate_params()
        X = validate_data(self, X, ensure_all_finite=False, dtype=np.float64)
        if self.policy == "error":
            self._check(X)
            self.medians_ = np.zeros(X.shape[1])
            return self
        masked = np.where(np.isfinite(X), X, np.nan)
        empty = np.flatnonzero(np.all(np.isnan(masked), axis=0))
        medians = np.zeros(X.shape[1])
        has_values = np.ones(X.shape[1], dtype=bool)
        has_values[empty] = False
        if has_values.any():
            medians[has_values] = np.nanmedian(masked[:, has_values], axis=0)
        if empty.size:
            warnings.warn(
                f"{empty.size} column(s) have no finite training value and are filled with 0: "
                f"{_listing(empty.tolist())}",
                PreprocessWarning,
                stacklevel=2,
            )
        self.medians_ = medians
        return self

    def transform(self, X: ArrayLike) -> NDArray[np.float64]:
        """``X`` with non-finite entries replaced by the training medians (or an error)."""
        check_fitted(self)
        X = validate_data(self, X, reset=False, ensure_all_finite=False, dtype=np.float64, copy=True)
        if self.policy == "error":
            self._check(X)
            return X
        rows, cols = find_nonfinite(X)
        if rows.size:
            warnings.warn(
                f"imputed {rows.size} non-finite value(s) in {np.unique(rows).size} sample(s) with training medians",
                PreprocessWarning,
                stacklevel=2,
            )
            X[rows, cols] = self.medians_[cols]
        return X

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self.policy == "median"
        return tags


class VarianceFilter(TransformerMixin, BaseEstimator):
    """Drop columns whose training variance is at most ``threshold`` (constant columns by default).

    Why: constant columns (a dead channel, a feature that saturates on a dataset) carry nothing, break
    z-scoring and inflate the SVR's ``n_features``. A warning says how many were dropped.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {"threshold": [Interval(Real, 0, None, closed="left")]}

    def __init__(self, *, threshold: float = 0.0) -> None:
        self.threshold = threshold

    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> VarianceFilter:
        """Find the columns to keep."""
        self._validate_params()
        X = validate_data(self, X, dtype=np.float64)
        if X.shape[0] < 2:
            raise ValueError(f"VarianceFilter needs at least 2 samples to measure variance, got n_samples={X.shape[0]}")
        variances = X.var(axis=0)
        # Relative tolerance: a column equal up to rounding is constant.
        scale = np.maximum(np.abs(X).max(axis=0), 1.0) if X.size else np.ones(X.shape[1])
        keep = variances > max(self.threshold, 0.0) + (1e-12 * scale) ** 2
        if not keep.any():
            raise ValueError(
                f"VarianceFilter: all {X.shape[1]} columns have variance <= {self.threshold} on the "
                "training data; nothing is left to learn from"
            )
        dropped = np.flatnonzero(~keep)
        if dropped.size:
            warnings.warn(
                f"dropped {dropped.size} of {X.shape[1]} column(s) with training variance "
                f"<= {self.threshold}: "
                f"{_listing(dropped.tolist())}",
                PreprocessWarning,
                stacklevel=2,
            )
        self.variances_ = variances
        self.support_ = keep
        return self

    def transform(self, X: ArrayLike) -> NDArray[np.float64]:
        """``X`` without the dropped columns."""
        check_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return X[:, self.support_]

    def get_feature_names_out(self, input_features: ArrayLike | None = None) -> NDArray[np.object_]:
        """Names of the kept columns (``x0``, ``x1``, ... when fitted without names)."""
        check_fitted(self)
        if input_features is None:
            names = getattr(self, "feature_names_in_", None)
            input_features = names if names is not None else [f"x{i}" for i in range(self.n_features_in_)]
        return np.asarray(input_features, dtype=object)[self.support_]


class ZScoreClipper(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Limit standardised features to ``[-limit, limit]`` (winsorising at ``limit`` training standard
    deviations); learns nothing, so fitting only checks the input.

    Why: an RBF kernel decays with the squared distance, so one feature far outside the training range
    (a content property the training sources never showed, e.g. a photo's dark background in the
    clipped-dark fraction) drives every kernel value to ~0 and the prediction to the training mean,
    whatever the other features say. Clipping bounds the influence of any single column while keeping
    the order of the values inside the range.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {"limit": [Interval(Real, 0, None, closed="neither")]}

    def __init__(self, *, limit: float = 3.0) -> None:
        self.limit = limit

    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> ZScoreClipper:
        """Check the input (nothing to learn)."""
        self._validate_params()
        validate_data(self, X, dtype=np.float64)
        return self

    def transform(self, X: ArrayLike) -> NDArray[np.float64]:
        """``X`` clipped to ``[-limit, limit]``."""
        check_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return np.clip(X, -self.limit, self.limit)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "n_features_in_")


def make_preprocessor(config: PreprocessConfig | None = None) -> Pipeline:
    """An unfitted preprocessing ``Pipeline`` from ``config`` (defaults: error on NaN, drop constants,
    standardise, no clipping, no PCA)."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    config = config or PreprocessConfig()
    steps: list[tuple[str, Any]] = [
        ("nonfinite", NonFiniteHandler(policy=config.nonfinite)),
        ("variance", VarianceFilter(threshold=config.variance_threshold)),
    ]
    if config.standardize:
        steps.append(("scale", StandardScaler()))
    if config.clip is not None:
        steps.append(("clip", ZScoreClipper(limit=float(config.clip))))
    if config.pca is not None:
        solver = "full" if isinstance(config.pca, float) else "auto"
        steps.append(("pca", PCA(n_components=config.pca, svd_solver=solver, random_state=config.seed)))
    return Pipeline(steps)


def _takes_feature_names(estimator: Any) -> bool:
    fit = getattr(estimator, "fit", None)
    return fit is not None and "feature_names" in inspect.signature(fit).parameters


class NamedPipeline(Pipeline):
    """A ``Pipeline`` that tells its last step the names of the columns it receives.

    Why: a learner option that names features (LightGBM ``monotone: {"tnoise": -1}``) must be resolved
    against the columns that are left after preprocessing (the variance filter drops constant ones, at a
    position that depends on the training split). ``fit`` fits the transformers, maps ``feature_names``
    (the input columns) through their ``get_feature_names_out`` and calls
    ``last_step.fit(Xt, y, feature_names=...)``. A last step whose ``fit`` has no ``feature_names``
    parameter is fitted as in a plain ``Pipeline``; ``predict`` is the plain one.
    """

    def __init__(
        self,
        steps: list[tuple[str, Any]],
        *,
        feature_names: Sequence[str] | None = None,
        memory: Any = None,
        verbose: bool = False,
    ) -> None:
        super().__init__(steps, memory=memory, verbose=verbose)
        self.feature_names = feature_names

    def fit(self, X: ArrayLike, y: ArrayLike | None = None, **params: Any) -> NamedPipeline:
        """Fit the transformers, then the last step with the names of the columns it gets."""
        last = self.steps[-1][1]
        if self.feature_names is None or not _takes_feature_names(last):
            super().fit(X, y, **params)
            return self
        if params:
            raise TypeError(f"NamedPipeline.fit passes feature names and takes no fit parameters, got {sorted(params)}")
        names = np.asarray([str(n) for n in self.feature_names], dtype=object)
        n_columns = np.shape(X)[1]
        if names.size != n_columns:
            raise ValueError(f"NamedPipeline has {names.size} feature names for {n_columns} columns")
        head = self.steps[:-1]
        if head:
            transformers = Pipeline(head)  # the same step objects: they are fitted in place
            Xt = transformers.fit_transform(X, y)
            names = transformers.get_feature_names_out(names)
        else:
            Xt = X
        last.fit(Xt, y, feature_names=[str(n) for n in names])
        return self


def with_preprocessing(
    learner: BaseEstimator, config: PreprocessConfig | None = None, *, feature_names: Sequence[str] | None = None
) -> Pipeline:
    """``learner`` behind the preprocessing steps, as one estimator fitted on the training split only.

    With ``feature_names`` (one per input column) and a learner whose ``fit`` takes ``feature_names``,
    the result is a :class:`NamedPipeline` that passes the learner the names of the columns left after
    preprocessing (PCA components are named ``pca0``, ``pca1``, ...).
    """
    pipeline = make_preprocessor(config)
    steps = [*pipeline.steps, ("learner", learner)]
    if feature_names is not None and _takes_feature_names(learner):
        return NamedPipeline(steps, feature_names=list(feature_names))
    return Pipeline(steps)
