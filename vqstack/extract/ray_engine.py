"""The Ray engine: the same per-video work as the local worker pool, spread over a Ray cluster.

Why Ray and why this shape: extraction is embarrassingly parallel per video, and the store is
crash safe only because ONE process writes it. So the cluster computes and the driver writes:
each Ray worker is an actor that builds the extractors once (deep models are loaded once per GPU,
not once per video), decodes and extracts a video with the very function the local path uses
(:func:`~vqstack.extract.pipeline.extract_video`), and sends the result back; the driver hands it
to the same ``store_result`` callback as the local pool, which writes it atomically. What the
store already holds never leaves the driver (the plan only lists misses), and a crash of the
driver loses at most the videos in flight, exactly as locally.

Scheduling: one actor per CPU slot (``num_cpus=1``), or per GPU when a torch extractor runs on
CUDA (``num_gpus=1``), at most ``per_worker`` videos in flight per actor (backpressure: memory on
the driver and in the object store stays bounded whatever the batch size). A worker that dies
(segfault, OOM killer, lost node) loses only what it had in flight: those videos are retried, each
alone on a fresh actor so a death is attributed to one video; a video that kills its worker
``max_attempts`` times alone is recorded as failed and the batch goes on. This mirrors
:func:`~vqstack.extract.pipeline._run_parallel`.

Ray is optional (``pip install 'vqstack[distributed]'``): nothing here imports it at module import
time, and the local path never imports this module's Ray parts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vqstack.errors import ConfigError, InputError, VqstackError

if TYPE_CHECKING:
    from vqstack.batch import BatchReport
    from vqstack.extract.base import Extractor
    from vqstack.extract.frames import FrameDumpConfig
    from vqstack.extract.pipeline import ExtractorRequest, VideoResult

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'vqstack[distributed]'"
ENGINES = ("local", "ray")

PlanItem = tuple[Path, str, list[str]]


class WorkerSetupError(VqstackError):
    """A Ray worker cannot do the job at all (extractors not buildable there, other library versions).

    Not a per-video failure: the run stops, since every video sent to such a worker would fail.
    """


# -- connection ---------------------------------------------------------------------------------


def check_engine(engine: str, address: str | None = None) -> None:
    """Validate ``engine``/``address`` before any work (and Ray's presence, for ``ray``)."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    if address is not None and engine != "ray":
        raise ConfigError("--address needs --engine ray")
    if engine == "ray":
        require_ray()


def require_ray() -> Any:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"--engine ray needs Ray, which is not installed: {INSTALL_HINT}") from exc
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """Connect to a Ray cluster for one run, or reuse the connection the caller already opened.

    ``address``: ``ray://HOST:10001`` (Ray Client), ``HOST:6379`` or ``auto`` (a cluster this
    machine belongs to); None: ``$RAY_ADDRESS`` if set, else a private local cluster over this
    machine's cores (started here, stopped at the end). A connection opened by the caller (tests,
    notebooks, a bench that times start-up separately) is used as is and left open.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"address": address} if address else {}
    if not (address or os.environ.get("RAY_ADDRESS", "")).startswith("ray://"):
        kwargs["logging_level"] = logging.WARNING  # Ray Client would forward it to the server's init
    if not address and not os.environ.get("RAY_ADDRESS"):
        kwargs["include_dashboard"] = False  # a throwaway local cluster: skip the dashboard's start-up
    log.info("connecting to Ray (%s)", address or os.environ.get("RAY_ADDRESS") or "new local cluster")
    ray.init(**kwargs)
    try:
        yield ray
    finally:
        ray.shutdown()


# -- workers (Ray actors; the classes are plain, made remote at run time) ------------------------


def _node() -> str:
    return socket.gethostname()


def worker_versions(extractors: Sequence[Extractor]) -> dict[str, str]:
    """What must match between driver and workers for the stored ``versions`` attr to be true."""
    import platform

    from vqstack.extract.pipeline import _library_versions

    out = dict(_library_versions(extractors))
    out["python"] = ".".join(platform.python_version_tuple()[:2])  # patch releases do not change features
    for ex in extractors:
        out.update({f"{ex.name}/{k}": v for k, v in ex.library_versions().items()})
    return out


class ExtractWorker:
    """One Ray worker: extractors built once, then one video at a time through ``extract_video``.

    A setup problem (weights missing on this node, other library versions) is kept and raised by the
    first call as :class:`WorkerSetupError`, not by ``__init__``: Ray would report an ``__init__``
    failure as a multi-line actor death, while this way the driver stops with one clear line.
    """

    def __init__(self, requests: list[ExtractorRequest], backend: str, expected: dict[str, str]) -> None:
        self.backend = backend
        self.setup_error: str | None = None
        self.extractors: dict[str, Extractor] = {}
        try:
            built = [req.build() for req in requests]
        except VqstackError as exc:
            self.setup_error = f"cannot build the extractors: {exc}"
            return
        self.extractors = {ex.name: ex for ex in built}
        mine = worker_versions(built)
        diff = [f"{k} {mine.get(k)} (driver {v})" for k, v in expected.items() if mine.get(k) != v]
        if diff:
            self.setup_error = ("runs other library versions than the driver, so its features would be stored "
                                f"with wrong provenance: {', '.join(diff)}; install the same environment on every node")

    def run(self, path: str, names: list[str], cwd: str) -> VideoResult:
        """``path`` as the driver names it (relative to the driver's ``cwd`` or absolute).

        The file is read at its absolute path (a worker's own working folder is elsewhere), and the
        result names it as the driver does, so the stored record is the one a local run writes.
        """
        from vqstack.extract.pipeline import extract_video

        if self.setup_error:
            raise WorkerSetupError(f"Ray worker on {_node()} {self.setup_error}")
        target = os.path.join(cwd, path)
        if not os.path.exists(target):
            raise InputError(path, f"not visible on Ray node {_node()} (videos must be on a file system every "
                                   "node mounts at the same path)")
        result = extract_video(target, [self.extractors[n] for n in names], backend=self.backend)
        if target != path:
            _rename(result, target, path)
        return result


def _rename(result: VideoResult, actual: str, named: str) -> None:
    import dataclasses

    result.path = named
    result.info = dataclasses.replace(result.info, path=named)
    for feats in result.features.values():
        if feats.video.get("path") == actual:
            feats.video["path"] = named


class FrameWorker:
    """One Ray worker of ``vqstack frames``: ffmpeg resolved on its node, frames written in place."""

    def __init__(self, ffmpeg: str | None, out_root: str) -> None:
        from vqstack.extract.ffmpeg_bin import ffmpeg_exe

        self.setup_error: str | None = None
        self.exe = ""
        try:
            self.exe = ffmpeg_exe(ffmpeg)
        except VqstackError as exc:
            self.setup_error = str(exc)
        if not os.path.isdir(out_root):
            self.setup_error = (f"output folder {out_root} is not visible here: frames are written by the "
                                "workers, so --out must be on a file system every node mounts at the same path")

    def dump(self, video: str, dest: str, cfg: FrameDumpConfig) -> int:
        from vqstack.extract.frames import dump_video

        if self.setup_error:
            raise WorkerSetupError(f"Ray worker on {_node()}: {self.setup_error}")
        try:
            return dump_video(Path(video), Path(dest), cfg, self.exe)
        except OSError as exc:  # recorded per video, as the local thread pool does
            raise InputError(video, f"{exc.__class__.__name__}: {exc}") from None


# -- scheduling ------------------------------------------------------------------------------------


@dataclass
class RayStats:
    """What the scheduler did: for logs, tests (nothing cached is sent) and benchmarks."""

    workers: int = 0
    submitted: int = 0
    retried: int = 0
    worker_deaths: int = 0
    resources: dict[str, float] = field(default_factory=dict)


@dataclass
class _Slot:
    actor: Any
    inflight: list[Any] = field(default_factory=list)
    isolated: bool = False  # running one suspect alone: no other work until it returns


def _lost_errors(ray: Any) -> tuple[type[BaseException], ...]:
    """Errors meaning 'the worker or its result is gone', not 'the video is bad'."""
    ex = ray.exceptions
    return tuple(getattr(ex, n) for n in ("RayActorError", "WorkerCrashedError", "NodeDiedError",
                                           "ObjectLostError", "LocalRayletDiedError") if hasattr(ex, n))


def _submit(slot: _Slot, method: str, *args: Any) -> Any:
    """The only place work leaves the driver (tests count calls here)."""
    return getattr(slot.actor, method).remote(*args)


def _schedule(
    ray: Any,
    n_items: int,
    *,
    n_workers: int,
    new_actor: Callable[[], Any],
    args_of: Callable[[int], tuple[Any, ...]],
    method: str,
    on_value: Callable[[int, Any], None],
    on_error: Callable[[int, str], None],
    stats: RayStats,
    per_worker: int = 2,
    max_attempts: int = 2,
) -> None:
    """Run item ``i`` as ``actor.method(*args_of(i))`` on a pool of actors, with retry and isolation.

    ``on_value(i, value)`` and ``on_error(i, reason)`` are called on the driver, once per item, in
    completion order. A :class:`VqstackError` raised on a worker is the item's failure; one raised
    by ``on_value`` too; :class:`WorkerSetupError` and anything else (a bug) stops the run.
    """
    lost = _lost_errors(ray)
    queue: deque[int] = deque(range(n_items))
    suspects: deque[int] = deque()
    deaths: dict[int, int] = {}
    slots = [_Slot(new_actor()) for _ in range(n_workers)]
    owner: dict[Any, tuple[_Slot, int]] = {}

    def submit(slot: _Slot, i: int) -> None:
        ref = _submit(slot, method, *args_of(i))
        stats.submitted += 1
        slot.inflight.append(ref)
        owner[ref] = (slot, i)

    def worker_died(slot: _Slot, i: int, exc: BaseException) -> None:
        stats.worker_deaths += 1
        gone = [i] + [owner.pop(r)[1] for r in slot.inflight]  # the actor's queued calls die with it
        alone = len(gone) == 1
        log.warning("a Ray worker died with %d video(s) in flight (%s); retrying them", len(gone),
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        for j in gone:
            if alone:  # nothing else ran on that worker: the death is this item's
                deaths[j] = deaths.get(j, 0) + 1
                if deaths[j] >= max_attempts:
                    on_error(j, f"the Ray worker died {deaths[j]} times on it")
                    continue
            stats.retried += 1
            suspects.append(j)
        with contextlib.suppress(Exception):
            ray.kill(slot.actor, no_restart=True)
        slot.actor, slot.inflight, slot.isolated = new_actor(), [], False

    while queue or suspects or owner:
        for slot in slots:
            if slot.isolated:
                continue
            if suspects:  # retries run alone on a drained worker; fresh work waits meanwhile
                if not slot.inflight:
                    slot.isolated = True
                    submit(slot, suspects.popleft())
                continue
            while queue and len(slot.inflight) < per_worker:
                submit(slot, queue.popleft())
        ready, _ = ray.wait(list(owner), num_returns=1)
        for ref in ready:
            if ref not in owner:
                continue
            slot, i = owner.pop(ref)
            slot.inflight.remove(ref)
            try:
                value = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                slot.isolated = False
                cause = getattr(exc, "cause", None)
                if isinstance(cause, WorkerSetupError):
                    raise WorkerSetupError(str(cause)) from None
                if isinstance(cause, VqstackError):
                    on_error(i, getattr(cause, "reason", None) or str(cause))
                    continue
                raise
            except lost as exc:
                if getattr(exc, "actor_init_failed", False):
                    first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                    raise WorkerSetupError(f"a Ray worker could not start ({first}); is the same vqstack "
                                           "installed on every node?") from None
                worker_died(slot, i, exc)
                continue
            slot.isolated = False
            try:
                on_value(i, value)
            except VqstackError as exc:
                on_error(i, getattr(exc, "reason", None) or str(exc))


def _slots(ray: Any, resource: str, per_worker: float, wanted: int | None, n_items: int) -> int:
    total = float(ray.cluster_resources().get(resource, 0.0))
    slots = int(total // per_worker)
    if slots < 1:
        raise ConfigError(f"the Ray cluster has no {resource} to run a worker on ({total:g} {resource} in total)")
    n = slots if not wanted or wanted <= 0 else wanted
    if n > slots:
        log.warning("%d Ray workers asked, the cluster has %d %s slots: using %d", n, slots, resource, slots)
        n = slots
    return max(1, min(n, n_items))


def _wants_gpu(requests: Sequence[ExtractorRequest], extractors: Sequence[Extractor], gpus: float) -> bool:
    """GPU workers when a torch extractor asks for cuda (or auto, on a cluster that has GPUs).

    NSS-style extractors (no torch) never hold a GPU: on a GPU cluster they get CPU slots instead.
    """
    torch_devices = {r.device for r, ex in zip(requests, extractors, strict=True) if "torch" in ex.library_versions()}
    if "cuda" in torch_devices and gpus <= 0:
        raise ConfigError("--device cuda: the Ray cluster has no GPU (use --device cpu or auto)")
    return bool(torch_devices & {"cuda", "auto"}) and gpus > 0


# -- entry points -----------------------------------------------------------------------------------


def driver_requests(requests: Sequence[ExtractorRequest]) -> list[ExtractorRequest]:
    """The driver's copies of the requests, on CPU: it builds extractors only for their identity.

    A stored result's identity (name, version, config, weights) does not depend on the device, and
    the driver of a cluster (a laptop, a GPU-less head node) need not have the workers' GPU.
    """
    import dataclasses

    return [dataclasses.replace(r, device="cpu") for r in requests]


def run_ray(
    plan: list[PlanItem],
    requests: Sequence[ExtractorRequest],
    backend: str,
    store_result: Callable[[Path, str, VideoResult], None],
    report: BatchReport,
    bar: Any,
    *,
    extractors: Sequence[Extractor],
    workers: int | None = None,
    address: str | None = None,
    per_worker: int = 2,
    max_attempts: int = 2,
) -> RayStats:
    """Same contract as ``pipeline._run_parallel``: workers compute, this process writes.

    ``extractors``: the driver's own copies (built from :func:`driver_requests`), for the versions
    workers must match. ``workers``: Ray actors to start (None or 0: one per CPU slot, or per GPU
    for GPU work).
    """
    stats = RayStats()
    if not plan:
        return stats
    local = list(extractors)
    expected = worker_versions(local)
    with ray_session(address) as ray:
        resources = ray.cluster_resources()
        use_gpu = _wants_gpu(requests, local, float(resources.get("GPU", 0.0)))
        options = {"num_cpus": 1, "num_gpus": 1} if use_gpu else {"num_cpus": 1}
        n = _slots(ray, "GPU" if use_gpu else "CPU", 1.0, workers, len(plan))
        stats.workers, stats.resources = n, {k: float(v) for k, v in options.items()}
        remote_cls = ray.remote(**options)(ExtractWorker)
        reqs = list(requests)
        cwd = os.getcwd()

        def on_value(i: int, result: VideoResult) -> None:
            video, key, _ = plan[i]
            try:
                store_result(video, key, result)
            finally:
                bar.update(1)

        def on_error(i: int, reason: str) -> None:
            report.fail(plan[i][0], reason)
            bar.update(1)

        log.info("Ray: %d videos to %d workers (%s each)", len(plan), n, options)
        _schedule(ray, len(plan), n_workers=n, new_actor=lambda: remote_cls.remote(reqs, backend, expected),
                  args_of=lambda i: (str(plan[i][0]), plan[i][2], cwd), method="run", on_value=on_value,
                  on_error=on_error, stats=stats, per_worker=per_worker, max_attempts=max_attempts)
    log.info("Ray: %d submitted, %d retried, %d worker deaths", stats.submitted, stats.retried, stats.worker_deaths)
    return stats


def run_frames_ray(
    todo: list[tuple[Path, Path]],
    cfg: FrameDumpConfig,
    report: BatchReport,
    bar: Any,
    *,
    out_root: Path,
    ffmpeg: str | None = None,
    workers: int | None = None,
    address: str | None = None,
    max_attempts: int = 2,
) -> RayStats:
    """``vqstack frames`` on Ray: each worker runs ``dump_video`` and writes the folder itself.

    The frame folders are written by the workers (shipping PNGs back would double the I/O), so the
    output root must be on a file system every node mounts; on a one-machine cluster it is.
    """
    stats = RayStats()
    if not todo:
        return stats
    out_root.mkdir(parents=True, exist_ok=True)
    with ray_session(address) as ray:
        n = _slots(ray, "CPU", 1.0, workers, len(todo))
        stats.workers, stats.resources = n, {"num_cpus": 1.0}
        remote_cls = ray.remote(num_cpus=1)(FrameWorker)

        def on_value(i: int, _: int) -> None:
            report.done.append(str(todo[i][0]))
            bar.update(1)

        def on_error(i: int, reason: str) -> None:
            report.fail(todo[i][0], reason)
            bar.update(1)

        _schedule(ray, len(todo), n_workers=n, new_actor=lambda: remote_cls.remote(ffmpeg, str(out_root.absolute())),
                  args_of=lambda i: (str(todo[i][0].absolute()), str(todo[i][1].absolute()), cfg), method="dump",
                  on_value=on_value, on_error=on_error, stats=stats, max_attempts=max_attempts)
    return stats
