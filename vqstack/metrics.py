"""Agreement between predicted quality scores and mean opinion scores (MOS).

Why one module: every table in vqstack (fusion reports, benchmarks, tests) must compute the same
numbers the same way, with the same handling of degenerate inputs. All functions are pure numpy/scipy.

Definitions
-----------
- **SROCC**: Spearman rank-order correlation, Pearson correlation of the average ranks (ties get the
  mean of their ranks), on the raw predictions.
- **KROCC**: Kendall's tau-b (ties in either variable corrected), on the raw predictions.
- **PLCC**: Pearson linear correlation. :func:`plcc` is the plain one on raw predictions;
  :func:`plcc_fitted` and :func:`rmse_fitted` first map predictions to the MOS scale with the VQEG
  4-parameter logistic (VQEG, "Final report from the Video Quality Experts Group on the validation of
  objective models of video quality assessment", Phase II, 2003)::

      f(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2

  initialised at ``[max MOS, min MOS, mean prediction, 0.5]`` as in SimpleVQA (sunwei925/SimpleVQA,
  ``fit_function``), which the KVQ baseline and most recent VQA papers use.
- **KVQ challenge score** (NTIRE 2024 short-form UGC VQA, lixinustc/KVQ-Challenge-CVPR-NTIRE2024,
  ``metric_score.py``): ``0.45 SROCC + 0.45 PLCC + 0.05 acc(non-source pairs) + 0.05 acc(source pairs)``.
  As in the official script, SROCC and PLCC are the *plain* correlations (no logistic fit); each rank pair
  ``(video1, video2, label)`` has label 1 when video1 is better, 2 otherwise; the prediction says 1 when
  ``score1 >= score2`` (a tie counts as "first is better"); accuracy is the fraction of pairs whose
  predicted label equals the given one. "Source" pairs are two processed versions of the same source
  video, "non-source" pairs come from different sources. The challenge ships its pairs in a spreadsheet;
  :meth:`RankPairs.from_ids` takes such rows, :meth:`RankPairs.from_groups` builds pairs from MOS.

Degenerate inputs never give a silently wrong number: NaN/inf or mismatched lengths raise
:class:`ValueError`; a constant vector, fewer than 3 samples or an empty pair set give NaN with a
:class:`MetricWarning`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special, stats

__all__ = [
    "LogisticFit",
    "MetricWarning",
    "RankPairs",
    "bootstrap_srocc_ci",
    "evaluate",
    "fit_logistic_4",
    "krocc",
    "kvq_score",
    "logistic_4",
    "plcc",
    "plcc_fitted",
    "rank_pair_accuracy",
    "rmse_fitted",
    "srocc",
]

MIN_SAMPLES = 3
"""Fewest samples for which a correlation is reported (with 2 it is always +-1)."""

MIN_SAMPLES_LOGISTIC = 5
"""Fewest samples for a 4-parameter logistic fit (with 4 or fewer it interpolates exactly)."""


class MetricWarning(UserWarning):
    """A metric could not be computed as defined (NaN returned, or a fallback was used)."""


def _as_vector(values: ArrayLike, name: str) -> NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of scores, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        shown = ", ".join(str(i) for i in bad[:10]) + (" ..." if bad.size > 10 else "")
        raise ValueError(f"{name} has {bad.size} non-finite value(s) (NaN or inf) at position(s) {shown}")
    return arr


def _pair(pred: ArrayLike, mos: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    p = _as_vector(pred, "pred")
    m = _as_vector(mos, "mos")
    if p.shape != m.shape:
        raise ValueError(f"pred and mos differ in length: {p.size} vs {m.size}")
    return p, m


def _degenerate(p: NDArray[np.float64], m: NDArray[np.float64], metric: str) -> str | None:
    """The reason ``metric`` is undefined on (p, m), or None when it is defined."""
    if p.size < MIN_SAMPLES:
        return f"{metric} needs at least {MIN_SAMPLES} samples, got {p.size}"
    if np.ptp(p) == 0:
        return f"{metric} is undefined for constant predictions (all {p[0]:g})"
    if np.ptp(m) == 0:
        return f"{metric} is undefined for constant MOS (all {m[0]:g})"
    return None


def _nan(reason: str) -> float:
    warnings.warn(f"{reason}; returning NaN", MetricWarning, stacklevel=3)
    return math.nan


def srocc(pred: ArrayLike, mos: ArrayLike) -> float:
    """Spearman rank-order correlation between predictions and MOS (NaN + warning if undefined)."""
    p, m = _pair(pred, mos)
    reason = _degenerate(p, m, "SROCC")
    if reason:
        return _nan(reason)
    return float(stats.spearmanr(p, m)[0])


def krocc(pred: ArrayLike, mos: ArrayLike) -> float:
    """Kendall's tau-b between predictions and MOS (NaN + warning if undefined)."""
    p, m = _pair(pred, mos)
    reason = _degenerate(p, m, "KROCC")
    if reason:
        return _nan(reason)
    return float(stats.kendalltau(p, m, variant="b")[0])


