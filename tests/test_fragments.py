"""``fragments`` extractor: deterministic GMS/TFA sampling, strict official checkpoints, output layout.

All networks run with random weights on the CPU (no weights can be downloaded); inputs are kept
small except the one real-video extraction per model family.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vqstack.config import from_dict
from vqstack.errors import ConfigError, WeightsError
from vqstack.extract.fragment_sampling import (
    FragmentSampler,
    ResizeSampler,
    fragment_clip_indices,
    offset_fractions,
    patch_origins,
    resize_uint8,
    upsampled_size,
)
from vqstack.extract.fragments import WEIGHTS, FragmentsConfig, FragmentsExtractor, dover_fused_score
from vqstack.extract.pipeline import extract_video
from vqstack.extract.probe import VideoInfo
from vqstack.models.checkpoints import official_to_ours, ours_to_official

TORCH_THREADS = 2
pytestmark = pytest.mark.usefixtures("offline_torch")


def _info(num_frames: int, width: int, height: int) -> VideoInfo:
    return VideoInfo(path="synthetic", duration=num_frames / 25.0, fps=25.0, num_frames=num_frames, width=width,
                     height=height, coded_width=width, coded_height=height, rotation=0, pix_fmt="rgb24", codec="raw")


def _coded_frame(index: int, height: int, width: int) -> np.ndarray:
    """Pixels that name their position and frame: (row % 256, col % 256, 8 * (row // 256) + col // 256 + index)."""
    rows, cols = np.mgrid[0:height, 0:width]
    code = (rows // 256) * 8 + cols // 256 + index
    return np.stack([rows % 256, cols % 256, code % 256], axis=-1).astype(np.uint8)


# -- temporal sampling ---------------------------------------------------------------------------


def test_fast_vqa_clips_are_centred_in_equal_segments() -> None:
    idx = fragment_clip_indices(300, clip_len=32, frame_interval=2, num_clips=4, t_frag=1)
    assert idx.shape == (4, 32)
    assert np.all(np.diff(idx, axis=1) == 2)
    seg = 300 // 4  # 75 frames per segment, a clip spans 64: centred offset (75 - 64) // 2 = 5
    assert idx[:, 0].tolist() == [5, 80, 155, 230]
    assert np.array_equal(idx, fragment_clip_indices(300, num_clips=4))  # pure function
    assert idx.max() < 300 and np.all(idx[:, 0] >= np.arange(4) * seg)


def test_fastervqa_clip_is_eight_runs_of_four() -> None:
    idx = fragment_clip_indices(400, clip_len=32, frame_interval=2, num_clips=1, t_frag=8)
    runs = idx.reshape(8, 4)
    assert np.all(np.diff(runs, axis=1) == 2)
    assert runs[:, 0].tolist() == [50 * k + 21 for k in range(8)]  # segment 50, run spans 8: (50 - 8) // 2 = 21
    two = fragment_clip_indices(400, clip_len=32, frame_interval=2, num_clips=2, t_frag=8)
    assert two[0, 0] != two[1, 0]  # several FasterVQA clips sit at different offsets


def test_short_video_wraps_like_upstream() -> None:
    idx = fragment_clip_indices(30, num_clips=4)
    assert idx.shape == (4, 32) and idx.max() == 29 and idx.min() == 0
    assert fragment_clip_indices(1, num_clips=3).max() == 0  # a still image: every slot is frame 0


# -- spatial sampling ----------------------------------------------------------------------------


def test_patch_layout_and_temporal_alignment() -> None:
    """Each 32x32 patch equals the source pixels at its origin; origins are shared within an aligned group."""
    height, width, n = 360, 640, 40
    indices = fragment_clip_indices(n, clip_len=32, frame_interval=1, num_clips=1, t_frag=8)  # FasterVQA-like
    sampler = FragmentSampler(indices, aligned=8, offsets="seeded", seed=3)
    for i in sorted(set(indices.reshape(-1).tolist())):
        sampler.add(i, _coded_frame(i, height, width))
    clips = sampler.clips()
    assert clips.shape == (1, 32, 224, 224, 3)
    origins = []
    for k, frame_index in enumerate(indices.reshape(-1).tolist()):
        rows, cols = patch_origins(height, width, sampler.fractions[k // 8])
        source = _coded_frame(frame_index, height, width)
        for i in range(7):
            for j in range(7):
                patch = clips[0, k, 32 * i:32 * i + 32, 32 * j:32 * j + 32]
                assert np.array_equal(patch, source[rows[i, j]:rows[i, j] + 32, cols[i, j]:cols[i, j] + 32])
                # inside its cell: [i * (H // 7), (i + 1) * (H // 7))
                assert i * (height // 7) <= rows[i, j] <= (i + 1) * (height // 7) - 32
                assert j * (width // 7) <= cols[i, j] <= (j + 1) * (width // 7) - 32
        origins.append((rows.copy(), cols.copy()))
    for k in range(32):  # TFA: one set of origins per group of 8 frames, different between groups
        same_group = origins[k - k % 8]
        assert np.array_equal(origins[k][0], same_group[0]) and np.array_equal(origins[k][1], same_group[1])
    assert not np.array_equal(origins[0][0], origins[8][0])


def test_offsets_are_fixed_and_centre_mode() -> None:
    indices = fragment_clip_indices(64, num_clips=1)
    a = FragmentSampler(indices, aligned=32, offsets="seeded", seed=0)
    b = FragmentSampler(indices, aligned=32, offsets="seeded", seed=0)
    c = FragmentSampler(indices, aligned=32, offsets="seeded", seed=1)
    assert np.array_equal(a.fractions, b.fractions) and not np.array_equal(a.fractions, c.fractions)
    centre = FragmentSampler(indices, aligned=32, offsets="centre", seed=0)
    rows, cols = centre.origins(1080, 1920, 0)
    mid_row, mid_col = (1080 // 7 - 32) // 2, (1920 // 7 - 32) // 2  # 61 and 122: rounded to even
    assert rows[0, 0] == mid_row + mid_row % 2 and cols[0, 0] == mid_col + mid_col % 2


@pytest.mark.parametrize(("height", "width"), [(1080, 1920), (361, 643), (225, 224), (240, 320)])
def test_origins_are_even_and_inside_cell_and_frame(height: int, width: int) -> None:
    fractions = offset_fractions("seeded", 3, 4)
    for group in range(4):
        rows, cols = patch_origins(height, width, fractions[group])
        for origin, size in ((rows, height), (cols, width)):
            assert np.all(origin % 2 == 0) and np.all(origin >= 0) and np.all(origin + 32 <= size)
        cell_rows, cell_cols = height // 7, width // 7
        i, j = np.mgrid[0:7, 0:7]
        lowest = np.minimum(i * cell_rows, height - 32) - 1  # one below the cell only if its start is odd
        assert np.all(rows >= lowest) and np.all(cols >= np.minimum(j * cell_cols, width - 32) - 1)


def test_fragments_from_yuv_planes_equal_cutting_the_rgb_frame(tmp_path: Path) -> None:
    """The YUV path (libswscale on a 7x7 patch mosaic) is bit-identical to converting, then cutting."""
    import av
    from media import ffmpeg

    from vqstack.extract.fragment_sampling import cut_fragments, cut_fragments_yuv, yuv_cuttable

    for tag in ("bt709", "smpte170m"):
        video = tmp_path / f"{tag}.mp4"
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=450x260:rate=25:duration=0.2", "-vf", "noise=alls=30:allf=t",
               "-pix_fmt", "yuv420p", "-colorspace", tag, "-color_primaries", "bt709" if tag == "bt709" else tag,
               "-color_trc", "bt709" if tag == "bt709" else tag, "-c:v", "libx264", "-crf", "20", str(video))
        with av.open(str(video)) as container:
            for n, frame in enumerate(container.decode(video=0)):
                assert yuv_cuttable(frame)
                rows, cols = patch_origins(frame.height, frame.width, offset_fractions("seeded", n, 1)[0])
                expected = cut_fragments(frame.to_ndarray(format="rgb24"), rows, cols)
                assert np.array_equal(cut_fragments_yuv(frame, rows, cols), expected)


def test_tiny_video_is_upsampled_and_sampled_over_the_whole_frame() -> None:
    assert upsampled_size(48, 64) == (224, 298)
    frame = _coded_frame(0, 48, 64)
    sampler = FragmentSampler(np.zeros((1, 32), dtype=np.int64), aligned=32, offsets="centre", seed=0)
    sampler.add(0, frame)
    big = resize_uint8(frame, (224, 298))
    rows, cols = patch_origins(224, 298, sampler.fractions[0])
    assert rows[-1, 0] == 192 and cols[0, -1] >= 6 * 42  # the grid spans the upsampled frame
    out = sampler.clips()[0, 0]
    assert np.array_equal(out[192:224, 0:32], big[rows[6, 0]:rows[6, 0] + 32, cols[6, 0]:cols[6, 0] + 32])


def test_aesthetic_view_is_plain_resize() -> None:
    sampler = ResizeSampler(np.array([0, 5]), size=(224, 224))
    frame = _coded_frame(0, 90, 160)
    sampler.add(0, frame)
    sampler.add(5, frame)
    out = sampler.frames()
    assert out.shape == (2, 224, 224, 3) and np.array_equal(out[0], resize_uint8(frame, (224, 224)))


# -- extraction on a real video ------------------------------------------------------------------


@pytest.fixture(scope="module")
def fast_extractor() -> FragmentsExtractor:
    return FragmentsExtractor({"model": "fast-vqa-b", "num_clips": 1}, random_init=True)


def test_fast_vqa_on_real_video(bbb: Path, fast_extractor: FragmentsExtractor) -> None:
    if not bbb.is_file():
        pytest.skip(f"{bbb} not present")
    feats = extract_video(bbb, [fast_extractor]).features["fragments"]
    assert feats.steps.shape == (1, 768) and feats.steps.dtype == np.float32
    assert feats.feature_names is not None and feats.feature_names[0] == "technical_0"
    assert feats.timestamps.shape == (1,)
    assert feats.pooled["score"].shape == (2,) and 0.0 < feats.pooled["score"][1] < 1.0
    assert feats.pooled["clip_scores"].shape == (1,) and feats.pooled["mean"].shape == (768,)
    assert np.isfinite(feats.steps).all()


def test_decoded_view_equals_sampling_rgb_frames(bbb: Path, fast_extractor: FragmentsExtractor) -> None:
    """The extractor's YUV-plane view gives the clips the training loader cuts from RGB frames."""
    if not bbb.is_file():
        pytest.skip(f"{bbb} not present")
    from vqstack.extract.base import feed
    from vqstack.extract.probe import probe
    from vqstack.extract.reader import VideoReader

    info = probe(bbb)
    consumer = fast_extractor.begin(info)
    wanted = fast_extractor.frame_indices(info)
    reader = VideoReader(bbb, info)
    for chunk in reader.iter_chunks(wanted, views={"fragments": (consumer.view, wanted)}, rgb=[]):
        feed(consumer, wanted, chunk.indices, chunk.frames, chunk.views["fragments"])
    cfg = fast_extractor.config
    reference = FragmentSampler(consumer.tech_indices, aligned=32, offsets=cfg.offsets, seed=cfg.seed)
    for chunk in VideoReader(bbb, info).iter_chunks(wanted):
        for index, frame in zip(chunk.indices.tolist(), chunk.frames, strict=True):
            reference.add(index, frame)
    assert np.array_equal(consumer.technical.clips(), reference.clips())


def test_fragments_bit_identical_across_runs(bbb: Path, fast_extractor: FragmentsExtractor) -> None:
    if not bbb.is_file():
        pytest.skip(f"{bbb} not present")
    from vqstack.extract.base import feed
    from vqstack.extract.probe import probe
    from vqstack.extract.reader import VideoReader

    info = probe(bbb)
    wanted = fast_extractor.frame_indices(info)
    runs = []
    for _ in range(2):
        consumer = fast_extractor.begin(info)
        for chunk in VideoReader(bbb, info).iter_chunks(wanted):
            feed(consumer, wanted, chunk.indices, chunk.frames)  # no view outputs: the view is built from RGB
        runs.append(consumer.technical.clips().copy())  # type: ignore[attr-defined]
    assert np.array_equal(runs[0], runs[1])


def test_dover_mobile_layout_and_determinism(bbb: Path) -> None:
    if not bbb.is_file():
        pytest.skip(f"{bbb} not present")
    ex = FragmentsExtractor({"model": "dover-mobile", "num_clips": 2}, random_init=True)
    first = extract_video(bbb, [ex]).features["fragments"]
    second = extract_video(bbb, [ex]).features["fragments"]
    assert first.steps.shape == (2, 768)  # 384 technical + 384 aesthetic per clip
    assert first.feature_names is not None and first.feature_names[384] == "aesthetic_0"
    assert np.array_equal(first.steps[0, 384:], first.steps[1, 384:])  # one aesthetic view per video
    assert first.pooled["score"].shape == (3,) and 0.0 <= first.pooled["score"][2] <= 1.0
    assert np.array_equal(first.steps, second.steps)
    assert all(np.array_equal(first.pooled[k], second.pooled[k]) for k in first.pooled)


# -- official checkpoints ------------------------------------------------------------------------

# A sample of official key names and shapes, read from upstream's modules (swin_backbone.py,
# conv_backbone.py, head.py, evaluator.py): the converter must keep producing exactly these.
OFFICIAL_SAMPLE: dict[str, dict[str, tuple[int, ...]]] = {
    "fast-vqa-b": {
        "fragments_backbone.patch_embed.proj.weight": (96, 3, 2, 4, 4),
        "fragments_backbone.patch_embed.norm.bias": (96,),
        "fragments_backbone.layers.0.blocks.0.attn.relative_position_bias_table": (2535, 3),
        "fragments_backbone.layers.0.blocks.1.attn.fragment_position_bias_table": (2535, 3),
        "fragments_backbone.layers.0.blocks.0.attn.relative_position_index": (392, 392),
        "fragments_backbone.layers.0.blocks.0.attn.qkv.weight": (288, 96),
        "fragments_backbone.layers.1.blocks.1.mlp.fc1.weight": (768, 192),
        "fragments_backbone.layers.2.blocks.5.mlp.fc2.bias": (384,),
        "fragments_backbone.layers.2.downsample.reduction.weight": (768, 1536),
        "fragments_backbone.layers.3.blocks.1.attn.relative_position_bias_table": (2535, 24),
        "fragments_backbone.norm.weight": (768,),
        "vqa_head.fc_hid.weight": (64, 768, 1, 1, 1),
        "vqa_head.fc_last.bias": (1,),
    },
    "dover": {
        "technical_backbone.layers.2.blocks.0.attn.fragment_position_bias_table": (2535, 12),
        "technical_backbone.layers.3.blocks.0.norm2.weight": (768,),
        "aesthetic_backbone.downsample_layers.0.0.weight": (96, 3, 2, 4, 4),
        "aesthetic_backbone.downsample_layers.0.1.weight": (96,),
        "aesthetic_backbone.downsample_layers.3.1.weight": (768, 384, 1, 2, 2),
        "aesthetic_backbone.stages.0.0.dwconv.weight": (96, 1, 1, 7, 7),
        "aesthetic_backbone.stages.0.1.dwconv.weight": (96, 1, 3, 7, 7),
        "aesthetic_backbone.stages.2.8.gamma": (384,),
        "aesthetic_backbone.stages.3.2.pwconv1.weight": (3072, 768),
        "aesthetic_backbone.norm.bias": (768,),
        "technical_head.fc_hid.weight": (64, 768, 1, 1, 1),
        "aesthetic_head.fc_last.weight": (1, 64, 1, 1, 1),
    },
    "dover-mobile": {
        "technical_backbone.downsample_layers.0.0.weight": (48, 3, 2, 4, 4),
        "technical_backbone.stages.0.0.grn.gamma": (1, 1, 1, 192),
        "technical_backbone.stages.2.4.dwconv.weight": (192, 1, 3, 7, 7),
        "technical_backbone.head.weight": (1000, 384),
        "aesthetic_backbone.stages.3.1.pwconv2.weight": (384, 1536),
        "aesthetic_backbone.head.bias": (1000,),
        "technical_head.fc_hid.weight": (32, 384, 1, 1, 1),
        "aesthetic_head.fc_last.bias": (1,),
    },
}
OFFICIAL_SAMPLE["fastervqa"] = OFFICIAL_SAMPLE["fast-vqa-b"]
OFFICIAL_KEY_COUNT = {"fast-vqa-b": 197, "fastervqa": 197, "dover": 381, "dover-mobile": 288}
NOT_OFFICIAL = {"fast-vqa-b": "fragments_backbone.layers.3.blocks.0.attn.fragment_position_bias_table",
                "dover": "technical_backbone.layers.0.blocks.0.mlp.0.weight",
                "dover-mobile": "technical_backbone.stages.0.0.gamma"}


@pytest.mark.parametrize("model", ["fast-vqa-b", "fastervqa", "dover", "dover-mobile"])
def test_official_checkpoint_round_trip(model: str, tmp_path: Path) -> None:
    source = FragmentsExtractor({"model": model, "num_clips": 1}, random_init=True)
    with torch.no_grad():  # make every tensor distinctive (random init leaves zeros and constants)
        gen = torch.Generator().manual_seed(7)
        for p in source.model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.01)
    saved = ours_to_official(source.model.state_dict(), model)
    state = saved["state_dict"] if model in ("fast-vqa-b", "fastervqa") else saved
    assert len(state) == OFFICIAL_KEY_COUNT[model]
    for key, shape in OFFICIAL_SAMPLE[model].items():
        assert tuple(state[key].shape) == shape, key
    if model in NOT_OFFICIAL:
        assert NOT_OFFICIAL[model] not in state
    path = tmp_path / WEIGHTS[model].file_name
    torch.save(saved, path)

    loaded = FragmentsExtractor({"model": model, "num_clips": 1}, weights=path)
    ours, theirs = source.model.state_dict(), loaded.model.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    x = torch.randn(1, 3, 16, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        a, b = source.model.technical(x), loaded.model.technical(x)  # type: ignore[operator]
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        if source.model.has_aesthetic:  # type: ignore[union-attr]
            assert torch.equal(source.model.aesthetic(x)[1], loaded.model.aesthetic(x)[1])  # type: ignore[operator]


def test_foreign_or_incomplete_checkpoint_is_rejected(tmp_path: Path) -> None:
    ex = FragmentsExtractor({"model": "dover-mobile", "num_clips": 1}, random_init=True)
    official = ours_to_official(ex.model.state_dict(), "dover-mobile")
    with pytest.raises(WeightsError, match="dover-mobile"):
        official_to_ours({**official, "resize_backbone.x": torch.zeros(1)}, "fast-vqa-b")
    del official["technical_head.fc_hid.bias"]
    path = tmp_path / "DOVER-Mobile.pth"
    torch.save(official, path)
    with pytest.raises(WeightsError, match=r"missing keys: technical_head\.fc_hid\.bias"):
        FragmentsExtractor({"model": "dover-mobile"}, weights=path)


def test_missing_weights_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"DOVER\.pth"):
        FragmentsExtractor({"model": "dover"}, weights_dir=tmp_path)
    with pytest.raises(WeightsError, match=r"FAST_VQA_3D_1_1\.pth"):
        FragmentsExtractor({"model": "fastervqa"}, weights=tmp_path / "nowhere" / "FAST_VQA_3D_1_1.pth")
    with pytest.raises(WeightsError, match=r"FAST_VQA_B_1_4\.pth"):
        FragmentsExtractor()
    assert [w.file_name for w in FragmentsExtractor.known_weights()] == [
        "FAST_VQA_B_1_4.pth", "FAST_VQA_3D_1_1.pth", "DOVER.pth", "DOVER-Mobile.pth"]


# -- config and scores ---------------------------------------------------------------------------


def test_config_defaults_and_validation() -> None:
    assert FragmentsConfig().num_clips == 4
    assert FragmentsConfig(model="fastervqa").num_clips == 1
    assert FragmentsConfig(model="dover").num_clips == 3
    assert from_dict(FragmentsConfig, {"model": "dover-mobile", "num_clips": 2}).num_clips == 2
    with pytest.raises(ConfigError):
        from_dict(FragmentsConfig, {"model": "dover-x"})
    with pytest.raises(ConfigError):
        from_dict(FragmentsConfig, {"num_clips": 0})
    with pytest.raises(ConfigError):
        from_dict(FragmentsConfig, {"offsets": "random"})


def test_dover_fused_score_formula() -> None:
    assert dover_fused_score(0.1107, -0.08285) == pytest.approx(0.5)
    t, a = 0.2, 0.01
    expected = 1 / (1 + np.exp(-(0.6104 * (t - 0.1107) / 0.07355 + 0.3896 * (a + 0.08285) / 0.03774)))
    assert dover_fused_score(t, a) == pytest.approx(expected)


def test_frame_indices_cover_both_views() -> None:
    ex = FragmentsExtractor({"model": "dover-mobile"}, random_init=True)
    info = _info(500, 640, 360)
    wanted = ex.frame_indices(info)
    assert set(ex.technical_indices(info).reshape(-1)) <= set(wanted)
    assert set(ex.aesthetic_indices(info)) <= set(wanted)
    assert np.all(np.diff(wanted) > 0)
