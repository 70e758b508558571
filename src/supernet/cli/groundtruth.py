"""``supernet groundtruth SPACE``: train sampled archs stand-alone from scratch and write a ground-truth table."""

from __future__ import annotations

import argparse
import inspect
import sys
from typing import Any

from ._util import json_object

EXAMPLE = """examples:
  supernet groundtruth gpt --archs 8 --steps 300 --out gpt_truth.json
  supernet groundtruth vit --archs 10 --steps 200 --data digits --out vit_truth.csv
  supernet groundtruth nb201 --archs 20 --steps 2000 --data cifar10 --data-dir DATA --space-kwargs '{"N": 1}'

The table (JSON or CSV by suffix; arch key -> val_accuracy, val_loss, train_loss, params, train_s) is rewritten
after every arch; re-running the same command resumes. Use it with `supernet bench` or your own analysis."""

DEFAULT_DATA = {"gpt": "shakespeare"}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``groundtruth`` subcommand."""
    p = sub.add_parser(
        "groundtruth",
        help="train sampled archs of a space stand-alone from scratch and write a ground-truth table",
        description="Sample archs of a ready space (seeded), extract each as a plain network, re-initialise it, "
        "train it with one recipe and score it on the validation split; write arch -> metrics as JSON or CSV.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from ..spaces import SPACES

    p.add_argument("space", help=f"a registered space: {', '.join(SPACES)} (see `supernet info`)")
    p.add_argument("--archs", type=int, default=10, help="archs to sample (default 10)")
    p.add_argument("--steps", type=int, default=500, help="training steps per arch (default 500)")
    p.add_argument("--data", choices=["shakespeare", "digits", "cifar10"], help="dataset (default by space)")
    p.add_argument("--data-dir", help="folder with images/cifar10-train.tar.gz (for --data cifar10)")
    p.add_argument("--size", type=int, help="resize CIFAR-10 images to SIZE x SIZE")
    p.add_argument("--per-class", type=int, help="class-balanced CIFAR-10 subset")
    p.add_argument("--space-kwargs", default="{}", help="JSON keyword arguments of the space factory")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate, cosine decay (default 1e-3)")
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw", help="optimizer (default adamw)")
    p.add_argument("--eval-batches", type=int, help="limit validation batches (default: the whole split)")
    p.add_argument("--seed", type=int, default=0, help="seeds the arch sample and training (default 0)")
    p.add_argument("--out", help="table file, .json or .csv (default groundtruth-<space>.json)")
    p.add_argument("--device", default="auto", help="cuda, cpu or auto (default auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _make_task(args: argparse.Namespace, factory: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The task for ``--data`` and the space kwargs it implies (input channels, image size, vocabulary)."""
    from .. import data as sn_data
    from ..training.tasks import ClassificationTask, LMTask

    accepted = set(inspect.signature(factory).parameters)
    name = args.data or DEFAULT_DATA.get(args.space, "digits")
    if name == "shakespeare":
        text = sn_data.shakespeare()
        if "vocab_size" not in accepted:
            raise ValueError(f"space {args.space!r} is not a language model; use --data digits or cifar10")
        kwargs.setdefault("vocab_size", text.vocab_size)
        return LMTask(text, int(kwargs.get("block_size", 64))), kwargs
    if name == "digits":
        train, val = sn_data.digits()
        transform = None
        if "in_channels" in accepted:
            kwargs.setdefault("in_channels", 1)
        else:  # a 3-channel space such as nb201: repeat the grey channel

            def transform(x: Any) -> Any:
                return x.repeat(1, 3, 1, 1)

        if "image_size" in accepted:
            kwargs.setdefault("image_size", 8)
        if "patch_size" in accepted:
            kwargs.setdefault("patch_size", 2)
        return ClassificationTask(train, val, transform=transform), kwargs
    from ..bench.cifar import cifar10_splits

    splits = cifar10_splits(
        args.data_dir, size=args.size, per_class=args.per_class, holdout_fraction=0.1, seed=args.seed
    )
    if "image_size" in accepted:
        kwargs.setdefault("image_size", splits.info["size"])
    return splits.task(augment=True, padding=4 if splits.info["size"] >= 32 else 2), kwargs


def run(args: argparse.Namespace) -> int:
    """Build the space and task, train the archs, write the table."""
    from ..bench.groundtruth import GroundTruthRecipe, build_groundtruth
    from ..bench.tables import TableError
    from ..spaces import SPACES, build_space

    try:
        if args.space not in SPACES:
            raise ValueError(f"unknown space {args.space!r}; registered spaces: {', '.join(SPACES)}")
        kwargs = json_object(args.space_kwargs, "--space-kwargs", '{"N": 1}')
        if args.archs < 1:
            raise ValueError(f"--archs must be >= 1, got {args.archs}")
        task, kwargs = _make_task(args, SPACES[args.space], kwargs)
        space = build_space(args.space, **kwargs)
        recipe = GroundTruthRecipe(
            steps=args.steps,
            batch_size=args.batch_size,
            optimizer=args.optimizer,
            lr=args.lr,
            eval_max_batches=args.eval_batches,
            seed=args.seed,
        )
        out = args.out or f"groundtruth-{args.space}.json"
        table = build_groundtruth(
            space, task, args.archs, recipe, out=out, device=args.device, progress=not args.no_progress
        )
    except (FileNotFoundError, ValueError, TypeError, TableError) as err:
        print(f"supernet groundtruth: error: {err}", file=sys.stderr)
        return 2
    accs = table.values("val_accuracy")
    print(f"wrote {len(table)} archs to {out} (val_accuracy {accs.min():.2f} .. {accs.max():.2f})")
    return 0
