"""``clip`` extractor: sampling, shapes, determinism, OpenAI checkpoint formats, preprocessing, weights errors.

The real ViT-B/16 architecture runs with random weights at 64 px on 4 segments (shapes do not depend on
the input size); the checkpoint round trips use a tiny CLIP of the same layout (2 layers, width 64) so
that writing, hashing and loading stay cheap. Nothing may touch the network.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from vqstack.errors import ConfigError, WeightsError
from vqstack.extract import clip as cl
from vqstack.extract.base import WeightsSpec, sha256_file

SIZE = 64


pytestmark = pytest.mark.usefixtures("offline_torch")


@pytest.fixture(scope="module")
def vit_b16() -> cl.CLIPExtractor:
    return cl.CLIPExtractor({"num_segments": 4, "size": SIZE}, random_init=True)


def test_bigbuckbunny_shapes_and_determinism(bbb: Path, vit_b16: cl.CLIPExtractor) -> None:
    if not bbb.is_file():
        pytest.skip(f"{bbb} not present")
    from vqstack.extract.pipeline import extract_video

    first = extract_video(bbb, [vit_b16]).features["clip"]
    assert first.steps.shape == (4, 512 + 1) and first.steps.dtype == np.float32
    np.testing.assert_allclose(first.timestamps, np.array([16, 49, 82, 115]) / 25.0)  # segment centres of 132
    np.testing.assert_allclose(np.linalg.norm(first.steps[:, :512], axis=1), 1.0, rtol=1e-5)
    quality = first.steps[:, 512]
    assert ((quality > 0) & (quality < 1)).all()
    assert first.pooled["mean"].shape == (513,) and first.pooled["std"].shape == (513,)
    assert first.pooled["score"].shape == (1,) and first.pooled["clipiqa"].shape == (1,)
    assert first.pooled["score"][0] == pytest.approx(float(quality.astype(np.float64).mean()), rel=1e-6)
    assert first.feature_names is not None and first.feature_names[-1] == "clipiqa_0"
    again = cl.CLIPExtractor({"num_segments": 4, "size": SIZE}, random_init=True)  # fresh seeded init
    second = extract_video(bbb, [again]).features["clip"]
    assert np.array_equal(first.steps, second.steps)
    assert {"torch", "open_clip"} <= set(vit_b16.library_versions())


def test_crop_preprocessing_matches_clip_transforms() -> None:
    """CLIP's own pipeline: torchvision Resize(224, bicubic) on a PIL image, then CenterCrop(224). Ours runs
    torch's uint8 kernels (7x faster): the same geometry, within one grey level on a few pixels."""
    from PIL import Image
    from torchvision import transforms as T

    frame = np.random.default_rng(0).integers(0, 256, (72, 128, 3), dtype=np.uint8)
    tv = T.Compose([T.Resize(48, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(48)])
    for ours, reference in ((cl.preprocess_frame(frame, 48, "crop"), tv(Image.fromarray(frame))),
                            (cl.preprocess_frame(frame, 48, "squash"), T.Resize((48, 48))(Image.fromarray(frame)))):
        diff = np.abs(ours.astype(int) - np.asarray(reference, dtype=int))
        assert ours.shape == (48, 48, 3) and diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="prompts"):
        cl.CLIPExtractor({"prompts": [["Good photo."]]}, random_init=True)
    with pytest.raises(ConfigError, match="multiple"):
        cl.CLIPExtractor({"size": 100}, random_init=True)
    with pytest.raises(ConfigError, match="model"):
        cl.CLIPExtractor({"model": "ViT-H-14"}, random_init=True)


def test_missing_weights_name_the_expected_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"ViT-B-16\.pt"):
        cl.CLIPExtractor(weights_dir=tmp_path)
    with pytest.raises(WeightsError, match=r"ViT-L-14\.pt"):
        cl.CLIPExtractor({"model": "ViT-L-14"})
    assert [s.file_name for s in cl.CLIPExtractor.known_weights()] == [
        "ViT-B-16.pt", "ViT-L-14.pt", "ViT-L-14-336px.pt"]
    assert all(s.sha256 in s.url and len(s.sha256) == 64 for s in cl.CLIPExtractor.known_weights() if s.sha256)


# -- checkpoint formats: a tiny CLIP with OpenAI's key layout ------------------------------------------


def _tiny_clip(model: str, image_size: int) -> torch.nn.Module:
    import open_clip

    return open_clip.CLIP(
        embed_dim=32, quick_gelu=True,
        vision_cfg={"image_size": image_size, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    )


class _Holder(torch.nn.Module):
    """A bare module tree (no forward) to write an OpenAI-style TorchScript archive from a flat state dict."""


def _save_jit(state: dict[str, torch.Tensor], path: Path) -> None:
    root = _Holder()
    for key, value in state.items():
        *parents, leaf = key.split(".")
        node: torch.nn.Module = root
        for name in parents:
            if name not in node._modules:
                node.add_module(name, _Holder())
            node = node._modules[name]  # type: ignore[assignment]
        node.register_buffer(leaf, value)
    with warnings.catch_warnings():  # TorchScript is deprecated, but it is what OpenAI ships
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(root), str(path))


