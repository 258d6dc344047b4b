"""``vqstack extract``: decode each video once, run the named extractors, cache features in the store.

A video already stored for an extractor's identity (content key + name + version + config +
weights SHA-256) is skipped, whatever its file is now called; ``--force`` recomputes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_extractor_options(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that may run extractors (extract, fuse predict)."""
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where deep extractors run (auto = cuda if available)")
    p.add_argument("--batch-size", type=int, default=None, help="frames/clips per forward pass (extractor default)")
    p.add_argument("--weights", default=None,
                   help="weights file for a single deep extractor (checked by SHA-256)")
    p.add_argument("--weights-dir", default=None,
                   help="folder holding weights files under their official names (or $VQSTACK_WEIGHTS)")
    p.add_argument("--random-init", action="store_true",
                   help="use randomly initialised networks (tests only: the features mean nothing)")
    p.add_argument("--opt", action="append", default=[], metavar="NAME.KEY=VALUE",
                   help="override an extractor config value, e.g. nss.fps=1 (repeatable)")
    p.add_argument("--backend", default="auto", choices=["auto", "decord", "pyav"],
                   help="frame reader (auto = decord, PyAV when decord fails on a file)")
    add_engine_options(p, what="videos extracted")


def add_engine_options(p: argparse.ArgumentParser, *, what: str) -> None:
    """``--workers``, ``--engine`` and ``--address``: where the per-video work runs (local or Ray)."""
    p.add_argument("--workers", type=int, default=None,
                   help=f"{what} in parallel: local worker processes (default 1), or Ray workers "
                        "(default: one per CPU slot of the cluster, or per GPU for GPU extractors)")
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local processes, or a Ray cluster (needs: pip install 'vqstack[distributed]'); "
                        "see docs/cluster.md")
    p.add_argument("--address", default=None, metavar="ADDRESS",
                   help="Ray cluster to use with --engine ray: ray://HOST:10001, HOST:6379 or auto "
                        "(default: $RAY_ADDRESS, else a new local cluster on this machine)")


def register(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    p = sub.add_parser("extract", help="extract features into the HDF5 store (cached, resumable)",
                       description=__doc__, formatter_class=formatter)
    p.add_argument("--feat", required=True,
                   help="comma-separated extractor names (see 'vqstack extract --list')")
    p.add_argument("--videos", required=True, help="a folder (recursive), a list file, or one video/image")
    p.add_argument("--store", default="features", type=Path, help="feature store folder")
    p.add_argument("--force", action="store_true", help="recompute even what the store already holds")
    p.add_argument("--failures", type=Path, default=None,
                   help="CSV of failed videos and reasons (default: STORE/failures.csv)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_extractor_options(p)
    p.set_defaults(handler=run)


def parse_opts(pairs: list[str], names: list[str]) -> dict[str, dict[str, Any]]:
    """``["nss.fps=1"]`` -> ``{"nss": {"fps": 1}}`` (values parsed as YAML scalars)."""
    import yaml

    from vqstack.errors import ConfigError

    out: dict[str, dict[str, Any]] = {n: {} for n in names}
    for pair in pairs:
        if "=" not in pair or "." not in pair.split("=", 1)[0]:
            raise ConfigError(f"--opt {pair!r}: expected NAME.KEY=VALUE, e.g. nss.fps=1")
        lhs, value = pair.split("=", 1)
        name, key = lhs.split(".", 1)
        if name not in out:
            raise ConfigError(f"--opt {pair!r}: extractor '{name}' is not in --feat ({', '.join(names)})")
        out[name][key] = yaml.safe_load(value)
    return out


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def build_requests(args: argparse.Namespace, names: list[str]) -> list[Any]:
    import os

    from vqstack.extract.pipeline import ExtractorRequest

    opts = parse_opts(args.opt, names)
    # on Ray, "auto" is decided on each worker (a GPU-less driver may drive GPU workers)
    device = args.device if getattr(args, "engine", "local") == "ray" else resolve_device(args.device)
    weights_dir = args.weights_dir or os.environ.get("VQSTACK_WEIGHTS")
    return [ExtractorRequest(name=n, config=opts[n], device=device, batch_size=args.batch_size,
                             weights=args.weights, weights_dir=weights_dir, random_init=args.random_init)
            for n in names]


def run(args: argparse.Namespace) -> int:
    from vqstack.errors import InputError
    from vqstack.extract.media import discover
    from vqstack.extract.pipeline import run_extract
    from vqstack.extract.ray_engine import check_engine
    from vqstack.extract.registry import parse_feature_list

    check_engine(args.engine, args.address)  # before any work: a missing Ray is a one-line error
    names = parse_feature_list(args.feat)
    requests = build_requests(args, names)
    for request in requests:
        request.validate()
    try:
        videos = discover(args.videos)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    result = run_extract(videos, requests, args.store, force=args.force, workers=args.workers,
                         backend=args.backend, progress=not args.no_progress, engine=args.engine,
                         address=args.address)
    failures = result.report.write_failures(args.failures or Path(args.store) / "failures.csv")
    print(f"extract {','.join(names)}: {result.report.summary()} ({result.cache_hits} cache hits) "
          f"in {result.seconds:.1f} s -> {args.store}" + (f"; failures: {failures}" if failures else ""))
    return result.report.exit_code
