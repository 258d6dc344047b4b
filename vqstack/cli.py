"""The ``vqstack`` command line: one entry point, one subcommand per stage.

Why argparse: it is strict (an unknown flag is an error), needs no dependency, and lets every
subcommand import its heavy modules lazily, so ``vqstack fuse --help`` never loads torch.
Subcommands live in ``vqstack/commands/``; this module only wires them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from vqstack import __version__
from vqstack.errors import VqstackError


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults in help and keep the descriptions' line breaks.

    A default that says nothing (``None``: "not given"; ``False``: a flag left off) or that the help
    already states is not repeated as "(default: None)".
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or action.default is False or "(default" in text:
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    from vqstack.commands import register_all

    parser = argparse.ArgumentParser(
        prog="vqstack",
        description=(
            "Blind video quality assessment: decode once, extract cached features, fuse.\n"
            "Data flow: probe/frames -> extract (features into a store) -> fuse fit -> fuse predict."
        ),
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"vqstack {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    register_all(sub, _Formatter)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except VqstackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
