"""Crash safety of the real ``vqstack extract``: kill -9 at random moments, then resume."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vqstack.extract.pipeline import ExtractorRequest, run_extract
from vqstack.features.store import FeatureStore

TESTS = Path(__file__).parent


def _stored(store: Path) -> dict[str, bytes]:
    if not store.exists():
        return {}
    fs = FeatureStore(store)
    infos = fs.tables()
    if not infos:
        return {}
    assert all(t.error is None for t in infos), [t.error for t in infos]
    table = fs.open_table(infos[0].name)
    return {k: table.read(k).steps.tobytes() for k in table}


def test_kill_minus_nine_loses_at_most_the_video_in_flight(bad_inputs: dict[str, Path], tmp_path: Path) -> None:
    from media import lavfi_video

    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(10):
        lavfi_video(videos / f"v{i:02d}.mp4", size="320x240", seconds=3, source="mandelbrot" if i % 2 else "testsrc2",
                    extra=["-vf", f"hue=h={i * 30}"])
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "vqstack.cli", "extract", "--feat", "nss", "--videos", str(videos),
           "--store", str(store), "--no-progress"]
    rng = random.Random(1234)
    history: dict[str, bytes] = {}
    kills = 0
    for _ in range(6):  # bounded
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.8, 2.5))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        now = _stored(store)  # readable after every kill
        for key, data in history.items():  # nothing completed before is lost or changed
            assert now.get(key) == data
        history = now
        if len(now) == 10:
            break
    assert kills >= 1
    before = len(history)
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert f"{10 - before} done, 0 skipped" in done.stdout or f"{10 - before} done" in done.stdout
    final = _stored(store)
    assert len(final) == 10
    for key, data in history.items():
        assert final[key] == data


def test_worker_death_is_retried_then_recorded(bad_inputs: dict[str, Path], tmp_path: Path) -> None:
    videos = tmp_path / "v"
    videos.mkdir()
    for name in ("good.mp4", "short.mp4", "rotated.mp4"):
        shutil.copy(bad_inputs[name.split(".")[0]], videos / name)
    shutil.copy(bad_inputs["good"], videos / "crash_me.mp4")
    with open(videos / "crash_me.mp4", "ab") as fh:
        fh.write(b"\0")  # one more byte than good.mp4, so its content key differs
    sys.path.insert(0, str(TESTS))
    req = ExtractorRequest("crashy_extractor:CrashOnNameExtractor")
    run = run_extract(sorted(videos.iterdir()), [req], tmp_path / "s", workers=2, progress=False)
    assert [Path(f.path).name for f in run.report.failed] == ["crash_me.mp4"]
    assert "died" in run.report.failed[0].reason
    assert run.computed == 3


@pytest.mark.parametrize("n", [1])
def test_store_reads_are_finite_after_resume(n: int, tmp_path: Path, bad_inputs: dict[str, Path]) -> None:
    run_extract([bad_inputs["good"]], [ExtractorRequest("nss")], tmp_path / "s", progress=False)
    X, _ = FeatureStore(tmp_path / "s").read_matrix(["good.mp4"], "nss", "mean")
    assert X.shape[0] == n and np.isfinite(X).all()
