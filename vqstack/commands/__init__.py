"""CLI subcommands. Each module has ``register(subparsers, formatter)`` and imports lazily."""

from __future__ import annotations

import argparse
from typing import Any


def register_all(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    from vqstack.commands import demo, extract, features, frames, fuse, probe, train, weights

    for module in (probe, frames, extract, features, fuse, train, weights, demo):
        module.register(sub, formatter)
