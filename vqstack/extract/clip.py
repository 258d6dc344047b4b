"""``clip``: CLIP image embeddings per sampled frame, plus a CLIP-IQA zero-shot quality score per frame.

View (COVER's semantic branch): one frame from each of ``num_segments`` (20) equal segments of the video.
COVER draws a random frame inside each segment even at test time; we take the segment's middle frame
(:func:`~vqstack.extract.sampling.segment_indices`), so a video always gives the same features.

Network: OpenAI's CLIP image tower (ViT-B/16 by default, ViT-L/14 or ViT-L/14@336 as options) built with
open_clip (``open-clip-torch``) from its architecture config, with QuickGELU as in OpenAI's models, and
loaded strictly from OpenAI's own release file (a TorchScript archive; a plain state dict with the same
keys is accepted too). Nothing is ever downloaded: the tokenizer's BPE vocabulary ships inside open_clip.

Preprocessing: ``resize="crop"`` is CLIP's own (bicubic resize of the short side, centre crop);
``resize="squash"`` is COVER's semantic view (plain bilinear resize to ``size`` x ``size``, aspect ratio
not kept). Both normalise with CLIP's mean/std. ``size`` defaults to the model's native input (224, or 336);
COVER feeds 512x512 to ViT-L/14 *without* positional embeddings (CLIP-IQA's ``pos_embedding=False``):
``pos_embed="none"`` reproduces that, ``pos_embed="interpolate"`` (default) resizes the positional grid
bicubically (open_clip's ``resize_pos_embed``).

Zero-shot quality (CLIP-IQA, Wang et al. AAAI 2023): for each antonym prompt pair (default
"Good photo." / "Bad photo."), softmax over the pair of ``100 * cosine(image, prompt)``; the probability
of the positive prompt is the frame's quality in [0, 1]. Text embeddings are computed once in ``__init__``.

Output: ``steps`` ``[T, D + P]``: the L2-normalised image embedding (D = 512 for ViT-B/16, 768 for ViT-L/14)
followed by the P per-pair zero-shot qualities; ``pooled`` holds mean/std/min/max/percentiles of every
column, ``score`` (``[1]``, mean quality over frames and pairs) and ``clipiqa`` (``[P]``, mean per pair).
"""

from __future__ import annotations

import copy
import importlib.metadata
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from vqstack.errors import InputError, WeightsError
from vqstack.extract.base import Extractor, FrameConsumer, WeightsSpec
from vqstack.extract.pooling import pool_steps
from vqstack.extract.probe import VideoInfo
from vqstack.extract.sampling import segment_indices
from vqstack.extract.torch_utils import (
    autocast,
    load_checkpoint,
    load_state_strict,
    resize_uint8,
    resolve_device,
    torch_versions,
)
from vqstack.features.records import VideoFeatures

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI's, as open_clip.constants.OPENAI_DATASET_MEAN
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
LOGIT_SCALE = 100.0  # exp(logit_scale) of OpenAI's released models, as CLIP-IQA uses it
SEED = 0
OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")  # ints saved in OpenAI's JIT archives
_OPENAI_URL = "https://openaipublic.azureedge.net/clip/models/{sha}/{file}"

ModelName = Literal["ViT-B-16", "ViT-L-14", "ViT-L-14-336"]
NATIVE_SIZE: dict[str, int] = {"ViT-B-16": 224, "ViT-L-14": 224, "ViT-L-14-336": 336}


def _openai_spec(file_name: str, sha256: str, params: int, embed_dim: int, note: str) -> WeightsSpec:
    return WeightsSpec(
        file_name=file_name,
        sha256=sha256,  # OpenAI's download URL carries the full SHA-256 (clip.py checks it the same way)
        url=_OPENAI_URL.format(sha=sha256, file=file_name),
        meta={
            "format": "TorchScript archive (OpenAI release), fp16 weights; a state dict with the same keys also loads",
            "num_params": params,
            "embed_dim": embed_dim,
            "licence": "MIT (OpenAI CLIP)",
            "paper": "Radford et al., Learning Transferable Visual Models From Natural Language Supervision, 2021",
            "used_by": note,
        },
    )


