"""Small helpers shared by the pipeline subcommands (train, search, export, finetune, demo)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from ..validation import ConfigError


def formatter() -> type[argparse.HelpFormatter]:
    """Keep the epilog's example lines as written."""
    return argparse.RawDescriptionHelpFormatter


def friendly(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Print expected user errors (bad config, missing files, bad values) as one message, exit status 2.

    ``supernet --debug ...`` (or ``SUPERNET_DEBUG=1``) shows the full traceback instead.
    """

    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (ConfigError, FileNotFoundError, FileExistsError, ValueError, KeyError) as err:
            if os.environ.get("SUPERNET_DEBUG"):
                raise
            msg = err.args[0] if isinstance(err, KeyError) and err.args else err
            print(f"supernet {args.command}: error: {msg}", file=sys.stderr)
            print("(supernet --debug ... shows the traceback)", file=sys.stderr)
            return 2

    return run


def device_arg(p: argparse.ArgumentParser, default: str = "auto") -> None:
    """Add ``--device cuda|cpu|auto``."""
    p.add_argument(
        "--device", default=default, help="cuda, cuda:N, cpu or auto (cuda when available; default %(default)s)"
    )


def overrides(args: argparse.Namespace, names: dict[str, str]) -> dict[str, Any]:
    """``{config field: value}`` for the CLI flags that were given (``names`` maps flag dest -> field)."""
    return {field: getattr(args, dest) for dest, field in names.items() if getattr(args, dest, None) is not None}


def method_list(descriptions: Mapping[str, str], indent: int = 2) -> str:
    """``{name: one-line description}`` (a registry's ``describe()``) as aligned lines for ``--help`` texts."""
    if not descriptions:
        return " " * indent + "(none registered)"
    width = max(len(name) for name in descriptions) + 2
    return "\n".join(f"{' ' * indent}{name:<{width}}{text}".rstrip() for name, text in descriptions.items())


def json_object(text: str, flag: str, example: str) -> dict[str, Any]:
    """The JSON object given to ``flag``; a ValueError naming the flag (and an example) otherwise."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{flag} must be a JSON object, e.g. '{example}': {err}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object, e.g. '{example}', got {text!r}")
    return value
