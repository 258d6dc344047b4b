"""Split protocols, the fit/evaluate loop and the report writers."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vqstack.errors import ConfigError
from vqstack.fusion.evaluation import SplitResult, run_protocol, summarize
from vqstack.fusion.learners import RidgeRegressor
from vqstack.fusion.preprocessing import PreprocessConfig, with_preprocessing
from vqstack.fusion.protocols import (
    Split,
    cross_dataset_split,
    grouped_kfold_splits,
    grouped_repeated_splits,
    holdout_splits,
    kfold_splits,
    make_splits,
    repeated_splits,
)
from vqstack.fusion.report import markdown_report, write_report


def as_sets(splits: list[Split]) -> list[tuple[set[int], set[int]]]:
    return [(set(s.train_idx.tolist()), set(s.test_idx.tolist())) for s in splits]


def test_kfold_partitions_the_samples_and_is_seeded() -> None:
    splits = list(kfold_splits(23, n_splits=5, seed=3))
    assert [s.name for s in splits] == [f"fold{k}" for k in range(5)]
    tested = np.concatenate([s.test_idx for s in splits])
    assert sorted(tested.tolist()) == list(range(23))  # each sample tested exactly once
    for train, test in as_sets(splits):
        assert not train & test and len(train | test) == 23
    assert as_sets(list(kfold_splits(23, n_splits=5, seed=3))) == as_sets(splits)
    assert as_sets(list(kfold_splits(23, n_splits=5, seed=4))) != as_sets(splits)


def test_repeated_split_default_is_ten_80_20_splits_with_seeds_0_to_9() -> None:
    splits = list(repeated_splits(100))
    assert [s.name for s in splits] == [f"split{k}" for k in range(10)]
    assert all(s.train_idx.size == 80 and s.test_idx.size == 20 for s in splits)
    assert all(not set(s.train_idx) & set(s.test_idx) for s in splits)
    assert len({tuple(sorted(s.test_idx)) for s in splits}) == 10
    again = list(repeated_splits(100, seeds=[3]))
    np.testing.assert_array_equal(again[0].test_idx, splits[3].test_idx)


def test_holdout_by_fraction_and_by_ids() -> None:
    ids = [f"v{i}" for i in range(10)]
    (split,) = holdout_splits(ids, test_fraction=0.3, seed=1)
    assert split.name == "holdout" and split.test_idx.size == 3 and split.train_idx.size == 7
    (split,) = holdout_splits(ids, test_ids=["v9", "v2", "v4"])
    assert split.test_idx.tolist() == [2, 4, 9]
    assert split.train_idx.tolist() == [0, 1, 3, 5, 6, 7, 8]
    with pytest.raises(ConfigError, match=r"2 test id\(s\) are not among the 10 samples: x1, x2"):
        list(holdout_splits(ids, test_ids=["v1", "x1", "x2"]))


def test_cross_dataset_split() -> None:
    ids, split = cross_dataset_split(["a/1.mp4", "a/2.mp4"], ["b/1.mp4", "b/2.mp4", "b/3.mp4"])
    assert ids == ["a/1.mp4", "a/2.mp4", "b/1.mp4", "b/2.mp4", "b/3.mp4"]
    assert split.train_idx.tolist() == [0, 1] and split.test_idx.tolist() == [2, 3, 4]
    with pytest.warns(UserWarning, match=r"1 id\(s\) are in both"):
        cross_dataset_split(["x", "y"], ["y", "z"])
    with pytest.raises(ConfigError, match="1 test sample"):
        cross_dataset_split(["x", "y"], ["z"])


def test_grouped_splits_never_straddle_groups() -> None:
    rng = np.random.default_rng(0)
    groups = [f"src{g}" for g in rng.integers(0, 12, size=90)]
    for splits in (list(grouped_kfold_splits(groups, n_splits=4, seed=1)), list(grouped_repeated_splits(groups))):
        for s in splits:
            train_groups = {groups[i] for i in s.train_idx}
            test_groups = {groups[i] for i in s.test_idx}
            assert not train_groups & test_groups
            assert s.train_idx.size + s.test_idx.size == 90
    gk = list(grouped_kfold_splits(groups, n_splits=4, seed=1))
    assert sorted(np.concatenate([s.test_idx for s in gk]).tolist()) == list(range(90))
    assert as_sets(list(grouped_kfold_splits(groups, n_splits=4, seed=2))) != as_sets(gk)
    assert [s.name for s in grouped_repeated_splits(groups, n_repeats=3)] == ["gsplit0", "gsplit1", "gsplit2"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: list(kfold_splits(3, n_splits=5)), r"3 sample\(s\) are fewer than n_splits=5"),
        (lambda: list(kfold_splits(9, n_splits=5)), r"1 test sample\(s\); need at least 2"),
        (lambda: list(repeated_splits(5)), r"test_size=0.2 on 5 samples gives 4 training and 1 test"),
        (lambda: list(repeated_splits(50, test_size=1.2)), r"fraction in \(0, 1\), got 1.2"),
        (
            lambda: list(grouped_kfold_splits(["a", "a", "b", "b"], n_splits=3)),
            r"2 group\(s\) are fewer than n_splits=3",
        ),
        (lambda: list(grouped_repeated_splits(["a", "a", "a"])), r"1 group\(s\) leaves 0 training"),
        (lambda: list(holdout_splits(["a", "b", "c"], test_ids=["a"])), r"2 training and 1 test"),
    ],
)
def test_too_little_data_for_the_protocol_is_a_config_error(make: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()


def test_make_splits_dispatches_and_checks_names_and_params() -> None:
    ids = [f"v{i}" for i in range(40)]
    assert len(make_splits("repeated-split", ids)) == 10
    assert len(make_splits("kfold", ids, params={"n_splits": 4})) == 4
    assert len(make_splits("grouped-kfold", ids, groups=[str(i % 8) for i in range(40)])) == 5
    with pytest.raises(ConfigError, match=r"unknown protocol 'kfolds' \(did you mean 'kfold'\?\)"):
        make_splits("kfolds", ids)
    with pytest.raises(ConfigError, match=r"no parameter 'n_split' \(did you mean 'n_splits'\?\)"):
        make_splits("kfold", ids, params={"n_split": 3})
    with pytest.raises(ConfigError, match="needs a group per sample"):
        make_splits("grouped-kfold", ids)


class RecordingRegressor:
    """Predicts the training mean and remembers which rows it was fitted on (via a marker column)."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> RecordingRegressor:
        self.rows = set(X[:, 0].astype(int).tolist())
        self.mean = float(np.mean(y))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), self.mean) + X[:, 1] * 1e-3