@pytest.fixture()
def openai_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[torch.nn.Module, Path, Path]:
    """A random tiny CLIP saved as OpenAI ships it (JIT, fp16, with its int attributes) and as a state dict."""
    monkeypatch.setattr(cl, "build_clip", _tiny_clip)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        ref = _tiny_clip("ViT-B-16", 224).eval()
    state = {k: v.half() for k, v in ref.state_dict().items()}  # OpenAI's files hold fp16 weights
    ref.load_state_dict({k: v.float() for k, v in state.items()})
    extras = {"input_resolution": torch.tensor(224), "context_length": torch.tensor(77),
              "vocab_size": torch.tensor(49408)}
    jit_path, sd_path = tmp_path / "ViT-B-16.pt", tmp_path / "state.pt"
    _save_jit({**state, **extras}, jit_path)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, sd_path)
    return ref, jit_path, sd_path


def _reference(ref: torch.nn.Module, frames: np.ndarray, prompts: list[str]) -> np.ndarray:
    from open_clip.tokenizer import SimpleTokenizer

    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(cl.CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(cl.CLIP_STD).view(1, 3, 1, 1)
    with torch.inference_mode():
        img = torch.nn.functional.normalize(ref.encode_image(x), dim=-1)
        txt = torch.nn.functional.normalize(ref.encode_text(SimpleTokenizer()(prompts)), dim=-1)
    probs = (100.0 * img @ txt.T).view(len(frames), -1, 2).softmax(-1)[..., 0]
    return torch.cat([img, probs], dim=1).numpy()


def test_openai_jit_and_state_dict_round_trip(
    openai_files: tuple[torch.nn.Module, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ref, jit_path, sd_path = openai_files
    spec = cl.CLIP_WEIGHTS["ViT-B-16"]
    monkeypatch.setitem(cl.CLIP_WEIGHTS, "ViT-B-16", WeightsSpec(spec.file_name, sha256_file(jit_path), spec.url))
    prompts = (("Good photo.", "Bad photo."), ("Sharp image", "blurry image"))
    from_jit = cl.CLIPExtractor({"prompts": prompts}, weights=jit_path)
    assert from_jit.weights_sha256 == sha256_file(jit_path)
    frames = np.random.default_rng(2).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    got = from_jit.embed_frames(frames)
    assert got.shape == (3, 32 + 2)
    np.testing.assert_allclose(got, _reference(ref, frames, [t for p in prompts for t in p]), rtol=1e-5, atol=1e-6)

    monkeypatch.setitem(cl.CLIP_WEIGHTS, "ViT-B-16", WeightsSpec(spec.file_name, None, spec.url))
    from_sd = cl.CLIPExtractor({"prompts": prompts}, weights=sd_path)
    assert np.array_equal(from_sd.embed_frames(frames), got)
    random = cl.CLIPExtractor({"prompts": prompts}, random_init=True)
    assert not np.allclose(random.embed_frames(frames), got)

    monkeypatch.setitem(cl.CLIP_WEIGHTS, "ViT-B-16", WeightsSpec(spec.file_name, "f" * 64, spec.url))
    with pytest.raises(WeightsError, match="SHA-256"):
        cl.CLIPExtractor(weights=jit_path)


def test_other_input_sizes_interpolate_or_drop_positions(
    openai_files: tuple[torch.nn.Module, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ref, jit_path, _ = openai_files
    spec = cl.CLIP_WEIGHTS["ViT-B-16"]
    monkeypatch.setitem(cl.CLIP_WEIGHTS, "ViT-B-16", WeightsSpec(spec.file_name, None, spec.url))
    interp = cl.CLIPExtractor({"size": SIZE, "resize": "squash"}, weights=jit_path)
    pos = interp.visual.positional_embedding
    assert tuple(pos.shape) == (1 + (SIZE // 16) ** 2, 64)
    assert torch.equal(pos[0], ref.visual.positional_embedding[0])  # class token position kept
    none = cl.CLIPExtractor({"size": SIZE, "pos_embed": "none"}, weights=jit_path)
    assert not none.visual.positional_embedding.any()
    frames = np.random.default_rng(3).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    assert interp.embed_frames(frames).shape == none.embed_frames(frames).shape == (2, 33)


def test_wrong_layout_is_a_weights_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cl, "build_clip", _tiny_clip)
    path = tmp_path / "bad.pt"
    torch.save({"visual.proj": torch.zeros(3, 3)}, path)
    monkeypatch.setitem(cl.CLIP_WEIGHTS, "ViT-B-16", WeightsSpec("ViT-B-16.pt", None, "u"))
    with pytest.raises(WeightsError, match="missing keys"):
        cl.CLIPExtractor(weights=path)


def test_cpu_bf16_stays_close_to_fp32(vit_b16: cl.CLIPExtractor) -> None:
    low = cl.CLIPExtractor({"num_segments": 4, "size": SIZE, "precision": "bf16"}, random_init=True)
    frames = np.random.default_rng(0).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    ref, out = vit_b16.embed_frames(frames), low.embed_frames(frames)
    assert out.dtype == np.float32 and out.shape == ref.shape
    cosine = (ref[:, :512] * out[:, :512]).sum(axis=1)  # both unit-normalised
    assert cosine.min() > 0.99
    assert next(low.visual.parameters()).dtype == torch.bfloat16  # cast weights, not CPU autocast
