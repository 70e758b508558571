"""``supernet proxies``: score sampled archs of a space with training-free proxies and write a table."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress

from ._util import json_object

EXAMPLE = """examples:
  supernet proxies nb201 --archs 50 --proxies nwot,synflow,snip --out nb201_proxies.csv
  supernet proxies nb201 --from-table nb201_gt.json --images ../data/cifar10-train.tar.gz --out scores.json
  supernet proxies gpt --archs 20 --space-kwargs '{"block_size": 32}' --out gpt_proxies.json"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``proxies`` subcommand."""
    from ..proxies import PROXIES
    from ..spaces import SPACES
    from ._util import method_list

    p = sub.add_parser(
        "proxies",
        help="score archs with training-free proxies (nwot, synflow, ...) and write a table",
        description=(
            "Sample archs of a registered space (or take the archs of a table), score each at random initialisation "
            "on one minibatch, and write a generic table (arch -> proxy scores) as .csv or .json. Proxies that do "
            f"not apply (e.g. jacov on token inputs) are left empty.\n\nproxies:\n{method_list(PROXIES.describe())}"
        ),
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("space", choices=sorted(SPACES), help="registered search space: %(choices)s")
    p.add_argument("--archs", type=int, default=20, help="distinct archs to sample (default %(default)s)")
    p.add_argument("--from-table", type=Path, help="score the archs of this table instead of sampling")
    p.add_argument("--proxies", default=None, help="comma-separated proxy names (default: every proxy listed above)")
    p.add_argument("--space-kwargs", default="{}", help="JSON kwargs of the space factory")
    p.add_argument("--batch-size", type=int, default=64, help="minibatch size (default %(default)s)")
    p.add_argument("--images", type=Path, help="image tarball (class folders) for the batch; default random images")
    p.add_argument("--seed", type=int, default=0, help="seeds arch sampling, the batch and initialisation")
    p.add_argument("--device", default="auto", help="cuda, cpu or auto (default %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="output table (.csv or .json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def make_batch(space_name: str, kwargs: dict[str, Any], batch_size: int, seed: int, images: Path | None) -> tuple:
    """One ``(inputs, targets)`` minibatch that fits the space: Shakespeare tokens for ``gpt``; images otherwise,
    from ``images`` when given (normalised with CIFAR-10's channel statistics), else noise with random labels."""
    gen = torch.Generator().manual_seed(seed)
    if space_name == "gpt":
        from ..data import shakespeare

        text = shakespeare()
        block = int(kwargs.get("block_size", 64))
        return text.get_batch("train", batch_size, block, generator=gen)
    size = int(kwargs.get("image_size", 32))
    channels = int(kwargs.get("in_channels", 3))
    classes = int(kwargs.get("num_classes", 10))
    if images is None:
        return torch.randn(batch_size, channels, size, size, generator=gen), torch.randint(
            0, classes, (batch_size,), generator=gen
        )
    from ..data import image_tarball, images_to_tensor, normalize_images

    data = image_tarball(images, size=size, subset=max(8, batch_size), seed=seed)
    idx = torch.randperm(len(data.labels), generator=gen)[:batch_size].numpy()
    x = normalize_images(images_to_tensor(data.images[idx]))  # CIFAR-10 channel statistics
    return x, torch.as_tensor(data.labels[idx], dtype=torch.long) % classes


def run(args: argparse.Namespace) -> int:
    """Score the archs and write the table."""
    from .. import proxies as P
    from ..bench import Table, arch_key, load_table
    from ..spaces import build_space

    try:
        kwargs = json_object(args.space_kwargs, "--space-kwargs", '{"N": 1}')
        if args.archs < 1 or args.batch_size < 2:
            raise ValueError(f"need --archs >= 1 and --batch-size >= 2, got {args.archs}, {args.batch_size}")
        if args.out.suffix.lower() not in (".csv", ".json"):
            raise ValueError(f"--out must end in .csv or .json, got {args.out.name!r}")
        names = [n.strip() for n in args.proxies.split(",")] if args.proxies else P.PROXIES.names()
        unknown = [n for n in names if n not in P.PROXIES]
        if unknown:
            raise ValueError(f"unknown proxies {unknown}; available: {', '.join(P.PROXIES)}")
        space = build_space(args.space, **kwargs)
        if args.from_table is not None:
            table = load_table(args.from_table, space=args.space if args.space == "nb201" else None)
            archs = [space.validate(table.arch(k)) for k in table]
        else:
            rng, seen, archs = random.Random(args.seed), set(), []
            for _ in range(50 * args.archs):
                if len(archs) == args.archs:
                    break
                a = space.sample(rng=rng)
                key = json.dumps(a, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    archs.append(a)
        batch = make_batch(args.space, kwargs, args.batch_size, args.seed, args.images)
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"supernet proxies: error: {err}", file=sys.stderr)
        return 2
    rows: dict[str, dict[str, float]] = {}
    start = time.perf_counter()
    with Progress(transient=True, disable=args.no_progress) as bar:
        task = bar.add_task(f"scoring {len(archs)} archs", total=len(archs))
        for arch in archs:
            rows[arch_key(arch, args.space)] = P.score(
                space, batch, arch=arch, names=names, seed=args.seed, device=args.device
            )
            bar.advance(task)
    meta = {
        "made_by": "supernet proxies",
        "space_kwargs": kwargs,
        "proxies": names,
        "batch_size": args.batch_size,
        "data": str(args.images) if args.images else ("shakespeare" if args.space == "gpt" else "random normal images"),
        "seed": args.seed,
        "seconds": round(time.perf_counter() - start, 3),
    }
    Table(rows, space=args.space, metadata=meta).save(args.out)
    print(f"wrote {len(rows)} archs x {len(names)} proxies to {args.out}")
    return 0
