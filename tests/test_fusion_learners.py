"""Fusion learners and preprocessing: scikit-learn conformance, behaviour, registry errors, import cost."""

from __future__ import annotations

import subprocess
import sys
import warnings
from typing import Any

import numpy as np
import pytest
from scipy import special, stats
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from vqstack.errors import ConfigError, InputError, NotFittedError
from vqstack.fusion.learners import AverageFusion, LightGBMRegressor, RidgeRegressor, SVRRegressor
from vqstack.fusion.preprocessing import (
    NonFiniteHandler,
    PreprocessConfig,
    PreprocessWarning,
    VarianceFilter,
    ZScoreClipper,
    check_features,
    make_preprocessor,
    with_preprocessing,
)
from vqstack.fusion.registry import available_learners, make_learner, register_learner
from vqstack.fusion.stacking import StackingFusion


def _expected_failures(estimator: Any) -> dict[str, str]:
    if isinstance(estimator, AverageFusion) and estimator.weights is None:
        # An unweighted average of z-scored columns is not a general regressor: on scikit-learn's random
        # 10-feature regression set its R^2 is below the 0.5 this check asks of every regressor.
        return {"check_regressors_train": "equal-weight averaging is not meant to fit arbitrary features"}
    return {}


@parametrize_with_checks(
    [
        AverageFusion(),
        AverageFusion(weights="nnls", sigmoid=True, zscore_on="train"),
        SVRRegressor(C_grid=(1.0, 10.0), gamma_grid=(1.0,), cv=3),
        SVRRegressor(C_grid=(1.0, 10.0), gamma_grid=(1.0,), cv=3, kernel_mode="libsvm"),
        LightGBMRegressor(n_estimators=40, min_child_samples=5),
        RidgeRegressor(),
        StackingFusion(cv=3),
        NonFiniteHandler(),
        NonFiniteHandler(policy="median"),
        VarianceFilter(),
        ZScoreClipper(limit=2.0),
    ],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_contract(estimator: Any, check: Any) -> None:
    check(estimator)


def nonlinear_data(n: int = 240, d: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = 3 + np.tanh(2 * X[:, 0]) + 0.5 * X[:, 1] ** 2 + 0.3 * X[:, 2] + rng.normal(0, 0.1, n)
    return X, y


def test_average_fusion_equal_weights_by_hand() -> None:
    # Columns 1 2 3 and 10 30 20: z-scores are (-1.2247, 0, 1.2247) and (-1.2247, 1.2247, 0);
    # the average is (-1.2247, 0.6124, 0.6124).
    X = np.array([[1.0, 10.0], [2.0, 30.0], [3.0, 20.0]])
    model = AverageFusion(calibrate=False).fit(X, [1.0, 2.0, 3.0])
    z = np.sqrt(1.5)
    np.testing.assert_allclose(model.predict(X), [-z, z / 2, z / 2])
    np.testing.assert_allclose(model.weights_, [0.5, 0.5])


def test_average_fusion_zoom_vqa_formula() -> None:
    # Zoom-VQA: z-score each branch over the test set, 100 * sigmoid, then 0.5 / 0.5.
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(30, 2)), rng.normal(3.0, 2.0, size=(8, 2))
    model = AverageFusion(weights=[0.5, 0.5], zscore_on="test", sigmoid=True, calibrate=False)
    model.fit(train, rng.normal(size=30))
    z = (test - test.mean(axis=0)) / test.std(axis=0)
    expected = 0.5 * 100 * special.expit(z[:, 0]) + 0.5 * 100 * special.expit(z[:, 1])
    np.testing.assert_allclose(model.predict(test), expected)
    with pytest.raises(ValueError, match="at least 2 samples"):
        model.predict(test[:1])


def test_average_fusion_train_zscore_does_not_depend_on_the_batch() -> None:
    X, y = nonlinear_data(60, 3)
    on_train = AverageFusion().fit(X, y)
    on_test = AverageFusion(zscore_on="test").fit(X, y)
    assert on_train.predict(X[:5])[0] == pytest.approx(on_train.predict(X[:20])[0])
    assert on_test.predict(X[:5])[0] != pytest.approx(on_test.predict(X[:20])[0])


def test_average_fusion_learns_nonnegative_weights() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=200)
    good = y + rng.normal(0, 0.3, 200)
    noisy = y + rng.normal(0, 2.0, 200)
    bad = -y + rng.normal(0, 0.3, 200)
    model = AverageFusion(weights="nnls").fit(np.column_stack([good, noisy, bad]), y)
    assert model.weights_.sum() == pytest.approx(1.0)
    assert model.weights_[2] == 0.0
    assert model.weights_[0] > model.weights_[1] > 0.0
    # Calibration puts predictions on the target scale.
    pred = model.predict(np.column_stack([good, noisy, bad]))
    assert abs(pred.mean() - y.mean()) < 1e-9


