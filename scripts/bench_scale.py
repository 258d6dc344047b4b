"""Scaling benchmark: does ``--engine ray`` scale, what does Ray cost per video, and what would LSVQ take?

1. Throughput (videos/minute) of ``extract --feat nss`` over ``--videos`` (40) short generated videos
   (2 s, 320x240): the plain local run (1 process), the local process pool with 2 workers, and Ray
   with 1 and 2 workers on a local 2-CPU cluster. Ray's costs are split into a fixed part (cluster
   start, measured alone; actor start, from a 1-video run) and a per-video part, measured directly
   (one call at a time: the driver's wait minus the worker's own time) and, as a cross-check, from
   the wall times (noisy on a shared machine).
2. An estimate of the wall time for LSVQ (39,000 videos) on N GPUs, per extractor, from figures
   measured here on one real 960x540 8 s KoNViD video (or a generated stand-in): the decode +
   sampling time of the extractor's frames, the rest of its CPU work outside the network, the
   network's CPU time, and its FLOPs per video (torch's FlopCounterMode, random weights: FLOPs do
   not depend on the weights). The GPU time per video is FLOPs / (peak x utilisation): the peak and
   the utilisation are assumptions, printed with the table, not measurements.

    python scripts/bench_scale.py --out bench_results
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import SHARED, count_cpu_attention, decode_seconds, network_timer, write_results

log = logging.getLogger("bench_scale")

LSVQ_VIDEOS = 39_000
LSVQ_1080P = 3_600  # LSVQ_test_1080p; the rest is mostly <= 720p UGC, profiled here by 540p KoNViD
H100_BF16_DENSE_TFLOPS = 989.0  # NVIDIA H100 SXM datasheet, dense (no sparsity)
EXTRACTORS = ("nss", "frame_iqa", "slowfast", "clip", "fragments")


# -- part 1: scaling of extract --feat nss -------------------------------------------------------------


def make_videos(root: Path, n: int, seconds: float, size: str) -> list[Path]:
    """``n`` distinct short clips (two lavfi sources, a hue shift each): distinct content keys."""
    import subprocess

    from vqstack.extract.ffmpeg_bin import ffmpeg_exe

    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        source = ("mandelbrot" if i % 2 else "testsrc2") + f"=size={size}:rate=25"
        path = root / f"clip{i:03d}.mp4"
        subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", source, "-t", str(seconds),
                        "-vf", f"hue=h={(i * 37) % 360}", "-c:v", "libx264", "-preset", "veryfast",
                        "-pix_fmt", "yuv420p", str(path)], check=True)
        out.append(path)
    return out


def one_run(videos: list[Path], store: Path, **kwargs: Any) -> dict[str, float]:
    """One ``run_extract`` into a fresh store: wall time and the workers' summed per-video time."""
    from vqstack.extract.pipeline import ExtractorRequest, run_extract

    compute: list[float] = []
    t0 = time.perf_counter()
    run = run_extract(videos, [ExtractorRequest("nss")], store, progress=False,
                      on_result=lambda r: compute.append(r.seconds), **kwargs)
    wall = time.perf_counter() - t0
    if run.report.failed or run.computed != len(videos):
        raise RuntimeError(f"benchmark run failed: {run.report.summary()}")
    return {"wall_s": wall, "compute_s": sum(compute), "videos_per_min": 60 * len(videos) / wall}


def scaling(work: Path, n: int, seconds: float, size: str, repeat: int) -> dict[str, Any]:
    import ray

    videos = make_videos(work / "videos", n, seconds, size)
    counter = iter(range(10_000))

    def median_run(subset: list[Path], **kwargs: Any) -> dict[str, float]:
        runs = [one_run(subset, work / f"store{next(counter)}", **kwargs) for _ in range(repeat)]
        return {k: statistics.median(r[k] for r in runs) for k in runs[0]}

    modes: dict[str, dict[str, float]] = {}
    modes["local, 1 process"] = median_run(videos)
    modes["local pool, 2 workers"] = median_run(videos, workers=2)
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
             object_store_memory=200 * 1024**2)
    ray_start = time.perf_counter() - t0
    try:
        modes["ray, 1 worker"] = median_run(videos, engine="ray", workers=1)
        modes["ray, 2 workers"] = median_run(videos, engine="ray", workers=2)
        ray_one = median_run(videos[:1], engine="ray", workers=1)
        cached = one_run_cached(videos, work / "store_cached")
        round_trips = round_trip_overheads(ray, videos)
    finally:
        ray.shutdown()
    local_one = median_run(videos[:1])
    fixed = ray_one["wall_s"] - local_one["wall_s"]  # actor start + one round trip
    per_video = (modes["ray, 1 worker"]["wall_s"] - modes["local, 1 process"]["wall_s"] - fixed) / max(1, n - 1)
    return {"n_videos": n, "seconds": seconds, "size": size, "repeat": repeat, "modes": modes,
            "ray_cluster_start_s": ray_start, "ray_fixed_s": fixed, "ray_per_video_s": per_video,
            "ray_cached_rerun_s": cached, "ray_round_trip_overhead_s": round_trips,
            "load_average": os.getloadavg()}


