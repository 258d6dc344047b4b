"""``vqstack extract``: one decode per video, cached reuse, renamed files, config changes, bad inputs."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from vqstack.cli import main
from vqstack.extract.pipeline import ExtractorRequest, extract_video, run_extract
from vqstack.extract.probe import probe
from vqstack.features.store import FeatureStore


@pytest.fixture()
def small_videos(bad_inputs: dict[str, Path], tmp_path: Path) -> Path:
    root = tmp_path / "videos"
    root.mkdir()
    for name in ("good", "short", "rotated", "one_frame"):
        shutil.copy(bad_inputs[name], root / bad_inputs[name].name)
    return root


def test_extract_then_rerun_is_cache_hit(small_videos: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = run_extract(sorted(small_videos.iterdir()), [ExtractorRequest("nss")], store, progress=False)
    assert first.computed == 4 and first.cache_hits == 0 and not first.report.failed
    assert first.decode_passes == 4  # one decode per video
    second = run_extract(sorted(small_videos.iterdir()), [ExtractorRequest("nss")], store, progress=False)
    assert second.computed == 0 and second.cache_hits == 4
    tables = FeatureStore(store).tables()
    assert len(tables) == 1 and tables[0].n_videos == 4 and tables[0].extractor == "nss"


def test_renamed_file_is_hit_changed_config_is_miss(small_videos: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    run_extract([small_videos / "good.mp4"], [ExtractorRequest("nss")], store, progress=False)
    moved = tmp_path / "elsewhere" / "renamed copy.mp4"
    moved.parent.mkdir()
    shutil.move(small_videos / "good.mp4", moved)
    again = run_extract([moved], [ExtractorRequest("nss")], store, progress=False)
    assert again.cache_hits == 1 and again.computed == 0
    # the new name now matches labels that use it
    fs = FeatureStore(store)
    X, _ = fs.read_matrix(["renamed copy.mp4"], "nss", "mean")
    assert X.shape[0] == 1
    other = run_extract([moved], [ExtractorRequest("nss", config={"fps": 1.0})], store, progress=False)
    assert other.computed == 1  # a changed config is a miss, stored beside the old table
    assert len(fs.tables()) == 2
    forced = run_extract([moved], [ExtractorRequest("nss")], store, force=True, progress=False)
    assert forced.computed == 1


def test_one_decode_feeds_two_extractors(bad_inputs: dict[str, Path]) -> None:
    from vqstack.extract.nss import NSSExtractor

    a = NSSExtractor({"fps": 2.0})
    b = NSSExtractor({"fps": 1.0})
    b.name = "nss_b"  # a second consumer of the same decode
    result = extract_video(bad_inputs["good"], [a, b])
    assert result.decode_passes == 1
    assert result.features["nss"].steps.shape[0] == 4 and result.features["nss_b"].steps.shape[0] == 2
    alone = extract_video(bad_inputs["good"], [NSSExtractor({"fps": 2.0})]).features["nss"]
    np.testing.assert_array_equal(alone.steps, result.features["nss"].steps)


def test_features_are_bit_identical_across_runs(bad_inputs: dict[str, Path]) -> None:
    from vqstack.extract.nss import NSSExtractor

    one = extract_video(bad_inputs["vfr"], [NSSExtractor()]).features["nss"]
    two = extract_video(bad_inputs["vfr"], [NSSExtractor()]).features["nss"]
    assert one.steps.tobytes() == two.steps.tobytes()
    assert np.isfinite(one.steps).all()


def test_cli_extract_bad_inputs_recorded(bad_inputs: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    root = bad_inputs["good"].parent
    store = tmp_path / "store"
    code = main(["extract", "--feat", "nss", "--videos", str(root), "--store", str(store), "--no-progress",
                 "--workers", "2"])
    assert code == 1
    err = capsys.readouterr().err
    with (store / "failures.csv").open() as fh:
        failed = {Path(r["path"]).name: r["reason"] for r in csv.DictReader(fh)}
    assert set(failed) == {"zero.mp4", "truncated.mp4", "notes.mp4", "audio_only.mp4"}
    assert "zero.mp4: empty file" in err
    table = FeatureStore(store).tables()[0]
    assert table.n_videos == 10  # every readable case, 4K and 2x2 included
    for name in ("tiny2x2.mp4", "tiny7x5.mp4", "uhd.mp4", "vidéo été ü.mp4", "tenbit.mp4"):
        X, _ = FeatureStore(store).read_matrix([name], "nss", ["mean", "std"])
        assert np.isfinite(X).all(), name


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["extract", "--feat", "nsss", "--videos", str(tmp_path), "--store", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown extractor 'nsss'" in err and "did you mean 'nss'" in err and "\n" not in err
    assert main(["extract", "--feat", "nss", "--videos", str(tmp_path), "--store", str(tmp_path / "s")]) == 1
    assert "no videos" in capsys.readouterr().err
    assert main(["extract", "--feat", "nss", "--videos", str(tmp_path), "--opt", "nss.fsp=1"]) == 2
    assert "fsp" in capsys.readouterr().err


def test_images_are_one_frame_videos(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    for i, ext in enumerate(("jpg", "png", "bmp")):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / f"img{i}.{ext}")
    run = run_extract(sorted(tmp_path.glob("img*")), [ExtractorRequest("nss")], tmp_path / "s", progress=False)
    assert run.computed == 3
    assert probe(tmp_path / "img0.jpg").num_frames == 1


def test_second_writer_is_refused(small_videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    store = FeatureStore(tmp_path / "store")
    with store.writer():
        code = main(["extract", "--feat", "nss", "--videos", str(small_videos), "--store", str(tmp_path / "store")])
    assert code == 2
    assert "another vqstack process" in capsys.readouterr().err


def test_an_extractor_on_a_gpu_gets_a_reader_that_decodes_ahead(bad_inputs: dict[str, Path],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from vqstack.extract import pipeline
    from vqstack.extract.nss import NSSExtractor

    class OnGPU(NSSExtractor):  # stands in for a torch extractor with torch_device cuda
        on_accelerator = True

    asked: list[int] = []
    real_reader = pipeline.VideoReader

    def spy(*args: object, **kwargs: object) -> object:
        asked.append(int(kwargs.get("prefetch", 0)))  # type: ignore[call-overload]
        return real_reader(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "VideoReader", spy)
    on_cpu = extract_video(bad_inputs["good"], [NSSExtractor()]).features["nss"]
    ahead = extract_video(bad_inputs["good"], [OnGPU()]).features["nss"]
    assert asked == [0, 1]
    np.testing.assert_array_equal(on_cpu.steps, ahead.steps)


@pytest.mark.parametrize(("picked", "shared"), [([0, 2, 4, 6], True), ([3], True), ([1, 2, 3], True),
                                                ([0, 1, 5], False), ([9], True)])
def test_evenly_spaced_picks_reach_consumers_as_views(picked: list[int], shared: bool) -> None:
    from vqstack.extract.base import _select

    frames = np.arange(10 * 4 * 3 * 3, dtype=np.uint8).reshape(10, 4, 3, 3)
    mask = np.zeros(10, bool)
    mask[picked] = True
    out = _select(frames, mask)
    assert np.array_equal(out, frames[mask]) and np.shares_memory(out, frames) is shared


class _TagView:
    """Says which path built a frame's view (``d``: the decoded frame, ``r``: RGB pixels)."""

    def from_rgb(self, index: int, rgb: np.ndarray) -> str:
        return f"r{index}"

    def from_decoded(self, index: int, frame: object) -> str:
        return f"d{index}"


