"""``vqstack frames``: 2 fps extraction over a folder holding every bad-input case."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from vqstack.cli import main

BAD = {"zero.mp4", "truncated.mp4", "notes.mp4", "audio_only.mp4"}


@pytest.fixture(scope="module")
def frames_run(bad_inputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path, Path]:
    root = bad_inputs["good"].parent
    out = tmp_path_factory.mktemp("frames_out")
    code = main(["frames", "--videos", str(root), "--out", str(out), "--workers", "2", "--no-progress"])
    return code, root, out


def test_batch_goes_on_and_fails_nonzero(frames_run: tuple[int, Path, Path], capsys: pytest.CaptureFixture) -> None:
    code, _root, out = frames_run
    assert code == 1
    with (out / "failures.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {Path(r["path"]).name for r in rows} == BAD
    assert all(r["reason"] and "\n" not in r["reason"] for r in rows)


def test_every_good_video_has_two_fps_frames(frames_run: tuple[int, Path, Path]) -> None:
    _, _root, out = frames_run
    expected = {  # name -> frames at 2 fps
        "good": 4, "one_frame": 1, "short": 1, "rotated": 4, "vfr": 4, "tenbit": 4, "tiny2x2": 4, "tiny7x5": 4,
        "uhd": 1, "dir with spaces/vidéo été ü": 2,
    }
    for name, count in expected.items():
        folder = out / name
        assert (folder / "_done.json").is_file(), name
        pngs = sorted(folder.glob("*.png"))
        assert abs(len(pngs) - count) <= 1, (name, len(pngs))
        assert pngs[0].name == "000001.png"
    from PIL import Image

    with Image.open(out / "rotated" / "000001.png") as img:
        assert img.size == (64, 96)  # rotation applied: portrait
    with Image.open(out / "tenbit" / "000001.png") as img:
        assert img.mode == "RGB"
    record = json.loads((out / "good" / "_done.json").read_text())
    assert record["fps"] == 2.0 and record["frames"] == len(list((out / "good").glob("*.png")))


def test_resume_skips_complete_and_redoes_partial(frames_run: tuple[int, Path, Path]) -> None:
    _, root, out = frames_run
    done_mtime = (out / "good" / "_done.json").stat().st_mtime_ns
    # simulate a crash in the middle of one video: its folder is half written
    shutil.rmtree(out / "short")
    (out / "short.partial").mkdir()
    (out / "short.partial" / "000001.png").write_bytes(b"half")
    code = main(["frames", "--videos", str(root), "--out", str(out), "--no-progress"])
    assert code == 1  # the bad files still fail
    assert (out / "good" / "_done.json").stat().st_mtime_ns == done_mtime  # skipped
    assert (out / "short" / "_done.json").is_file() and not (out / "short.partial").exists()


def test_jpeg_output_and_single_file(bad_inputs: dict[str, Path], tmp_path: Path) -> None:
    code = main(["frames", "--videos", str(bad_inputs["good"]), "--out", str(tmp_path), "--format", "jpg",
                 "--no-progress"])
    assert code == 0
    assert len(list((tmp_path / "good").glob("*.jpg"))) == 4


def test_empty_folder_and_missing_file_fail(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["frames", "--videos", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "empty" in err and "no videos" in err
    assert main(["frames", "--videos", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 1
    assert "nope.mp4: file not found" in capsys.readouterr().err


def test_ffmpeg_override_env(bad_inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("VQSTACK_FFMPEG", "/no/such/ffmpeg")
    code = main(["frames", "--videos", str(bad_inputs["good"]), "--out", str(tmp_path), "--no-progress"])
    assert code == 2
    assert "VQSTACK_FFMPEG" in capsys.readouterr().err