CLIP_WEIGHTS: dict[str, WeightsSpec] = {
    "ViT-B-16": _openai_spec("ViT-B-16.pt", "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
                             149_620_737, 512, "KSVQE (KVQ challenge); the default here"),
    "ViT-L-14": _openai_spec("ViT-L-14.pt", "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
                             427_616_513, 768, "COVER semantic branch and CLIP-IQA+ (at 512 px)"),
    "ViT-L-14-336": _openai_spec("ViT-L-14-336px.pt",
                                 "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02",
                                 427_944_193, 768, "higher-resolution variant"),
}


@dataclass(frozen=True)
class CLIPConfig:
    """Which CLIP, which frames, which preprocessing, which prompts.

    ``model``: OpenAI CLIP architecture (weights file ``ViT-B-16.pt``, ``ViT-L-14.pt``, ``ViT-L-14-336px.pt``).
    ``num_segments``: frames per video, one from the middle of each equal segment (COVER: 20).
    ``size``: input side in pixels; 0 = the model's native size (224; 336 for ViT-L-14-336). COVER: 512.
    ``resize``: ``crop`` (CLIP: bicubic short side to ``size``, centre crop) or ``squash`` (COVER: bilinear
    resize to ``size`` x ``size``, whole frame, aspect ratio not kept).
    ``pos_embed``: ``interpolate`` keeps the positional embedding (bicubically resized when ``size`` is not
    native); ``none`` drops it, as COVER / CLIP-IQA (``pos_embedding=False``) do.
    ``prompts``: antonym pairs (positive, negative) for the zero-shot quality; CLIP-IQA's is the default.
    ``precision``: ``auto`` = bf16/fp16 autocast on CUDA, fp32 on CPU; others force it.
    """

    model: ModelName = "ViT-B-16"
    num_segments: int = 20
    size: int = 0
    resize: Literal["crop", "squash"] = "crop"
    pos_embed: Literal["interpolate", "none"] = "interpolate"
    prompts: tuple[tuple[str, str], ...] = (("Good photo.", "Bad photo."),)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"

    def __post_init__(self) -> None:
        if self.model not in NATIVE_SIZE:
            raise ValueError(f"model must be one of {sorted(NATIVE_SIZE)}, got {self.model!r}")
        if self.num_segments < 1:
            raise ValueError(f"num_segments must be >= 1, got {self.num_segments}")
        patch = 16 if self.model == "ViT-B-16" else 14
        if self.size != 0 and (self.size < patch or self.size % patch):
            raise ValueError(f"size must be 0 (native) or a positive multiple of {self.model}'s patch {patch}, "
                             f"got {self.size}")
        if not self.prompts or any(len(pair) != 2 or not all(pair) for pair in self.prompts):
            raise ValueError(f"prompts must be a non-empty list of [positive, negative] pairs, got {self.prompts!r}")

    @property
    def input_size(self) -> int:
        return self.size or NATIVE_SIZE[self.model]


def build_clip(model: str, image_size: int) -> torch.nn.Module:
    """An open_clip ``CLIP`` with OpenAI's architecture (QuickGELU) at ``image_size``; random weights, no download."""
    import open_clip

    cfg = open_clip.get_model_config(model)
    if cfg is None:
        raise WeightsError(f"open_clip has no architecture config named {model!r}")
    cfg = copy.deepcopy(cfg)
    cfg["quick_gelu"] = True  # OpenAI's models use QuickGELU; open_clip's plain configs would use nn.GELU
    cfg["vision_cfg"]["image_size"] = image_size
    return open_clip.CLIP(**cfg)


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(name.endswith("/constants.pkl") for name in zf.namelist())


def openai_state(path: str | Path) -> dict[str, torch.Tensor]:
    """OpenAI-layout CLIP weights from a release file (TorchScript) or a saved state dict, as float32 tensors.

    The JIT archive's integer attributes (input resolution, context length, vocabulary size) are dropped;
    a ``state_dict`` wrapper and a ``module.`` prefix are undone.
    """
    path = Path(path)
    if _is_torchscript(path):
        try:
            with warnings.catch_warnings():  # torch deprecates TorchScript, but OpenAI's release files are JIT
                warnings.simplefilter("ignore", FutureWarning)
                state: Mapping[str, Any] = torch.jit.load(str(path), map_location="cpu").state_dict()
        except RuntimeError as exc:
            raise WeightsError(f"{path}: cannot be read as a TorchScript archive ({exc})") from exc
    else:
        obj = load_checkpoint(path)
        state = obj.get("state_dict", obj)
        if not isinstance(state, Mapping):
            raise WeightsError(f"{path}: 'state_dict' is not a state dict ({type(state).__name__})")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return {k: v.float() for k, v in state.items() if k not in OPENAI_EXTRA_KEYS}