def plcc(pred: ArrayLike, mos: ArrayLike) -> float:
    """Plain Pearson correlation of raw predictions and MOS (no logistic mapping)."""
    p, m = _pair(pred, mos)
    reason = _degenerate(p, m, "PLCC")
    if reason:
        return _nan(reason)
    return float(np.clip(np.corrcoef(p, m)[0, 1], -1.0, 1.0))


def logistic_4(x: ArrayLike, b1: float, b2: float, b3: float, b4: float) -> NDArray[np.float64]:
    """VQEG 4-parameter logistic ``(b1 - b2) / (1 + exp(-(x - b3)/|b4|)) + b2``.

    Written with :func:`scipy.special.expit` so that large arguments do not overflow.
    """
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return b2 + (b1 - b2) * special.expit((x - b3) / abs(b4))


def _logistic_4_jacobian(x: NDArray[np.float64], b1: float, b2: float, b3: float, b4: float) -> NDArray[np.float64]:
    """Analytic derivatives of :func:`logistic_4` with respect to b1..b4 (one row per sample).

    Why analytic: with finite differences ``curve_fit`` steps each parameter relative to its value, so
    when the mean prediction (the start of b3) is ~0, as for z-scored predictions, b3 never moves.
    """
    scale = abs(b4) if b4 != 0 else 1e-12
    s = special.expit((x - b3) / scale)
    ds = s * (1 - s) * (b1 - b2)
    return np.column_stack([s, 1 - s, -ds / scale, -ds * (x - b3) / scale**2 * np.sign(b4)])


@dataclass(frozen=True)
class LogisticFit:
    """A fitted mapping from predictions to the MOS scale.

    ``kind`` is ``"logistic"`` (params = b1..b4) or ``"linear"`` (params = slope, intercept), the
    latter only when the logistic fit failed (a :class:`MetricWarning` says so).
    """

    params: tuple[float, ...]
    kind: Literal["logistic", "linear"]

    def __call__(self, x: ArrayLike) -> NDArray[np.float64]:
        """Map raw predictions ``x`` to the MOS scale."""
        if self.kind == "logistic":
            return logistic_4(x, *self.params)
        slope, intercept = self.params
        return slope * np.asarray(x, dtype=np.float64) + intercept


def _linear_fit(p: NDArray[np.float64], m: NDArray[np.float64]) -> LogisticFit:
    if np.ptp(p) == 0:
        return LogisticFit((0.0, float(m.mean())), "linear")
    slope, intercept = np.polyfit(p, m, 1)
    return LogisticFit((float(slope), float(intercept)), "linear")


