"""``vqstack train``: train a quality branch from a recipe (configs/train/*.yml).

Head-only transfer (``data.source: store``) trains a head on features already in the store, in
seconds; fine-tuning (``videos`` / ``frames``) decodes frames in DataLoader workers. Each split
writes ``best.pt`` (best validation SROCC), usable as an extractor: ``vqstack extract --feat
branch:OUT/split0/best.pt``. A checkpoint is written every epoch; ``--resume`` continues a killed
run exactly where its last epoch ended. Multi-GPU: ``torchrun --nproc_per_node N -m vqstack.cli
train --config ...`` (DDP; gloo on CPUs).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    p = sub.add_parser("train", help="train a branch (head-only or fine-tune) from configs/train/*.yml",
                       description=__doc__, formatter_class=formatter)
    p.add_argument("--config", required=True, type=Path, help="training recipe YAML")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/<split>/last.pt; finished splits are skipped")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the recipe's output)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where to train (auto = cuda if available)")
    p.add_argument("--epochs", type=int, default=None, help="override optim.epochs")
    p.add_argument("--seed", type=int, default=None,
                   help="override the recipe's seed (head initialisation, sample order, crops, damage and the "
                        "validation carve; the test splits stay the same): one more member of a seed "
                        "ensemble, named NAME_seedN, with its own --out")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vqstack.branches.protocol import run_recipe
    from vqstack.branches.recipes import load_recipe
    from vqstack.branches.trainer import init_distributed
    from vqstack.commands.extract import resolve_device

    recipe = load_recipe(args.config, epochs=args.epochs, seed=args.seed)
    device = resolve_device(args.device)
    ctx = init_distributed(device)
    try:
        summary = run_recipe(recipe, out=args.out, resume=args.resume, device=device, ctx=ctx)
    finally:
        if ctx.active:
            import torch.distributed as dist

            dist.destroy_process_group()
    if ctx.main:
        out = args.out or recipe.output
        parts = [f"{k.replace('test_', 'test ')} median {v['median']:.4f} [{v['min']:.4f}, {v['max']:.4f}]"
                 for k, v in summary.items() if isinstance(v, dict) and k.startswith("test_")]
        print(f"train {recipe.name}: {summary['splits']} split(s)" + (": " + "; ".join(parts) if parts else "")
              + f" -> {out}")
    return 0