def test_average_fusion_rejects_a_wrong_number_of_weights() -> None:
    with pytest.raises(ValueError, match="2 weights for 3 columns"):
        AverageFusion(weights=[0.5, 0.5]).fit(np.ones((4, 3)) * np.arange(4)[:, None], np.arange(4.0))


def test_svr_searches_its_grid_with_relative_gamma_and_is_deterministic() -> None:
    X, y = nonlinear_data(150, 10)
    model = SVRRegressor(C_grid=(0.1, 10.0), gamma_grid=(0.5, 2.0), epsilon_grid=(0.1,), cv=3)
    model.fit(X[:120], y[:120])
    assert model.best_params_["C"] in (0.1, 10.0)
    # gamma_grid is relative to n_features = 10: 0.5 -> 0.05, 2.0 -> 0.2.
    assert min(abs(model.best_params_["gamma"] - g) for g in (0.05, 0.2)) < 1e-12
    assert -1 <= model.best_score_ <= 1
    again = clone(model).fit(X[:120], y[:120])
    np.testing.assert_array_equal(model.predict(X[120:]), again.predict(X[120:]))
    assert stats.spearmanr(model.predict(X[120:]), y[120:])[0] > 0.7
    # The target is standardised inside: a 100x scale of y gives 100x predictions.
    scaled = clone(model).fit(X[:120], 100 * y[:120])
    np.testing.assert_allclose(scaled.predict(X[120:]), 100 * model.predict(X[120:]), rtol=1e-6)


def test_svr_precomputed_kernel_gives_the_libsvm_model() -> None:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    X, y = nonlinear_data(120, 8, seed=4)
    grid = {"C_grid": (0.5, 5.0), "gamma_grid": (0.5, 2.0), "epsilon_grid": (0.05, 0.2), "cv": 4, "n_jobs": 2}
    fast = SVRRegressor(**grid, kernel_mode="precomputed").fit(X[:90], y[:90])
    slow = SVRRegressor(**grid, kernel_mode="libsvm").fit(X[:90], y[:90])
    assert fast.kernel_mode_ == "precomputed" and slow.kernel_mode_ == "libsvm"
    assert fast.best_params_ == slow.best_params_
    np.testing.assert_allclose(fast.cv_results_["mean_score"], slow.cv_results_["mean_score"], atol=1e-6)
    np.testing.assert_allclose(fast.predict(X[90:]), slow.predict(X[90:]), rtol=1e-5, atol=1e-6)
    # And both equal a plain scikit-learn pipeline with the chosen parameters (target standardised).
    p = fast.best_params_
    mean, std = y[:90].mean(), y[:90].std()
    reference = make_pipeline(StandardScaler(), SVR(C=p["C"], gamma=p["gamma"], epsilon=p["epsilon"]))
    reference.fit(X[:90], (y[:90] - mean) / std)
    np.testing.assert_allclose(fast.predict(X[90:]), reference.predict(X[90:]) * std + mean, rtol=1e-5, atol=1e-6)


def test_svr_single_point_grid_skips_the_search() -> None:
    X, y = nonlinear_data(40, 4)
    model = SVRRegressor(C_grid=(3.0,), gamma_grid=(1.0,), epsilon_grid=(0.2,)).fit(X, y)
    assert model.best_params_ == {"C": 3.0, "gamma": 0.25, "epsilon": 0.2}


