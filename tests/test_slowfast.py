"""``slowfast`` extractor: SimpleVQA chunking, shapes, determinism, checkpoint round trip, weights errors.

Random init on CPU at a small frame size (64 px; the feature is a global mean, so the shapes do not depend
on it) keeps the whole file to a few seconds; the default 224 px path is the same code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from vqstack.errors import WeightsError
from vqstack.extract import slowfast as sf
from vqstack.extract.base import WeightsSpec, feed, sha256_file
from vqstack.extract.probe import VideoInfo

SIZE = 64


pytestmark = pytest.mark.usefixtures("offline_torch")


@pytest.fixture(scope="module")
def extractor() -> sf.SlowFastExtractor:
    return sf.SlowFastExtractor({"size": SIZE}, random_init=True)


def _info(num_frames: int, fps: float) -> VideoInfo:
    return VideoInfo(path="synthetic.mp4", duration=num_frames / fps, fps=fps, num_frames=num_frames, width=96,
                     height=80, coded_width=96, coded_height=80, rotation=0, pix_fmt="yuv420p", codec="h264")


def test_slow_pathway_frames_are_the_seeds_linspace() -> None:
    assert sf.slow_pathway_index().tolist() == [0, 4, 8, 13, 17, 22, 26, 31]


def test_chunk_layout_exact_and_rounded_fps() -> None:
    exact = sf.chunk_layout(_info(1019, 29.97), sf.SlowFastConfig())
    rounded = sf.chunk_layout(_info(1019, 29.97), sf.SlowFastConfig(chunk_fps="rounded"))
    assert exact.shape == (34, 32) and rounded.shape == (33, 32)  # floor(1019/29.97)=34, 1019 // 30 = 33
    assert exact[:, 0].tolist() == [round(k * 29.97 + 1e-9) for k in range(34)]
    assert rounded[:, 0].tolist() == [30 * k for k in range(33)]  # SimpleVQA: i * int(round(fps))
    short = sf.chunk_layout(_info(60, 25.0), sf.SlowFastConfig(min_chunks=8))
    assert short.shape == (8, 32) and (short[2:] == short[1]).all() and short.max() == 25 + 31


@pytest.mark.parametrize(("num_frames", "fps", "batch"), [(200, 29.97, 1), (200, 60.0, 3), (40, 24.0, 2)])
def test_chunks_fed_to_the_model_are_frames_round_k_fps_onwards(
    extractor: sf.SlowFastExtractor, monkeypatch: pytest.MonkeyPatch, num_frames: int, fps: float, batch: int
) -> None:
    """Each frame's value is its index; a fake model records what it sees: chunk k = round(k*fps)..+31."""
    info = _info(num_frames, fps)
    seen: list[np.ndarray] = []

    def fake_embed(chunks: np.ndarray) -> np.ndarray:
        assert chunks.shape[1:] == (32, SIZE, SIZE, 3) and chunks.dtype == np.uint8 and len(chunks) <= batch
        seen.extend(chunks[:, :, 0, 0, 0].astype(np.int64))
        return chunks[:, :, 0, 0, 0].astype(np.float32).repeat(72, axis=1)  # 32 * 72 = 2304 columns

    monkeypatch.setattr(extractor, "embed_chunks", fake_embed)
    monkeypatch.setattr(extractor, "chunk_batch", batch)
    wanted = extractor.frame_indices(info)
    consumer = extractor.begin(info)
    rng = np.random.default_rng(0)
    pos = 0
    while pos < len(wanted):  # several consume() calls of random sizes, as the reader's chunks come
        step = int(rng.integers(1, 40))
        idx = wanted[pos:pos + step]
        frames = np.broadcast_to((idx % 256).astype(np.uint8)[:, None, None, None], (len(idx), 80, 96, 3))
        feed(consumer, wanted, idx, frames)  # RGB frames: the consumer's view resizes them
        pos += step
    result = consumer.finish()

    whole = max(1, int(np.floor(num_frames / fps + 1e-9)))
    expected = [np.minimum(np.arange(32) + int(np.floor(k * fps + 0.5)), num_frames - 1) for k in range(whole)]
    assert len(seen) == len(expected)  # padded chunks are computed once
    for got, want in zip(seen, expected, strict=True):
        assert got.tolist() == (want % 256).tolist()
    assert result.steps.shape == (max(8, whole), 2304)
    starts = [int(e[0]) for e in expected] + [int(expected[-1][0])] * max(0, 8 - whole)
    np.testing.assert_allclose(result.timestamps, np.asarray(starts) / fps)
    assert consumer.peak_frames <= 32 + 32  # only frames of open chunks are held


