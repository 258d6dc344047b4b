"""``--engine ray``: same stored features as a local run, cached videos never sent, deaths retried.

One local Ray cluster (2 CPUs) serves the whole module: its start-up is the slow part. The tests
run where Ray is installed (``pip install 'vqstack[distributed]'``) and skip cleanly elsewhere,
except the one checking the error a user without Ray gets.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from vqstack.cli import main
from vqstack.extract import ray_engine
from vqstack.extract.pipeline import ExtractorRequest, run_extract
from vqstack.features.store import FeatureStore

TESTS = Path(__file__).parent
BAD = {"zero.mp4", "truncated.mp4", "notes.mp4", "audio_only.mp4"}


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """A private 2-CPU cluster; tests/ is on the workers' path so ``crashy_extractor`` imports there."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
             object_store_memory=200 * 1024**2, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from media import lavfi_video

    root = tmp_path_factory.mktemp("ray_videos")
    for i in range(6):
        lavfi_video(root / f"v{i}.mp4", size="96x64", seconds=1.5, source="mandelbrot" if i % 2 else "testsrc2",
                    extra=["-vf", f"hue=h={i * 50}"])
    return root


@pytest.fixture()
def submissions(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...]]]:
    """Every call that left the driver, as (method, args)."""
    sent: list[tuple[str, tuple[Any, ...]]] = []
    real = ray_engine._submit

    def counting(slot: Any, method: str, *args: Any) -> Any:
        sent.append((method, args))
        return real(slot, method, *args)

    monkeypatch.setattr(ray_engine, "_submit", counting)
    return sent


def _records(store: Path) -> dict[str, dict[str, Any]]:
    """Everything a table holds per video except its write time, as bytes/JSON for exact comparison."""
    fs = FeatureStore(store)
    out: dict[str, dict[str, Any]] = {}
    for info in fs.tables():
        table = fs.open_table(info.name)
        stored = table.keys()  # a Table is not a dict: keys() lists the videos it holds
        for key in stored:
            f = table.read(key)
            out[f"{info.name}/{key}"] = {
                "steps": (f.steps.dtype.str, f.steps.shape, f.steps.tobytes()),
                "timestamps": f.timestamps.tobytes(),
                "pooled": {k: v.tobytes() for k, v in f.pooled.items()},
                "names": f.feature_names,
                "video": json.dumps(f.video, sort_keys=True),
            }
    return out


def test_ray_run_stores_the_same_features_as_a_local_run(ray_cluster: Any, videos: Path, tmp_path: Path,
                                                         submissions: list[Any]) -> None:
    files = sorted(videos.iterdir())
    req = [ExtractorRequest("nss")]
    local = run_extract(files, req, tmp_path / "local", progress=False)
    remote = run_extract(files, req, tmp_path / "ray", progress=False, engine="ray", workers=2)
    assert local.computed == remote.computed == len(files) and not remote.report.failed
    assert len(submissions) == len(files)
    a, b = _records(tmp_path / "local"), _records(tmp_path / "ray")
    assert len(a) == len(files) and a.keys() == b.keys()
    for key in a:
        assert a[key] == b[key], key  # bit for bit, video facts included


def test_stored_videos_are_never_sent_out(ray_cluster: Any, videos: Path, tmp_path: Path,
                                          submissions: list[Any]) -> None:
    files = sorted(videos.iterdir())
    store = tmp_path / "store"
    run_extract(files[:4], [ExtractorRequest("nss")], store, progress=False)
    run = run_extract(files, [ExtractorRequest("nss")], store, progress=False, engine="ray")
    assert run.cache_hits == 4 and run.computed == 2
    assert sorted(Path(args[0]).name for _, args in submissions) == [f.name for f in files[4:]]
    again = run_extract(files, [ExtractorRequest("nss")], store, progress=False, engine="ray")
    assert again.cache_hits == len(files) and again.computed == 0 and len(submissions) == 2


def test_bad_inputs_fail_as_they_do_locally(ray_cluster: Any, bad_inputs: dict[str, Path], tmp_path: Path) -> None:
    chosen = ["good", "short", "one_frame", "zero_byte", "truncated", "text_as_mp4", "audio_only", "missing"]
    files = [bad_inputs[c] for c in chosen]
    local = run_extract(files, [ExtractorRequest("nss")], tmp_path / "local", progress=False)
    remote = run_extract(files, [ExtractorRequest("nss")], tmp_path / "ray", progress=False, engine="ray")
    as_dict = {Path(f.path).name: f.reason for f in local.report.failed}
    assert {Path(f.path).name: f.reason for f in remote.report.failed} == as_dict
    assert set(as_dict) == BAD | {"does_not_exist.mp4"}
    assert sorted(remote.report.done) == sorted(local.report.done)


