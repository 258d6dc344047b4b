"""Handcrafted natural-scene-statistics (NSS) and quality-cue features of frames and frame differences.

Pure numpy/scipy, written from the published definitions:

- BRISQUE (Mittal, Moorthy & Bovik, "No-reference image quality assessment in the spatial domain", IEEE
  TIP 2012): mean-subtracted contrast-normalised (MSCN) coefficients ``(I - mu) / (sigma + C)`` with a
  7x7 Gaussian window of sigma 7/6 and ``C = 1`` on 0-255 luminance; a zero-mean GGD fit (shape,
  variance) of the MSCN map and AGGD fits (shape, mean, left variance, right variance) of its four
  neighbour products (horizontal, vertical, main and anti diagonal), at full and half resolution
  (18 features per scale, 36 in all; the half scale is a 2x2 box average where the paper uses a bicubic
  resize). We add the MSCN GGD (shape, variance) at quarter resolution, which matters for large frames.
  Fits: :mod:`vqstack.extract.nss_fit`.
- Sigma field (the local standard deviation map of the MSCN transform; cf. FRIQUEE, Ghadiyaram & Bovik
  2017): log mean local contrast, its coefficient of variation, the share of flat pixels.
- Sharpness: log variance of the 4-neighbour Laplacian (Pech-Pacheco et al., ICPR 2000) at three scales
  and the fine-to-coarse Laplacian-energy log ratios (blur removes the finest scale first).
- Noise: Immerkaer's fast noise estimate ("Fast noise variance estimation", CVIU 1996),
  ``sigma_n = sqrt(pi/2) / (6 (W-2)(H-2)) sum |I * N|`` with ``N = [1,-2,1]^T [1,-2,1]``, over the whole
  frame and over its flattest half (edges bias the estimate upwards).
- Colour: Hasler & Suesstrunk colourfulness ("Measuring colourfulness in natural images", SPIE 2003),
  ``M = sqrt(s_rg^2 + s_yb^2) + 0.3 sqrt(m_rg^2 + m_yb^2)`` with ``rg = R - G``, ``yb = (R + G)/2 - B``;
  mean HSV saturation; mean and 90th percentile of opponent chroma; GGD of the MSCN of rg and yb.
- Exposure and contrast: mean luminance, RMS contrast, 5th / 95th luminance percentiles, fractions of
  clipped dark and bright pixels, luminance-histogram entropy.
- Blockiness: mean absolute step across the 8x8 grid boundaries over that inside blocks (the
  block-boundary measure of Wang, Bovik & Evans, ICIP 2000, in log-ratio form).

The cue groups beyond BRISQUE were chosen on a 300-image CLIVE development subset
(``scripts/check_nss_clive.py``): colour cues help most there (authentic photos), while more BRISQUE
scales, gradient percentiles and local-contrast percentiles added dimensions without accuracy.

Temporal features (frame differences of two sampled frames): motion energy (mean, RMS, 99th percentile
of the absolute luminance difference, share of changed pixels, change of mean luminance) and the NSS of
the difference (GGD of the raw difference, BRISQUE-style MSCN GGD and H/V product AGGD fits of the
difference, as used for temporal NSS e.g. by RAPIQUE, Tu et al. 2021), and a temporal noise level: the
10th percentile and median of the block-wise residual after global-motion compensation (phase
correlation), which separates frame-to-frame noise from texture where a spatial estimate cannot (added
in version 2 for the demo's noise ladders: the spatial cues read mild noise as detail). Every temporal
feature is 0 for identical frames.

Why this module is pure numpy: it must run on any CPU without torch, at video rate (float32 separable
filters, reductions instead of boolean indexing, one lookup-table fit for all maps).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from vqstack.extract.nss_fit import aggd_from_stats, aggd_stats, ggd_from_moments

FEATURES_VERSION = "3"
"""Bump when any feature's definition or order changes: stored features carry it (it is the ``nss``
extractor's version), so stale caches show. 2: motion-compensated temporal noise (``tnoise_mc_*``);
3: noise-corrected sharpness (``tsharp_*``)."""

MIN_SIDE = 32
"""Frames are upscaled (nearest neighbour) until both sides are at least this, so that three scales and
the 7x7 window remain meaningful; smaller inputs are degenerate anyway and only need finite output."""

MSCN_SIGMA = 7.0 / 6.0
MSCN_RADIUS = 3
MSCN_C = 1.0
BLOCK = 8
N_SCALES = 3
_PAIRS = ("h", "v", "d1", "d2")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _brisque_names(scale: int) -> list[str]:
    names = [f"brisque_s{scale}_mscn_shape", f"brisque_s{scale}_mscn_var"]
    for p in _PAIRS:
        names += [f"brisque_s{scale}_{p}_{k}" for k in ("shape", "mean", "lvar", "rvar")]
    return names


_SIGMA_NAMES = ("sigma_mean_log", "sigma_cov", "sigma_flat_frac")
_SHARP_NAMES = (
    *(f"sharp_s{s}_lapvar_log" for s in range(1, N_SCALES + 1)),
    "sharp_lap_ratio_12",
    "sharp_lap_ratio_23",
)
_NOISE_NAMES = ("noise_immerkaer_log", "noise_immerkaer_flat_log")
_COLOUR_NAMES = (
    "colour_hasler",
    "colour_saturation_mean",
    "colour_chroma_mean",
    "colour_chroma_p90",
    "colour_rg_mscn_shape",
    "colour_rg_mscn_var",
    "colour_yb_mscn_shape",
    "colour_yb_mscn_var",
)
_EXPOSURE_NAMES = (
    "exposure_mean",
    "exposure_rms_contrast",
    "exposure_p05",
    "exposure_p95",
    "exposure_dark_frac",
    "exposure_bright_frac",
    "exposure_entropy",
)
_BLOCK_NAMES = ("blockiness_log",)

FRAME_FEATURE_NAMES: tuple[str, ...] = (
    *_brisque_names(1),
    *_brisque_names(2),
    "brisque_s3_mscn_shape",
    "brisque_s3_mscn_var",
    *_SIGMA_NAMES,
    *_SHARP_NAMES,
    *_NOISE_NAMES,
    *_COLOUR_NAMES,
    *_EXPOSURE_NAMES,
    *_BLOCK_NAMES,
)

TEMPORAL_FEATURE_NAMES: tuple[str, ...] = (
    "motion_mad",
    "motion_rms",
    "motion_p99",
    "motion_changed_frac",
    "motion_mean_lum_change",
    "tdiff_ggd_shape",
    "tdiff_ggd_var_log",
    *(f"tdiff_s{s}_mscn_{k}" for s in (1, 2) for k in ("shape", "var")),
    *(f"tdiff_s1_{p}_{k}" for p in ("h", "v") for k in ("shape", "mean", "lvar", "rvar")),
    "tnoise_mc_p10_log",
    "tnoise_mc_p50_log",
    *(f"tsharp_s{s}_noise_loss" for s in range(1, N_SCALES + 1)),
    *(f"tsharp_s{s}_residual_log" for s in range(1, N_SCALES + 1)),
    "tsharp_ratio_12_noise_shift",
    "tsharp_ratio_23_noise_shift",
)


# --------------------------------------------------------------------------------------------------
# Input handling and basic maps
# --------------------------------------------------------------------------------------------------
def check_rgb(rgb: np.ndarray, name: str = "rgb") -> np.ndarray:
    """Validate a ``uint8 HxWx3`` frame (raises ``ValueError``; never ``assert`` on user input)."""
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"The '{name}' frame must have shape (H, W, 3) with H, W >= 1, got {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"The '{name}' frame must be uint8, got {arr.dtype}")
    return arr


def ensure_min_size(rgb: np.ndarray, min_side: int = MIN_SIDE) -> np.ndarray:
    """Nearest-neighbour upscale by an integer factor until ``min(H, W) >= min_side``.

    Why integer repetition: it adds no new values (no invented texture) and is exact and deterministic.
    """
    h, w = rgb.shape[:2]
    factor = -(-min_side // min(h, w))
    if factor <= 1:
        return rgb
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)


def rgb_planes(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contiguous float32 R, G, B planes (0-255): every colour cue and the luminance start from them,
    and contiguous planes make the later element-wise passes several times faster than strided views."""
    r, g, b = (np.ascontiguousarray(rgb[..., i], dtype=np.float32) for i in range(3))
    return r, g, b