def test_run_protocol_fits_on_training_rows_only_and_aligns_predictions() -> None:
    rng = np.random.default_rng(0)
    n = 30
    X = np.column_stack([np.arange(n), rng.normal(size=n)])
    y = rng.normal(size=n)
    splits = list(kfold_splits(n, n_splits=3))
    results = run_protocol(RecordingRegressor, X, y, splits, learner="rec", keep_estimators=True)
    assert [r.split for r in results] == ["fold0", "fold1", "fold2"]
    for r, s in zip(results, splits, strict=True):
        assert r.estimator.rows == set(s.train_idx.tolist())
        np.testing.assert_array_equal(r.mos, y[s.test_idx])
        np.testing.assert_allclose(r.predictions, y[s.train_idx].mean() + X[s.test_idx, 1] * 1e-3)
        assert r.metrics["n"] == s.test_idx.size
    with pytest.raises(ValueError, match="in both the training and the test side"):
        run_protocol(RecordingRegressor, X, y, [Split("bad", np.arange(20), np.arange(15, 30))])


def test_run_protocol_preprocessing_sees_only_training_rows() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 5))
    X[45:] += 100.0  # test rows far away: a scaler fitted on them would move its mean
    y = X[:, 0] + rng.normal(0, 0.1, 60)
    split = Split("holdout", np.arange(45), np.arange(45, 60))
    (result,) = run_protocol(
        lambda: with_preprocessing(RidgeRegressor(), PreprocessConfig()), X, y, [split], keep_estimators=True
    )
    np.testing.assert_allclose(result.estimator.named_steps["scale"].mean_, X[:45].mean(axis=0))


