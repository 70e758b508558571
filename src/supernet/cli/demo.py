"""``supernet demo``: train, search and export a GPT on the embedded Tiny Shakespeare in minutes."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._util import device_arg, formatter, friendly

EXAMPLE = """example:
  supernet demo                      # about 3 minutes on 2 CPU cores; writes runs/demo
  supernet demo --device cuda --out runs/demo-gpu
  supernet demo --tiny               # a seconds-long smoke run of the same pipeline
Rerunning with the same --out resumes (the trained supernet and the search study are reused).
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    p = sub.add_parser(
        "demo",
        help="the whole pipeline on the embedded Tiny Shakespeare (train, search, export, sample)",
        description="GPT space, supernet training, NSGA-II over (val loss, params), export under a params "
        "budget, fine-tuning of the exported model, text sample from it.",
        epilog=EXAMPLE,
        formatter_class=formatter(),
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory (default %(default)s)")
    p.add_argument("--tiny", action="store_true", help="a tiny, seconds-long version (for tests)")
    p.add_argument("--budget", type=float, help="params budget of the exported model (default: halfway min-max)")
    p.add_argument("--steps", type=int, help="override the supernet training steps")
    p.add_argument("--trials", type=int, help="override the number of archs searched")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="CPU threads for torch (default 1: the demo's models are small)")
    device_arg(p)
    p.set_defaults(func=friendly(run))


def run(args: argparse.Namespace) -> int:
    """Run the demo."""
    import torch

    from ..demo import DemoPreset, run_demo

    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    # The demo's models are small: one intra-op thread loses little on an idle machine and avoids the
    # many-fold slowdown of oversubscribed threads on a busy one (the 8-minute budget must hold either way).
    torch.set_num_threads(args.threads or 1)
    preset = DemoPreset.tiny() if args.tiny else DemoPreset()
    if args.steps is not None:
        if args.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {args.steps}")
        preset.steps = args.steps
    if args.trials is not None:
        if args.trials < 1:
            raise ValueError(f"--trials must be >= 1, got {args.trials}")
        preset.trials = args.trials
    run_demo(args.out, device=args.device, preset=preset, budget=args.budget, seed=args.seed)
    return 0