def luminance(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` in float32 on the 0-255 scale BRISQUE's ``C=1`` assumes."""
    r, g, b = rgb_planes(rgb)
    return _luma_of(r, g, b)


def _luma_of(r: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    y = r * _LUMA[0]
    y += g * _LUMA[1]
    y += b * _LUMA[2]
    return y


def downsample2(x: np.ndarray) -> np.ndarray:
    """Halve a 2-D map by 2x2 box averaging (anti-aliased decimation); odd last rows/columns are dropped."""
    h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
    if h == 0 or w == 0:
        return x.copy()
    x = x[:h, :w]
    out = x[0::2, 0::2] + x[1::2, 0::2]
    out += x[0::2, 1::2]
    out += x[1::2, 1::2]
    out *= 0.25
    return out


def _gauss_kernel() -> np.ndarray:
    t = np.arange(-MSCN_RADIUS, MSCN_RADIUS + 1, dtype=np.float64)
    k = np.exp(-(t**2) / (2.0 * MSCN_SIGMA**2))
    return (k / k.sum()).astype(np.float32)


_KERNEL = _gauss_kernel()


def gaussian_blur(
    x: np.ndarray, out: np.ndarray | None = None, scratch: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """Separable 7x7 Gaussian (sigma 7/6) with symmetric borders: BRISQUE's local weighting window.

    Same result as ``ndimage.correlate1d`` along both axes with mode 'reflect', about twice as fast: the
    vertical pass adds shifted row slices of a padded copy (symmetric kernel, contiguous memory) and the
    horizontal pass is ``correlate1d``. ``out`` may be ``x`` itself; ``scratch`` = (padded ``[H+6, W]``,
    ``[H, W]``) float32 arrays lets callers reuse memory (fresh large arrays cost page faults).
    """
    r = MSCN_RADIUS
    h, w = x.shape
    pad, mid = scratch if scratch is not None else (np.empty((h + 2 * r, w), np.float32), None)
    mid = np.empty((h, w), np.float32) if mid is None else mid
    out = np.empty((h, w), np.float32) if out is None else out
    if h >= r:
        pad[r : r + h] = x
        pad[:r] = x[:r][::-1]
        pad[r + h :] = x[::-1][:r]
    else:
        pad[...] = np.pad(x, ((r, r), (0, 0)), mode="symmetric")
    np.multiply(pad[r : r + h], _KERNEL[r], out=mid)
    for i in range(1, r + 1):  # ``out`` serves as the temporary: ``x`` is no longer read after padding
        np.add(pad[r - i : r - i + h], pad[r + i : r + i + h], out=out)
        out *= _KERNEL[r - i]
        mid += out
    return ndimage.correlate1d(mid, _KERNEL, axis=1, mode="reflect", output=out)


def mscn(y: np.ndarray, c: float = MSCN_C) -> tuple[np.ndarray, np.ndarray]:
    """MSCN coefficients ``(y - mu) / (sigma + c)`` and the local standard deviation map ``sigma``,
    ``mu`` and ``sigma^2`` being the Gaussian-weighted local mean and variance (BRISQUE eq. 1-3)."""
    y = y.astype(np.float32, copy=False)
    h, w = y.shape
    scratch = (np.empty((h + 2 * MSCN_RADIUS, w), np.float32), np.empty((h, w), np.float32))
    mu = gaussian_blur(y, scratch=scratch)
    var = np.multiply(y, y)
    gaussian_blur(var, out=var, scratch=scratch)
    tmp = np.multiply(mu, mu, out=scratch[1])
    var -= tmp
    sigma = np.sqrt(np.abs(var, out=var), out=var)
    out = np.subtract(y, mu, out=mu)
    out /= np.add(sigma, np.float32(c), out=tmp)
    return out, sigma


_PAIR_SLICES = {
    "h": ((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
    "v": ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
    "d1": ((slice(None, -1), slice(None, -1)), (slice(1, None), slice(1, None))),
    "d2": ((slice(None, -1), slice(1, None)), (slice(1, None), slice(None, -1))),
}


def pair_products(m: np.ndarray) -> tuple[np.ndarray, ...]:
    """Horizontal, vertical, main-diagonal and anti-diagonal neighbour products of an MSCN map."""
    return tuple(m[a] * m[b] for a, b in _PAIR_SLICES.values())


def ggd_features(x: np.ndarray) -> tuple[float, float]:
    """Zero-mean GGD fit ``(shape, variance)`` of a map with pairwise float32 reductions (fast, accurate)."""
    n = max(x.size, 1)
    mean_abs = float(np.add.reduce(np.abs(x), axis=None)) / n
    mean_sq = float(np.add.reduce(x * x, axis=None)) / n
    alpha, var = ggd_from_moments(mean_abs, mean_sq)
    return float(alpha), float(var)


def brisque_scale_features(m: np.ndarray, pairs: tuple[str, ...] = _PAIRS) -> np.ndarray:
    """BRISQUE features of one scale: GGD (shape, variance) of the MSCN map and AGGD (shape, mean,
    left variance, right variance) of each requested neighbour product (18 values for all four).

    Products are formed one at a time in one reused buffer (with reused scratch for the statistics):
    on a 540p frame this halves the time against allocating four product maps.
    """
    size = m.size
    buf = np.empty(size, dtype=np.float32)
    work = (np.empty(size, dtype=np.float32), np.empty(size, dtype=np.float32), np.empty(size, dtype=bool))
    rows = []
    for p in pairs:
        a, b = _PAIR_SLICES[p]
        left, right = m[a], m[b]
        prod = np.multiply(left, right, out=buf[: left.size].reshape(left.shape))
        rows.append(aggd_stats(prod, work))
    return np.concatenate([ggd_features(m), aggd_from_stats(np.stack(rows)).ravel()])


def _subsample(x: np.ndarray, step: int = 4) -> np.ndarray:
    """Regular ``step x step`` subsample for quantiles: they need a partial sort, and 1/16 of the pixels
    pins a frame-level quantile far better than the features need."""
    return x[::step, ::step] if min(x.shape) >= 8 * step else x


# --------------------------------------------------------------------------------------------------
# Quality cues
# --------------------------------------------------------------------------------------------------
def sigma_field_features(sigma: np.ndarray) -> np.ndarray:
    """Statistics of the local-contrast map: log mean, coefficient of variation and the share of flat
    pixels (sigma < 1 grey level: clipped, over-smoothed or empty regions)."""
    n = sigma.size
    mean = float(np.add.reduce(sigma, axis=None)) / n
    var = max(float(np.add.reduce(sigma * sigma, axis=None)) / n - mean * mean, 0.0)
    flat = float(np.count_nonzero(sigma < 1.0)) / n
    return np.array([np.log1p(mean), np.sqrt(var) / (mean + 1.0), flat])


def laplacian_energy(y: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian (Pech-Pacheco et al. 2000): the classic focus measure."""
    if min(y.shape) < 3:
        return 0.0
    lap = y[1:-1, :-2] + y[1:-1, 2:]
    lap += y[:-2, 1:-1]
    lap += y[2:, 1:-1]
    lap -= 4.0 * y[1:-1, 1:-1]
    n = lap.size
    mean = float(np.add.reduce(lap, axis=None)) / n
    return max(float(np.add.reduce(lap * lap, axis=None)) / n - mean * mean, 0.0)


def immerkaer_noise(y: np.ndarray, sigma: np.ndarray | None = None) -> tuple[float, float]:
    """Immerkaer's noise standard deviation over the frame and over its flattest half.

    The flat-half estimate uses the pixels whose local standard deviation (``sigma``, the MSCN map's)
    is at most its median: image structure inflates the whole-frame estimate on textured content.
    """
    if min(y.shape) < 3:
        return 0.0, 0.0
    d2x = y[:, :-2] - 2.0 * y[:, 1:-1] + y[:, 2:]
    resp = d2x[:-2] + d2x[2:]
    resp -= 2.0 * d2x[1:-1]
    np.abs(resp, out=resp)
    scale = np.sqrt(np.pi / 2.0) / 6.0
    whole = scale * float(np.add.reduce(resp, axis=None)) / resp.size
    if sigma is None:
        return whole, whole
    s = sigma[1:-1, 1:-1]
    mask = s <= np.float32(np.median(_subsample(s)))
    n = int(np.count_nonzero(mask))
    resp *= mask
    flat = scale * float(np.add.reduce(resp, axis=None)) / max(n, 1)
    return whole, flat


def colourfulness_features(r: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Colour cues from float32 R, G, B planes (0-255).

    Hasler-Suesstrunk colourfulness (/100) on the full frame; mean HSV saturation ``(max - min) / max``
    over the pixels of even rows and columns; mean and 90th
    percentile of the opponent chroma magnitude ``sqrt(rg^2 + yb^2)`` (/255) and the GGD (shape,
    variance) of the MSCN of ``rg`` and ``yb``, both at half resolution (chroma structure: blur and
    chroma noise show there too, and half resolution halves the cost).
    """
    rg = r - g
    yb = r + g
    yb *= 0.5
    yb -= b
    n = rg.size
    m_rg, m_yb = float(np.add.reduce(rg, axis=None)) / n, float(np.add.reduce(yb, axis=None)) / n
    v_rg = max(float(np.add.reduce(rg * rg, axis=None)) / n - m_rg * m_rg, 0.0)
    v_yb = max(float(np.add.reduce(yb * yb, axis=None)) / n - m_yb * m_yb, 0.0)
    hasler = np.sqrt(v_rg + v_yb) + 0.3 * np.hypot(m_rg, m_yb)
    # Saturation on the 2x2 pixel lattice (exact per-pixel definition, a quarter of the divisions).
    rs, gs, bs = r[::2, ::2], g[::2, ::2], b[::2, ::2]
    mx = np.maximum(np.maximum(rs, gs), bs)
    spread = mx - np.minimum(np.minimum(rs, gs), bs)
    np.maximum(mx, 1.0, out=mx)
    sat = float(np.add.reduce(spread / mx, axis=None)) / max(spread.size, 1)
    rg2, yb2 = downsample2(rg), downsample2(yb)
    chroma = rg2 * rg2
    chroma += yb2 * yb2
    np.sqrt(chroma, out=chroma)
    out = [
        hasler / 100.0,
        sat,
        float(np.add.reduce(chroma, axis=None)) / max(chroma.size, 1) / 255.0,
        float(np.quantile(_subsample(chroma, 2), 0.9)) / 255.0,
    ]
    for chan in (rg2, yb2):
        out += list(ggd_features(mscn(chan)[0]))
    return np.array(out)


def exposure_features(y: np.ndarray) -> np.ndarray:
    """Mean luminance, RMS contrast, 5th / 95th luminance percentiles (all /255), clipped-dark (<= 8) and
    clipped-bright (>= 247) fractions, and the entropy (bits / 8) of the 256-bin luminance histogram.
    All from one histogram of the rounded luminance (exact, O(N), no sort)."""
    q = np.rint(y).astype(np.uint8).ravel()
    hist = np.bincount(q, minlength=256).astype(np.float64)
    p = hist / hist.sum()
    levels = np.arange(256, dtype=np.float64)
    mean = float(p @ levels)
    rms = float(np.sqrt(max(float(p @ (levels - mean) ** 2), 0.0)))
    cdf = np.cumsum(p)
    p05, p95 = (float(np.searchsorted(cdf, t)) for t in (0.05, 0.95))
    nz = p[p > 0]
    entropy = float(-(nz * np.log2(nz)).sum())
    return np.array(
        [mean / 255.0, rms / 255.0, p05 / 255.0, p95 / 255.0, p[:9].sum(), p[247:].sum(), entropy / 8.0]
    )


def blockiness(y: np.ndarray, block: int = BLOCK) -> float:
    """Log ratio of the mean absolute luminance step across ``block``-grid boundaries to that inside
    blocks (both directions pooled, +1 grey level regularises flat frames); 0 means no grid."""
    dx = np.abs(y[:, 1:] - y[:, :-1])
    dy = np.abs(y[1:, :] - y[:-1, :])
    bx = np.arange(dx.shape[1]) % block == block - 1
    by = np.arange(dy.shape[0]) % block == block - 1
    if not (bx.any() and by.any()):
        return 0.0
    col = np.add.reduce(dx, axis=0) / dx.shape[0]
    row = np.add.reduce(dy, axis=1) / dy.shape[1]
    across = 0.5 * (float(col[bx].mean()) + float(row[by].mean()))
    inside = 0.5 * (float(col[~bx].mean()) + float(row[~by].mean()))
    return float(np.log((across + 1.0) / (inside + 1.0)))


def global_shift(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """Integer translation ``(dy, dx)`` that best maps ``a`` onto ``b`` (``b[y, x] ~ a[y - dy, x - dx]``), by
    phase correlation (Kuglin & Hines 1975): the peak of the inverse FFT of the normalised cross-power
    spectrum. Why this: one global shift is the cheapest motion model that holds for pans and static
    shots, and phase correlation finds it in two FFTs, independently of brightness and contrast."""
    fa = np.fft.rfft2(a - np.float32(a.mean()))
    fb = np.fft.rfft2(b - np.float32(b.mean()))
    cross = fb * np.conj(fa)
    cross /= np.abs(cross) + 1e-6
    corr = np.fft.irfft2(cross, s=a.shape)
    dy, dx = (int(v) for v in np.unravel_index(int(np.argmax(corr)), corr.shape))
    h, w = a.shape
    return (dy - h if dy > h // 2 else dy), (dx - w if dx > w // 2 else dx)


def _overlap(prev_y: np.ndarray, y: np.ndarray, shift: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The parts of ``prev_y`` and ``y`` that show the same scene content under the translation
    ``shift`` (as :func:`global_shift` returns it); empty arrays when the shift leaves no overlap."""
    dy, dx = shift
    h, w = y.shape
    oh, ow = max(h - abs(dy), 0), max(w - abs(dx), 0)
    cur = y[max(dy, 0) : max(dy, 0) + oh, max(dx, 0) : max(dx, 0) + ow]
    ref = prev_y[max(-dy, 0) : max(-dy, 0) + oh, max(-dx, 0) : max(-dx, 0) + ow]
    return ref, cur


def temporal_noise(
    prev_y: np.ndarray, y: np.ndarray, block: int = BLOCK, shift: tuple[int, int] | None = None
) -> tuple[float, float]:
    """Motion-compensated temporal residual: 10th percentile and median over ``block x block`` blocks of
    the mean absolute difference between ``y`` and ``prev_y`` shifted by their :func:`global_shift`
    (``shift`` when the caller has it already).

    Why: temporal noise (sensor noise, film grain, dither) is independent from frame to frame while
    the scene moves coherently, so once the motion is compensated the best-matched blocks (the low
    percentile) keep only noise and coding flicker; on clean content they are ~0. Unlike a spatial noise
    estimate it does not mistake fine texture for noise. Computed at half resolution by the caller (cheap,
    and the 2x2 average keeps noise while softening sub-pixel motion). Both values are 0 for identical
    frames; blocks wholly inside the overlap of the two frames only.
    """
    ref, cur = _overlap(prev_y, y, global_shift(prev_y, y) if shift is None else shift)
    oh, ow = cur.shape
    if oh < block or ow < block:
        return 0.0, 0.0
    bh, bw = (oh // block) * block, (ow // block) * block
    res = np.abs(cur[:bh, :bw] - ref[:bh, :bw])
    blocks = res.reshape(bh // block, block, bw // block, block).mean(axis=(1, 3))
    p10, p50 = np.percentile(blocks, [10, 50])
    return float(p10), float(p50)


def temporal_sharpness(prev_y: np.ndarray, y: np.ndarray, shift: tuple[int, int]) -> np.ndarray:
    """How much of the frame's apparent sharpness is temporal noise, per scale: ``[loss_s1..s3,
    log(1 + residual_s1..s3), ratio_12 shift, ratio_23 shift]``; all zeros for identical frames.

    Why: the spatial sharpness cues (Laplacian variance, its ratio across scales) cannot tell fine
    texture from noise, so noise reads as *sharper* and a no-reference model ranks mildly noisy
    versions above their pristine source. With the two frames aligned by ``shift``, their half sum
    ``S`` keeps the scene and half the noise variance, their half difference ``D`` keeps the same
    noise variance and no scene (up to sub-pixel motion), so ``var(lap S) - var(lap D)`` estimates
    the Laplacian energy of the scene alone (the noise terms cancel). ``loss`` is
    ``log(1 + var(lap S)) - log(1 + clean)``: 0 for a clean pan, growing with the noise; ``residual``
    is ``var(lap D)`` itself; the ratio shifts are what the noise does to the cross-scale ratios.
    """
    ref, cur = _overlap(prev_y, y, shift)
    out = np.zeros(2 * N_SCALES + 2)
    if min(cur.shape, default=0) < 3:
        return out
    s = (cur + ref) * np.float32(0.5)
    d = (cur - ref) * np.float32(0.5)
    plain, clean = [], []
    for k in range(N_SCALES):
        ls, ld = laplacian_energy(s), laplacian_energy(d)
        plain.append(ls)
        clean.append(max(ls - ld, 0.0))
        out[k] = np.log1p(ls) - np.log1p(clean[k])
        out[N_SCALES + k] = np.log1p(ld)
        s, d = downsample2(s), downsample2(d)
    for k in range(N_SCALES - 1):
        out[2 * N_SCALES + k] = (np.log((plain[k] + 1.0) / (plain[k + 1] + 1.0))
                                 - np.log((clean[k] + 1.0) / (clean[k + 1] + 1.0)))
    return out


# --------------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------------
def frame_features(rgb: np.ndarray) -> np.ndarray:
    """All per-frame features of a ``uint8 HxWx3`` frame, float64 ``[len(FRAME_FEATURE_NAMES)]``.

    Any size >= 1x1 works: tiny frames are upscaled to :data:`MIN_SIDE` first. Output is finite and
    bit-identical for identical input.
    """
    r, g, b = rgb_planes(ensure_min_size(check_rgb(rgb)))
    y = _luma_of(r, g, b)
    y2 = downsample2(y)
    y3 = downsample2(y2)
    m1, sigma1 = mscn(y)
    m2, _ = mscn(y2)
    m3, _ = mscn(y3)
    lap = [laplacian_energy(v) for v in (y, y2, y3)]
    feats = np.concatenate(
        [
            brisque_scale_features(m1),
            brisque_scale_features(m2),
            ggd_features(m3),
            sigma_field_features(sigma1),
            np.log1p(lap),
            [np.log((lap[0] + 1.0) / (lap[1] + 1.0)), np.log((lap[1] + 1.0) / (lap[2] + 1.0))],
            np.log1p(immerkaer_noise(y, sigma1)),
            colourfulness_features(r, g, b),
            exposure_features(y),
            [blockiness(y)],
        ]
    ).astype(np.float64)
    return np.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=0.0)


def temporal_features(prev_rgb: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """Frame-difference NSS and motion energy of two consecutive sampled frames of the same shape,
    float64 ``[len(TEMPORAL_FEATURE_NAMES)]``; all zeros when the frames are identical.

    Motion energy: mean, RMS and 99th percentile of ``|dY|`` (/255), share of pixels changing by more
    than 8 grey levels, and the change of mean luminance (flicker). NSS of the difference: GGD of ``dY``
    (shape, log(1 + variance)), GGD of its MSCN at full and half resolution, and AGGD of the horizontal
    and vertical MSCN products at full resolution. Temporal noise: :func:`temporal_noise` of the
    half-resolution luminance (log(1 + grey levels)). Noise-corrected sharpness:
    :func:`temporal_sharpness` of the full-resolution luminance.
    """
    prev_rgb, rgb = check_rgb(prev_rgb, "prev_rgb"), check_rgb(rgb)
    if prev_rgb.shape != rgb.shape:
        raise ValueError(f"The two frames must have the same shape, got {prev_rgb.shape} and {rgb.shape}")
    y_cur = luminance(ensure_min_size(rgb))
    y_prev = luminance(ensure_min_size(prev_rgb))
    half_prev, half_cur = downsample2(y_prev), downsample2(y_cur)
    half_shift = global_shift(half_prev, half_cur)
    tnoise = temporal_noise(half_prev, half_cur, shift=half_shift)
    # The half-resolution shift, doubled, is within a pixel of the full-resolution one and costs no FFT.
    tsharp = temporal_sharpness(y_prev, y_cur, (2 * half_shift[0], 2 * half_shift[1]))
    d = np.subtract(y_cur, y_prev, out=y_cur)
    n = d.size
    ad = np.abs(d)
    mad = float(np.add.reduce(ad, axis=None)) / n
    mean_sq = float(np.add.reduce(d * d, axis=None)) / n
    p99 = float(np.quantile(_subsample(ad, 2), 0.99))
    changed = float(np.count_nonzero(ad > 8.0)) / n
    lum_change = abs(float(np.add.reduce(d, axis=None)) / n)
    shape, var = ggd_from_moments(mad, mean_sq)
    m1, _ = mscn(d)
    m2, _ = mscn(downsample2(d))
    prods = brisque_scale_features(m1, pairs=("h", "v"))
    feats = np.array(
        [
            mad / 255.0,
            np.sqrt(mean_sq) / 255.0,
            p99 / 255.0,
            changed,
            lum_change / 255.0,
            float(shape),
            np.log1p(float(var)),
            *prods[:2],
            *ggd_features(m2),
            *prods[2:],
            *np.log1p(tnoise),
            *tsharp,
        ],
        dtype=np.float64,
    )
    return np.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=0.0)