class _Recorder:
    def __init__(self, view: object = None) -> None:
        self.view = view
        self.got: list[tuple[int, object]] = []

    def consume(self, indices: np.ndarray, frames: object) -> None:
        for i, f in zip(indices.tolist(), frames, strict=True):  # type: ignore[call-overload]
            self.got.append((i, f if isinstance(f, str) else int(np.asarray(f, dtype=np.int64).sum())))


class _Source:
    def __init__(self, consumer: _Recorder, wanted: list[int]) -> None:
        self.consumer, self.wanted = consumer, np.asarray(wanted)

    def begin(self, info: object) -> _Recorder:
        return self.consumer

    def frame_indices(self, info: object) -> np.ndarray:
        return self.wanted


def test_composite_runs_its_sources_views_in_the_reader(bad_inputs: dict[str, Path]) -> None:
    """A branch over several extractors gives each source what it gets when run alone: a source with a
    view gets its view built from the decoded frame, an RGB source the RGB frames."""
    from types import SimpleNamespace

    from vqstack.branches.extractor import _Composite
    from vqstack.extract.base import feed
    from vqstack.extract.reader import VideoReader, read_frames

    path = bad_inputs["good"]
    info = probe(path)
    viewed, plain = _Recorder(_TagView()), _Recorder()
    composite = _Composite(SimpleNamespace(sources=[_Source(viewed, [1, 4, 6]), _Source(plain, [0, 4, 7])]),
                           info)  # type: ignore[arg-type]
    assert composite.view is not None
    union = np.array([0, 1, 4, 6, 7])
    for chunk in VideoReader(path, info).iter_chunks(union, views={"c": (composite.view, union)}, rgb=[]):
        feed(composite, union, chunk.indices, chunk.frames, chunk.views["c"])  # type: ignore[arg-type]
    assert viewed.got == [(1, "d1"), (4, "d4"), (6, "d6")]
    expected = read_frames(path, [0, 4, 7]).astype(np.int64).reshape(3, -1).sum(axis=1).tolist()
    assert plain.got == list(zip([0, 4, 7], expected, strict=True))