def test_lightgbm_wrapper_is_deterministic_and_learns_a_nonlinear_target() -> None:
    X, y = nonlinear_data(300, 8)
    model = LightGBMRegressor(n_estimators=150).fit(X[:240], y[:240])
    again = clone(model).fit(X[:240], y[:240])
    np.testing.assert_array_equal(model.predict(X[240:]), again.predict(X[240:]))
    assert stats.spearmanr(model.predict(X[240:]), y[240:])[0] > 0.8
    assert model.feature_importances_.argmax() in (0, 1)
    assert "kwargs" not in model.get_params()


def test_ridge_picks_an_alpha_from_its_list() -> None:
    X, y = nonlinear_data(80, 5)
    model = RidgeRegressor(alphas=(0.1, 1.0, 10.0)).fit(X, y)
    assert model.alpha_ in (0.1, 1.0, 10.0)
    assert model.coef_.shape == (5,)


def test_unfitted_learners_raise_the_vqstack_error() -> None:
    for est in (AverageFusion(), SVRRegressor(), LightGBMRegressor(), RidgeRegressor(), StackingFusion()):
        with pytest.raises(NotFittedError):
            est.predict(np.ones((2, 3)))


def test_stacking_weighs_the_informative_group_and_accepts_every_group_spelling() -> None:
    rng = np.random.default_rng(2)
    n = 200
    informative = rng.normal(size=(n, 3))
    noise = rng.normal(size=(n, 4))
    y = informative @ np.array([1.0, -0.5, 0.3]) + rng.normal(0, 0.2, n)
    X = np.column_stack([informative, noise])
    predictions = []
    for groups in (["0:3", "3:7"], [slice(0, 3), slice(3, 7)], [[0, 1, 2], [3, 4, 5, 6]]):
        model = StackingFusion(groups=groups, cv=4).fit(X, y)
        predictions.append(model.predict(X))
        assert model.oof_predictions_.shape == (n, 2)
        assert np.all(model.meta_weights_ >= 0)
        assert model.meta_weights_[0] > 0.8
        # The noise group's out-of-fold predictions barely vary, so compare contributions, not weights.
        contribution = model.meta_weights_ * model.oof_predictions_.std(axis=0)
        assert contribution[1] < 0.1 * contribution[0]
    np.testing.assert_allclose(predictions[0], predictions[1])
    np.testing.assert_allclose(predictions[0], predictions[2])


def test_stacking_with_registry_base_learners() -> None:
    X, y = nonlinear_data(100, 6)
    model = StackingFusion(groups=["0:3", "3:6"], base_learner=["ridge", LightGBMRegressor(n_estimators=30)], cv=3)
    model.fit(X, y)
    assert isinstance(model.base_learners_[1], LightGBMRegressor)
    with pytest.raises(ValueError, match="3 base learners for 2 feature groups"):
        StackingFusion(groups=["0:3", "3:6"], base_learner=["ridge"] * 3).fit(X, y)


def test_stacking_preprocesses_each_group_so_dropped_columns_keep_the_groups() -> None:
    from vqstack.fusion.preprocessing import make_preprocessor

    X, y = nonlinear_data(80, 6)
    X[:, 4] = 3.0  # a constant column in the second group: the variance filter drops it
    model = StackingFusion(groups=["0:3", "3:6"], base_learner="ridge", cv=3,
                           base_preprocessor=make_preprocessor()).fit(X, y)
    kept = [b.named_steps["preprocess"].named_steps["variance"].support_.sum() for b in model.base_learners_]
    assert kept == [3, 2]
    assert np.isfinite(model.predict(X)).all()


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        (["0:3", "9:12"], "selects no columns"),
        ([[0, 99]], r"column\(s\) \[99\] outside the 6"),
        (["a-b"], "start:stop"),
    ],
)
def test_stacking_bad_groups(groups: list[Any], message: str) -> None:
    X, y = nonlinear_data(30, 6)
    with pytest.raises(ValueError, match=message):
        StackingFusion(groups=groups, cv=3).fit(X, y)


def test_make_learner_builds_configured_estimators() -> None:
    assert available_learners() == ["average", "lightgbm", "ridge", "stacking", "svr"]
    model = make_learner("svr", {"C_grid": [1, 10], "n_jobs": 2})
    assert isinstance(model, SVRRegressor) and model.C_grid == [1, 10] and model.n_jobs == 2
    assert make_learner("lightgbm").get_params()["n_estimators"] == 400