def round_trip_overheads(ray: Any, videos: list[Path]) -> dict[str, float]:
    """Ray's own cost per video, measured directly: one call at a time to one extract worker, the
    driver's wait minus the worker's time inside ``extract_video`` (submission, scheduling, result
    serialisation and transfer). Medians are robust to other jobs on the machine, wall times are not."""
    from vqstack.extract.pipeline import ExtractorRequest
    from vqstack.extract.ray_engine import ExtractWorker, driver_requests, worker_versions

    requests = [ExtractorRequest("nss")]
    expected = worker_versions([r.build() for r in driver_requests(requests)])
    actor = ray.remote(num_cpus=1)(ExtractWorker).remote(requests, "auto", expected)
    ray.get(actor.run.remote(str(videos[0]), ["nss"], os.getcwd()))  # actor started, imports done
    overheads = []
    for video in videos:
        t0 = time.perf_counter()
        result = ray.get(actor.run.remote(str(video), ["nss"], os.getcwd()))
        overheads.append(time.perf_counter() - t0 - result.seconds)
    ray.kill(actor)
    overheads.sort()
    return {"median": statistics.median(overheads), "p90": overheads[int(0.9 * (len(overheads) - 1))],
            "n": float(len(overheads))}


def one_run_cached(videos: list[Path], store: Path) -> float:
    """A fully cached rerun through the Ray engine: nothing is sent, only keys are checked."""
    from vqstack.extract.pipeline import ExtractorRequest, run_extract

    run_extract(videos, [ExtractorRequest("nss")], store, progress=False)
    t0 = time.perf_counter()
    again = run_extract(videos, [ExtractorRequest("nss")], store, progress=False, engine="ray")
    assert again.computed == 0
    return time.perf_counter() - t0


# -- part 2: per-extractor profile for the LSVQ estimate ---------------------------------------------


def profile_video(work: Path) -> tuple[Path, str]:
    konvid = sorted((SHARED / "videos" / "konvid").glob("*.mp4"))
    if konvid:
        return konvid[0], f"KoNViD-1k {konvid[0].name} (960x540, 8 s, 30 fps, real UGC)"
    path = make_videos(work / "profile", 1, 8.0, "960x540")[0]
    return path, "generated 960x540 8 s 25 fps (no real KoNViD video found)"


def reencoded(video: Path, out: Path, *args: str) -> Path:
    """``video`` re-encoded with x264 (crf 23) after ``args`` (a scale filter, a trim)."""
    import subprocess

    from vqstack.extract.ffmpeg_bin import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(video), *args, "-c:v", "libx264",
                    "-preset", "veryfast", "-crf", "23", "-an", str(out)], check=True)
    return out


