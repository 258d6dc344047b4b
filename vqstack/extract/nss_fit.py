"""Moment-matching fits of the generalised Gaussian (GGD) and asymmetric GGD (AGGD).

Definitions
-----------
GGD (Sharifi & Leon-Garcia 1995), zero mean, shape ``alpha``, variance ``sigma2``::

    f(x) = alpha / (2 beta Gamma(1/alpha)) exp(-(|x| / beta)^alpha),
    beta = sigma sqrt(Gamma(1/alpha) / Gamma(3/alpha)).

Its moment ratio ``rho(alpha) = E[|x|]^2 / E[x^2] = Gamma(2/alpha)^2 / (Gamma(1/alpha) Gamma(3/alpha))``
is strictly increasing in ``alpha`` (0 as alpha -> 0, 1/2 at alpha = 1, 2/pi at alpha = 2, 3/4 as
alpha -> inf),
so the shape is recovered by inverting ``rho`` on the sample ratio (the estimator BRISQUE uses).

AGGD (Lasmar, Stitou & Berthoumieu 2009; used by BRISQUE, Mittal, Moorthy & Bovik 2012): left and right
scales ``sigma_l``, ``sigma_r`` estimated from the negative and positive samples, ``gamma = sigma_l/sigma_r``,
``R = rho_hat (gamma^3 + 1)(gamma + 1) / (gamma^2 + 1)^2``, ``alpha = rho^-1(R)`` and the mean
``eta = (beta_r - beta_l) Gamma(2/alpha) / Gamma(1/alpha)`` with ``beta_side = sigma_side sqrt(G(1/a)/G(3/a))``.

Why a lookup table: inverting ``rho`` per sample with a root finder costs a Python call per fit; a
precomputed monotone table inverted by linear interpolation is vectorised over any batch of fits and is
accurate to ~1e-4 in ``alpha``. Fits take sufficient statistics (sums), so callers can compute them with
cheap in-place reductions and fit many maps at once.

Degenerate samples (all zeros) have no defined shape; they return ``alpha = 0`` and zero variances so
that the features stay finite and "no signal" maps to 0 (e.g. the frame difference of identical frames).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import gammaln

ALPHA_MIN = 0.1
ALPHA_MAX = 10.0
_TABLE_SIZE = 4096
_EPS = 1e-12


def ggd_ratio(alpha: np.ndarray | float) -> np.ndarray:
    """``rho(alpha) = Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a))``, computed with log-gammas for stability."""
    a = np.asarray(alpha, dtype=np.float64)
    return np.exp(2.0 * gammaln(2.0 / a) - gammaln(1.0 / a) - gammaln(3.0 / a))


@lru_cache(maxsize=1)
def _ratio_table() -> tuple[np.ndarray, np.ndarray]:
    """Monotone table (rho, alpha) on a geometric alpha grid; built once, lazily (no work at import)."""
    alpha = np.geomspace(ALPHA_MIN, ALPHA_MAX, _TABLE_SIZE)
    return ggd_ratio(alpha), alpha


def invert_ggd_ratio(rho: np.ndarray | float) -> np.ndarray:
    """Shape ``alpha`` whose GGD moment ratio equals ``rho`` (clipped to [ALPHA_MIN, ALPHA_MAX])."""
    table_rho, table_alpha = _ratio_table()
    return np.interp(np.asarray(rho, dtype=np.float64), table_rho, table_alpha)


def _gamma_factors(alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sqrt(G(1/a)/G(3/a))`` and ``G(2/a)/G(1/a)``: scale-to-beta and beta-to-mean-abs factors."""
    a = np.maximum(alpha, ALPHA_MIN)
    g1, g2, g3 = gammaln(1.0 / a), gammaln(2.0 / a), gammaln(3.0 / a)
    return np.exp(0.5 * (g1 - g3)), np.exp(g2 - g1)