def test_make_learner_errors_are_config_errors_with_suggestions() -> None:
    with pytest.raises(ConfigError, match=r"unknown learner 'lightgbn' \(did you mean 'lightgbm'\?\)"):
        make_learner("lightgbn", {})
    with pytest.raises(ConfigError, match=r"learner 'svr' has no parameter 'c_grid' \(did you mean 'C_grid'\?\)"):
        make_learner("svr", {"c_grid": [1]})
    with pytest.raises(ConfigError, match="The 'learning_rate' parameter of LightGBMRegressor"):
        make_learner("lightgbm", {"learning_rate": -1.0})
    with pytest.raises(ConfigError, match="unknown learner 'rigde'"):
        make_learner("stacking", {"base_learner": ["ridge", "rigde"]})
    with pytest.raises(ValueError, match="already registered"):
        register_learner("svr", SVRRegressor)


def test_variance_filter_drops_constant_columns_with_a_counting_warning() -> None:
    X = np.column_stack([np.arange(6.0), np.full(6, 2.0), np.arange(6.0) ** 2, np.zeros(6)])
    with pytest.warns(PreprocessWarning, match=r"dropped 2 of 4 column\(s\).*: 1, 3"):
        filt = VarianceFilter().fit(X)
    assert filt.transform(X).shape == (6, 2)
    assert filt.get_feature_names_out().tolist() == ["x0", "x2"]
    with pytest.raises(ValueError, match="all 2 columns"):
        VarianceFilter().fit(np.ones((5, 2)))


def test_nonfinite_error_names_rows_and_columns() -> None:
    X = np.arange(12.0).reshape(4, 3)
    X[2, 1] = np.nan
    X[3, 0] = np.inf
    with pytest.raises(ValueError, match=r"2 non-finite value\(s\).*row 2, row 3; column\(s\): 0, 1"):
        NonFiniteHandler().fit(X)


def test_median_imputation_uses_training_medians_only() -> None:
    train = np.array([[1.0, 10.0], [2.0, np.nan], [3.0, 30.0], [100.0, 40.0]])
    test = np.array([[np.nan, np.inf], [5.0, 6.0]])
    handler = NonFiniteHandler(policy="median").fit(train)
    np.testing.assert_allclose(handler.medians_, [2.5, 30.0])
    with pytest.warns(PreprocessWarning, match=r"imputed 2 non-finite value\(s\) in 1 sample"):
        out = handler.transform(test)
    np.testing.assert_allclose(out, [[2.5, 30.0], [5.0, 6.0]])
    assert np.isnan(test[0, 0])  # the input is not modified in place


def test_check_features_names_ids_and_feature_names() -> None:
    X = np.ones((3, 2))
    X[1, 1] = np.nan
    with pytest.raises(InputError, match=r"in 1 sample\(s\): 'b.mp4'; column\(s\): slowfast_7") as info:
        check_features(X, ids=["a.mp4", "b.mp4", "c.mp4"], feature_names=["f0", "slowfast_7"], source="store.h5")
    assert info.value.path == "store.h5"
    with pytest.warns(PreprocessWarning, match="imputed with training medians"):
        check_features(X, ids=["a", "b", "c"], nonfinite="median")
    check_features(np.ones((3, 2)))  # finite: nothing happens


def test_preprocessor_is_fitted_on_the_training_rows_only() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 6))
    X[:, 3] = 7.0
    config = PreprocessConfig(pca=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreprocessWarning)
        pipe = make_preprocessor(config).fit(X[:30])
    np.testing.assert_allclose(pipe.named_steps["scale"].mean_, X[:30][:, [0, 1, 2, 4, 5]].mean(axis=0))
    assert pipe.named_steps["pca"].explained_variance_ratio_.sum() >= 0.9
    assert pipe.transform(X[30:]).shape[0] == 20
    model = with_preprocessing(RidgeRegressor(), PreprocessConfig(pca=3))
    assert [name for name, _ in model.steps] == ["nonfinite", "variance", "scale", "pca", "learner"]


