"""A trained branch as an extractor: ``vqstack extract --feat branch:PATH`` (PATH = a ``best.pt``).

The checkpoint records everything needed to score a new video the way the branch was trained:
the recipe (model kind, backbone config), the weights, the MOS normalisation, and for a head-only
branch the feature spec it consumed (each source table's extractor, version, config and weights
SHA-256). So:

* head-only branch: the source extractors are rebuilt from that spec (their weights must hash to
  the recorded SHA-256, else the features would differ from training), run on the same decode
  pass (their frame indices are merged), and the head is applied to their output;
* ``frame_iqa`` fine-tuned branch: the fine-tuned network runs on the ``frame_iqa`` frame sampling;
* ``fragments`` branch: the network runs on the deterministic test view (centred clips, seed 0).

Output per video: ``steps`` = per step (frame, clip, or the one pooled row) the step score then the
head's hidden activations; ``pooled`` = the usual temporal poolings of those plus ``score`` (the
branch's video score on the MOS scale). Fusion averages ``score`` or stacks ``mean``.
The table is named ``branch.<recipe>.<split>``; its identity includes the checkpoint's SHA-256.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from vqstack.branches.trainer import CHECKPOINT_FORMAT, to_mos_scale
from vqstack.errors import ConfigError, WeightsError
from vqstack.extract.base import Extractor, FrameConsumer, FrameView, feed, sha256_file
from vqstack.extract.pooling import pool_steps
from vqstack.extract.probe import VideoInfo
from vqstack.features.records import VideoFeatures

PREFIX = "branch:"


@dataclass(frozen=True)
class BranchConfig:
    """``precision``: ``auto`` = bf16/fp16 autocast on CUDA, fp32 on CPU."""

    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"


def load_branch(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: branch checkpoint not found (train one with `vqstack train`)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path}: not a vqstack branch checkpoint (expected a best.pt from `vqstack train`)")
    return state


def branch_name(state: dict[str, Any]) -> str:
    raw = f"branch.{state['recipe']['name']}.{state.get('split', 'all')}"
    return re.sub(r"[^A-Za-z0-9_.+]", "_", raw)


class _CompositeView(FrameView):
    """The views of a composite's parts, built together per frame: a part without a view gets RGB."""

    def __init__(self, parts: list[tuple[FrameConsumer, np.ndarray]]) -> None:
        self.parts = [(c.view, {int(i) for i in wanted.tolist()}) for c, wanted in parts]

    def from_rgb(self, index: int, rgb: np.ndarray) -> list[Any]:
        return [None if index not in wanted else rgb if view is None else view.from_rgb(index, rgb)
                for view, wanted in self.parts]

    def from_decoded(self, index: int, frame: Any) -> list[Any]:
        rgb = None
        out: list[Any] = []
        for view, wanted in self.parts:
            if index not in wanted:
                out.append(None)
            elif view is not None:
                out.append(view.from_decoded(index, frame))
            else:
                rgb = frame.to_ndarray(format="rgb24") if rgb is None else rgb
                out.append(rgb)
        return out


class _Composite(FrameConsumer):
    """Feeds each source extractor its own frames; on finish turns their output into head input.

    When a source builds its frames with a :class:`FrameView` the composite runs all the sources'
    views in the reader (so each source sees exactly what it sees when run alone); otherwise it
    passes the shared RGB frames through.
    """

    def __init__(self, ex: BranchExtractor, info: VideoInfo) -> None:
        self.ex = ex
        self.parts = [(s.begin(info), np.asarray(s.frame_indices(info), dtype=np.int64)) for s in ex.sources]
        if any(c.view is not None for c, _ in self.parts):
            self.view = _CompositeView(self.parts)

    def consume(self, indices: np.ndarray, frames: Any) -> None:
        if self.view is None:
            for consumer, wanted in self.parts:
                feed(consumer, wanted, indices, frames)
            return
        for p, (consumer, _) in enumerate(self.parts):
            rows = [(i, outs[p]) for i, outs in zip(indices.tolist(), frames, strict=True) if outs[p] is not None]
            if not rows:
                continue
            picked = np.asarray([i for i, _ in rows], dtype=np.int64)
            items = [item for _, item in rows]
            consumer.consume(picked, items if consumer.view is not None else np.stack(items))

    def finish(self) -> VideoFeatures:
        outs = [c.finish() for c, _ in self.parts]
        meta = self.ex.state
        if meta.get("steps"):
            t = min(o.steps.shape[0] for o in outs)
            rows = np.concatenate([o.steps[:t] for o in outs], axis=1)
            times = outs[0].timestamps[:t]
        else:
            rows = np.concatenate([o.pooled[p] for o in outs for p in meta["pooling"]])[None, :]
            times = np.zeros(1)
        return self.ex.head_features(torch.from_numpy(rows.astype(np.float32))[None], times)


