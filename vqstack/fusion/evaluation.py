"""Fit a learner on every split of a protocol and score it on the held-out side.

Why separate from the protocols: the loop is where leakage happens in practice (a scaler or a PCA
fitted before splitting, a hyper-parameter picked on the test side). Here the estimator is built
fresh by a factory for each split and sees only the training rows; preprocessing belongs inside it
(:func:`vqstack.fusion.preprocessing.with_preprocessing`).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from vqstack.fusion.protocols import Split
from vqstack.metrics import MetricWarning, evaluate

__all__ = ["SUMMARY_STATS", "SplitResult", "run_protocol", "summarize"]

SUMMARY_STATS = ("median", "q1", "q3", "iqr", "min", "max", "mean", "std", "n")


@dataclasses.dataclass
class SplitResult:
    """What one split produced: plain data, ready for :mod:`vqstack.fusion.report` or JSON.

    ``test_idx`` are row positions in the matrix given to :func:`run_protocol`; ``mos`` and
    ``predictions`` are aligned with them. ``estimator`` is kept only when asked for.
    """

    learner: str
    split: str
    train_idx: NDArray[np.intp]
    test_idx: NDArray[np.intp]
    mos: NDArray[np.float64]
    predictions: NDArray[np.float64]
    metrics: dict[str, float]
    fit_seconds: float
    predict_seconds: float
    estimator: Any = None

    def to_dict(self, ids: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-able summary (no arrays of the training side, no estimator)."""
        out: dict[str, Any] = {
            "learner": self.learner,
            "split": self.split,
            "n_train": int(self.train_idx.size),
            "n_test": int(self.test_idx.size),
            "fit_seconds": self.fit_seconds,
            "predict_seconds": self.predict_seconds,
            "metrics": dict(self.metrics),
        }
        if ids is not None:
            out["test_ids"] = [ids[i] for i in self.test_idx]
        return out


def run_protocol(
    estimator_factory: Callable[[], Any],
    X: ArrayLike,
    y: ArrayLike,
    splits: Iterable[Split],
    *,
    learner: str = "model",
    groups: Sequence[str] | None = None,
    metrics_fn: Callable[..., Mapping[str, float]] | None = None,
    keep_estimators: bool = False,
    seed: int = 0,
) -> list[SplitResult]:
    """Fit ``estimator_factory()`` on each split's training rows and evaluate on its test rows.

    ``groups`` (e.g. source videos), when given, are passed to :func:`vqstack.metrics.evaluate` for
    the source / non-source rank accuracies and the KVQ score. ``metrics_fn(pred, mos, groups=...)``
    replaces :func:`~vqstack.metrics.evaluate` if given. Metric warnings (e.g. a constant prediction)
    are re-issued once per split with the split's name.
    """
    X_arr = np.asarray(X) if not hasattr(X, "iloc") else X
    y_arr = np.asarray(y, dtype=np.float64).reshape(-1)
    if len(X_arr) != y_arr.size:
        raise ValueError(f"X has {len(X_arr)} rows but y has {y_arr.size} values")
    group_arr = None if groups is None else np.asarray(groups, dtype=str)
    if group_arr is not None and group_arr.size != y_arr.size:
        raise ValueError(f"{group_arr.size} groups for {y_arr.size} samples")
    score = metrics_fn or evaluate
    results: list[SplitResult] = []
    for name, train_idx, test_idx in splits:
        train_idx = np.asarray(train_idx, dtype=np.intp)
        test_idx = np.asarray(test_idx, dtype=np.intp)
        overlap = np.intersect1d(train_idx, test_idx)
        if overlap.size:
            raise ValueError(f"split {name}: {overlap.size} row(s) are in both the training and the test side")
        estimator = estimator_factory()
        start = time.perf_counter()
        estimator.fit(_rows(X_arr, train_idx), y_arr[train_idx])
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        pred = np.asarray(estimator.predict(_rows(X_arr, test_idx)), dtype=np.float64).reshape(-1)
        predict_seconds = time.perf_counter() - start
        mos = y_arr[test_idx]
        kwargs: dict[str, Any] = {}
        if group_arr is not None:
            kwargs["groups"] = list(group_arr[test_idx])
        if metrics_fn is None:
            kwargs["seed"] = seed
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MetricWarning)
            metrics = {k: float(v) for k, v in score(pred, mos, **kwargs).items()}
        for message in dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, MetricWarning)):
            warnings.warn(f"{learner} / {name}: {message}", MetricWarning, stacklevel=2)
        results.append(
            SplitResult(
                learner=learner,
                split=name,
                train_idx=train_idx,
                test_idx=test_idx,
                mos=mos,
                predictions=pred,
                metrics=metrics,
                fit_seconds=fit_seconds,
                predict_seconds=predict_seconds,
                estimator=estimator if keep_estimators else None,
            )
        )
    return results


def _rows(X: Any, idx: NDArray[np.intp]) -> Any:
    return X.iloc[idx] if hasattr(X, "iloc") else X[idx]


def summarize(results: Sequence[SplitResult]) -> dict[str, dict[str, dict[str, float]]]:
    """Per learner, per metric: median, quartiles, IQR, min, max, mean, std and count over splits.

    NaN values (undefined metrics) are left out of the statistics; ``n`` says how many remained.
    """
    by_learner: dict[str, list[SplitResult]] = {}
    for result in results:
        by_learner.setdefault(result.learner, []).append(result)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, items in by_learner.items():
        keys = list(dict.fromkeys(k for r in items for k in r.metrics))
        keys.append("fit_seconds")
        stats_for: dict[str, dict[str, float]] = {}
        for key in keys:
            raw = [r.fit_seconds if key == "fit_seconds" else r.metrics.get(key, math.nan) for r in items]
            values = np.asarray(raw, dtype=np.float64)
            values = values[np.isfinite(values)]
            if values.size == 0:
                stats_for[key] = {s: (0.0 if s == "n" else math.nan) for s in SUMMARY_STATS}
                continue
            q1, median, q3 = np.percentile(values, [25, 50, 75])
            stats_for[key] = {
                "median": float(median),
                "q1": float(q1),
                "q3": float(q3),
                "iqr": float(q3 - q1),
                "min": float(values.min()),
                "max": float(values.max()),
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
                "n": float(values.size),
            }
        out[name] = stats_for
    return out