def profile_extractor(name: str, video: Path, video_1080: Path, warm: Path) -> dict[str, Any]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from vqstack.extract.pipeline import ExtractorRequest, extract_video

    extractor = ExtractorRequest(name, random_init=True).build()
    uses_torch = "torch" in extractor.library_versions()
    torch.set_num_threads(1)  # a Ray worker holds one CPU: its host work runs on one thread
    extract_video(warm, [extractor])  # warm-up on a 1 s cut (first-call costs, allocator)
    decode = decode_seconds(video, extractor)
    with network_timer() as net:
        t0 = time.perf_counter()
        result = extract_video(video, [extractor])
        total = time.perf_counter() - t0
    flops = 0.0
    if uses_torch:
        count_cpu_attention()
        torch.set_num_threads(os.cpu_count() or 1)  # FLOPs do not depend on threads: count them faster
        with FlopCounterMode(display=False) as counter:
            extract_video(video, [extractor])
        flops = float(counter.get_total_flops())
    decode_1080 = decode_seconds(video_1080, extractor)
    steps = result.features[name].steps.shape
    log.info("%s: total %.2f s, decode %.2f s, network %.2f s, %.1f GFLOPs", name, total, decode, net["total"],
             flops / 1e9)
    return {"name": name, "uses_gpu": uses_torch, "config": extractor.config_dict(), "steps": list(steps),
            "cpu_total_s": total, "decode_s": decode, "network_cpu_s": net["total"],
            "other_cpu_s": max(0.0, total - decode - net["total"]), "gflops": flops / 1e9,
            "decode_1080p_s": decode_1080}


def estimate(profiles: list[dict[str, Any]], *, gpus: list[int], cores_per_gpu: int, utilisation: float,
             ray_per_video_s: float) -> list[dict[str, Any]]:
    """Hours for LSVQ per extractor and GPU count (see the module docstring and the printed assumptions)."""
    effective = H100_BF16_DENSE_TFLOPS * 1e12 * utilisation
    rows = []
    for p in profiles:
        scale_1080 = p["decode_1080p_s"] / p["decode_s"] if p["decode_s"] > 0 else 1.0
        host = p["decode_s"] + p["other_cpu_s"]  # stays on the worker's CPU when the network is on a GPU
        gpu = p["gflops"] * 1e9 / effective
        gpu_1080 = gpu * (4.0 if p["name"] == "frame_iqa" else 1.0)  # native-resolution CNN: 4x the pixels
        if p["uses_gpu"]:
            per_video = host + gpu + ray_per_video_s
            per_video_1080 = host * scale_1080 + gpu_1080 + ray_per_video_s
            workers_per_gpu = 1
        else:  # CPU-only: every core of the GPU nodes is a worker
            per_video = p["cpu_total_s"] + ray_per_video_s
            per_video_1080 = p["cpu_total_s"] * scale_1080 + ray_per_video_s
            workers_per_gpu = cores_per_gpu
        worker_seconds = (LSVQ_VIDEOS - LSVQ_1080P) * per_video + LSVQ_1080P * per_video_1080
        rows.append({"extractor": p["name"], "host_s": host if p["uses_gpu"] else p["cpu_total_s"],
                     "gpu_s": gpu if p["uses_gpu"] else 0.0, "per_video_s": per_video,
                     "per_video_1080p_s": per_video_1080, "workers_per_gpu": workers_per_gpu,
                     "hours": {n: worker_seconds / (n * workers_per_gpu) / 3600 for n in gpus}})
    return rows


