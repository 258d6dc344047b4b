"""Tests of the handcrafted NSS features: contract (shapes, names, finiteness, determinism) and behaviour
(each cue moves the right way under the distortion it is meant to measure)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, stats
from scipy.special import gammaln

from vqstack.extract.nss_features import (
    _KERNEL,
    FRAME_FEATURE_NAMES,
    TEMPORAL_FEATURE_NAMES,
    frame_features,
    gaussian_blur,
    global_shift,
    immerkaer_noise,
    mscn,
    temporal_features,
    temporal_noise,
    temporal_sharpness,
)
from vqstack.extract.nss_fit import aggd_from_stats, aggd_stats, fit_aggd, fit_ggd, ggd_ratio, invert_ggd_ratio


def _idx(name: str) -> int:
    return FRAME_FEATURE_NAMES.index(name)


def _pink_gray(size: int = 256, seed: int = 0) -> np.ndarray:
    """A 1/f ("natural") random texture in float64 0..255: natural images have roughly this spectrum."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    radius = np.sqrt(fx**2 + fy**2)
    radius[0, 0] = 1.0
    spectrum = (rng.standard_normal((size, size)) + 1j * rng.standard_normal((size, size))) / radius
    img = np.real(np.fft.ifft2(spectrum))
    img = (img - img.min()) / (img.max() - img.min())
    return 255.0 * img


def _to_rgb(gray: np.ndarray, tint: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    return np.clip(np.rint(np.stack([gray * t for t in tint], axis=-1)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def natural_rgb() -> np.ndarray:
    """A colourful textured test frame: three differently seeded 1/f textures as R, G, B."""
    return np.stack([_to_rgb(_pink_gray(seed=s))[..., 0] for s in (1, 2, 3)], axis=-1)


# ------------------------------------------------------------------------------------------------ contract
def test_names_match_output_lengths(natural_rgb: np.ndarray) -> None:
    f = frame_features(natural_rgb)
    t = temporal_features(natural_rgb, natural_rgb[::-1].copy())
    assert f.dtype == np.float64 and f.shape == (len(FRAME_FEATURE_NAMES),)
    assert t.dtype == np.float64 and t.shape == (len(TEMPORAL_FEATURE_NAMES),)
    assert len(set(FRAME_FEATURE_NAMES)) == len(FRAME_FEATURE_NAMES)
    assert len(set(TEMPORAL_FEATURE_NAMES)) == len(TEMPORAL_FEATURE_NAMES)
    assert sum(n.startswith(("brisque_s1_", "brisque_s2_")) for n in FRAME_FEATURE_NAMES) == 36


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (7, 5), (5, 7), (1, 40), (33, 2)])
def test_tiny_frames_are_finite(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    assert np.all(np.isfinite(frame_features(a)))
    assert np.all(np.isfinite(temporal_features(a, b)))


@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255), (30, 140, 220)])
def test_constant_frames_are_finite(colour: tuple[int, int, int]) -> None:
    frame = np.empty((48, 64, 3), dtype=np.uint8)
    frame[:] = colour
    f = frame_features(frame)
    assert np.all(np.isfinite(f))
    assert np.all(np.isfinite(temporal_features(frame, frame)))


def test_4k_frame_is_finite() -> None:
    frame = np.random.default_rng(0).integers(0, 256, (2160, 3840, 3), dtype=np.uint8)
    assert np.all(np.isfinite(frame_features(frame)))


def test_deterministic(natural_rgb: np.ndarray) -> None:
    shifted = np.roll(natural_rgb, 5, axis=1)
    assert np.array_equal(frame_features(natural_rgb), frame_features(natural_rgb.copy()))
    assert np.array_equal(temporal_features(natural_rgb, shifted), temporal_features(natural_rgb.copy(), shifted))


