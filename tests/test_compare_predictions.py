"""scripts/compare_predictions.py: per-split SROCC of several predictors and of their z-scored average."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_predictions.py"


def _load():
    spec = importlib.util.spec_from_file_location("compare_predictions", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _write(path: Path, learner: str, noise: float, seed: int, mos: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "mos", "prediction", "split", "learner"])
        for split, y in mos.items():
            for i, v in enumerate(y):
                w.writerow([f"img{i}", v, 3 * v + noise * rng.standard_normal(), split, learner])


def test_compare_reports_each_predictor_and_an_average_that_beats_independent_noise(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    mos = {f"split{k}": rng.uniform(0, 100, 200) for k in range(3)}
    _write(tmp_path / "a.csv", "svr", 40.0, 1, mos)
    _write(tmp_path / "b.csv", "branch", 40.0, 2, mos)
    module = _load()
    assert module.main([str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--out", str(tmp_path / "out")]) == 0
    with open(tmp_path / "out" / "compare.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["split"] for r in rows] == ["split0", "split1", "split2"]
    for r in rows:  # two predictors with independent errors: their average ranks better than either
        assert float(r["z-average"]) > max(float(r["svr"]), float(r["branch"]))
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "| median |" in md and "branch - svr" in md and "wins" in md


def test_compare_needs_the_learner_named_when_a_file_holds_several(tmp_path: Path) -> None:
    mos = {"split0": np.arange(10.0)}
    _write(tmp_path / "a.csv", "svr", 1.0, 1, mos)
    with open(tmp_path / "a.csv", "a", newline="") as fh:
        csv.writer(fh).writerow(["img0", 0.0, 1.0, "split0", "lightgbm"])
    module = _load()
    with pytest.raises(SystemExit, match=r"a\.csv:LEARNER"):
        module.read_predictions(str(tmp_path / "a.csv"))
    label, by_split = module.read_predictions(f"{tmp_path / 'a.csv'}:svr")
    assert label == "svr" and len(by_split["split0"]) == 10


def test_a_named_ensemble_averages_only_its_members(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    mos = {f"split{k}": rng.uniform(0, 100, 200) for k in range(2)}
    _write(tmp_path / "base.csv", "svr", 5.0, 1, mos)  # nearly perfect: would lift an average it joined
    _write(tmp_path / "s1.csv", "seed1", 60.0, 2, mos)
    _write(tmp_path / "s2.csv", "seed2", 60.0, 3, mos)
    module = _load()
    files = [str(tmp_path / f) for f in ("base.csv", "s1.csv", "s2.csv")]
    assert module.main([*files, "--ensemble", "seeds=seed1,seed2", "--out", str(tmp_path / "out")]) == 0
    with open(tmp_path / "out" / "compare.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        s1, s2, seeds, svr = (float(r[c]) for c in ("seed1", "seed2", "seeds", "svr"))
        assert max(s1, s2) < seeds < svr - 0.05  # better than either seed, but without the base in it
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "seeds - svr" in md


@pytest.mark.parametrize(("spec", "match"), [
    ("seeds=seed1", "two members at least"),
    ("seed1,seed2", "NAME=LABEL"),
    ("seeds=seed1,nope", r"\['nope'\] not among"),
    ("svr=seed1,seed2", "already a column"),
])
def test_a_bad_ensemble_spec_fails_with_its_reason(tmp_path: Path, spec: str, match: str) -> None:
    module = _load()
    with pytest.raises(SystemExit, match=match):
        module.parse_ensembles([spec], ["svr", "seed1", "seed2"])
