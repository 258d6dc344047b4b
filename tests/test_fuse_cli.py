"""``vqstack fuse fit | predict | eval`` end to end on small generated ladders, and its bad inputs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from vqstack.cli import main
from vqstack.errors import ConfigError
from vqstack.fusion.config import load_fusion_config


@pytest.fixture(scope="module")
def ladder_set(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three small sources x (pristine + 3 blur + 3 CRF steps), VMAF-free: damage level as the label."""
    from vqstack.extract.ffmpeg_bin import ffmpeg_exe
    from vqstack.ladders import make_pristine, make_step

    root = tmp_path_factory.mktemp("fuse")
    videos = root / "videos"
    videos.mkdir()
    exe = ffmpeg_exe()
    rows = []
    sources = {"ts": "testsrc2=size=128x96:rate=25", "mb": "mandelbrot=size=128x96:rate=25",
               "tst": "testsrc=size=128x96:rate=25"}
    for name, lavfi in sources.items():
        pristine = make_pristine(videos / f"{name}_0.mp4", lavfi, seconds=1.0, exe=exe)
        rows.append((pristine.name, 100.0, name))
        for level, sigma in enumerate((1.0, 2.5, 5.0), start=1):
            make_step(pristine, videos / f"{name}_b{level}.mp4", f"gblur=sigma={sigma}", 12, exe)
            rows.append((f"{name}_b{level}.mp4", 100.0 - 25 * level, name))
        for level, crf in enumerate((36, 44, 51), start=1):
            make_step(pristine, videos / f"{name}_c{level}.mp4", None, crf, exe)
            rows.append((f"{name}_c{level}.mp4", 100.0 - 25 * level, name))
    labels = root / "labels.csv"
    with labels.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["video", "score", "source"])
        w.writerows(rows)
    store = root / "store"
    assert main(["extract", "--feat", "nss", "--videos", str(videos), "--store", str(store), "--no-progress"]) == 0
    config = root / "fusion.yml"
    config.write_text(yaml.safe_dump({
        "labels": {"path": str(labels), "id_column": "video", "score_column": "score", "group_column": "source",
                   "videos_root": str(videos)},
        "store": str(store),
        "features": [{"extractor": "nss", "pooling": ["mean", "std"]}],
        "learners": [{"name": "ridge"}, {"name": "svr", "params": {"C_grid": [1.0, 10.0]}}],
        "protocol": {"name": "grouped-kfold", "params": {"n_splits": 3}},
        "final": "ridge",
        "output": str(root / "run"),
    }))
    return {"root": root, "videos": videos, "labels": labels, "store": store, "config": config}