def test_run_protocol_with_groups_reports_kvq_metrics() -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(80, 4))
    y = X[:, 0] + rng.normal(0, 0.3, 80)
    groups = [str(i // 4) for i in range(80)]
    results = run_protocol(
        RidgeRegressor, X, y, grouped_kfold_splits(groups, n_splits=4), groups=groups, learner="ridge"
    )
    assert all({"kvq_score", "acc_source", "acc_nonsource"} <= set(r.metrics) for r in results)
    assert all(r.metrics["srocc"] > 0.7 for r in results)


def fake_results() -> list[SplitResult]:
    """Two learners, known metric values: medians and IQRs below are computed by hand."""
    out = []
    for learner, values in (("a", [0.5, 0.7, 0.9, 0.8]), ("b", [0.1, math.nan, 0.3, 0.2])):
        for k, v in enumerate(values):
            test = np.array([2 * k, 2 * k + 1])
            out.append(
                SplitResult(
                    learner=learner,
                    split=f"split{k}",
                    train_idx=np.array([9]),
                    test_idx=test,
                    mos=np.array([1.0, 2.0]),
                    predictions=np.array([1.5, 1.7]),
                    metrics={"srocc": v, "plcc_fitted": v / 2},
                    fit_seconds=1.0 + k,
                    predict_seconds=0.0,
                )
            )
    return out


def test_summarize_by_hand() -> None:
    summary = summarize(fake_results())
    a = summary["a"]["srocc"]
    # a: 0.5 0.7 0.8 0.9 -> median 0.75; q1 = 0.65, q3 = 0.825 (linear interpolation); IQR 0.175
    assert (a["median"], a["q1"], a["q3"], a["iqr"]) == pytest.approx((0.75, 0.65, 0.825, 0.175))
    assert (a["min"], a["max"], a["n"]) == (0.5, 0.9, 4)
    b = summary["b"]["srocc"]
    # b: NaN left out -> 0.1 0.2 0.3: median 0.2, n 3
    assert (b["median"], b["n"]) == (pytest.approx(0.2), 3)
    assert summary["a"]["fit_seconds"]["median"] == 2.5


def test_markdown_report_has_a_row_per_split_and_summary_rows() -> None:
    text = markdown_report(fake_results(), title="T")
    lines = text.splitlines()
    assert lines[0] == "# T"
    assert "| a | 4 | 0.7500 | 0.3750 | n/a | 2.50 |" in lines
    section = lines[lines.index("## b") :]
    assert any(line.startswith("| split1 | 2 | n/a |") for line in section)
    assert any(line.startswith("| **median** |  | 0.2000 |") for line in section)
    assert any(line.startswith("| IQR |") for line in section)


def test_write_report_writes_every_file(tmp_path: Path) -> None:
    results = fake_results()
    ids = [f"v{i}.mp4" for i in range(10)]
    written = write_report(results, tmp_path / "out", ids=ids, extra={"config": {"learner": "a"}})
    data = json.loads(written["metrics"].read_text())
    assert data["config"] == {"learner": "a"}
    assert data["summary"]["a"]["srocc"]["median"] == pytest.approx(0.75)
    assert data["splits"][5]["metrics"]["srocc"] is None  # NaN becomes null, the JSON stays valid
    assert data["splits"][0]["test_ids"] == ["v0.mp4", "v1.mp4"]
    with written["predictions"].open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(r.test_idx.size for r in results)
    assert rows[0] == {"id": "v0.mp4", "mos": "1.0", "prediction": "1.5", "split": "split0", "learner": "a"}
    assert written["scatter:a"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert written["report"].read_text().startswith("# Fusion results")
    assert not list((tmp_path / "out").glob(".*tmp*"))  # no temporary files left behind