def fit_positional_embedding(state: dict[str, torch.Tensor], model: torch.nn.Module, mode: str) -> None:
    """Make the checkpoint's visual positional embedding fit the model's input size (in place).

    ``interpolate``: bicubic resize of the patch grid (class token kept), open_clip's ``resize_pos_embed``.
    ``none``: zeros (the model then has no positional embedding, as in COVER / CLIP-IQA).
    """
    key = "visual.positional_embedding"
    if key not in state:
        return
    target = model.visual.positional_embedding.shape
    if mode == "none":
        state[key] = torch.zeros(target, dtype=state[key].dtype)
    elif tuple(state[key].shape) != tuple(target):
        from open_clip.model import resize_pos_embed

        resize_pos_embed(state, model)


def preprocess_frame(frame: np.ndarray, size: int, resize: str) -> np.ndarray:
    """One uint8 ``[H, W, 3]`` frame -> uint8 ``[size, size, 3]``: CLIP's bicubic short-side resize + centre
    crop, or COVER's bilinear squash; antialiased, as PIL does (torch kernels: see ``resize_uint8``)."""
    if resize == "squash":
        return resize_uint8(frame, (size, size), antialias=True)
    h, w = frame.shape[:2]
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(size * long / short)  # torchvision Resize(int): short side = size, long side truncated
    new_w, new_h = (size, new_long) if w <= h else (new_long, size)
    img = resize_uint8(frame, (new_h, new_w), mode="bicubic", antialias=True)
    left, top = round((new_w - size) / 2.0), round((new_h - size) / 2.0)
    return np.ascontiguousarray(img[top:top + size, left:left + size])


def feature_names(embed_dim: int, num_pairs: int) -> list[str]:
    return [f"emb_{i:03d}" for i in range(embed_dim)] + [f"clipiqa_{p}" for p in range(num_pairs)]


class _CLIPConsumer(FrameConsumer):
    """Preprocesses sampled frames as they arrive and embeds them ``batch`` at a time."""

    def __init__(self, extractor: CLIPExtractor, info: VideoInfo) -> None:
        self.ex = extractor
        self.info = info
        self.samples = extractor.sample_indices(info)
        self.wanted = {int(i) for i in self.samples}
        self.pending_idx: list[int] = []
        self.pending: list[np.ndarray] = []
        self.rows: dict[int, np.ndarray] = {}

    def consume(self, indices: np.ndarray, frames: np.ndarray) -> None:
        for idx, frame in zip(indices.tolist(), frames, strict=True):
            if idx in self.wanted and idx not in self.rows and idx not in self.pending_idx:
                self.pending_idx.append(idx)
                self.pending.append(preprocess_frame(frame, self.ex.config.input_size, self.ex.config.resize))
                if len(self.pending) >= self.ex.frame_batch:
                    self._run()

    def _run(self) -> None:
        if not self.pending:
            return
        out = self.ex.embed_frames(np.stack(self.pending))
        self.rows.update(zip(self.pending_idx, out, strict=True))
        self.pending_idx, self.pending = [], []

    def finish(self) -> VideoFeatures:
        self._run()
        if not self.rows:
            raise InputError(self.info.path, "clip: none of the sampled frames was decoded")
        done = sorted(self.rows)
        rows = []
        for idx in self.samples.tolist():  # a sample never delivered takes the nearest earlier result
            earlier = [i for i in done if i <= idx]
            rows.append(self.rows[idx] if idx in self.rows else self.rows[earlier[-1] if earlier else done[0]])
        steps = np.stack(rows).astype(np.float32)
        fps = self.info.fps if self.info.fps > 0 else 1.0
        timestamps = self.samples.astype(np.float64) / fps
        num_pairs = len(self.ex.config.prompts)
        quality = steps[:, -num_pairs:].astype(np.float64)
        pooled = pool_steps(steps)
        pooled["clipiqa"] = quality.mean(axis=0).astype(np.float32)
        pooled["score"] = np.asarray([quality.mean()], dtype=np.float32)
        return VideoFeatures(steps=steps, timestamps=timestamps, pooled=pooled,
                             feature_names=feature_names(steps.shape[1] - num_pairs, num_pairs))