def test_clip_limits_test_z_scores_to_the_training_range() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 3))
    pipe = make_preprocessor(PreprocessConfig(clip=2.0)).fit(X)
    assert [name for name, _ in pipe.steps] == ["nonfinite", "variance", "scale", "clip"]
    far = np.array([[100.0, -100.0, X[0, 2]]])
    z = pipe.transform(far)
    assert z[0, 0] == 2.0 and z[0, 1] == -2.0  # a column far outside the training range stops at +-2
    np.testing.assert_allclose(z[0, 2], pipe.named_steps["scale"].transform(far)[0, 2])  # in range: unchanged
    assert np.abs(pipe.transform(X)).max() <= 2.0


def test_clip_keeps_an_out_of_range_column_from_flattening_the_svr() -> None:
    """One column far off the training range (content, not quality) sends every RBF kernel value to ~0
    and the prediction to the training mean; clipped, the informative column still ranks the test rows."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 4))
    y = 3.0 * X[:, 0] + 0.1 * rng.normal(size=60)
    X_test = rng.normal(size=(12, 4))
    X_test[:, 3] = 40.0  # nuisance columns far outside what the training rows showed
    X_test[:, 2] = -40.0
    truth = X_test[:, 0]
    plain = with_preprocessing(SVRRegressor(), PreprocessConfig()).fit(X, y).predict(X_test)
    clipped = with_preprocessing(SVRRegressor(), PreprocessConfig(clip=3.0)).fit(X, y).predict(X_test)
    assert np.ptp(plain) < 0.05 * np.ptp(clipped)
    assert stats.spearmanr(clipped, truth)[0] > 0.9


def test_zscore_clipper_needs_fit() -> None:
    with pytest.raises(NotFittedError):
        ZScoreClipper().transform(np.zeros((2, 2)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"pca": 0}, ">= 1"), ({"pca": 1.5}, r"in \(0, 1\)"), ({"nonfinite": "zero"}, "'error' or 'median'"),
     ({"clip": 0}, "positive"), ({"clip": True}, "positive"), ({"clip": 3.0, "standardize": False}, "standardize")],
)
def test_preprocess_config_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PreprocessConfig(**kwargs)


def test_importing_fusion_loads_neither_torch_nor_lightgbm_nor_matplotlib() -> None:
    code = (
        "import sys, vqstack.fusion, vqstack.metrics\n"
        "import vqstack.fusion.learners, vqstack.fusion.stacking, vqstack.fusion.registry\n"
        "import vqstack.fusion.preprocessing, vqstack.fusion.protocols, vqstack.fusion.evaluation\n"
        "import vqstack.fusion.labels, vqstack.fusion.report\n"
        "vqstack.fusion.registry.make_learner('lightgbm')\n"
        "print(sorted(m for m in ('torch', 'lightgbm', 'matplotlib') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _wavy_decreasing(n: int = 400, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """y falls with column 0 overall but with a strong wiggle, so an unconstrained model is not monotone."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 3))
    y = -X[:, 0] + 1.5 * np.sin(4 * X[:, 0]) + X[:, 1] + rng.normal(0, 0.1, n)
    return X, y


def _profiles(model: Any, X: np.ndarray, column: int) -> np.ndarray:
    """Predictions along a grid of ``column`` for each of 20 rows, the other columns held fixed."""
    grid = np.linspace(-2, 2, 41)
    rows = np.repeat(X[:20], grid.size, axis=0)
    rows[:, column] = np.tile(grid, 20)
    return model.predict(rows).reshape(20, grid.size)


def test_lightgbm_monotone_makes_predictions_non_increasing_along_the_constrained_feature() -> None:
    X, y = _wavy_decreasing()
    free = LightGBMRegressor(n_estimators=200).fit(X, y)
    assert (np.diff(_profiles(free, X, 0), axis=1) > 1e-9).any()  # the wiggle is learned without the constraint
    by_sign = LightGBMRegressor(n_estimators=200, monotone=[-1, 0, 0]).fit(X, y)
    names = ["nss/mean/tnoise_mc_p50_log", "nss/mean/sharp_s1_lapvar_log", "nss/mean/colour_hasler"]
    by_name = clone(LightGBMRegressor(n_estimators=200, monotone={r"tnoise_mc": -1})).fit(X, y, feature_names=names)
    for model in (by_sign, by_name):
        assert model.monotone_constraints_ == [-1, 0, 0]
        assert (np.diff(_profiles(model, X, 0), axis=1) <= 1e-9).all()
        assert stats.spearmanr(model.predict(X), y)[0] > 0.8
    np.testing.assert_array_equal(by_sign.predict(X), by_name.predict(X))


