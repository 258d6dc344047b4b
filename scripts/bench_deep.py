"""Deep-extractor benchmark: seconds, memory and MACs per 10 s 1080p clip, and what one shared decode saves.

For every extractor configuration in ``VARIANTS`` (default settings unless named), each in a fresh
process so that peak RSS is its own, on CPU with 2 torch threads, fp32, random weights except the
bundled EfficientNet-Lite0 (speed does not depend on the weight values):

* ``decode`` — streaming the extractor's frames through the shared reader, nothing else;
* ``model`` — time inside the network's outermost ``nn.Module`` calls;
* ``host`` — the rest of ``extract_video``: sampling (resize, crops, fragments), tensor
  conversion, pooling; ``decode + host`` is the "decode + sampling" the targets speak of, compared
  with the floor ``ffmpeg -threads 2 -i X -f null -`` timed in the same run;
* ``GMACs`` — torch's FlopCounterMode over one whole video, divided by 2;
* ``bf16 drift`` — the same video with ``precision: bf16`` (autocast on CPU): the largest change of a
  pooled score and the smallest cosine similarity of the pooled features against fp32, with the bf16
  time beside it.

Then all deep extractors from one decode in one process vs the sum of their separate runs.

The clip is REFERENCE.md's: bigbuckbunny looped to 10 s, scaled to 1920x1080, x264 medium CRF 23.
The seeds' own code on this machine (REFERENCE.md): FAST-VQA-B 13.0 s (sampling 1.3 s, model
11.7 s, 5.3 GiB), SimpleVQA SlowFast features 8.5 s (decode+resize 3.2 s).

    python scripts/bench_deep.py --out bench_results
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import count_cpu_attention, decode_seconds, network_timer, reference_1080p, write_results

THREADS = 2

# (label, extractor name, config overrides, seed figure for the same work on this machine)
VARIANTS: list[tuple[str, str, dict[str, Any], str]] = [
    ("nss", "nss", {}, ""),
    ("frame_iqa EfficientNet-Lite0 (default)", "frame_iqa", {}, ""),
    ("frame_iqa ResNet-50 (SimpleVQA spatial)", "frame_iqa", {"backbone": "resnet50"}, ""),
    ("frame_iqa ConvNeXt-T (Zoom-VQA)", "frame_iqa", {"backbone": "convnext_tiny"}, ""),
    ("slowfast", "slowfast", {}, "SimpleVQA 8.51 s (decode+resize 3.20 s), 1.3-1.4 GiB"),
    ("clip ViT-B/16", "clip", {}, ""),
    ("fragments FAST-VQA-B", "fragments", {"model": "fast-vqa-b"}, "13.04 s (sampling 1.30 s), 5.3-5.6 GiB"),
    ("fragments FasterVQA", "fragments", {"model": "fastervqa"}, "4.06 s (sampling 0.75 s), 3.6-3.8 GiB"),
    ("fragments DOVER", "fragments", {"model": "dover"}, "10.62 s (sampling 1.51 s), 5.1-5.7 GiB"),
    ("fragments DOVER-Mobile", "fragments", {"model": "dover-mobile"}, "3.21 s (sampling 1.57 s), 1.8-3.4 GiB"),
]
SHARED_DECODE = ("frame_iqa", "slowfast", "clip", "fragments")


def decode_floor(video: Path, repeat: int = 3) -> float:
    from vqstack.extract.ffmpeg_bin import ffmpeg_exe

    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-threads", str(THREADS), "-i", str(video),
                        "-f", "null", "-"], check=True)
        times.append(time.perf_counter() - t0)
    return min(times)


def _build(name: str, config: dict[str, Any]) -> Any:
    from vqstack.extract.pipeline import ExtractorRequest

    bundled = name == "frame_iqa" and config.get("backbone", "efficientnet_lite0") == "efficientnet_lite0"
    return ExtractorRequest(name, config=config, random_init=not bundled).build()


def _drift(ref: Any, other: Any) -> dict[str, float]:
    """Largest pooled-score change and smallest cosine of pooled feature vectors, bf16 vs fp32."""
    import numpy as np

    out: dict[str, float] = {}
    for key, a in ref.pooled.items():
        b = other.pooled[key]
        if a.size <= 2:  # scores
            out["bf16_max_score_delta"] = max(out.get("bf16_max_score_delta", 0.0), float(np.max(np.abs(a - b))))
        elif np.linalg.norm(a) > 0:  # (an all-zero vector, e.g. a view the model lacks, has no direction)
            cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
            out["bf16_min_cosine"] = min(out.get("bf16_min_cosine", 1.0), cos)
    return out


def child_profile(video: Path, name: str, config: dict[str, Any], warm: Path) -> dict[str, Any]:
    """One extractor in this (fresh) process: decode, model, host split; MACs; bf16 drift."""
    from vqstack.extract.pipeline import extract_video

    t0 = time.perf_counter()
    extractor = _build(name, config)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(THREADS)
    build_s = time.perf_counter() - t0
    extract_video(warm, [extractor])  # first-call costs (allocator, kernels) off the clock
    decode = min(decode_seconds(video, extractor) for _ in range(2))
    uses_torch = "torch" in extractor.library_versions()
    with network_timer() if uses_torch else contextlib.nullcontext({"total": 0.0}) as net:
        t0 = time.perf_counter()
        ref = extract_video(video, [extractor]).features[name]
        total = time.perf_counter() - t0
    peak_fp32 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out: dict[str, Any] = {"build_s": build_s, "total_s": total, "decode_s": decode, "model_s": net["total"],
                           "host_s": max(0.0, total - decode - net["total"]), "peak_rss_mib": peak_fp32,
                           "steps": list(ref.steps.shape), "gmacs": 0.0}
    if not uses_torch:
        return out
    from torch.utils.flop_counter import FlopCounterMode

    count_cpu_attention()
    with FlopCounterMode(display=False) as counter:
        extract_video(video, [extractor])
    out["gmacs"] = counter.get_total_flops() / 2e9
    if "precision" in extractor.config_dict():
        bf16 = _build(name, {**config, "precision": "bf16"})
        extract_video(warm, [bf16])
        t0 = time.perf_counter()
        low = extract_video(video, [bf16]).features[name]
        out["bf16_total_s"] = time.perf_counter() - t0
        out.update(_drift(ref, low))
    return out


def child_shared(video: Path, names: list[str], warm: Path) -> dict[str, Any]:
    """All ``names`` from one decode, then each alone, in this process (built once, warmed up)."""
    import torch

    from vqstack.extract.pipeline import extract_video

    torch.set_num_threads(THREADS)
    extractors = [_build(n, {}) for n in names]
    extract_video(warm, extractors)
    shared, separate = [], []
    for _ in range(2):  # alternate the two ways, keep each one's best: the machine is noisy
        t0 = time.perf_counter()
        together = extract_video(video, extractors)
        shared.append(time.perf_counter() - t0)
        total, passes = 0.0, 0
        for e in extractors:
            t0 = time.perf_counter()
            passes += extract_video(video, [e]).decode_passes
            total += time.perf_counter() - t0
        separate.append(total)
    return {"shared_s": min(shared), "separate_s": min(separate), "shared_decode_passes": together.decode_passes,
            "separate_decode_passes": passes}


def run_child(mode: str, payload: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)}
    proc = subprocess.run([sys.executable, __file__, "--child", mode, json.dumps(payload)], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} {payload.get('label', '')}: child failed\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(results: dict[str, Any]) -> str:
    floor = results["floor_s"]
    rows = ["| extractor | per clip (s) | decode (s) | host: sampling, pre/post (s) | model (s) | "
            "(decode+host) / floor | peak RSS (GiB) | GMACs | bf16 (s) | bf16 drift: max score / min cos | "
            "seeds' code here |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["extractors"]:
        bf16 = f"{r['bf16_total_s']:.2f}" if "bf16_total_s" in r else "-"
        score = f"{r['bf16_max_score_delta']:.4f}" if "bf16_max_score_delta" in r else "-"
        drift = f"{score} / {r['bf16_min_cosine']:.5f}" if "bf16_min_cosine" in r else "-"
        rows.append(f"| {r['label']} | {r['total_s']:.2f} | {r['decode_s']:.2f} | {r['host_s']:.2f} | "
                    f"{r['model_s']:.2f} | {(r['decode_s'] + r['host_s']) / floor:.2f}x | "
                    f"{r['peak_rss_mib'] / 1024:.2f} | {r['gmacs']:.0f} | {bf16} | {drift} | {r['seed'] or '-'} |")
    s = results["shared"]
    rows += ["", "| all four deep extractors (" + ", ".join(SHARED_DECODE) + ") | seconds | decode passes |",
             "|---|---|---|",
             f"| one decode, all together | {s['shared_s']:.2f} | {s['shared_decode_passes']} |",
             f"| one run each | {s['separate_s']:.2f} | {s['separate_decode_passes']} |",
             f"| ratio | {s['shared_s'] / s['separate_s']:.2f} | |",
             "", f"Floor (`ffmpeg -threads 2 -i clip -f null -`, best of 3): {floor:.2f} s. "
             f"Load average before/after: {results['load_before']:.1f} / {results['load_after']:.1f}. "
             f"CPU, {THREADS} torch threads, fp32 unless the bf16 column."]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench_results"))
    parser.add_argument("--video", type=Path, help="clip to use instead of the 10 s 1080p one made here")
    parser.add_argument("--only", nargs="*", help="labels (substrings) of the variants to run")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, payload = args.child[0], json.loads(args.child[1])
        video, warm = Path(payload["video"]), Path(payload["warm"])
        if mode == "profile":
            result = child_profile(video, payload["name"], payload["config"], warm)
        else:
            result = child_shared(video, payload["names"], warm)
        print(json.dumps(result))
        return

    from vqstack.extract.ffmpeg_bin import ffmpeg_exe

    with tempfile.TemporaryDirectory() as tmp:
        video = args.video or reference_1080p(Path(tmp) / "clip1080.mp4")
        warm = Path(tmp) / "warm.mp4"
        subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(video), "-t", "1.2", "-c:v", "libx264",
                        "-preset", "ultrafast", "-an", str(warm)], check=True)
        load_before = os.getloadavg()[0]
        floor = decode_floor(video)
        rows = []
        for label, name, config, seed in VARIANTS:
            if args.only and not any(o in label for o in args.only):
                continue
            print(f"{label} ...", flush=True)
            r = run_child("profile", {"video": str(video), "warm": str(warm), "name": name, "config": config,
                                      "label": label})
            rows.append({"label": label, "name": name, "config": config, "seed": seed, **r})
            print(f"  {r['total_s']:.2f} s (model {r['model_s']:.2f} s), {r['peak_rss_mib']:.0f} MiB", flush=True)
        print("all deep extractors from one decode ...", flush=True)
        shared = run_child("shared", {"video": str(video), "warm": str(warm), "names": list(SHARED_DECODE)})
    results = {"video": str(args.video or "bigbuckbunny looped 10 s, 1920x1080, x264 medium crf 23"),
               "threads": THREADS, "floor_s": floor, "extractors": rows, "shared": shared,
               "load_before": load_before, "load_after": os.getloadavg()[0]}
    write_results(args.out, "bench_deep", results, table(results))


if __name__ == "__main__":
    main()