def ggd_from_moments(mean_abs: np.ndarray | float, mean_sq: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Zero-mean GGD fit from ``E|x|`` and ``E[x^2]`` (vectorised). Returns ``(alpha, sigma2)``."""
    m1 = np.asarray(mean_abs, dtype=np.float64)
    m2 = np.asarray(mean_sq, dtype=np.float64)
    valid = m2 > _EPS
    rho = np.where(valid, m1 * m1 / np.where(valid, m2, 1.0), 0.0)
    alpha = np.where(valid, invert_ggd_ratio(rho), 0.0)
    return alpha, np.where(valid, m2, 0.0)


def fit_ggd(x: np.ndarray) -> tuple[float, float]:
    """Zero-mean GGD fit ``(alpha, sigma2)`` of the samples ``x`` (any shape) by moment matching."""
    x = np.asarray(x)
    if x.size == 0:
        return 0.0, 0.0
    alpha, sigma2 = ggd_from_moments(np.mean(np.abs(x), dtype=np.float64), np.mean(np.square(x), dtype=np.float64))
    return float(alpha), float(sigma2)


def aggd_stats(x: np.ndarray, work: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Sufficient statistics of an AGGD fit: ``[n, sum|x|, sum x^2 (x<0), n(x<0), sum x^2 (x>0), n(x>0)]``.

    Why sums: they can be reduced with a few passes over a float32 map without boolean indexing (which
    copies), and statistics of several maps can be stacked and fitted in one vectorised call.
    ``work`` optionally gives two float scratch arrays and one bool scratch array of at least ``x.size``
    elements: reusing them instead of allocating per call halves the cost on large frames (fresh large
    arrays cost page faults). Reductions are numpy's pairwise sums in the input precision.
    """
    x = np.asarray(x).ravel()
    n = x.size
    if work is None:
        t1, t2, flags = np.empty_like(x), np.empty_like(x), np.empty(n, dtype=bool)
    else:
        t1, t2, flags = work[0][:n], work[1][:n], work[2][:n]
    neg = np.minimum(x, 0, out=t1)
    sum_neg = float(np.add.reduce(neg))
    sq_neg = float(np.add.reduce(np.multiply(neg, neg, out=t2)))
    pos = np.subtract(x, neg, out=t1)
    sq_pos = float(np.add.reduce(np.multiply(pos, pos, out=t2)))
    abs_sum = float(np.add.reduce(x)) - 2.0 * sum_neg
    n_neg = float(np.count_nonzero(np.less(x, 0, out=flags)))
    n_pos = float(np.count_nonzero(np.greater(x, 0, out=flags)))
    return np.array([n, abs_sum, sq_neg, n_neg, sq_pos, n_pos], dtype=np.float64)


def aggd_from_stats(stats: np.ndarray) -> np.ndarray:
    """AGGD fit from stacked :func:`aggd_stats` rows ``[..., 6]``. Returns ``[..., 4]``:
    ``(alpha, eta, sigma_l^2, sigma_r^2)`` — BRISQUE's shape, mean, left and right variance."""
    s = np.asarray(stats, dtype=np.float64)
    n, abs_sum, sq_neg, n_neg, sq_pos, n_pos = np.moveaxis(s, -1, 0)
    var_l = np.where(n_neg > 0, sq_neg / np.maximum(n_neg, 1.0), 0.0)
    var_r = np.where(n_pos > 0, sq_pos / np.maximum(n_pos, 1.0), 0.0)
    mean_sq = (sq_neg + sq_pos) / np.maximum(n, 1.0)
    mean_abs = abs_sum / np.maximum(n, 1.0)
    valid = mean_sq > _EPS
    rho = np.where(valid, mean_abs**2 / np.where(valid, mean_sq, 1.0), 0.0)
    gamma = np.clip(np.sqrt(var_l) / np.maximum(np.sqrt(var_r), _EPS), 1e-6, 1e6)
    big_r = rho * (gamma**3 + 1.0) * (gamma + 1.0) / (gamma**2 + 1.0) ** 2
    alpha = np.where(valid, invert_ggd_ratio(big_r), 0.0)
    to_beta, to_mean = _gamma_factors(alpha)
    eta = np.where(valid, (np.sqrt(var_r) - np.sqrt(var_l)) * to_beta * to_mean, 0.0)
    return np.stack([alpha, eta, var_l, var_r], axis=-1)


def fit_aggd(x: np.ndarray) -> tuple[float, float, float, float]:
    """AGGD fit ``(alpha, eta, sigma_l2, sigma_r2)`` of the samples ``x`` (any shape)."""
    x = np.asarray(x)
    if x.size == 0:
        return 0.0, 0.0, 0.0, 0.0
    a, e, vl, vr = aggd_from_stats(aggd_stats(x))
    return float(a), float(e), float(vl), float(vr)
