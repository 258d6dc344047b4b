"""Metrics against values computed by hand (in the comments), and their behaviour on degenerate input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from vqstack import metrics
from vqstack.metrics import MetricWarning, RankPairs

# pred = 1..5, mos = 2 1 4 3 5 (no ties).
PRED = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
MOS = np.array([2.0, 1.0, 4.0, 3.0, 5.0])


def test_srocc_by_hand() -> None:
    # Ranks equal the values. d = pred - mos = -1 1 -1 1 0, sum d^2 = 4.
    # rho = 1 - 6 * 4 / (5 * (25 - 1)) = 1 - 24/120 = 0.8
    assert metrics.srocc(PRED, MOS) == pytest.approx(0.8)


def test_srocc_with_ties_by_hand() -> None:
    # pred 1 2 2 3 -> ranks 1 2.5 2.5 4; mos ranks 1 2 3 4; both centred on 2.5:
    # p = -1.5 0 0 1.5, m = -1.5 -0.5 0.5 1.5; sum pm = 4.5, sum p^2 = 4.5, sum m^2 = 5
    # rho = 4.5 / sqrt(4.5 * 5) = sqrt(0.9)
    assert metrics.srocc([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(math.sqrt(0.9))


def test_krocc_by_hand() -> None:
    # Pairs i<j: pred always increases; mos decreases for (1,2) and (3,4) only.
    # C = 8, D = 2 -> tau = (8 - 2) / 10 = 0.6
    assert metrics.krocc(PRED, MOS) == pytest.approx(0.6)


def test_krocc_tau_b_with_ties_by_hand() -> None:
    # pred 1 2 2 3 vs mos 1 2 3 4: 5 concordant pairs, 0 discordant, 1 pair tied in pred only.
    # tau_b = 5 / sqrt((6 - 1) * (6 - 0)) = 5 / sqrt(30)
    assert metrics.krocc([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / math.sqrt(30))


def test_plcc_by_hand() -> None:
    # Centred: p = -2 -1 0 1 2, m = -1 -2 1 0 2; sum pm = 2 + 2 + 0 + 0 + 4 = 8;
    # sum p^2 = 10, sum m^2 = 10 -> r = 8 / 10 = 0.8
    assert metrics.plcc(PRED, MOS) == pytest.approx(0.8)
    assert metrics.plcc(-PRED, MOS) == pytest.approx(-0.8)


def test_logistic_fit_recovers_known_parameters() -> None:
    # The predictions are centred on 0 (like z-scored ones): SimpleVQA's start b3 = mean prediction
    # is then ~1e-16, and a finite-difference Jacobian never moves b3 from there.
    x = np.linspace(-3, 3, 60)
    truth = (5.0, 1.0, 0.5, 0.8)
    fit = metrics.fit_logistic_4(x, metrics.logistic_4(x, *truth))
    assert fit.kind == "logistic"
    b1, b2, b3, b4 = fit.params
    assert (b1, b2, b3, abs(b4)) == pytest.approx(truth, abs=1e-4)


def test_logistic_jacobian_matches_finite_differences() -> None:
    x = np.linspace(-2, 3, 7)
    params = np.array([4.0, 1.5, 0.3, -0.7])
    jac = metrics._logistic_4_jacobian(x, *params)
    step = 1e-6
    for k in range(4):
        up, down = params.copy(), params.copy()
        up[k] += step
        down[k] -= step
        numeric = (metrics.logistic_4(x, *up) - metrics.logistic_4(x, *down)) / (2 * step)
        np.testing.assert_allclose(jac[:, k], numeric, rtol=1e-5, atol=1e-8)


def test_logistic_fit_recovers_parameters_on_a_0_100_prediction_scale() -> None:
    # SimpleVQA's start b4 = 0.5 is far from the truth here (12); the scale-aware start rescues it.
    rng = np.random.default_rng(3)
    x = np.sort(rng.uniform(0, 100, 200))
    truth = (90.0, 10.0, 50.0, 12.0)
    y = metrics.logistic_4(x, *truth) + rng.normal(0, 0.5, x.size)
    fit = metrics.fit_logistic_4(x, y)
    b1, b2, b3, b4 = fit.params
    assert (b1, b2, b3, abs(b4)) == pytest.approx(truth, rel=0.05)
    assert metrics.plcc_fitted(x, y) > 0.999 > metrics.plcc(x, y)


def test_fitted_metrics_are_exact_on_logistic_data() -> None:
    x = np.linspace(0, 1, 40)
    y = metrics.logistic_4(x, 4.5, 1.2, 0.4, 0.1)
    assert metrics.plcc_fitted(x, y) == pytest.approx(1.0, abs=1e-6)
    assert metrics.rmse_fitted(x, y) == pytest.approx(0.0, abs=1e-4)


def test_logistic_fit_falls_back_to_linear_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Optimal parameters not found")

    monkeypatch.setattr(metrics.optimize, "curve_fit", fail)
    x = np.arange(10.0)
    with pytest.warns(MetricWarning, match="did not converge"):
        fit = metrics.fit_logistic_4(x, 2 * x + 1)
    assert fit.kind == "linear"
    assert fit.params == pytest.approx((2.0, 1.0))
    np.testing.assert_allclose(fit(np.array([20.0])), [41.0])


def test_logistic_fit_with_too_few_samples_is_linear_with_a_warning() -> None:
    with pytest.warns(MetricWarning, match="at least 5 samples"):
        fit = metrics.fit_logistic_4([1, 2, 3, 4], [1, 3, 5, 7])
    assert fit.kind == "linear"


def test_constant_predictions_give_nan_and_a_warning() -> None:
    for fn in (metrics.srocc, metrics.krocc, metrics.plcc, metrics.plcc_fitted):
        with pytest.warns(MetricWarning, match="constant predictions"):
            assert math.isnan(fn(np.ones(6), np.arange(6.0)))
    with pytest.warns(MetricWarning, match="constant MOS"):
        assert math.isnan(metrics.srocc(np.arange(6.0), np.ones(6)))


def test_fewer_than_three_samples_give_nan_and_a_warning() -> None:
    with pytest.warns(MetricWarning, match="at least 3 samples, got 2"):
        assert math.isnan(metrics.srocc([1, 2], [1, 2]))


def test_nan_and_mismatched_inputs_are_errors() -> None:
    with pytest.raises(ValueError, match=r"pred has 1 non-finite value.*position\(s\) 2"):
        metrics.srocc([1, 2, np.nan, 4], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="mos has 1 non-finite"):
        metrics.plcc([1, 2, 3, 4], [1, 2, np.inf, 4])
    with pytest.raises(ValueError, match="differ in length: 3 vs 4"):
        metrics.krocc([1, 2, 3], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="1-D"):
        metrics.srocc(np.ones((3, 3)), np.ones((3, 3)))


def test_bootstrap_ci_is_seeded_and_brackets_the_estimate() -> None:
    rng = np.random.default_rng(0)
    mos = rng.normal(size=150)
    pred = mos + rng.normal(0, 1.0, mos.size)
    low, high = metrics.bootstrap_srocc_ci(pred, mos, n_resamples=500, seed=7)
    assert metrics.bootstrap_srocc_ci(pred, mos, n_resamples=500, seed=7) == (low, high)
    assert metrics.bootstrap_srocc_ci(pred, mos, n_resamples=500, seed=8) != (low, high)
    assert low < metrics.srocc(pred, mos) < high
    # Standard error of Spearman's rho near 0.7 with n = 150 is about 0.045: a 95% interval spans ~0.18.
    assert 0.08 < high - low < 0.3
    # A perfectly monotone relation stays perfect in every resample.
    assert metrics.bootstrap_srocc_ci(np.arange(20.0), np.arange(20.0) ** 3) == (1.0, 1.0)


def test_rank_pair_accuracy_by_hand() -> None:
    pred = np.array([3.0, 1.0, 2.0, 2.0])
    pairs = RankPairs(np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([1, 1, 2], dtype=np.int8))
    # (0,1): 3 >= 1 -> says 1, label 1: right. (1,2): 1 < 2 -> says 2, label 1: wrong.
    # (2,3): tie -> official rule says 1, label 2: wrong. -> 1/3; counting the tie as half -> 1.5/3.
    assert metrics.rank_pair_accuracy(pred, pairs) == pytest.approx(1 / 3)
    assert metrics.rank_pair_accuracy(pred, pairs, ties="half") == pytest.approx(0.5)


def test_rank_pairs_from_groups_by_hand() -> None:
    groups = ["a", "a", "b", "b"]
    mos = [1.0, 2.0, 3.0, 3.0]
    source = RankPairs.from_groups(groups, mos, kind="source")
    # Within a: (0,1) with mos 1 < 2 -> label 2. Within b: (2,3) equal MOS -> left out.
    assert (source.first.tolist(), source.second.tolist(), source.labels.tolist()) == ([0], [1], [2])
    nonsource = RankPairs.from_groups(groups, mos, kind="nonsource")
    assert list(zip(nonsource.first.tolist(), nonsource.second.tolist(), strict=True)) == [
        (0, 2),
        (0, 3),
        (1, 2),
        (1, 3),
    ]
    assert nonsource.labels.tolist() == [2, 2, 2, 2]
    capped = RankPairs.from_groups(groups, mos, kind="nonsource", max_pairs=2, seed=1)
    assert len(capped) == 2


@pytest.mark.parametrize("kind", ["source", "nonsource"])
def test_rank_pairs_sampled_when_there_are_too_many_to_enumerate(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    rng = np.random.default_rng(0)
    groups = [f"g{k}" for k in rng.integers(0, 30, size=400)]
    mos = rng.integers(0, 20, size=400).astype(float)  # many ties, which must be left out
    enumerated = RankPairs.from_groups(groups, mos, kind=kind, max_pairs=None)
    monkeypatch.setattr(metrics, "_ENUMERATE_LIMIT", 100)
    sampled = RankPairs.from_groups(groups, mos, kind=kind, max_pairs=500, seed=3)
    assert len(sampled) == 500
    pairs = set(zip(sampled.first.tolist(), sampled.second.tolist(), strict=True))
    assert len(pairs) == 500  # distinct
    assert pairs <= set(zip(enumerated.first.tolist(), enumerated.second.tolist(), strict=True))
    np.testing.assert_array_equal(sampled.labels, np.where(mos[sampled.first] > mos[sampled.second], 1, 2))


def test_evaluate_on_a_large_set_stays_cheap() -> None:
    # 30,000 videos: 450 M pairs and 1000 x 30,000 bootstrap indices if done naively.
    rng = np.random.default_rng(0)
    mos = rng.normal(size=30_000)
    pred = mos + rng.normal(0, 1, mos.size)
    out = metrics.evaluate(pred, mos, n_resamples=100)
    assert out["rank_acc"] == pytest.approx((1 + out["krocc"]) / 2, abs=0.01)


def test_rank_pairs_from_ids_and_missing_ids() -> None:
    pairs = RankPairs.from_ids(["x", "y", "z"], [("x", "z", 1), ("z", "y", 2)])
    assert pairs.first.tolist() == [0, 2] and pairs.second.tolist() == [2, 1] and pairs.labels.tolist() == [1, 2]
    with pytest.raises(KeyError, match="w"):
        RankPairs.from_ids(["x", "y"], [("x", "w", 1)])
    with pytest.raises(ValueError, match="labels must be 1"):
        RankPairs(np.array([0]), np.array([1]), np.array([0], dtype=np.int8))


def test_kvq_score_by_hand() -> None:
    # SROCC = PLCC = 0.8 (above). Source pairs (0,1) and (2,3), label 1 (first better):
    # pred says 2 for both -> acc_source = 0. Non-source pair (0,4), label 2: pred 1 < 5 -> 2, right -> 1.
    # score = 0.45 * 0.8 + 0.45 * 0.8 + 0.05 * 1 + 0.05 * 0 = 0.77
    source = RankPairs(np.array([0, 2]), np.array([1, 3]), np.array([1, 1], dtype=np.int8))
    nonsource = RankPairs(np.array([0]), np.array([4]), np.array([2], dtype=np.int8))
    out = metrics.kvq_score(PRED, MOS, source_pairs=source, nonsource_pairs=nonsource)
    assert out["kvq_score"] == pytest.approx(0.77)
    assert out["acc_source"] == 0.0 and out["acc_nonsource"] == 1.0
    assert out["plcc"] == pytest.approx(0.8)  # plain PLCC, as in the official script


def test_kvq_score_is_nan_without_source_pairs() -> None:
    empty = RankPairs(np.array([], np.intp), np.array([], np.intp), np.array([], np.int8))
    nonsource = RankPairs(np.array([0]), np.array([4]), np.array([2], dtype=np.int8))
    with pytest.warns(MetricWarning, match="empty set of pairs"):
        out = metrics.kvq_score(PRED, MOS, source_pairs=empty, nonsource_pairs=nonsource)
    assert math.isnan(out["kvq_score"])


def test_evaluate_returns_every_metric() -> None:
    rng = np.random.default_rng(1)
    mos = rng.uniform(1, 5, 80)
    pred = mos + rng.normal(0, 0.5, mos.size)
    out = metrics.evaluate(pred, mos, n_resamples=200)
    expected = {"n", "srocc", "krocc", "plcc", "plcc_fitted", "rmse_fitted", "srocc_ci_low", "srocc_ci_high"}
    assert expected | {"rank_acc"} == set(out)
    assert out["srocc"] == pytest.approx(metrics.srocc(pred, mos))
    assert out["srocc_ci_low"] < out["srocc"] < out["srocc_ci_high"]
    # Pair accuracy over all pairs equals (1 + tau_a) / 2 when there are no ties.
    assert out["rank_acc"] == pytest.approx((1 + out["krocc"]) / 2)
    with_groups = metrics.evaluate(pred, mos, groups=[str(i % 8) for i in range(80)], n_resamples=200)
    assert {"acc_source", "acc_nonsource", "kvq_score"} <= set(with_groups)
    parts = 0.45 * with_groups["srocc"] + 0.45 * with_groups["plcc"]
    parts += 0.05 * with_groups["acc_source"] + 0.05 * with_groups["acc_nonsource"]
    assert with_groups["kvq_score"] == pytest.approx(parts)


def test_evaluate_on_constant_predictions_warns_once_per_reason_and_never_invents_numbers() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = metrics.evaluate(np.full(10, 3.0), np.arange(10.0), n_resamples=50)
    messages = [str(w.message) for w in caught]
    assert len(messages) == len(set(messages))
    assert all(math.isnan(out[k]) for k in ("srocc", "krocc", "plcc", "plcc_fitted", "srocc_ci_low"))
    assert out["rank_acc"] == 0.5  # every pair is a tie, counted half


def test_evaluate_on_one_source_has_no_kvq_score_and_no_warning() -> None:
    import warnings

    pred, mos = np.array([3.0, 2.0, 1.0, 0.5, 0.2, 0.1]), np.array([4.0, 3.0, 1.0, 2.0, 0.5, 0.2])
    with warnings.catch_warnings():
        warnings.simplefilter("error", metrics.MetricWarning)
        out = metrics.evaluate(pred, mos, groups=["a"] * 6)
    assert np.isnan(out["acc_nonsource"]) and np.isnan(out["kvq_score"])
    assert out["acc_source"] == pytest.approx(14 / 15)  # 15 pairs, (1.0, 0.5) vs (1, 2) is the one wrong