def test_invalid_input_raises(natural_rgb: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8"):
        frame_features(natural_rgb.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        frame_features(natural_rgb[..., 0])
    with pytest.raises(ValueError, match="same shape"):
        temporal_features(natural_rgb, natural_rgb[:10])


# ----------------------------------------------------------------------------------------------- behaviour
def test_blur_lowers_sharpness(natural_rgb: np.ndarray) -> None:
    blurred = ndimage.gaussian_filter(natural_rgb.astype(np.float64), sigma=(2.0, 2.0, 0.0))
    blurred = np.clip(np.rint(blurred), 0, 255).astype(np.uint8)
    sharp, soft = frame_features(natural_rgb), frame_features(blurred)
    for name in ("sharp_s1_lapvar_log", "sharp_s2_lapvar_log", "sharp_lap_ratio_12", "brisque_s1_mscn_var"):
        assert soft[_idx(name)] < sharp[_idx(name)] - 0.05, name


def test_noise_raises_noise_estimate(natural_rgb: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    noisy = np.clip(natural_rgb + rng.normal(0.0, 12.0, natural_rgb.shape), 0, 255).astype(np.uint8)
    clean, dirty = frame_features(natural_rgb), frame_features(noisy)
    for name in ("noise_immerkaer_log", "noise_immerkaer_flat_log"):
        assert dirty[_idx(name)] > clean[_idx(name)] + 0.3, name


def test_immerkaer_recovers_noise_sigma() -> None:
    y = np.full((200, 300), 128.0, dtype=np.float32)
    y += np.random.default_rng(2).normal(0.0, 10.0, y.shape).astype(np.float32)
    whole, _ = immerkaer_noise(y)
    assert whole == pytest.approx(10.0, rel=0.05)


def test_grayscale_has_no_colour(natural_rgb: np.ndarray) -> None:
    gray = np.repeat(natural_rgb[..., :1], 3, axis=2)
    f, c = frame_features(gray), frame_features(natural_rgb)
    for name in ("colour_hasler", "colour_saturation_mean", "colour_chroma_mean", "colour_chroma_p90"):
        assert abs(f[_idx(name)]) < 1e-9, name
        assert c[_idx(name)] > 0.05, name


def test_block_averaging_raises_blockiness(natural_rgb: np.ndarray) -> None:
    h, w = natural_rgb.shape[:2]
    blocks = natural_rgb.reshape(h // 8, 8, w // 8, 8, 3).astype(np.float64).mean(axis=(1, 3), keepdims=True)
    blocky = np.broadcast_to(blocks, (h // 8, 8, w // 8, 8, 3)).reshape(h, w, 3)
    blocky = np.rint(blocky).astype(np.uint8)
    before, after = frame_features(natural_rgb)[_idx("blockiness_log")], frame_features(blocky)[_idx("blockiness_log")]
    assert abs(before) < 0.1
    assert after > before + 1.0


def test_exposure_darkening(natural_rgb: np.ndarray) -> None:
    dark = (natural_rgb // 32).astype(np.uint8)  # every level <= 7: an underexposed frame
    f, g = frame_features(dark), frame_features(natural_rgb)
    assert f[_idx("exposure_mean")] < g[_idx("exposure_mean")] / 4
    assert f[_idx("exposure_dark_frac")] > 0.99 > g[_idx("exposure_dark_frac")] + 0.9


def test_temporal_zero_for_identical_and_grows_with_shift(natural_rgb: np.ndarray) -> None:
    same = temporal_features(natural_rgb, natural_rgb.copy())
    assert np.all(same == 0.0)
    small = temporal_features(natural_rgb, np.roll(natural_rgb, 1, axis=1))
    large = temporal_features(natural_rgb, np.roll(natural_rgb, 6, axis=1))
    for name in ("motion_mad", "motion_rms", "motion_p99", "motion_changed_frac"):
        i = TEMPORAL_FEATURE_NAMES.index(name)
        assert 0.0 < small[i] < large[i], name
    assert np.count_nonzero(small) > len(TEMPORAL_FEATURE_NAMES) // 2


@pytest.mark.parametrize(("dy", "dx"), [(0, 0), (3, -7), (-5, 2), (11, 13)])
def test_global_shift_recovers_a_pan(dy: int, dx: int) -> None:
    base = _pink_gray(256, seed=4).astype(np.float32)
    prev, cur = base[20:220, 20:220], base[20 - dy : 220 - dy, 20 - dx : 220 - dx]
    assert global_shift(prev, cur) == (dy, dx)


def test_temporal_noise_sees_frame_to_frame_noise_but_not_a_clean_pan() -> None:
    """A clean pan is ~0 after motion compensation (unlike the raw difference); independent noise in
    each frame raises both percentiles in proportion to its level, however textured the content."""
    rng = np.random.default_rng(5)
    base = _pink_gray(320, seed=6)
    prev, cur = base[30:270, 30:290], base[26:266, 36:296]  # a pan of (4, -6) pixels
    clean = temporal_noise(prev.astype(np.float32), cur.astype(np.float32))
    assert clean == (0.0, 0.0)
    assert float(np.abs(cur - prev).mean()) > 1.0  # the uncompensated difference is far from 0
    levels = []
    for sigma in (2.0, 6.0):
        noisy = [(f + rng.normal(0, sigma, f.shape)).astype(np.float32) for f in (prev, cur)]
        p10, p50 = temporal_noise(*noisy)
        assert 0.0 < p10 <= p50
        # mean |difference of two N(0, s^2)| = 2 s / sqrt(pi); block means scatter only a little around it
        assert p50 == pytest.approx(2.0 * sigma / np.sqrt(np.pi), rel=0.1)
        levels.append(p10)
    assert levels[1] > 2.5 * levels[0]


def test_temporal_features_measure_noise_not_motion(natural_rgb: np.ndarray) -> None:
    i = TEMPORAL_FEATURE_NAMES.index("tnoise_mc_p10_log")
    j = TEMPORAL_FEATURE_NAMES.index("tnoise_mc_p50_log")
    panned = temporal_features(natural_rgb, np.roll(natural_rgb, (2, 4), axis=(0, 1)))
    assert panned[i] == 0.0 and panned[j] < 0.05  # only the wrapped border blocks differ
    noise = np.random.default_rng(7).normal(0, 5, natural_rgb.shape)
    noisy = np.clip(np.rint(natural_rgb + noise), 0, 255).astype(np.uint8)
    assert temporal_features(natural_rgb, noisy)[i] > 0.5


def test_temporal_sharpness_separates_noise_from_texture() -> None:
    """Sharper content raises the Laplacian energy but not the noise loss; noise raises the loss and the
    residual in step with its level, while a clean pan (aligned by its shift) stays at 0."""
    rng = np.random.default_rng(8)
    base = _pink_gray(320, seed=9)
    prev, cur = base[30:270, 30:290], base[26:266, 36:296]  # a pan of (4, -6) pixels
    shift = (4, -6)

    def sharp(p: np.ndarray, c: np.ndarray) -> np.ndarray:
        return temporal_sharpness(p.astype(np.float32), c.astype(np.float32), shift)

    assert np.all(sharp(prev, cur) == 0.0)
    assert np.all(temporal_sharpness(prev.astype(np.float32), prev.astype(np.float32), (0, 0)) == 0.0)
    textured = 3.0 * (base - ndimage.gaussian_filter(base, 1.0)) + base  # unsharp mask: more fine detail
    assert np.all(sharp(textured[30:270, 30:290], textured[26:266, 36:296]) == 0.0)
    losses, residuals = [], []
    for sigma in (2.0, 5.0, 10.0):
        noisy = [f + rng.normal(0, sigma, f.shape) for f in (prev, cur)]
        out = sharp(*noisy)
        losses.append(out[0])
        residuals.append(out[3])
    assert 0.0 < losses[0] < losses[1] < losses[2]
    assert 0.0 < residuals[0] < residuals[1] < residuals[2]
    # the residual is the Laplacian energy of the half difference: 20 sigma^2 / 2 for white noise
    assert np.expm1(residuals[1]) == pytest.approx(20 * 5.0**2 / 2, rel=0.1)


def test_temporal_features_report_the_noise_share_of_sharpness(natural_rgb: np.ndarray) -> None:
    loss = TEMPORAL_FEATURE_NAMES.index("tsharp_s1_noise_loss")
    panned = temporal_features(natural_rgb, np.roll(natural_rgb, (2, 4), axis=(0, 1)))
    assert abs(panned[loss]) < 0.01  # only the wrapped border differs
    noise = np.random.default_rng(7).normal(0, 5, natural_rgb.shape)
    noisy = np.clip(np.rint(natural_rgb + noise), 0, 255).astype(np.uint8)
    assert temporal_features(natural_rgb, noisy)[loss] > 0.05


# ----------------------------------------------------------------------------------------------- fitting
@pytest.mark.parametrize("shape", [0.5, 1.0, 2.0, 4.0])
def test_ggd_fit_recovers_gennorm_shape(shape: float) -> None:
    dist = stats.gennorm(beta=shape, scale=0.7)
    x = dist.rvs(size=200_000, random_state=np.random.default_rng(3))
    alpha, var = fit_ggd(x)
    assert alpha == pytest.approx(shape, rel=0.05)
    assert var == pytest.approx(dist.var(), rel=0.03)


def test_ggd_ratio_table_inverts() -> None:
    alphas = np.array([0.2, 0.7, 1.3, 2.0, 5.0, 9.0])
    np.testing.assert_allclose(invert_ggd_ratio(ggd_ratio(alphas)), alphas, rtol=1e-3)
    assert ggd_ratio(2.0) == pytest.approx(2.0 / np.pi)


@pytest.mark.parametrize(("shape", "beta_l", "beta_r"), [(0.8, 1.0, 2.0), (1.5, 1.0, 1.0), (2.0, 1.5, 0.5)])
def test_aggd_fit_recovers_parameters(shape: float, beta_l: float, beta_r: float) -> None:
    rng = np.random.default_rng(4)
    n = 300_000
    mag = np.abs(stats.gennorm(beta=shape).rvs(size=n, random_state=rng))
    left = rng.random(n) < beta_l / (beta_l + beta_r)  # AGGD: P(x < 0) = beta_l / (beta_l + beta_r)
    x = np.where(left, -beta_l * mag, beta_r * mag)
    alpha, eta, var_l, var_r = fit_aggd(x)
    unit_var = stats.gennorm(beta=shape).var()  # E[z^2] of the unit-scale GGD
    assert alpha == pytest.approx(shape, rel=0.06)
    assert var_l == pytest.approx(beta_l**2 * unit_var, rel=0.03)
    assert var_r == pytest.approx(beta_r**2 * unit_var, rel=0.03)
    true_eta = (beta_r - beta_l) * np.exp(gammaln(2.0 / shape) - gammaln(1.0 / shape))
    assert eta == pytest.approx(true_eta, abs=0.02)
    stacked = aggd_from_stats(np.stack([aggd_stats(x), aggd_stats(x.astype(np.float32))]))
    np.testing.assert_allclose(stacked[0], stacked[1], rtol=1e-4, atol=1e-6)


def test_degenerate_fits_are_zero() -> None:
    assert fit_ggd(np.zeros(100)) == (0.0, 0.0)
    assert fit_aggd(np.zeros(100)) == (0.0, 0.0, 0.0, 0.0)


# ------------------------------------------------------------------------------------------------- maps
@pytest.mark.parametrize("shape", [(64, 80), (9, 5), (2, 6), (1, 1)])
def test_gaussian_blur_matches_reference(shape: tuple[int, int]) -> None:
    y = np.random.default_rng(5).uniform(0, 255, shape).astype(np.float32)
    ref = ndimage.correlate1d(ndimage.correlate1d(y, _KERNEL, axis=0, mode="reflect"), _KERNEL, axis=1, mode="reflect")
    np.testing.assert_allclose(gaussian_blur(y), ref, atol=1e-3)
    inplace = y.copy()
    gaussian_blur(inplace, out=inplace)
    np.testing.assert_allclose(inplace, ref, atol=1e-3)


def test_mscn_of_natural_texture_is_unit_scale_and_gaussian_like() -> None:
    m, sigma = mscn(_pink_gray().astype(np.float32))
    assert abs(float(m.mean())) < 0.05
    assert 0.05 < float(m.var()) < 1.0
    assert np.all(sigma >= 0)