def test_worker_killed_mid_run_is_retried_then_recorded(ray_cluster: Any, bad_inputs: dict[str, Path],
                                                       tmp_path: Path, submissions: list[Any]) -> None:
    folder = tmp_path / "v"
    folder.mkdir()
    for name in ("good", "short", "rotated"):
        shutil.copy(bad_inputs[name], folder / f"{name}.mp4")
    shutil.copy(bad_inputs["good"], folder / "crash_me.mp4")
    with open(folder / "crash_me.mp4", "ab") as fh:
        fh.write(b"\0")  # other bytes than good.mp4, so another content key
    req = ExtractorRequest("crashy_extractor:CrashOnNameExtractor")
    run = run_extract(sorted(folder.iterdir()), [req], tmp_path / "s", progress=False, engine="ray", workers=2)
    assert [Path(f.path).name for f in run.report.failed] == ["crash_me.mp4"]
    assert "died 2 times" in run.report.failed[0].reason
    assert run.computed == 3
    crash_sends = [a for _, a in submissions if Path(a[0]).name == "crash_me.mp4"]
    assert 2 <= len(crash_sends) <= 3  # the first try, then alone until the bound
    assert len(FeatureStore(tmp_path / "s").tables()) == 1


def test_frames_on_ray_match_local(ray_cluster: Any, videos: Path, tmp_path: Path) -> None:
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert main(["frames", "--videos", str(videos), "--out", str(local), "--no-progress"]) == 0
    assert main(["frames", "--videos", str(videos), "--out", str(remote), "--no-progress", "--engine", "ray"]) == 0
    pngs = sorted(p.relative_to(local) for p in local.rglob("*.png"))
    assert pngs and pngs == sorted(p.relative_to(remote) for p in remote.rglob("*.png"))
    for rel in pngs:
        assert (local / rel).read_bytes() == (remote / rel).read_bytes()
    assert main(["frames", "--videos", str(videos), "--out", str(remote), "--no-progress", "--engine", "ray"]) == 0


def test_fuse_predict_on_ray(ray_cluster: Any, videos: Path, tmp_path: Path) -> None:
    files = sorted(videos.iterdir())
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as fh:
        csv.writer(fh).writerows([("video", "score"), *((f.name, 10.0 * i) for i, f in enumerate(files))])
    store = tmp_path / "store"
    assert main(["extract", "--feat", "nss", "--videos", str(videos), "--store", str(store), "--no-progress"]) == 0
    config = tmp_path / "fusion.yml"
    config.write_text(yaml.safe_dump({
        "labels": {"path": str(labels), "id_column": "video", "score_column": "score", "videos_root": str(videos)},
        "store": str(store), "features": [{"extractor": "nss", "pooling": ["mean"]}],
        "learners": [{"name": "ridge"}], "protocol": {"name": "kfold", "params": {"n_splits": 2}},
        "final": "ridge", "output": str(tmp_path / "run"),
    }))
    assert main(["fuse", "fit", "--config", str(config), "--no-plots"]) == 0
    model = tmp_path / "run" / "model.joblib"
    scores = {}
    for engine in ("local", "ray"):
        out = tmp_path / f"{engine}.csv"
        assert main(["fuse", "predict", "--model", str(model), "--videos", str(videos), "--store",
                     str(tmp_path / f"fresh_{engine}"), "--out", str(out), "--no-progress", "--engine", engine]) == 0
        with out.open() as fh:
            scores[engine] = {r["video"]: r["score"] for r in csv.DictReader(fh)}
    assert len(scores["local"]) == len(files) and scores["local"] == scores["ray"]


@pytest.mark.parametrize("command", [["extract", "--feat", "nss"], ["frames", "--out", "OUT"],
                                     ["fuse", "predict", "--model", "m.joblib", "--out", "o.csv"]])
def test_engine_ray_without_ray_is_one_clear_line(command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    (tmp_path / "m.joblib").write_bytes(b"")
    argv = [str(tmp_path / a) if a in ("OUT", "m.joblib", "o.csv") else a for a in command]
    code = main([*argv, "--videos", str(tmp_path), "--engine", "ray"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "pip install 'vqstack[distributed]'" in err and "\n" not in err


def test_address_without_ray_engine_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["extract", "--feat", "nss", "--videos", str(tmp_path), "--address", "auto"]) == 2
    assert "--address needs --engine ray" in capsys.readouterr().err


def test_plain_path_never_imports_ray(bad_inputs: dict[str, Path], tmp_path: Path) -> None:
    code = ("import sys\nfrom vqstack.cli import main\n"
            f"main(['extract', '--feat', 'nss', '--videos', {str(bad_inputs['good'])!r}, '--store', "
            f"{str(tmp_path / 's')!r}, '--no-progress'])\n"
            "assert 'ray' not in sys.modules, 'the local path imported ray'\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    assert np.isfinite(FeatureStore(tmp_path / "s").read_matrix(["good.mp4"], "nss", "mean")[0]).all()