def test_bigbuckbunny_shapes_and_determinism(bbb: Path, extractor: sf.SlowFastExtractor) -> None:
    if not bbb.is_file():
        pytest.skip(f"{bbb} not present")
    from vqstack.extract.pipeline import extract_video

    first = extract_video(bbb, [extractor]).features["slowfast"]
    assert first.steps.shape == (8, 2304) and first.steps.dtype == np.float32  # 5.3 s at 25 fps: 5 chunks + 3 pads
    assert first.timestamps.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 4.0, 4.0, 4.0]
    assert (first.steps[5:] == first.steps[4]).all() and not (first.steps[3] == first.steps[4]).all()
    assert set(first.pooled) >= {"mean", "std", "p50"} and first.pooled["mean"].shape == (2304,)
    assert first.feature_names is not None and first.feature_names[2048] == "fast_000"
    again = sf.SlowFastExtractor({"size": SIZE}, random_init=True)  # fresh seeded init, second decode
    second = extract_video(bbb, [again]).features["slowfast"]
    assert np.array_equal(first.steps, second.steps)
    assert extractor.weights_sha256 == "random-init"
    assert {"torch", "pytorchvideo"} <= set(extractor.library_versions())


def _reference_features(net: torch.nn.Module, chunk: np.ndarray) -> np.ndarray:
    """Independent of the extractor: the seeds' normalisation and pathway packing, blocks 0-4, global mean."""
    fast = (torch.from_numpy(chunk).permute(0, 4, 1, 2, 3).float() / 255.0 - 0.45) / 0.225
    slow = fast[:, :, [0, 4, 8, 13, 17, 22, 26, 31]]
    x: Any = [slow, fast]
    with torch.inference_mode():
        for block in list(net.blocks)[:5]:
            x = block(x)
    return torch.cat([x[0].mean(dim=(2, 3, 4)), x[1].mean(dim=(2, 3, 4))], dim=1).numpy()


def test_model_zoo_checkpoint_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extractor: sf.SlowFastExtractor
) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        net = sf.build_slowfast_r50().eval()
        for name, buf in net.named_buffers():  # non-trivial BN statistics, so they must load too
            if buf.is_floating_point():
                buf.copy_(torch.rand_like(buf) + (0.5 if name.endswith("running_var") else -0.5))
    path = tmp_path / "SLOWFAST_8x8_R50.pyth"
    torch.save({"epoch": 196, "model_state": net.state_dict(), "optimizer_state": None, "cfg": "TRAIN: ..."}, path)
    spec = WeightsSpec(sf.SLOWFAST_R50_WEIGHTS.file_name, sha256_file(path), sf.SLOWFAST_R50_WEIGHTS.url)
    monkeypatch.setattr(sf.SlowFastExtractor, "weights_spec", spec)

    loaded = sf.SlowFastExtractor({"size": SIZE}, weights=path)
    assert loaded.weights_sha256 == spec.sha256
    chunk = np.random.default_rng(1).integers(0, 256, (1, 32, SIZE, SIZE, 3), dtype=np.uint8)
    got = loaded.embed_chunks(chunk)
    assert got.shape == (1, 2304)
    np.testing.assert_allclose(got, _reference_features(net, chunk), rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, extractor.embed_chunks(chunk))  # really not the random init

    bad = WeightsSpec(spec.file_name, "0" * 64, spec.url)
    monkeypatch.setattr(sf.SlowFastExtractor, "weights_spec", bad)
    with pytest.raises(WeightsError, match="SHA-256"):
        sf.SlowFastExtractor({"size": SIZE}, weights=path)


