"""``supernet finetune MODEL_DIR``: train an exported model further and write it back."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from ._util import device_arg, formatter, friendly

EXAMPLE = """example:
  supernet finetune models/gpt --steps 500 --lr 3e-4
The data is the one the supernet was trained on (recorded at export); weights are replaced atomically.
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``finetune`` subcommand."""
    p = sub.add_parser(
        "finetune",
        help="fine-tune an exported model on its training data",
        description="Plain training (AdamW, warm-up + cosine) of an exported model; updates it in place.",
        epilog=EXAMPLE,
        formatter_class=formatter(),
    )
    p.add_argument("model_dir", type=Path, help="a directory written by `supernet export`")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument(
        "--eval-batches", type=int, help="val batches for the loss before/after (default: as the export measured)"
    )
    p.add_argument("--eval-batch-size", type=int, help="val batch size (default: as the export measured)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    device_arg(p)
    p.set_defaults(func=friendly(run))


def run(args: argparse.Namespace) -> int:
    """Fine-tune and report the val loss before and after."""
    from ..config import FinetuneConfig, load_section
    from ..finetune import finetune

    cfg = load_section(
        FinetuneConfig,
        {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "weight_decay": args.weight_decay,
            "warmup_steps": args.warmup_steps,
            "eval_batches": args.eval_batches,
            "eval_batch_size": args.eval_batch_size,
            "seed": args.seed,
        },
        "finetune",
    )
    rec = finetune(args.model_dir, **cfg.model_dump(), device=args.device, progress=not args.no_progress)
    Console().print(
        f"fine-tuned {rec['steps']} steps: val loss {rec['val_loss_before']:.4f} -> {rec['val_loss_after']:.4f}; "
        f"saved to [bold]{args.model_dir}[/bold]"
    )
    return 0
