"""Datasets for branch training: cached store features, or frames decoded in DataLoader workers.

Determinism, the rule every dataset follows: randomness of a training sample (which frame, which
crop, which fragment offsets) comes from ``numpy.random.default_rng([seed, epoch, index])``, never
from a global generator. So a sample is the same whichever worker decodes it, however many workers
or ranks there are, and after a resume. Evaluation samples use no randomness at all: the same
frame indices and preprocessing as the matching extractor (:mod:`vqstack.extract.frame_iqa`,
:mod:`vqstack.extract.fragments`), so a trained branch scores a video as extraction would.

The order of samples is a per-epoch permutation from a seeded generator (:func:`epoch_batches`),
split across DDP ranks by position, so it is also a pure function of ``(seed, epoch)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vqstack.branches.recipes import DataRecipe, ModelRecipe
from vqstack.errors import ConfigError, InputError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index])


def epoch_batches(n: int, batch_size: int, *, seed: int, epoch: int, rank: int = 0, world: int = 1,
                  shuffle: bool = True) -> list[list[int]]:
    """This rank's batches of one epoch: a seeded permutation cut into global batches (last partial
    batch dropped, as batch losses need several samples), each global batch split by position."""
    if batch_size % world:
        raise ConfigError(f"optim.batch_size {batch_size} must be a multiple of the {world} DDP processes")
    order = np.random.default_rng([seed, epoch, 7919]).permutation(n) if shuffle else np.arange(n)
    full = n // batch_size
    if full == 0:
        raise ConfigError(f"{n} training samples cannot fill one batch of {batch_size}; lower optim.batch_size")
    return [order[b * batch_size:(b + 1) * batch_size][rank::world].tolist() for b in range(full)]


@dataclass
class Batch:
    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor | None


def collate(items: Sequence[tuple[torch.Tensor, float]]) -> Batch:
    """Stack samples ``[T, ...]``; unequal ``T`` is padded with zeros and masked."""
    lengths = [it[0].shape[0] for it in items]
    y = torch.tensor([float(it[1]) for it in items], dtype=torch.float32)
    if len(set(lengths)) == 1:
        return Batch(torch.stack([it[0] for it in items]), y, None)
    t = max(lengths)
    x = items[0][0].new_zeros((len(items), t, *items[0][0].shape[1:]))
    mask = torch.zeros(len(items), t, dtype=torch.bool)
    for i, (xi, _) in enumerate(items):
        x[i, :xi.shape[0]] = xi
        mask[i, :xi.shape[0]] = True
    return Batch(x, y, mask)


class EpochDataset(Dataset):
    """Base: knows the epoch (for per-sample seeds) and the targets."""

    def __init__(self, targets: np.ndarray, *, train: bool, seed: int) -> None:
        self.targets = np.asarray(targets, dtype=np.float64)
        self.train = train
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.targets)


# -- cached features -------------------------------------------------------------------------------

@dataclass
class CachedFeatures:
    """Per-video feature arrays ``[T, D]`` from the store and what produced them (for the extractor)."""

    rows: list[np.ndarray]
    tables: list[dict[str, Any]]
    pooling: list[str]
    steps: bool

    @property
    def dim(self) -> int:
        return int(self.rows[0].shape[1])


def read_cached(data: DataRecipe, ids: Sequence[str]) -> CachedFeatures:
    """Features of ``ids`` from ``data.store``: pooled vectors (one step) or per-step rows, concatenated
    over ``data.features`` (per-step features are cut to the shortest extractor's step count)."""
    from vqstack.features.store import FeatureStore

    store = FeatureStore(data.store)
    per_table: list[list[np.ndarray]] = []
    tables: list[dict[str, Any]] = []
    for name in data.features:
        table = store.resolve(name)
        info = next(t for t in store.tables() if t.name == table.name)
        tables.append({"requested": name, "table": info.name, "extractor": info.extractor, "version": info.version,
                       "config": info.config, "weights_sha256": info.weights_sha256})
        if data.steps:
            per_table.append(store.read_steps(list(ids), name, videos_root=data.videos_root))
        else:
            X, _ = store.read_matrix(list(ids), name, data.pooling, videos_root=data.videos_root)
            per_table.append([row[None, :] for row in X])
    rows = []
    for parts in zip(*per_table, strict=True):
        t = min(p.shape[0] for p in parts)
        rows.append(np.concatenate([p[:t] for p in parts], axis=1).astype(np.float32))
    return CachedFeatures(rows, tables, list(data.pooling), data.steps)


class FeatureDataset(EpochDataset):
    def __init__(self, rows: Sequence[np.ndarray], targets: np.ndarray, *, train: bool = False, seed: int = 0) -> None:
        super().__init__(targets, train=train, seed=seed)
        self.rows = [torch.from_numpy(np.asarray(r, dtype=np.float32)) for r in rows]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, float]:
        return self.rows[index], float(self.targets[index])


# -- frames (frame-IQA fine-tuning) ----------------------------------------------------------------

