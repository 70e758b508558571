"""``supernet info``: the registered methods of every family, and every registered space's size and decisions."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Mapping

from rich.console import Console
from rich.table import Table

from .. import cost
from ..spaces import SPACES, SpaceError, build_space

EXAMPLE = """examples:
  supernet info                   # every registered method, then every space's size and decisions
  supernet info --space gpt       # one space
  supernet info --methods         # only the registered methods (builds no space)
  SUPERNET_PLUGINS=mymethods supernet info   # with the methods your module registers"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``info`` subcommand."""
    p = sub.add_parser(
        "info",
        help="list the registered methods (spaces, strategies, mixers, algorithms, proxies, predictors) and spaces",
        description=(
            "List every registered method of every family with its one-line description, then build the "
            "registered search spaces and print parameter counts of their min/max archs and their decisions."
        ),
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--space", choices=list(SPACES), action="append", help="only this space (repeatable)")
    p.add_argument("--methods", action="store_true", help="only list the registered methods (build no space)")
    p.set_defaults(func=run)


def _registry(module: str, attr: str) -> Mapping[str, str] | None:
    """``{name: description}`` of ``module.attr`` (a `Registry`, or a plain sequence of names), None if absent."""
    try:
        reg = getattr(importlib.import_module(module), attr, None)
    except ImportError:
        return None
    if reg is None:
        return None
    describe = getattr(reg, "describe", None)
    if callable(describe):
        return dict(describe())
    if isinstance(reg, Mapping):
        return {str(name): "" for name in reg}
    if isinstance(reg, (list, tuple)):
        return {str(name): "" for name in reg}
    return None


def families() -> dict[str, Mapping[str, str]]:
    """Every method family with ``{name: one-line description}``, in pipeline order (a family whose registry is
    missing is left out)."""
    found = {
        "spaces": SPACES.describe(),
        "training strategies": _registry("supernet.training.strategies", "STRATEGIES"),
        "gradient mixers": _registry("supernet.gradient.mixers", "MIXERS"),
        "search algorithms": _registry("supernet.searching", "ALGORITHMS"),
        "proxies": _registry("supernet.proxies", "PROXIES"),
        "predictors": _registry("supernet.predictors", "PREDICTORS"),
    }
    return {family: methods for family, methods in found.items() if methods is not None}


def print_methods(console: Console) -> None:
    """One block per family: ``name  description`` lines."""
    for family, methods in families().items():
        console.print(f"[bold]{family}[/bold] ({len(methods)})")
        width = max((len(n) for n in methods), default=0) + 2
        for name, text in methods.items():
            console.print(f"  {name:<{width}}{text}".rstrip(), markup=False, highlight=False)
    console.print()


def run(args: argparse.Namespace) -> int:
    """Print the registered methods, then a summary table and each space's decisions."""
    console = Console()
    if not args.space:
        print_methods(console)
    if args.methods:
        return 0
    names = args.space or list(SPACES)
    table = Table(title="registered search spaces (default arguments)")
    for col in ("space", "decisions", "archs", "params (min)", "params (max)"):
        table.add_column(col, justify="left" if col == "space" else "right")
    details = []
    for name in names:
        try:
            space = build_space(name)
        except SpaceError as err:  # e.g. a space of your own whose factory needs arguments
            table.add_row(name, "-", "-", "-", "-")
            details.append((name, f"not built with default arguments: {err}"))
            continue
        space.set_arch(space.min_arch())
        p_min = cost.params(space)
        space.set_arch(space.max_arch())
        p_max = cost.params(space)
        table.add_row(name, str(len(space.choices)), f"{space.num_archs():.3g}", f"{p_min:,}", f"{p_max:,}")
        details.append((name, space.choices))
    console.print(table)
    for name, choices in details:
        console.print(f"[bold]{name}[/bold]")
        if isinstance(choices, str):
            console.print(f"  {choices}", markup=False, highlight=False)
            continue
        for decision, options in choices.items():
            console.print(f"  {decision}: {list(options)}", markup=False, highlight=False)
    return 0
