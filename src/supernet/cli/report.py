"""``supernet report RUN_DIR``: one self-contained HTML page (and Markdown) with a run's config, curves and results."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from ._util import formatter, friendly

EXAMPLE = """examples:
  supernet report runs/gpt                          # runs/gpt/report.html + report.md (+ report-figures/)
  supernet report runs/gpt --out reports/gpt.html   # elsewhere (reports/gpt.md beside it)
  supernet report runs/bench-pada                   # a `supernet bench nb201` directory: + the ranking scatter
  supernet report runs/gpt --model models/gpt       # show a model exported outside the run directory
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` subcommand."""
    p = sub.add_parser(
        "report",
        help="write a run's report: one self-contained HTML page and a Markdown file",
        description=(
            "Draw what a run wrote: the config, the training curves (metrics.jsonl), the Pareto plot "
            "(search/pareto.json), the alpha history (gradient runs), the ranking scatter (`supernet bench` "
            "directories) and each exported model's card with how to load it. Sections without data are left out "
            "with a one-line note. Figures are embedded in the HTML as PNG; nothing else is needed to view it."
        ),
        epilog=EXAMPLE,
        formatter_class=formatter(),
    )
    p.add_argument("run_dir", type=Path, help="a training run directory, or a `supernet bench nb201` directory")
    p.add_argument(
        "--out",
        type=Path,
        help="the HTML file (a path ending in .html) or a directory for report.html "
        "(default: RUN_DIR); the Markdown goes beside it",
    )
    p.add_argument(
        "--model",
        type=Path,
        action="append",
        help="an exported model directory to show (repeatable; default: those inside RUN_DIR and the config's "
        "export.out)",
    )
    p.set_defaults(func=friendly(run))


def run(args: argparse.Namespace) -> int:
    """Build and write the report; print where it went and which sections had no data."""
    from ..reporting import build_report, write_report

    rep = build_report(args.run_dir, model=args.model)
    html_path, md_path = write_report(rep, args.out)
    console = Console()
    shown = [s.title for s in rep.sections if not s.note]
    console.print(
        f"wrote [bold]{html_path}[/bold] and {md_path} ({len(rep.figures)} figures): {', '.join(shown)}",
        highlight=False,
    )
    for note in rep.notes:
        console.print(f"  {note}", highlight=False, markup=False)
    return 0
