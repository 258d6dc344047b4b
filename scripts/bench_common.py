"""Helpers shared by the benchmark scripts: timing, peak RSS of a child process, result tables."""

from __future__ import annotations

import contextlib
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def timed(fn: Callable[[], Any], repeat: int = 3) -> float:
    """Median wall time of ``fn`` over ``repeat`` runs (the machine is noisy: use ratios)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_child(code: str, *args: str) -> tuple[float, float]:
    """Run ``python -c code args`` in a fresh process; returns (seconds, peak RSS in MiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *args], check=True)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:  # ru_maxrss is the max over all children so far: measure in isolation
        out = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-c", code, *args],
                             check=True, capture_output=True, text=True)
        peak = int(out.stderr.strip().splitlines()[-1])
    return seconds, peak / 1024


def machine() -> dict[str, Any]:
    import os

    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}


def write_results(out_dir: Path, name: str, results: dict[str, Any], table: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S"), **results}
    (out_dir / f"{name}.json").write_text(json.dumps(results, indent=1))
    (out_dir / f"{name}.md").write_text(table + "\n")
    print(table)


@contextlib.contextmanager
def network_timer() -> Iterator[dict[str, float]]:
    """Time spent inside outermost ``nn.Module`` calls (global hooks), i.e. the network's own work."""
    import torch

    state = {"depth": 0.0, "t0": 0.0, "total": 0.0}

    def pre(module: Any, args: Any) -> None:
        if state["depth"] == 0:
            state["t0"] = time.perf_counter()
        state["depth"] += 1

    def post(module: Any, args: Any, out: Any) -> None:
        state["depth"] -= 1
        if state["depth"] == 0:
            state["total"] += time.perf_counter() - state["t0"]

    h1 = torch.nn.modules.module.register_module_forward_pre_hook(pre)
    h2 = torch.nn.modules.module.register_module_forward_hook(post)
    try:
        yield state
    finally:
        h1.remove()
        h2.remove()


def decode_seconds(video: Path, extractor: Any) -> float:
    """Decode + sampling only: stream the extractor's frames (through its view, if it has one) through
    the reader, nothing else."""
    import numpy as np

    from vqstack.extract.probe import probe
    from vqstack.extract.reader import VideoReader

    info = probe(video)
    wanted = np.unique(np.asarray(extractor.frame_indices(info), dtype=np.int64))
    view = extractor.begin(info).view  # a view (resize, fragments) runs in the reader while it decodes
    views = {"view": (view, wanted)} if view is not None else None
    t0 = time.perf_counter()
    for _ in VideoReader(video, info).iter_chunks(wanted, views=views, rgb=None if view is None else []):
        pass
    return time.perf_counter() - t0


def count_cpu_attention() -> None:
    """Teach FlopCounterMode the CPU fused attention kernel (it only knows the CUDA ones), so the
    transformers' MACs include their attention products."""
    import torch
    from torch.utils import flop_counter as fc

    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if op in fc.flop_registry or op.default in fc.flop_registry:
        return

    @fc.register_flop_formula(op)
    def _sdpa_cpu(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
        return fc.sdpa_flop_count(query_shape, key_shape, value_shape)


def reference_1080p(out: Path) -> Path:
    """REFERENCE.md's 10 s 1080p clip: bigbuckbunny looped, scaled to 1920x1080, x264 medium CRF 23
    (a generated testsrc2 stand-in when the shared clip is absent)."""
    from vqstack.extract.ffmpeg_bin import ffmpeg_exe

    bbb = SHARED / "videos" / "bigbuckbunny.mp4"
    source = (["-stream_loop", "1", "-i", str(bbb), "-vf", "scale=1920:1080:flags=bicubic"] if bbb.is_file()
              else ["-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=25"])
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", *source, "-t", "10", "-c:v", "libx264",
                    "-preset", "medium", "-crf", "23", "-pix_fmt", "yuv420p", "-an", str(out)], check=True)
    return out