class _Frames(FrameConsumer):
    """Fine-tuned frame-IQA branch: every sampled frame through the network, one at a time."""

    def __init__(self, ex: BranchExtractor, info: VideoInfo) -> None:
        self.ex, self.info = ex, info
        self.rows: list[torch.Tensor] = []
        self.indices: list[int] = []

    def consume(self, indices: np.ndarray, frames: np.ndarray) -> None:
        from vqstack.extract.frame_iqa import preprocess

        for idx, frame in zip(indices.tolist(), frames, strict=True):
            x = preprocess(frame[None], self.ex.frame_cfg).to(self.ex.torch_device)
            with torch.inference_mode(), self.ex.autocast():
                self.rows.append(self.ex.model.frame_features(x).float().cpu())  # type: ignore[operator]
            self.indices.append(int(idx))

    def finish(self) -> VideoFeatures:
        fps = self.info.fps if self.info.fps > 0 else 1.0
        return self.ex.head_features(torch.cat(self.rows)[None], np.asarray(self.indices, np.float64) / fps)


class _Fragments(FrameConsumer):
    def __init__(self, ex: BranchExtractor, info: VideoInfo) -> None:
        from vqstack.extract.fragment_sampling import FragmentSampler
        from vqstack.extract.fragments import FragmentsView

        self.ex, self.info = ex, info
        self.idx = ex.fragment_indices(info)
        self.sampler = FragmentSampler(self.idx, aligned=min(ex.model_recipe["clip_len"], 32), offsets="seeded",
                                       seed=0)
        # the fragments extractor's view: patches cut in the reader from the YUV planes (bit-identical to RGB)
        self.view = FragmentsView(self.sampler, None)

    def consume(self, indices: np.ndarray, frames: Any) -> None:
        for i, (fragments, _) in zip(indices.tolist(), frames, strict=True):
            self.sampler.place(i, fragments)

    def finish(self) -> VideoFeatures:
        model = self.ex.model
        clips = torch.from_numpy(self.sampler.clips().copy()).to(self.ex.torch_device)
        scores, pooled = [], []
        with torch.inference_mode(), self.ex.autocast():
            for c in range(clips.shape[0]):
                s, f = model(clips[c:c + 1][None])
                scores.append(float(s))
                pooled.append(f[0].float().cpu().numpy())
        step_scores = to_mos_scale(np.asarray(scores), self.ex.state["mos_norm"])
        steps = np.concatenate([step_scores[:, None], np.stack(pooled)], axis=1).astype(np.float32)
        fps = self.info.fps if self.info.fps > 0 else 1.0
        return self.ex.package(steps, self.idx[:, 0].astype(np.float64) / fps, float(step_scores.mean()))