def test_wrong_keys_are_a_weights_error(tmp_path: Path) -> None:
    path = tmp_path / "other.pyth"
    torch.save({"model_state": {"blocks.0.conv.weight": torch.zeros(1)}}, path)
    with pytest.raises(WeightsError, match="missing keys"):
        sf.SlowFastExtractor({"size": SIZE}, weights=path)


def test_missing_weights_name_the_expected_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"SLOWFAST_8x8_R50\.pyth"):
        sf.SlowFastExtractor(weights_dir=tmp_path)
    with pytest.raises(WeightsError, match=r"SLOWFAST_8x8_R50\.pyth"):
        sf.SlowFastExtractor()
    with pytest.raises(WeightsError, match="not found"):
        sf.SlowFastExtractor(weights=tmp_path / "nope.pyth")


def test_fold_batch_norms_keeps_the_function() -> None:
    from vqstack.extract.torch_utils import fold_batch_norms

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3, bias=False), torch.nn.BatchNorm3d(4), torch.nn.ReLU(),
                              torch.nn.Conv3d(4, 2, 1), torch.nn.BatchNorm3d(2))
    for bn in (net[1], net[4]):  # non-trivial running statistics and affine parameters
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    net.eval()
    x = torch.randn(2, 3, 5, 8, 8)
    with torch.inference_mode():
        before = net(x)
    assert fold_batch_norms(net) == 2
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in net.modules())
    with torch.inference_mode():
        torch.testing.assert_close(net(x), before, rtol=1e-5, atol=1e-5)
    train_net = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 1), torch.nn.BatchNorm3d(4))  # training mode: untouched
    assert fold_batch_norms(train_net) == 0


def test_folding_slowfast_keeps_its_features() -> None:
    """Folding relies on each batch norm being registered right after the convolution it follows."""
    import copy

    from vqstack.extract.torch_utils import fold_batch_norms

    torch.manual_seed(0)
    net = sf.build_slowfast_r50()
    for m in net.modules():  # non-trivial statistics, or folding would be an identity anyway
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    plain = sf.SlowFastFeatures(net).eval()
    folded = copy.deepcopy(plain)
    assert fold_batch_norms(folded) == 110
    fast = torch.randn(1, 3, 32, SIZE, SIZE)
    with torch.inference_mode():
        torch.testing.assert_close(folded(fast[:, :, ::4], fast), plain(fast[:, :, ::4], fast), rtol=1e-5, atol=1e-2)


@pytest.mark.parametrize(("resize", "rgb_gap", "yuv_gap"), [("bilinear", 0.3, 3.0), ("area", 2.5, 4.0)])
def test_resized_view_is_close_to_pil_bilinear(bbb: Path, resize: str, rgb_gap: float, yuv_gap: float) -> None:
    """The view resizes with libswscale (from YUV while decoding, or from RGB); both stay close to the
    seeds' PIL bilinear resize of the RGB frame (the YUV path also resamples chroma; at 64x64 from
    720p: 2.4 and 3.4 grey levels on average)."""
    if not bbb.is_file():
        pytest.skip(f"{bbb} not present")
    import av
    from PIL import Image

    view = sf._ResizedView(SIZE, resize)
    with av.open(str(bbb)) as container:
        frame = next(f for n, f in enumerate(container.decode(video=0)) if n == 10)
        rgb = frame.to_ndarray(format="rgb24")
        from_yuv = view.from_decoded(10, frame)
    pil = np.asarray(Image.fromarray(rgb).resize((SIZE, SIZE), Image.BILINEAR), dtype=np.int16)
    from_rgb = view.from_rgb(10, rgb)
    assert from_yuv.shape == from_rgb.shape == (SIZE, SIZE, 3) and from_yuv.dtype == np.uint8
    assert np.abs(from_rgb.astype(np.int16) - pil).mean() < rgb_gap
    assert 0 < np.abs(from_yuv.astype(np.int16) - pil).mean() < yuv_gap  # a real resize of a real frame