def fit_logistic_4(pred: ArrayLike, mos: ArrayLike, *, maxfev: int = 20000) -> LogisticFit:
    """Fit the VQEG 4-parameter logistic from predictions to MOS.

    Why not plain ``curve_fit`` as SimpleVQA does: its ``maxfev=1e8`` can spin for minutes and a
    failure raises in the middle of a report. Here the SimpleVQA start ``[max MOS, min MOS, mean
    pred, 0.5]`` is tried first, then a scale-aware start (b4 = std of predictions, which matters
    when predictions are not on a 0-1 scale); the start with the lower squared error wins. If both
    fail (or there are fewer than 5 samples) a least-squares line is returned with a warning.
    """
    p, m = _pair(pred, mos)
    if p.size < MIN_SAMPLES_LOGISTIC or np.ptp(p) == 0:
        warnings.warn(
            f"logistic fit needs at least {MIN_SAMPLES_LOGISTIC} samples and non-constant predictions "
            f"(got {p.size} samples, range {np.ptp(p):g}); using a linear fit instead",
            MetricWarning,
            stacklevel=2,
        )
        return _linear_fit(p, m)
    spread = float(p.std()) or 1.0
    starts = (
        [float(m.max()), float(m.min()), float(p.mean()), 0.5],
        [float(m.max()), float(m.min()), float(p.mean()), spread],
    )
    best: tuple[float, NDArray[np.float64]] | None = None
    for p0 in starts:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optimize.OptimizeWarning)
                popt, _ = optimize.curve_fit(logistic_4, p, m, p0=p0, jac=_logistic_4_jacobian, maxfev=maxfev)
        except (RuntimeError, ValueError, FloatingPointError):
            continue
        fitted = logistic_4(p, *popt)
        if not (np.all(np.isfinite(popt)) and np.all(np.isfinite(fitted))) or popt[3] == 0:
            continue
        sse = float(np.sum((fitted - m) ** 2))
        if best is None or sse < best[0]:
            best = (sse, popt)
    if best is None:
        warnings.warn(
            "4-parameter logistic fit did not converge; using a linear fit instead",
            MetricWarning,
            stacklevel=2,
        )
        return _linear_fit(p, m)
    return LogisticFit(tuple(float(b) for b in best[1]), "logistic")


def plcc_fitted(pred: ArrayLike, mos: ArrayLike) -> float:
    """Pearson correlation after mapping predictions to MOS with :func:`fit_logistic_4`."""
    p, m = _pair(pred, mos)
    reason = _degenerate(p, m, "fitted PLCC")
    if reason:
        return _nan(reason)
    mapped = fit_logistic_4(p, m)(p)
    if np.ptp(mapped) == 0:
        return _nan("fitted PLCC: the logistic mapping is flat on these predictions")
    return float(np.clip(np.corrcoef(mapped, m)[0, 1], -1.0, 1.0))


def rmse_fitted(pred: ArrayLike, mos: ArrayLike) -> float:
    """Root-mean-square error, in MOS units, after the logistic mapping of :func:`fit_logistic_4`."""
    p, m = _pair(pred, mos)
    if p.size < MIN_SAMPLES:
        return _nan(f"fitted RMSE needs at least {MIN_SAMPLES} samples, got {p.size}")
    mapped = fit_logistic_4(p, m)(p)
    return float(np.sqrt(np.mean((mapped - m) ** 2)))


_BOOTSTRAP_CHUNK = 4_000_000