def test_fit_writes_every_output(ladder_set: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    assert main(["fuse", "fit", "--config", str(ladder_set["config"])]) == 0
    printed = capsys.readouterr().out
    assert "| ridge |" in printed and "| svr |" in printed
    run = ladder_set["root"] / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics
    assert (run / "report.md").read_text().count("|") > 20
    with (run / "predictions.csv").open() as fh:
        preds = list(csv.DictReader(fh))
    assert len(preds) == 2 * 21  # every video once per learner (grouped k-fold)
    assert list(run.glob("scatter_*.png"))
    assert (run / "model.joblib").is_file()
    bundle = json.loads((run / "model.json").read_text())
    assert bundle["features"][0]["extractor"] == "nss" and bundle["features"][0]["pooling"] == ["mean", "std"]


def test_predict_scores_a_folder_and_one_video(ladder_set: dict[str, Path], tmp_path: Path) -> None:
    model = ladder_set["root"] / "run" / "model.joblib"
    if not model.exists():
        assert main(["fuse", "fit", "--config", str(ladder_set["config"])]) == 0
    folder = tmp_path / "new"
    folder.mkdir()
    for name in ("ts_0.mp4", "ts_b3.mp4", "mb_c1.mp4"):
        shutil.copy(ladder_set["videos"] / name, folder / name)
    (folder / "broken.mp4").write_text("not a video")
    out = tmp_path / "scores.csv"
    code = main(["fuse", "predict", "--model", str(model), "--videos", str(folder), "--store", str(tmp_path / "s"),
                 "--out", str(out), "--no-progress"])
    assert code == 1  # broken.mp4 failed, the rest scored
    with out.open() as fh:
        scores = {Path(r["video"]).name: float(r["score"]) for r in csv.DictReader(fh)}
    assert set(scores) == {"ts_0.mp4", "ts_b3.mp4", "mb_c1.mp4"}
    assert scores["ts_0.mp4"] > scores["ts_b3.mp4"]  # pristine beats heavy blur
    single = tmp_path / "one.csv"
    assert main(["fuse", "predict", "--model", str(model), "--videos", str(folder / "ts_0.mp4"),
                 "--store", str(tmp_path / "s"), "--out", str(single), "--no-progress"]) == 0
    with single.open() as fh:
        one = list(csv.DictReader(fh))
    assert float(one[0]["score"]) == pytest.approx(scores["ts_0.mp4"], abs=1e-6)  # one code path


def test_eval_reports_metrics(ladder_set: dict[str, Path], tmp_path: Path) -> None:
    model = ladder_set["root"] / "run" / "model.joblib"
    if not model.exists():
        assert main(["fuse", "fit", "--config", str(ladder_set["config"])]) == 0
    out = tmp_path / "eval.csv"
    assert main(["fuse", "eval", "--model", str(model), "--labels", str(ladder_set["labels"]),
                 "--id-column", "video", "--score-column", "score", "--videos-root", str(ladder_set["videos"]),
                 "--store", str(ladder_set["store"]), "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads(out.with_suffix(".json").read_text())
    assert metrics["srocc"] > 0.5  # seen data: the fit ranks it


def test_config_typo_names_key_and_file(ladder_set: dict[str, Path], tmp_path: Path) -> None:
    data = yaml.safe_load(ladder_set["config"].read_text())
    data["features"][0]["poolng"] = ["mean"]
    bad = tmp_path / "typo.yml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"typo\.yml.*'features\[0\]\.poolng'.*did you mean 'pooling'"):
        load_fusion_config(bad)


def test_labels_naming_missing_videos_is_clear(ladder_set: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text(ladder_set["labels"].read_text() + "ghost.mp4,50,ts\n")
    data = yaml.safe_load(ladder_set["config"].read_text())
    data["labels"]["path"] = str(labels)
    data["output"] = str(tmp_path / "run")
    cfg = tmp_path / "c.yml"
    cfg.write_text(yaml.safe_dump(data))
    assert main(["fuse", "fit", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "ghost.mp4" in err and "1 of 22" in err


def test_bundle_feature_mismatch_is_refused(ladder_set: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    import joblib

    model = ladder_set["root"] / "run" / "model.joblib"
    if not model.exists():
        assert main(["fuse", "fit", "--config", str(ladder_set["config"])]) == 0
    bundle = joblib.load(model)
    bundle["features"][0]["table"] = "nss-00000000"
    forged = tmp_path / "forged.joblib"
    joblib.dump(bundle, forged)
    code = main(["fuse", "predict", "--model", str(forged), "--videos", str(ladder_set["videos"] / "ts_0.mp4"),
                 "--store", str(ladder_set["store"]), "--out", str(tmp_path / "x.csv"), "--no-extract"])
    assert code == 2
    assert "nss-00000000" in capsys.readouterr().err


def test_nonfinite_features_error_names_rows(tmp_path: Path) -> None:
    from vqstack.fusion.run import predict

    class Dummy:
        def predict(self, X: np.ndarray) -> np.ndarray:
            return X.sum(axis=1)

    with pytest.raises(ConfigError, match="NaN or infinite"):
        predict({"estimator": Dummy()}, np.array([[1.0, np.nan], [1.0, 2.0]]))


def test_cross_dataset_and_stacking(ladder_set: dict[str, Path], tmp_path: Path) -> None:
    from vqstack.fusion.config import load_fusion_config
    from vqstack.fusion.run import fit_from_config

    with ladder_set["labels"].open() as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for path, part in ((a, [r for r in body if r[2] != "mb"]), (b, [r for r in body if r[2] == "mb"])):
        with path.open("w", newline="") as fh:
            csv.writer(fh).writerows([header, *part])
    data = yaml.safe_load(ladder_set["config"].read_text())
    data["labels"]["path"] = str(a)
    data["protocol"] = {"name": "cross-dataset", "test_labels": {**data["labels"], "path": str(b)}}
    data["features"] = [{"extractor": "nss", "pooling": ["mean"], "name": "nss_mean"},
                        {"extractor": "nss", "pooling": ["std"], "name": "nss_std"}]
    data["learners"] = [{"name": "stacking", "params": {"base_learner": "ridge"}}]
    data["final"] = None
    data["output"] = str(tmp_path / "run")
    cfg_path = tmp_path / "cross.yml"
    cfg_path.write_text(yaml.safe_dump(data))
    outcome = fit_from_config(load_fusion_config(cfg_path), plots=False)
    assert len(outcome.results) == 1 and outcome.results[0].split == "cross-dataset"
    assert outcome.results[0].test_idx.size == 7  # the held-out dataset only
    assert outcome.results[0].metrics["srocc"] > 0.3