# -- report -------------------------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    lines = []
    s = results.get("scaling")
    if s:
        base = s["modes"]["local, 1 process"]["wall_s"]
        lines += [f"### extract --feat nss, {s['n_videos']} videos of {s['seconds']:g} s {s['size']} "
                  f"(median of {s['repeat']}; {os.cpu_count()} cores shared with other jobs, load average "
                  f"{s['load_average'][1]:.1f} during the run)", "",
                  "| mode | wall (s) | videos/min | speed-up | worker compute (s) |", "|---|---|---|---|---|"]
        for mode, r in s["modes"].items():
            lines.append(f"| {mode} | {r['wall_s']:.1f} | {r['videos_per_min']:.0f} | {base / r['wall_s']:.2f}x | "
                         f"{r['compute_s']:.1f} |")
        lines += ["", "| Ray cost | value |", "|---|---|",
                  f"| local cluster start (`ray.init`, 2 CPUs), once per run | {s['ray_cluster_start_s']:.1f} s |",
                  f"| actor start + first round trip (1-video run minus local) | {s['ray_fixed_s']:.2f} s |",
                  f"| per video, one call at a time (driver wait minus worker time), median / p90 | "
                  f"{1000 * s['ray_round_trip_overhead_s']['median']:.1f} / "
                  f"{1000 * s['ray_round_trip_overhead_s']['p90']:.1f} ms |",
                  f"| per video, from wall times (Ray 1 worker minus local, fixed part removed; noisy) | "
                  f"{1000 * s['ray_per_video_s']:.0f} ms |",
                  f"| fully cached rerun of the {s['n_videos']} videos, `--engine ray` (nothing sent) | "
                  f"{s['ray_cached_rerun_s']:.2f} s |", ""]
    lsvq = results.get("lsvq")
    if lsvq:
        a = lsvq["assumptions"]
        gpus = a["gpus"]
        lines += [f"### LSVQ ({LSVQ_VIDEOS:,} videos) estimate, one Ray worker per GPU "
                  f"(CPU-only extractors: {a['cores_per_gpu']} workers per GPU node share)", "",
                  "| extractor | decode+sampling (s) | other CPU (s) | network on CPU (s) | GFLOPs/video | "
                  "est. GPU (s) | per video on a worker (s) | " + " | ".join(f"{n} GPU{'s' if n > 1 else ''} (h)"
                                                                          for n in gpus) + " |",
                  "|---|---|---|---|---|---|---|" + "---|" * len(gpus)]
        for p, r in zip(lsvq["profiles"], lsvq["estimate"], strict=True):
            lines.append(f"| {p['name']} | {p['decode_s']:.2f} | {p['other_cpu_s']:.2f} | {p['network_cpu_s']:.2f} | "
                         f"{p['gflops']:.0f} | {r['gpu_s']:.3f} | {r['per_video_s']:.2f} | "
                         + " | ".join(f"{r['hours'][n]:.1f}" for n in gpus) + " |")
        lines += ["", "Measured here (CPU, 1 torch thread): decode+sampling, other CPU work, network CPU time, "
                  f"FLOPs (torch FlopCounterMode) on {lsvq['video']}.",
                  f"Assumptions (not measured): GPU = H100 SXM, {H100_BF16_DENSE_TFLOPS:.0f} TFLOPS bf16 dense peak "
                  f"at {100 * a['utilisation']:.0f} % utilisation (small per-video batches); the network's CPU-side "
                  "pre/post-processing stays on the CPU (upper bound: some of it runs on the GPU); one decode per "
                  f"video on one core, not overlapped with the GPU; {LSVQ_1080P:,} of the videos are 1080p, their "
                  "decode and host costs scaled by the measured 1080p/540p decode ratio; the rest are like the 540p "
                  f"profile; Ray's measured per-video overhead ({1000 * a['ray_per_video_s']:.0f} ms) is added; "
                  "start-up (minutes) is not."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench_results"))
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--repeat", type=int, default=1, help="runs per mode (median)")
    parser.add_argument("--extractors", default=",".join(EXTRACTORS))
    parser.add_argument("--gpus", default="1,8,32", help="GPU counts of the estimate")
    parser.add_argument("--cores-per-gpu", type=int, default=8, help="CPU workers per GPU for CPU-only extractors")
    parser.add_argument("--utilisation", type=float, default=0.2, help="assumed share of the GPU's bf16 peak")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--skip-lsvq", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_scaling:
            results["scaling"] = scaling(work, args.videos, args.seconds, args.size, args.repeat)
        if not args.skip_lsvq:
            video, description = profile_video(work)
            video_1080 = reencoded(video, work / "profile_1080p.mp4", "-vf", "scale=1920:1080")
            warm = reencoded(video, work / "warm.mp4", "-t", "1")
            profiles = [profile_extractor(n.strip(), video, video_1080, warm) for n in args.extractors.split(",")]
            per_video = results.get("scaling", {}).get("ray_round_trip_overhead_s", {}).get("median", 0.0)
            gpus = [int(n) for n in args.gpus.split(",")]
            results["lsvq"] = {
                "video": description, "profiles": profiles,
                "assumptions": {"gpus": gpus, "cores_per_gpu": args.cores_per_gpu, "utilisation": args.utilisation,
                                "peak_tflops": H100_BF16_DENSE_TFLOPS, "ray_per_video_s": per_video,
                                "lsvq_videos": LSVQ_VIDEOS, "lsvq_1080p": LSVQ_1080P},
                "estimate": estimate(profiles, gpus=gpus, cores_per_gpu=args.cores_per_gpu,
                                     utilisation=args.utilisation, ray_per_video_s=max(0.0, per_video)),
            }
    write_results(args.out, "bench_scale", results, table(results))


if __name__ == "__main__":
    main()
