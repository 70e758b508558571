"""Smaller models from a pretrained one: `sn.convert` + `sn.sort_channels` vs training the same arch from scratch.

A GPT (the GPT space's largest arch, as a plain model) is trained stand-alone on Tiny Shakespeare, converted with
`sn.convert` (width choices per MLP, a depth choice; the attention and embedding widths stay fixed, see the
report), and its channels are sorted by importance (``l1``: weight norm, ``activation``: mean activation on a
few training batches) or left unsorted. For archs at about 50 % and 75 % of the original's parameters (the
largest arch of the converted space under that budget), the table gives the val loss

- with the inherited weights, no training;
- after a short fine-tune of the extracted subnet (``--finetune-steps``);
- of the same arch trained from scratch for the same number of steps (the GPT space's initialisation).

    OMP_NUM_THREADS=1 python benchmarks/convert_pretrained.py                  # the default (see --help)
    OMP_NUM_THREADS=1 python benchmarks/convert_pretrained.py --pretrain-steps 600 --finetune-steps 100
    python benchmarks/convert_pretrained.py --tiny                             # a smoke test (seconds)
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

import supernet as sn
from supernet.files import write_json
from supernet.finetune import train_plain
from supernet.training import make_task
from supernet.training.evaluate import evaluate_model

SORTS = ("none", "l1", "activation")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--embed-dim", type=int, default=128, help="the GPT's width (its heads have head_dim 32)")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--mlp-ratio", type=float, default=4.0)
    ap.add_argument("--pretrain-steps", type=int, default=1500, help="stand-alone training of the original")
    ap.add_argument("--finetune-steps", type=int, default=200, help="fine-tune steps = from-scratch steps")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3, help="learning rate of pre-training and from-scratch")
    ap.add_argument("--finetune-lr", type=float, default=5e-4, help="learning rate of the fine-tune")
    ap.add_argument("--widths", default="0.25,0.5,0.75,1.0", help="width fractions of the conversion")
    ap.add_argument("--targets", default="0.5,0.75", help="param budgets as fractions of the original")
    ap.add_argument("--sorts", default=",".join(SORTS), help=f"channel orders to compare: {', '.join(SORTS)}")
    ap.add_argument("--sort-batches", type=int, default=8, help="training batches for the activation sort")
    ap.add_argument("--eval-batches", type=int, default=20, help="val batches of 64 sequences")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--tiny", action="store_true", help="a tiny setting for tests (overrides the sizes)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.tiny:
        args.block_size, args.embed_dim, args.heads, args.layers, args.mlp_ratio = 16, 32, 2, 2, 4.0
        args.pretrain_steps, args.finetune_steps, args.batch_size = 20, 4, 8
        args.eval_batches, args.sort_batches, args.widths = 2, 2, "0.25,0.5,1.0"
    args.sorts = [s.strip() for s in args.sorts.split(",") if s.strip()]
    bad = [s for s in args.sorts if s not in SORTS]
    if bad:
        ap.error(f"--sorts: unknown {bad}; expected some of {SORTS}")
    return args


def base_model(args: argparse.Namespace, seed: int) -> nn.Module:
    """The GPT space's largest arch as a plain model (the space's own initialisation, seeded)."""
    torch.manual_seed(seed)
    space = sn.spaces.gpt(
        vocab_size=65, block_size=args.block_size, embed_dims=[args.embed_dim], num_heads=[args.heads],
        mlp_ratios=[args.mlp_ratio], depths=[args.layers], head_dim=args.embed_dim // args.heads,
    )
    return space.extract(space.max_arch())


def val_loss(net: nn.Module, task: Any, batches: int) -> float:
    return float(evaluate_model(net, task, "val", batch_size=64, max_batches=batches)["loss"])


def pick_archs(space: sn.SuperModule, targets: list[float], budget: int) -> list[tuple[float, dict, int]]:
    """For each target fraction: the arch with the most params within ``target * budget`` (ties: the deeper)."""
    names = list(space.choices)
    scored = []
    for values in itertools.product(*space.choices.values()):
        arch = dict(zip(names, values, strict=True))
        scored.append((sn.cost.params(space.extract(arch)), arch))
    out = []
    for t in targets:
        fits = [(p, a) for p, a in scored if p <= t * budget]
        if not fits:
            raise SystemExit(f"no arch of the converted space has at most {t:.0%} of the params")
        p, a = max(fits, key=lambda pa: (pa[0], json.dumps(pa[1], sort_keys=True)))
        out.append((t, a, p))
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    console = Console(width=160)
    progress = not args.no_progress
    start = time.perf_counter()
    task = make_task(sn.data.shakespeare(), block_size=args.block_size)
    widths = tuple(float(w) for w in args.widths.split(","))
    targets = [float(t) for t in args.targets.split(",")]

    model = base_model(args, args.seed)
    train_plain(model, task, args.pretrain_steps, args.batch_size, lr=args.lr, warmup_steps=args.pretrain_steps // 20,
                seed=args.seed, progress=progress, desc="pre-train")
    budget = sn.cost.params(model)
    original = val_loss(model, task, args.eval_batches)
    console.print(f"original: {budget:,} params, val loss {original:.4f} after {args.pretrain_steps} steps "
                  f"({time.perf_counter() - start:.0f} s)")

    x = task.example_input(2)
    gen = torch.Generator().manual_seed(args.seed + 1)
    sort_data = [task.train_batch(args.batch_size, gen)[0] for _ in range(args.sort_batches)]
    spaces = {}
    for method in args.sorts:
        space = sn.convert(model, x, widths=widths)
        if method != "none":
            sn.sort_channels(space, sort_data if method == "activation" else None, method=method,
                             batches=args.sort_batches)
        spaces[method] = space.eval()
    first = next(iter(spaces.values()))
    print(first.report.table())
    scratch_space = sn.convert(base_model(args, args.seed + 100), x, widths=widths)  # fresh weights, same choices

    rows: list[dict[str, Any]] = []
    for target, arch, params in pick_archs(first, targets, budget):
        scratch = scratch_space.extract(arch)
        train_plain(scratch, task, args.finetune_steps, args.batch_size, lr=args.lr,
                    warmup_steps=args.finetune_steps // 20, seed=args.seed, progress=progress, desc="scratch")
        scratch_loss = val_loss(scratch, task, args.eval_batches)
        for method, space in spaces.items():
            net = space.extract(arch)
            inherited = val_loss(net, task, args.eval_batches)
            train_plain(net, task, args.finetune_steps, args.batch_size, lr=args.finetune_lr, seed=args.seed,
                        progress=progress, desc=f"fine-tune ({method})")
            rows.append({
                "target": target, "params": params, "fraction": params / budget, "sort": method, "arch": arch,
                "inherited": inherited, "finetuned": val_loss(net, task, args.eval_batches), "scratch": scratch_loss,
            })

    table = Table(title=f"converted GPT ({budget:,} params, val loss {original:.3f}): val loss at "
                        f"{args.finetune_steps} steps")
    for col in ("budget", "params", "sort", "inherited (0 steps)", "fine-tuned", "from scratch", "gain"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(f"{r['target']:.0%}", f"{r['params']:,} ({r['fraction']:.0%})", r["sort"],
                      f"{r['inherited']:.3f}", f"{r['finetuned']:.3f}", f"{r['scratch']:.3f}",
                      f"{r['scratch'] - r['finetuned']:+.3f}")
    console.print(table)
    elapsed = time.perf_counter() - start
    console.print(f"{elapsed:.0f} s on {args.threads} thread(s); gain = from-scratch loss - fine-tuned loss")
    if args.out is not None:
        write_json(args.out, {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                              "original": {"params": budget, "val_loss": original}, "rows": rows,
                              "seconds": elapsed})
    return rows


if __name__ == "__main__":
    main()
