"""Helpers shared by the fusion estimators (kept apart so that the learner modules do not import each other)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.utils.validation import check_is_fitted

from vqstack.errors import NotFittedError

__all__ = ["FusionNotFittedError", "check_fitted", "standardize_target"]


class FusionNotFittedError(NotFittedError, SklearnNotFittedError):
    """Not fitted: both vqstack's error (one-line CLI message) and scikit-learn's (its checks expect it)."""


def check_fitted(estimator: BaseEstimator) -> None:
    """Raise :class:`FusionNotFittedError` if ``estimator`` is not fitted.

    Why: the CLI reports every :class:`~vqstack.errors.VqstackError` as a one-line message, while
    scikit-learn code and its conformance checks catch :class:`sklearn.exceptions.NotFittedError`;
    the error raised here is both.
    """
    try:
        check_is_fitted(estimator)
    except SklearnNotFittedError as exc:
        raise FusionNotFittedError(str(exc)) from exc


def standardize_target(y: NDArray[np.float64]) -> tuple[NDArray[np.float64], float, float]:
    """``(y - mean) / std`` with its mean and std (std 1 for a constant target, never a division by 0)."""
    mean = float(y.mean())
    scale = float(y.std())
    if not np.isfinite(scale) or scale == 0:
        scale = 1.0
    return (y - mean) / scale, mean, scale
