"""``supernet info``: build every ready space and print its size and decisions."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from .. import cost
from ..spaces import SPACES, build_space

EXAMPLE = "example: supernet info --space gpt"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``info`` subcommand."""
    p = sub.add_parser(
        "info",
        help="list the ready search spaces with their sizes and decisions",
        description="Build ready search spaces and print parameter counts of the min/max archs and decisions.",
        epilog=EXAMPLE,
    )
    p.add_argument("--space", choices=sorted(SPACES), action="append", help="only this space (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print a summary table and each space's decisions."""
    console = Console()
    names = args.space or list(SPACES)
    table = Table(title="ready search spaces")
    for col in ("space", "decisions", "archs", "params (min)", "params (max)"):
        table.add_column(col, justify="left" if col == "space" else "right")
    details = []
    for name in names:
        space = build_space(name)
        space.set_arch(space.min_arch())
        p_min = cost.params(space)
        space.set_arch(space.max_arch())
        p_max = cost.params(space)
        table.add_row(name, str(len(space.choices)), f"{space.num_archs():.3g}", f"{p_min:,}", f"{p_max:,}")
        details.append((name, space.choices))
    console.print(table)
    for name, choices in details:
        console.print(f"[bold]{name}[/bold]")
        for decision, options in choices.items():
            console.print(f"  {decision}: {list(options)}")
    return 0