class CLIPExtractor(Extractor):
    """OpenAI CLIP image embedding + CLIP-IQA zero-shot quality of one frame per segment (COVER's semantic view)."""

    name = "clip"
    version = "2"  # 2: torch antialiased resize instead of PIL (<= 1 grey level apart)
    config_cls = CLIPConfig
    view_kind = "segments"
    weights_spec = CLIP_WEIGHTS["ViT-B-16"]
    description = "OpenAI CLIP (ViT-B/16 default, ViT-L/14) image embeddings + CLIP-IQA zero-shot quality per frame"

    def _setup(self) -> None:
        from open_clip.tokenizer import SimpleTokenizer

        cfg: CLIPConfig = self.config
        self.torch_device = resolve_device(self.device)
        self.frame_batch = max(1, int(self.batch_size or 8))
        with torch.random.fork_rng(devices=[]):  # seeded random init, global RNG left as it was
            torch.manual_seed(SEED)
            model = build_clip(cfg.model, cfg.input_size)
        if self.weights_path is not None:
            state = openai_state(self.weights_path)
            fit_positional_embedding(state, model, cfg.pos_embed)
            load_state_strict(model, state, self.weights_path)
        if cfg.pos_embed == "none":
            with torch.no_grad():
                model.visual.positional_embedding.zero_()
        model.eval()
        prompts = [text for pair in cfg.prompts for text in pair]  # positive, negative, positive, ...
        with torch.inference_mode():
            text = model.encode_text(SimpleTokenizer()(prompts), normalize=True).float()
        self.text_features = text.to(self.torch_device)  # [2P, D]
        self.visual = model.visual.to(self.torch_device)  # the text tower is dropped: its job is done
        # CPU bf16: weights cast once instead of autocast. Under CPU autocast, nn.MultiheadAttention's
        # packed input projection runs as a batched matmul over a copied [tokens, 768, 2304] weight
        # (5x slower than fp32); with bf16 weights it takes the fused path (3.9x faster than fp32).
        self._weights_dtype = None
        if self.torch_device.type == "cpu" and cfg.precision == "bf16":
            self._weights_dtype = torch.bfloat16
            self.visual = self.visual.to(torch.bfloat16)
        self._mean = torch.tensor(CLIP_MEAN, device=self.torch_device).view(1, 3, 1, 1)
        self._std = torch.tensor(CLIP_STD, device=self.torch_device).view(1, 3, 1, 1)

    # -- weights ----------------------------------------------------------------------------------

    def selected_weights(self) -> WeightsSpec | None:
        return CLIP_WEIGHTS[self.config.model]

    @classmethod
    def known_weights(cls) -> list[WeightsSpec]:
        return list(CLIP_WEIGHTS.values())

    # -- work -------------------------------------------------------------------------------------

    def sample_indices(self, info: VideoInfo) -> np.ndarray:
        if info.is_image:
            return np.zeros(1, dtype=np.int64)
        return segment_indices(info.num_frames, self.config.num_segments)

    def frame_indices(self, info: VideoInfo) -> np.ndarray:
        return np.unique(self.sample_indices(info))

    def begin(self, info: VideoInfo) -> FrameConsumer:
        return _CLIPConsumer(self, info)

    def embed_frames(self, frames: np.ndarray) -> np.ndarray:
        """uint8 ``[N, S, S, 3]`` preprocessed frames -> float32 ``[N, D + P]`` (embedding, zero-shot qualities)."""
        with torch.inference_mode():
            x = torch.from_numpy(frames).to(self.torch_device, non_blocking=True).permute(0, 3, 1, 2)
            x = (x.float().div_(255.0) - self._mean) / self._std
            if self._weights_dtype is not None:
                feats = self.visual(x.to(self._weights_dtype))
            else:
                with autocast(self.torch_device, self.config.precision):
                    feats = self.visual(x)
            emb = torch.nn.functional.normalize(feats.float(), dim=-1)
            logits = LOGIT_SCALE * emb @ self.text_features.T  # [N, 2P]
            quality = logits.view(len(frames), -1, 2).softmax(dim=-1)[..., 0]  # P(positive prompt) per pair
            out = torch.cat([emb, quality], dim=1)
        return out.cpu().numpy()

    def library_versions(self) -> dict[str, str]:
        return {**torch_versions(), "open_clip": importlib.metadata.version("open-clip-torch")}
