"""Training throughput on this CPU, and what a GPU run of each branch needs.

Measures (fp32, ``--threads`` torch threads, optimiser steps included):

* head-only from cached features: clips/s of a :class:`StepHead` over rows of the default ``frame_iqa``
  width — the store is read once, so this is pure compute;
* frame-IQA fine-tuning from files: EfficientNet-Lite0 on native-resolution crops, clips/s with the
  images decoded in DataLoader workers (``--images``, default the CLIVE dev photos) and the
  compute-only rate on the same tensors, once per ``--frozen-stages`` value (``model.frozen_stages``:
  the stem and that many early stages keep their weights, so backward stops before them);
* fragment branch: FAST-VQA-B (random init) on one fragment clip of ``--clip-len`` frames.

GPU memory per batch is estimated from the model's size, not measured on a GPU: weights + gradients
+ AdamW moments (+ an EMA copy) at fp32, plus activations saved for backward, counted exactly on the
CPU with ``torch.autograd.graph.saved_tensors_hooks`` for one sample (x batch size; halved under
bf16/fp16 autocast for the activations, approximately).

Usage::

    python scripts/bench_train.py [--threads 2] [--clip-len 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vqstack.branches.data import FrameDataset, collate
from vqstack.branches.losses import make_loss
from vqstack.branches.models import FragmentNet, FrameIQANet, StepHead
from vqstack.branches.recipes import ModelRecipe

GIB = 1024**3


def saved_bytes(fn: Any) -> int:
    """Bytes of the tensors autograd saves for backward while ``fn()`` runs (activation memory)."""
    total = 0
    seen: set[int] = set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def state_bytes(model: torch.nn.Module, ema: bool) -> int:
    """fp32 weights (+ an EMA copy) of the model, plus grads and 2 AdamW moments of its trainable part."""
    n_all = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return 4 * (n_all * (2 if ema else 1) + 3 * n_train)


def timed_steps(model: torch.nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], repeats: int = 1) -> float:
    """Clips per second over ``batches`` (forward, PLCC+rank loss, backward, AdamW step)."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loss_fn = make_loss("plcc", 0.3)
    model.train()
    n = 0
    t0 = time.perf_counter()
    for _ in range(repeats):
        for x, y in batches:
            score, _ = model(x)
            loss = loss_fn(score, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            n += x.shape[0]
    return n / (time.perf_counter() - t0)


def bench_head(batch: int) -> dict[str, Any]:
    from vqstack.extract.frame_iqa import FrameIQAConfig

    dim = FrameIQAConfig().dim
    torch.manual_seed(0)
    head = StepHead(dim, 128, "gelu", 0.3)
    batches = [(torch.randn(batch, 1, dim), torch.randn(batch)) for _ in range(20)]
    timed_steps(head, batches[:2])
    rate = timed_steps(head, batches, repeats=3)
    act = saved_bytes(lambda: head(batches[0][0][:1])[0].sum())
    return {"branch": f"head-only (cached frame_iqa features, {dim}-d)", "gpu_batch": 32, "clips_per_s": rate,
            "params": sum(p.numel() for p in head.parameters()), "state_gib": state_bytes(head, True) / GIB,
            "activations_per_clip_mib": act / 2**20}


def bench_frame_iqa(images: Path, batch: int, crop: int, steps: int, workers: int,
                    frozen_stages: int = 0) -> dict[str, Any]:
    from vqstack.extract.frame_iqa import FrameIQAConfig

    torch.manual_seed(0)
    net = FrameIQANet(ModelRecipe(kind="frame_iqa", hidden=128, frozen_stages=frozen_stages), random_init=False)
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".bmp", ".png"))[:batch * steps]
    ds = FrameDataset(files, np.linspace(0, 1, len(files)), FrameIQAConfig(), train=True, seed=0, crop=crop)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers, collate_fn=collate)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-5)
    loss_fn = make_loss("plcc", 0.3)
    net.train()
    t0, n, cached = time.perf_counter(), 0, []
    for b in loader:
        score, _ = net(b.x)
        loss = loss_fn(score, b.y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += b.x.shape[0]
        cached.append((b.x, b.y))
    from_files = n / (time.perf_counter() - t0)
    compute = timed_steps(net, cached)
    act = saved_bytes(lambda: net(cached[0][0][:1])[0].sum())
    frozen = f", stem + stages 1-{frozen_stages} frozen" if frozen_stages else ""
    return {"branch": f"frame-IQA fine-tune (EfficientNet-Lite0, {crop}x{crop} crops, 2 scales{frozen})",
            "gpu_batch": 32, "clips_per_s": from_files, "clips_per_s_compute_only": compute,
            "params": sum(p.numel() for p in net.parameters()), "state_gib": state_bytes(net, False) / GIB,
            "activations_per_clip_mib": act / 2**20}


def bench_fragments(clip_len: int) -> dict[str, Any]:
    torch.manual_seed(0)
    net = FragmentNet(ModelRecipe(kind="fragments", arch="fast-vqa-b", pretrained=False), random_init=True)
    x = torch.randint(0, 255, (2, 1, clip_len, 224, 224, 3), dtype=torch.uint8)
    y = torch.tensor([0.0, 1.0])
    rate = timed_steps(net, [(x, y)])
    act = saved_bytes(lambda: net(x[:1])[0].sum())
    scale = 32 / clip_len  # activations grow linearly with frames
    return {"branch": f"FAST-VQA-B fragments (measured at {clip_len} frames; GPU figures for 32)",
            "gpu_batch": 16, "clips_per_s": rate, "clip_len_measured": clip_len,
            "params": sum(p.numel() for p in net.parameters()), "state_gib": state_bytes(net, True) / GIB,
            "activations_per_clip_mib": act * scale / 2**20}


def gpu_row(r: dict[str, Any]) -> str:
    batch = r["gpu_batch"]
    fp32 = r["state_gib"] + batch * r["activations_per_clip_mib"] / 1024
    amp = r["state_gib"] + batch * r["activations_per_clip_mib"] / 2048
    return (f"| {r['branch']} | {r['params'] / 1e6:.2f} M | {r['clips_per_s']:.2f} | "
            f"{r.get('clips_per_s_compute_only', float('nan')):.2f} | {r['activations_per_clip_mib']:.3g} MiB | "
            f"{batch} | {fp32:.1f} GiB | {amp:.1f} GiB |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/clive-dev/images")
    ap.add_argument("--crop", type=int, default=288)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--frozen-stages", type=int, nargs="+", default=[0, 3],
                    help="one frame-IQA row per value of model.frozen_stages")
    ap.add_argument("--clip-len", type=int, default=8)
    ap.add_argument("--skip-fragments", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = [bench_head(16)]
    if args.images.is_dir():
        results += [bench_frame_iqa(args.images, args.batch, args.crop, args.steps, args.workers, k)
                    for k in args.frozen_stages]
    if not args.skip_fragments:
        results.append(bench_fragments(args.clip_len))
    print(f"torch {torch.__version__}, {args.threads} threads, fp32 CPU")
    print("| branch | params | clips/s (from files or cache) | clips/s (compute only) | activations/clip | "
          "GPU batch | GPU memory fp32 | GPU memory AMP |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(gpu_row(r))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