def _row_spearman(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Spearman correlation of each row of ``a`` with the same row of ``b`` (NaN for constant rows)."""
    ra = stats.rankdata(a, axis=1)
    rb = stats.rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    denom = np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return (ra * rb).sum(axis=1) / denom


def bootstrap_srocc_ci(
    pred: ArrayLike,
    mos: ArrayLike,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of SROCC (resampling videos with replacement).

    Why: a median SROCC over 10 splits of a few hundred videos moves by several hundredths between
    seeds; the interval says how much of a difference between two learners is noise. Seeded, so
    the same inputs always give the same interval. Resamples that happen to be constant are dropped.
    """
    p, m = _pair(pred, mos)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    reason = _degenerate(p, m, "SROCC bootstrap")
    if reason:
        _nan(reason)
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    # Chunks of resamples keep the index and rank matrices near 4 M entries, whatever the number of videos.
    chunk = max(1, _BOOTSTRAP_CHUNK // p.size)
    parts = []
    for start in range(0, n_resamples, chunk):
        idx = rng.integers(0, p.size, size=(min(chunk, n_resamples - start), p.size))
        parts.append(_row_spearman(p[idx], m[idx]))
    rho = np.concatenate(parts)
    rho = rho[np.isfinite(rho)]
    if rho.size < 0.5 * n_resamples:
        _nan(f"SROCC bootstrap: only {rho.size} of {n_resamples} resamples were non-constant")
        return (math.nan, math.nan)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(rho, [alpha, 1 - alpha])
    return (float(low), float(high))


@dataclass(frozen=True)
class RankPairs:
    """Pairs of samples with a known order, as in the KVQ challenge's rank-pair sheets.

    ``first`` and ``second`` index the prediction vector; ``labels`` is 1 where ``first`` is the
    better one and 2 where ``second`` is (the official coding).
    """

    first: NDArray[np.intp]
    second: NDArray[np.intp]
    labels: NDArray[np.int8]

    def __post_init__(self) -> None:
        shapes = {np.shape(self.first), np.shape(self.second), np.shape(self.labels)}
        if len(shapes) != 1 or np.ndim(self.first) != 1:
            raise ValueError("RankPairs: first, second and labels must be 1-D arrays of one length")
        if not np.isin(self.labels, (1, 2)).all():
            raise ValueError("RankPairs: labels must be 1 (first is better) or 2 (second is better)")

    def __len__(self) -> int:
        return int(np.size(self.first))

    @classmethod
    def from_ids(cls, ids: Sequence[str], rows: Iterable[tuple[str, str, int]]) -> RankPairs:
        """Pairs from ``(id1, id2, label)`` rows such as the KVQ ``rank-pair-val.xlsx`` sheets.

        Raises :class:`KeyError` listing the ids of ``rows`` that are not in ``ids``.
        """
        index = {name: i for i, name in enumerate(ids)}
        first: list[int] = []
        second: list[int] = []
        labels: list[int] = []
        missing: list[str] = []
        for a, b, label in rows:
            for name in (a, b):
                if name not in index:
                    missing.append(name)
            if a in index and b in index:
                first.append(index[a])
                second.append(index[b])
                labels.append(int(label))
        if missing:
            shown = ", ".join(sorted(set(missing))[:10])
            raise KeyError(f"{len(set(missing))} id(s) of the rank pairs are not among the predictions: {shown}")
        return cls(np.asarray(first, np.intp), np.asarray(second, np.intp), np.asarray(labels, np.int8))

    @classmethod
    def from_groups(
        cls,
        groups: Sequence[str],
        mos: ArrayLike,
        *,
        kind: Literal["source", "nonsource"],
        max_pairs: int | None = 100_000,
        seed: int = 0,
    ) -> RankPairs:
        """All pairs with different MOS within one group (``source``) or across groups (``nonsource``).

        Labels come from the MOS. Pairs with equal MOS are left out (they have no order). When more
        than ``max_pairs`` qualify, a seeded random subset is kept, so that large sets stay cheap:
        beyond a few million candidate pairs, pairs are drawn at random instead of enumerated (memory
        stays bounded for 40,000-video sets). ``first < second`` in every pair.
        """
        if kind not in ("source", "nonsource"):
            raise ValueError(f"kind must be 'source' or 'nonsource', got {kind!r}")
        m = _as_vector(mos, "mos")
        g = np.asarray(groups)
        if g.shape != m.shape:
            raise ValueError(f"groups and mos differ in length: {g.size} vs {m.size}")
        _, codes, sizes = np.unique(g, return_inverse=True, return_counts=True)
        n_source = int((sizes * (sizes - 1) // 2).sum())
        n_candidates = n_source if kind == "source" else m.size * (m.size - 1) // 2 - n_source
        rng = np.random.default_rng(seed)
        if max_pairs is not None and n_candidates > _ENUMERATE_LIMIT:
            i, j = _sample_pairs(codes.reshape(-1), sizes, m, kind, max_pairs, rng)
        else:
            i, j = _enumerate_pairs(codes.reshape(-1), kind, m.size)
            keep = m[i] != m[j]
            i, j = i[keep], j[keep]
            if max_pairs is not None and i.size > max_pairs:
                chosen = np.sort(rng.choice(i.size, size=max_pairs, replace=False))
                i, j = i[chosen], j[chosen]
        labels = np.where(m[i] > m[j], 1, 2).astype(np.int8)
        return cls(i.astype(np.intp), j.astype(np.intp), labels)


_ENUMERATE_LIMIT = 4_000_000


def _enumerate_pairs(codes: NDArray[np.intp], kind: str, n: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    if kind == "nonsource":
        i, j = np.triu_indices(n, k=1)
        keep = codes[i] != codes[j]
        return i[keep], j[keep]
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
    ends = np.r_[starts[1:], n]
    firsts, seconds = [], []
    for start, end in zip(starts, ends, strict=True):
        if end - start < 2:
            continue
        members = np.sort(order[start:end])
        a, b = np.triu_indices(end - start, k=1)
        firsts.append(members[a])
        seconds.append(members[b])
    if not firsts:
        return np.empty(0, np.intp), np.empty(0, np.intp)
    return np.concatenate(firsts), np.concatenate(seconds)


def _sample_pairs(
    codes: NDArray[np.intp],
    sizes: NDArray[np.intp],
    m: NDArray[np.float64],
    kind: str,
    max_pairs: int,
    rng: np.random.Generator,
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Up to ``max_pairs`` distinct random pairs of the wanted kind with different MOS (i < j)."""
    n = m.size
    order = np.argsort(codes, kind="stable")
    offsets = np.r_[0, np.cumsum(sizes)[:-1]]
    weights = sizes * (sizes - 1) / 2.0
    found = np.empty(0, dtype=np.int64)
    for _ in range(50):
        draw = 2 * max_pairs
        if kind == "source":
            group = rng.choice(sizes.size, size=draw, p=weights / weights.sum())
            a = rng.integers(0, sizes[group])
            b = rng.integers(0, sizes[group] - 1)
            b = b + (b >= a)
            i, j = order[offsets[group] + a], order[offsets[group] + b]
        else:
            i, j = rng.integers(0, n, size=draw), rng.integers(0, n, size=draw)
            keep = codes[i] != codes[j]
            i, j = i[keep], j[keep]
        i, j = np.minimum(i, j), np.maximum(i, j)
        keep = m[i] != m[j]
        found = np.unique(np.r_[found, i[keep].astype(np.int64) * n + j[keep]])
        if found.size >= max_pairs:
            break
    if found.size > max_pairs:
        found = np.sort(rng.choice(found, size=max_pairs, replace=False))
    return (found // n).astype(np.intp), (found % n).astype(np.intp)


def rank_pair_accuracy(pred: ArrayLike, pairs: RankPairs, *, ties: Literal["first", "half"] = "first") -> float:
    """Fraction of ``pairs`` whose order the predictions get right.

    ``ties="first"`` is the official KVQ rule (a predicted tie says "first is better"), which makes the
    result depend on how the pairs are oriented; ``ties="half"`` counts a tie as half right, which is
    orientation-free and what :func:`evaluate` uses for pairs it builds itself.
    """
    p = _as_vector(pred, "pred")
    if len(pairs) == 0:
        return _nan("rank-pair accuracy over an empty set of pairs")
    if max(pairs.first.max(), pairs.second.max()) >= p.size or min(pairs.first.min(), pairs.second.min()) < 0:
        raise ValueError(f"rank pairs index outside the {p.size} predictions")
    s1, s2 = p[pairs.first], p[pairs.second]
    predicted = np.where(s1 >= s2, 1, 2)
    correct = (predicted == pairs.labels).astype(np.float64)
    if ties == "half":
        correct[s1 == s2] = 0.5
    elif ties != "first":
        raise ValueError(f"ties must be 'first' or 'half', got {ties!r}")
    return float(correct.mean())


def kvq_score(
    pred: ArrayLike,
    mos: ArrayLike,
    *,
    source_pairs: RankPairs,
    nonsource_pairs: RankPairs,
    ties: Literal["first", "half"] = "first",
) -> dict[str, float]:
    """The NTIRE 2024 KVQ challenge score and its parts.

    Returns ``kvq_score``, ``srocc``, ``plcc`` (plain, as officially), ``acc_nonsource``, ``acc_source``.
    The score is NaN (with a warning) when any part is undefined.
    """
    s = srocc(pred, mos)
    r = plcc(pred, mos)
    acc_non = rank_pair_accuracy(pred, nonsource_pairs, ties=ties)
    acc_src = rank_pair_accuracy(pred, source_pairs, ties=ties)
    score = 0.45 * s + 0.45 * r + 0.05 * acc_non + 0.05 * acc_src
    return {"kvq_score": score, "srocc": s, "plcc": r, "acc_nonsource": acc_non, "acc_source": acc_src}


def evaluate(
    pred: ArrayLike,
    mos: ArrayLike,
    *,
    groups: Sequence[str] | None = None,
    source_pairs: RankPairs | None = None,
    nonsource_pairs: RankPairs | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Every metric of one prediction vector, as a flat dict of floats (NaN where undefined).

    Keys: ``n``, ``srocc``, ``krocc``, ``plcc``, ``plcc_fitted``, ``rmse_fitted``, ``srocc_ci_low``,
    ``srocc_ci_high`` and ``rank_acc`` (all pairs with distinct MOS, ties count half). With
    ``groups`` (source video of each sample) or explicit pairs, also ``acc_source``, ``acc_nonsource``
    and ``kvq_score``; explicit pairs are scored with the official tie rule, pairs built from groups
    with ties counting half.
    """
    p, m = _pair(pred, mos)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MetricWarning)
        out: dict[str, float] = {
            "n": float(p.size),
            "srocc": srocc(p, m),
            "krocc": krocc(p, m),
            "plcc": plcc(p, m),
            "plcc_fitted": plcc_fitted(p, m),
            "rmse_fitted": rmse_fitted(p, m),
        }
        out["srocc_ci_low"], out["srocc_ci_high"] = bootstrap_srocc_ci(p, m, n_resamples=n_resamples, seed=seed)
        everyone = RankPairs.from_groups(["all"] * p.size, m, kind="source", seed=seed)
        out["rank_acc"] = rank_pair_accuracy(p, everyone, ties="half")
        single_source = (groups is not None and source_pairs is None and nonsource_pairs is None
                         and len(set(groups)) < 2)
        if single_source:  # (a leave-one-source-out split): no pairs across sources, so no KVQ score
            assert groups is not None
            pairs = RankPairs.from_groups(groups, m, kind="source", seed=seed)
            out.update({"acc_source": rank_pair_accuracy(p, pairs, ties="half"), "acc_nonsource": float("nan"),
                        "kvq_score": float("nan")})
        elif groups is not None or source_pairs is not None or nonsource_pairs is not None:
            ties: Literal["first", "half"] = "first"
            if source_pairs is None or nonsource_pairs is None:
                if groups is None:
                    raise ValueError("give both source_pairs and nonsource_pairs, or groups")
                ties = "half"
                if source_pairs is None:
                    source_pairs = RankPairs.from_groups(groups, m, kind="source", seed=seed)
                if nonsource_pairs is None:
                    nonsource_pairs = RankPairs.from_groups(groups, m, kind="nonsource", seed=seed)
            kvq = kvq_score(p, m, source_pairs=source_pairs, nonsource_pairs=nonsource_pairs, ties=ties)
            out.update({k: kvq[k] for k in ("acc_source", "acc_nonsource", "kvq_score")})
    # One warning per distinct reason, attributed to the caller, instead of a cascade.
    for message in dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, MetricWarning)):
        warnings.warn(message, MetricWarning, stacklevel=2)
    for w in caught:
        if not issubclass(w.category, MetricWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return out