def frame_folder(frames_root: Path, video_id: str) -> list[Path]:
    """The frame images of one video in a ``vqstack frames`` tree (folder named by the file's stem)."""
    stem = Path(video_id).with_suffix("")
    for folder in (frames_root / stem, frames_root / stem.name):
        if folder.is_dir():
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
            if files:
                return files
    raise InputError(frames_root / stem, "no frame folder for this video (run `vqstack frames` first)")


def decode_frames(path: Path, pick: str, rng: np.random.Generator | None, cfg: Any) -> np.ndarray:
    """uint8 ``[N, H, W, 3]``: every frame the ``frame_iqa`` extractor samples, or one of them at random."""
    from vqstack.extract.frame_iqa import FrameIQAExtractor
    from vqstack.extract.probe import probe
    from vqstack.extract.reader import VideoReader

    info = probe(path)
    indices = FrameIQAExtractor.frame_indices(_ConfigHolder(cfg), info)  # type: ignore[arg-type]
    if pick == "one" and rng is not None:
        indices = indices[[int(rng.integers(len(indices)))]]
    out = [chunk.frames.copy() for chunk in VideoReader(path, info).iter_chunks(indices)]
    return np.concatenate(out)


class _ConfigHolder:
    """Lets :meth:`FrameIQAExtractor.frame_indices` run without building the network."""

    def __init__(self, config: Any) -> None:
        self.config = config


def random_crop(x: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """A ``size`` x ``size`` crop of ``[N, 3, H, W]`` at a random place, and a random horizontal flip."""
    h, w = x.shape[-2:]
    if size and (h > size or w > size):
        ch, cw = min(size, h), min(size, w)
        top, left = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
        x = x[..., top:top + ch, left:left + cw]
    if rng.random() < 0.5:
        x = x.flip(-1)
    return x.contiguous()


class FrameDataset(EpochDataset):
    """Frames of videos (decoded here, in a worker) or of 2 fps frame folders, preprocessed as
    ``frame_iqa`` does. Training: one random sampled frame, random crop; evaluation: every sampled frame."""

    def __init__(self, paths: Sequence[Path], targets: np.ndarray, frame_cfg: Any, *, train: bool, seed: int,
                 crop: int = 0, frames_root: Path | None = None) -> None:
        super().__init__(targets, train=train, seed=seed)
        self.paths = [Path(p) for p in paths]
        self.cfg = frame_cfg
        self.crop = crop
        self.frames_root = frames_root

    def _frames(self, index: int, rng: np.random.Generator | None) -> np.ndarray:
        if self.frames_root is None:
            return decode_frames(self.paths[index], "one" if self.train else "all", rng, self.cfg)
        from PIL import Image

        files = frame_folder(self.frames_root, self.paths[index].name)
        if self.train and rng is not None:
            files = [files[int(rng.integers(len(files)))]]
        return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, float]:
        from vqstack.extract.frame_iqa import preprocess

        rng = sample_rng(self.seed, self.epoch, index) if self.train else None
        frames = self._frames(index, rng)
        x = torch.cat([preprocess(f[None], self.cfg) for f in frames]) if frames.shape[0] > 1 else \
            preprocess(frames, self.cfg)
        if rng is not None:
            x = random_crop(x, self.crop, rng)
        return x, float(self.targets[index])


# -- fragments (FAST-VQA) --------------------------------------------------------------------------

class FragmentDataset(EpochDataset):
    """Fragment clips ``[C, T, 224, 224, 3]`` uint8 of one video, cut by the ``fragments`` extractor's
    sampler. Evaluation: its deterministic test view (centred clips, seeded offsets, seed 0).
    Training: ``train_clips`` clips at a random temporal shift, offsets from a per-sample seed."""

    def __init__(self, paths: Sequence[Path], targets: np.ndarray, model: ModelRecipe, *, train: bool,
                 seed: int) -> None:
        super().__init__(targets, train=train, seed=seed)
        self.paths = [Path(p) for p in paths]
        self.model = model

    def __getitem__(self, index: int) -> tuple[torch.Tensor, float]:
        from vqstack.extract.fragment_sampling import FragmentSampler, fragment_clip_indices
        from vqstack.extract.probe import probe
        from vqstack.extract.reader import VideoReader

        m = self.model
        info = probe(self.paths[index])
        n = max(1, info.num_frames)
        clips = m.train_clips if self.train else m.test_clips
        idx = fragment_clip_indices(n, clip_len=m.clip_len, frame_interval=m.frame_interval, num_clips=clips)
        offset_seed = 0
        if self.train:
            rng = sample_rng(self.seed, self.epoch, index)
            span = max(1, n // clips - m.clip_len * m.frame_interval)
            idx = (idx + int(rng.integers(-(span // 2), span // 2 + 1))) % n
            offset_seed = int(rng.integers(2**31 - 1))
        aligned = min(m.clip_len, 32)
        sampler = FragmentSampler(idx, aligned=aligned, offsets="seeded", seed=offset_seed)
        for chunk in VideoReader(self.paths[index], info).iter_chunks(np.unique(idx)):
            for i, frame in zip(chunk.indices.tolist(), chunk.frames, strict=True):
                sampler.add(i, frame)
        return torch.from_numpy(sampler.clips().copy()), float(self.targets[index])