def test_lightgbm_monotone_patterns_are_resolved_after_preprocessing_drops_columns() -> None:
    X, y = _wavy_decreasing()
    X = np.column_stack([np.ones(len(y)), X])  # a constant first column, dropped by the variance filter
    names = ["const", "noise_level", "detail", "colour"]
    model = with_preprocessing(
        LightGBMRegressor(n_estimators=100, monotone={"^noise_": -1, "detail$": 1}),
        PreprocessConfig(clip=3.0),
        feature_names=names,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreprocessWarning)
        model.fit(X, y)
        again = clone(model).fit(X, y)
    assert model.named_steps["learner"].monotone_constraints_ == [-1, 1, 0]
    np.testing.assert_array_equal(model.predict(X), again.predict(X))
    grid = np.linspace(-2, 2, 41)
    rows = np.repeat(X[:10], grid.size, axis=0)
    rows[:, 1] = np.tile(grid, 10)
    assert (np.diff(model.predict(rows).reshape(10, grid.size), axis=1) <= 1e-9).all()
    # Learners that take no names are wrapped in a plain pipeline, as before.
    assert type(with_preprocessing(SVRRegressor(), feature_names=names)).__name__ == "Pipeline"


def test_lightgbm_monotone_errors_name_the_problem() -> None:
    X, y = _wavy_decreasing(60)
    names = ["noise", "detail", "colour"]
    with pytest.raises(ValueError, match=r"pattern 'tnoise_mc' matches none of the 3 features .*noise, detail, colour"):
        LightGBMRegressor(monotone={"tnoise_mc": -1}).fit(X, y, feature_names=names)
    with pytest.raises(ValueError, match="need feature names"):
        LightGBMRegressor(monotone={"noise": -1}).fit(X, y)
    with pytest.raises(ValueError, match="has 2 signs for 3 features"):
        LightGBMRegressor(monotone=[-1, 0]).fit(X, y)
    with pytest.raises(ValueError, match=r"'noise' matches 'noi' and 'se\$' with different signs"):
        LightGBMRegressor(monotone={"noi": -1, "se$": 1}).fit(X, y, feature_names=names)
    with pytest.raises(ConfigError, match=r"learner 'lightgbm'.*every sign must be -1 .* got 2"):
        make_learner("lightgbm", {"monotone": {"noise": 2}})
    with pytest.raises(ConfigError, match=r"learner 'lightgbm'.*'\(noise' is not a valid regular expression"):
        make_learner("lightgbm", {"monotone": {"(noise": -1}})


def test_fuse_fit_gives_the_lightgbm_learner_the_stored_column_names() -> None:
    from pathlib import Path

    from vqstack.fusion.config import FeatureGroup, FusionConfig, LabelsConfig, LearnerConfig
    from vqstack.fusion.run import FeatureSpec, build_estimator

    X, y = _wavy_decreasing(200)
    columns = ["nss-1a2b/mean/tnoise_mc_p50_log", "nss-1a2b/mean/sharp_s1_lapvar_log", "nss-1a2b/mean/blockiness_log"]
    spec = FeatureSpec(group="nss", table="nss-1a2b", extractor="nss", version="2", config={}, weights_sha256=None,
                       pooling=["mean"], n_columns=3, columns=columns)
    cfg = FusionConfig(labels=LabelsConfig(path=Path("labels.csv")), features=[FeatureGroup("nss")])
    learner = LearnerConfig("lightgbm", {"n_estimators": 50, "monotone": {"mean/tnoise_mc": -1, "blockiness": -1}})
    model = build_estimator(learner, cfg, [spec]).fit(X, y)
    assert model.named_steps["learner"].monotone_constraints_ == [-1, 0, -1]
    typo = LearnerConfig("lightgbm", {"monotone": {"mean/tnosie": -1}})
    with pytest.raises(ValueError, match="'mean/tnosie' matches none of the 3 features"):
        build_estimator(typo, cfg, [spec]).fit(X, y)