class BranchExtractor(Extractor):
    """Scores videos with a trained branch (bound to one checkpoint by :func:`branch_extractor_class`)."""

    name = "branch"
    version = "1"
    config_cls = BranchConfig
    view_kind = "fps"
    description = "a branch trained with `vqstack train` (score + head features)"
    checkpoint: ClassVar[str | None] = None

    def _setup(self) -> None:
        from vqstack.extract import torch_utils as tu

        if self.checkpoint is None:
            raise ConfigError("use the extractor as branch:PATH (PATH = a best.pt written by `vqstack train`)")
        self.state = load_branch(self.checkpoint)
        self.name = branch_name(self.state)  # type: ignore[misc]
        self.weights_sha256 = sha256_file(self.checkpoint)
        self.torch_device = tu.resolve_device(self.device)
        self.model_recipe = self.state["recipe"]["model"]
        self.kind = self.state["kind"]
        self.sources: list[Extractor] = []
        if self.kind == "feature_head":
            self.sources = [self._source(t, self.device, self.batch_size, self.weights_dir)
                            for t in self.state["features"]]
        if self.kind == "frame_iqa":
            from vqstack.config import from_dict
            from vqstack.extract.frame_iqa import FrameIQAConfig

            self.frame_cfg = from_dict(FrameIQAConfig, self.state["frame_iqa"], source=str(self.checkpoint))
        self.model = self._model()

    def _source(self, spec: dict[str, Any], device: str, batch_size: int | None,
                weights_dir: str | Path | None) -> Extractor:
        from vqstack.extract.registry import get_extractor_class

        cls = get_extractor_class(spec["extractor"])
        rand = spec.get("weights_sha256") == "random-init"
        ex = cls(spec["config"], device=device, batch_size=batch_size, weights_dir=weights_dir, random_init=rand)
        if ex.version != spec["version"] or ex.weights_sha256 != spec["weights_sha256"]:
            raise WeightsError(
                f"{self.checkpoint}: the branch was trained on {spec['extractor']} version {spec['version']} with "
                f"weights {str(spec['weights_sha256'])[:16]}; this installation gives version {ex.version} with "
                f"weights {str(ex.weights_sha256)[:16]} (features would differ)")
        return ex

    def _model(self) -> torch.nn.Module:
        from vqstack.branches.models import build_model
        from vqstack.branches.recipes import ModelRecipe
        from vqstack.config import from_dict

        recipe = from_dict(ModelRecipe, self.model_recipe, source=str(self.checkpoint))
        model = build_model(recipe, self.state.get("in_dim"), random_init=True)
        model.load_state_dict(self.state["state_dict"])
        return model.to(self.torch_device).eval()

    def autocast(self) -> Any:
        from vqstack.extract.torch_utils import autocast

        return autocast(self.torch_device, self.config.precision)

    def library_versions(self) -> dict[str, str]:
        from vqstack.extract.torch_utils import torch_versions

        return torch_versions()

    # -- sampling ------------------------------------------------------------------------------------

    def fragment_indices(self, info: VideoInfo) -> np.ndarray:
        from vqstack.extract.fragment_sampling import fragment_clip_indices

        m = self.model_recipe
        return fragment_clip_indices(max(1, info.num_frames), clip_len=m["clip_len"],
                                     frame_interval=m["frame_interval"], num_clips=m["test_clips"])

    def frame_indices(self, info: VideoInfo) -> np.ndarray:
        if self.kind == "feature_head":
            return np.unique(np.concatenate([s.frame_indices(info) for s in self.sources]))
        if self.kind == "frame_iqa":
            from vqstack.branches.data import _ConfigHolder
            from vqstack.extract.frame_iqa import FrameIQAExtractor

            return FrameIQAExtractor.frame_indices(_ConfigHolder(self.frame_cfg), info)  # type: ignore[arg-type]
        return np.unique(self.fragment_indices(info))

    def begin(self, info: VideoInfo) -> FrameConsumer:
        if self.kind == "feature_head":
            return _Composite(self, info)
        return _Frames(self, info) if self.kind == "frame_iqa" else _Fragments(self, info)

    # -- output --------------------------------------------------------------------------------------

    def head_features(self, feats: torch.Tensor, timestamps: np.ndarray) -> VideoFeatures:
        """Head over ``[1, T, D]`` features -> per-step [score, hidden], pooled, and the video score."""
        head = self.model.head if hasattr(self.model, "head") else self.model
        with torch.inference_mode():
            step_scores, hid = head.steps(feats.to(self.torch_device))  # type: ignore[operator]
        scores = to_mos_scale(step_scores[0].float().cpu().numpy(), self.state["mos_norm"])
        steps = np.concatenate([scores[:, None], hid[0].float().cpu().numpy()], axis=1).astype(np.float32)
        return self.package(steps, np.asarray(timestamps, np.float64), float(scores.mean()))

    def package(self, steps: np.ndarray, timestamps: np.ndarray, score: float) -> VideoFeatures:
        names = ["score"] + [f"hidden.{i}" for i in range(steps.shape[1] - 1)]
        pooled = pool_steps(steps)
        pooled["score"] = np.asarray([score], dtype=np.float32)
        return VideoFeatures(steps=steps, timestamps=timestamps, pooled=pooled, feature_names=names)


@functools.lru_cache(maxsize=64)
def branch_extractor_class(path: str) -> type[BranchExtractor]:
    """The extractor class bound to checkpoint ``path`` (what ``branch:PATH`` resolves to)."""
    resolved = str(Path(path).expanduser().absolute())
    if not Path(resolved).is_file():
        raise ConfigError(f"branch:{path}: checkpoint not found (train one with `vqstack train`)")
    return type("BranchExtractor", (BranchExtractor,), {"checkpoint": resolved, "__module__": __name__})
