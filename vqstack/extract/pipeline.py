"""Decode each video once, feed every requested extractor, write results to the store.

Why here and not in each extractor: decoding is the shared cost (often the largest one on CPU),
so the pipeline takes the union of the extractors' frame indices, streams them once through
:class:`~vqstack.extract.reader.VideoReader`, and hands each extractor its frames. Cached reuse
and crash safety come from the store: a video whose content key is already stored for an
extractor's identity is skipped; each finished (video, extractor) is written atomically before the
next video starts, so a crash loses at most the video in flight.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vqstack.batch import BatchReport
from vqstack.errors import InputError, VqstackError
from vqstack.extract.base import Extractor, feed
from vqstack.extract.probe import VideoInfo, probe
from vqstack.extract.reader import VideoReader
from vqstack.extract.registry import get_extractor_class
from vqstack.features.records import VideoFeatures

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractorRequest:
    """How to build one extractor (picklable, so worker processes can build their own)."""

    name: str
    config: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    batch_size: int | None = None
    weights: str | None = None
    weights_dir: str | None = None
    random_init: bool = False

    def validate(self) -> None:
        """Check the name and the config keys now, before any video is touched."""
        from vqstack.config import from_dict

        cls = get_extractor_class(self.name)
        from_dict(cls.config_cls, dict(self.config), source=f"extractor '{self.name}' config (--opt)")

    def build(self) -> Extractor:
        cls = get_extractor_class(self.name)
        return cls(self.config or None, device=self.device, batch_size=self.batch_size,
                   weights=self.weights, weights_dir=self.weights_dir, random_init=self.random_init)


@dataclass
class VideoResult:
    """What one decode pass produced for one video."""

    path: str
    info: VideoInfo
    features: dict[str, VideoFeatures]
    seconds: float
    decode_passes: int
    backend: str | None


def extract_video(
    path: str | Path, extractors: Sequence[Extractor], *, backend: str = "auto"
) -> VideoResult:
    """Run ``extractors`` on one video from a single streaming decode."""
    start = time.perf_counter()
    info = probe(path)
    wanted = {e.name: np.asarray(e.frame_indices(info), dtype=np.int64) for e in extractors}
    consumers = {e.name: e.begin(info) for e in extractors}
    union = np.unique(np.concatenate(list(wanted.values()))) if wanted else np.zeros(0, np.int64)
    views = {name: (c.view, wanted[name]) for name, c in consumers.items() if c.view is not None}
    rgb_parts = [wanted[name] for name, c in consumers.items() if c.view is None]
    rgb = np.unique(np.concatenate(rgb_parts)) if rgb_parts else np.zeros(0, np.int64)
    # With a network on a GPU the CPU decodes the next chunk while the GPU computes (a thread one chunk
    # ahead). On CPU the network's threads already use every core: measured no gain, so it stays off.
    prefetch = 1 if any(e.on_accelerator for e in extractors) else 0
    reader = VideoReader(path, info, backend=backend, prefetch=prefetch)  # type: ignore[arg-type]
    for chunk in reader.iter_chunks(union, views=views, rgb=rgb):
        for name, consumer in consumers.items():
            feed(consumer, wanted[name], chunk.indices, chunk.frames, chunk.views.get(name))
    features = {}
    for name, consumer in consumers.items():
        result = consumer.finish()
        result.video.update(_video_attrs(info))
        features[name] = result
    return VideoResult(str(path), info, features, time.perf_counter() - start,
                       reader.decode_passes, reader.backend_used)


def _video_attrs(info: VideoInfo) -> dict[str, Any]:
    return {"path": info.path, "duration": info.duration, "fps": info.fps, "num_frames": info.num_frames,
            "width": info.width, "height": info.height, "rotation": info.rotation,
            "pix_fmt": info.pix_fmt, "codec": info.codec, "file_size": info.file_size}


# -- worker processes --------------------------------------------------------------------------

_WORKER_EXTRACTORS: dict[str, Extractor] = {}


def _worker_init(requests: list[ExtractorRequest]) -> None:
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _WORKER_EXTRACTORS.clear()
    for req in requests:
        extractor = req.build()
        _WORKER_EXTRACTORS[extractor.name] = extractor


def _worker_run(path: str, names: list[str], backend: str) -> VideoResult:
    return extract_video(path, [_WORKER_EXTRACTORS[n] for n in names], backend=backend)


@dataclass
class ExtractRun:
    """Outcome of a batch: the per-file report plus timing facts for benchmarks."""

    report: BatchReport
    seconds: float
    computed: int = 0
    cache_hits: int = 0
    decode_passes: int = 0


def run_extract(
    videos: Sequence[Path],
    requests: Sequence[ExtractorRequest],
    store_root: str | Path,
    *,
    force: bool = False,
    workers: int | None = None,
    backend: str = "auto",
    compact_every: int = 200,
    progress: bool = True,
    on_result: Callable[[VideoResult], None] | None = None,
    engine: str = "local",
    address: str | None = None,
) -> ExtractRun:
    """Extract every requested feature for every video not already in the store.

    One process writes the store (under its writer lock); with ``workers > 1`` videos are
    decoded and extracted in worker processes and their results stream back to this writer.
    ``engine="ray"`` spreads them over a Ray cluster at ``address`` instead (see
    :mod:`vqstack.extract.ray_engine`); ``workers`` None means 1 locally, every slot on Ray.
    """
    from tqdm import tqdm

    from vqstack.extract.ray_engine import check_engine, driver_requests
    from vqstack.features.store import FeatureStore

    check_engine(engine, address)
    t0 = time.perf_counter()
    store = FeatureStore(store_root)
    extractors = [req.build() for req in (driver_requests(requests) if engine == "ray" else requests)]
    report = BatchReport()
    run = ExtractRun(report=report, seconds=0.0)
    with store.writer():
        tables = {e.name: store.table(e.name, e.version, e.config_dict(), e.weights_sha256) for e in extractors}
        keys = store.keycache
        plan: list[tuple[Path, str, list[str]]] = []
        for video in videos:
            try:
                if not video.exists():
                    raise InputError(video, "file not found")
                key = keys.key(video)
            except InputError as exc:
                report.fail(exc.path, exc.reason)
                continue
            except OSError as exc:
                report.fail(video, f"cannot read ({exc.strerror or exc})")
                continue
            todo = [e.name for e in extractors if force or not tables[e.name].has(key)]
            if todo:
                plan.append((video, key, todo))
            else:
                run.cache_hits += 1
                report.skipped.append(str(video))
                for table in tables.values():
                    table.add_alias(key, str(video))
        extra = _library_versions(extractors)
        written = 0

        def store_result(video: Path, key: str, result: VideoResult) -> None:
            nonlocal written
            for name, feats in result.features.items():
                ex = next(e for e in extractors if e.name == name)
                tables[name].write(key, feats, extra_attrs={"versions": {**extra, **ex.library_versions()}})
            run.computed += 1
            run.decode_passes += result.decode_passes
            report.done.append(str(video))
            written += 1
            if on_result is not None:
                on_result(result)
            if compact_every and written % compact_every == 0:
                store.compact_all()

        bar = tqdm(total=len(plan), desc="extract", unit="video", disable=not progress)
        try:
            if engine == "ray":
                from vqstack.extract.ray_engine import run_ray

                run_ray(plan, requests, backend, store_result, report, bar, extractors=extractors,
                        workers=workers, address=address)
            elif (workers or 1) <= 1 or len(plan) <= 1:
                by_name = {e.name: e for e in extractors}
                for video, key, todo in plan:
                    try:
                        result = extract_video(video, [by_name[n] for n in todo], backend=backend)
                        store_result(video, key, result)
                    except VqstackError as exc:
                        report.fail(video, getattr(exc, "reason", str(exc)))
                    bar.update(1)
            else:
                _run_parallel(plan, requests, workers or 1, backend, store_result, report, bar)
        finally:
            bar.close()
            store.compact_all()
    run.seconds = time.perf_counter() - t0
    return run


def _run_parallel(
    plan: list[tuple[Path, str, list[str]]],
    requests: Sequence[ExtractorRequest],
    workers: int,
    backend: str,
    store_result: Callable[[Path, str, VideoResult], None],
    report: BatchReport,
    bar: Any,
    max_attempts: int = 2,
) -> None:
    """Workers compute; this process writes results in completion order (bounded queue).

    A worker that dies (a decoder crash, the OOM killer) breaks the pool and every video in flight
    with it. Those videos are then retried one at a time in a fresh pool, so the culprit is known:
    a video that kills its worker ``max_attempts`` times on its own is recorded as failed, and the
    others are extracted normally.
    """
    import multiprocessing as mp
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("spawn")
    queue = list(plan)
    suspects: list[tuple[Path, str, list[str]]] = []
    deaths: dict[str, int] = {}
    while queue or suspects:
        alone = bool(suspects)
        with ProcessPoolExecutor(max_workers=1 if alone else workers, mp_context=ctx, initializer=_worker_init,
                                 initargs=(list(requests),)) as pool:
            pending: dict[Future[VideoResult], tuple[Path, str, list[str]]] = {}
            broken = False
            while not broken and (suspects if alone else (queue or pending)):
                source = suspects if alone else queue
                while source and len(pending) < (1 if alone else 2 * workers):
                    item = source.pop(0)
                    pending[pool.submit(_worker_run, str(item[0]), item[2], backend)] = item
                for done in _wait_first(pending):
                    item = pending.pop(done)
                    video, key, _ = item
                    try:
                        store_result(video, key, done.result())
                    except VqstackError as exc:
                        report.fail(video, getattr(exc, "reason", str(exc)))
                    except BrokenProcessPool:
                        broken = True
                        if alone:
                            deaths[str(video)] = deaths.get(str(video), 0) + 1
                            if deaths[str(video)] >= max_attempts:
                                report.fail(video, f"the worker process died {max_attempts} times on it")
                                bar.update(1)
                                continue
                        suspects.append(item)
                        continue
                    bar.update(1)
            suspects.extend(pending.values())  # still in flight when the pool broke


def _wait_first(pending: dict[Future[VideoResult], Any]) -> set[Future[VideoResult]]:
    from concurrent.futures import FIRST_COMPLETED, wait

    done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
    return done


def _library_versions(extractors: Sequence[Extractor]) -> dict[str, str]:
    import h5py
    import scipy

    from vqstack import __version__

    return {"vqstack": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "h5py": h5py.__version__}
