"""The ``supernet`` command line. Each subcommand lives in its own module with a ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Subcommand modules, in the order `supernet --help` lists them.
COMMANDS = ["info", "demo", "convert", "train", "search", "export", "report", "finetune", "proxies", "predict", "bench",
            "groundtruth", "latency"]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="supernet",
        description="Weight-sharing neural architecture search: train a supernet, search it, export the winner.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error (also: SUPERNET_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Modules named in ``SUPERNET_PLUGINS`` (comma-separated) are imported first, so the methods they register
    (spaces, training strategies, proxies...) appear in every command's choices, ``--help`` and ``supernet info``.
    """
    from ..registry import load_plugins

    try:
        load_plugins(os.environ.get("SUPERNET_PLUGINS"), "SUPERNET_PLUGINS")
    except ValueError as err:
        print(f"supernet: error: {err}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.debug:
        os.environ["SUPERNET_DEBUG"] = "1"
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
