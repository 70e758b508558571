"""DrNAS with weight superposition vs two-stage NAS (sandwich training + evolution), same wall-clock budget.

Tiny Shakespeare, GPT space. Per seed:

1. **DrNAS** (``sn.train(..., strategy="drnas")``, TangleNAS superposition): as many steps as fit in ``--budget``
   seconds; the found arch is the argmax of the Dirichlet means.
2. **Two-stage**: ``sandwich`` supernet training for ``--train-share`` of the budget, then regularized evolution
   over the trained supernet (objective: val loss with inherited weights) for the rest (trial count sized from
   a timed probe evaluation).
3. Each found arch is trained **stand-alone from scratch** (fresh initialisation, AdamW, the same
   ``--final-steps`` steps, batch and schedule) and its val loss is measured on fixed val windows.

Step counts are derived from timed probe runs, and the actual search wall time of both methods is printed.

    python benchmarks/gradient_vs_two_stage.py                       # defaults: 2 seeds, 120 s budget each
    python benchmarks/gradient_vs_two_stage.py --budget 30 --final-steps 100 --seeds 0 1
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import supernet as sn
from supernet.train import train


def make_space(size: str, block: int) -> sn.SuperModule:
    """The GPT space: ``small`` (library default) or ``issue`` (embed 128-256, heads 2-8, ratio 2-4, depth 2-6)."""
    if size == "issue":
        return sn.spaces.gpt(
            vocab_size=65,
            block_size=block,
            embed_dims=(128, 192, 256),
            num_heads=(2, 4, 8),
            mlp_ratios=(2, 3, 4),
            depths=(2, 4, 6),
            head_dim=32,
        )
    return sn.spaces.gpt(vocab_size=65, block_size=block)


def steps_per_second(strategy: str, args: argparse.Namespace, text: Any) -> float:
    """Measure the training speed of a strategy with a short probe run (first step excluded)."""
    space = make_space(args.size, args.block)
    cfg = {"steps": 2, "batch_size": args.batch, "progress": False, "seed": 99, "lr": args.lr}
    train(space, text, strategy=strategy, config=cfg)  # warm-up
    cfg["steps"] = args.probe_steps
    t = time.perf_counter()
    train(space, text, strategy=strategy, config=cfg)
    return args.probe_steps / (time.perf_counter() - t)


def standalone_val_loss(arch: dict[str, Any], seed: int, args: argparse.Namespace, text: Any) -> tuple[float, int]:
    """Train the arch from scratch for ``--final-steps`` steps; mean val loss on fixed windows, and its params."""
    torch.manual_seed(1000 + seed)
    net = make_space(args.size, args.block).extract(arch)  # fresh initialisation
    params = sum(p.numel() for p in net.parameters())
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(2000 + seed)
    net.train()
    for step in range(args.final_steps):
        for g in opt.param_groups:
            g["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * step / args.final_steps))
        x, y = text.get_batch("train", args.batch, args.block, gen)
        loss = torch.nn.functional.cross_entropy(net(x).reshape(-1, 65), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
    net.eval()
    val_gen = torch.Generator().manual_seed(12345)
    losses = []
    with torch.no_grad():
        for _ in range(args.val_batches):
            x, y = text.get_batch("val", 64, args.block, val_gen)
            losses.append(float(torch.nn.functional.cross_entropy(net(x).reshape(-1, 65), y.reshape(-1))))
    return sum(losses) / len(losses), params


def run_drnas(seed: int, steps: int, args: argparse.Namespace, text: Any) -> tuple[dict[str, Any], float]:
    t = time.perf_counter()
    cfg = {
        "steps": steps,
        "batch_size": args.batch,
        "progress": args.progress,
        "seed": seed,
        "lr": args.lr,
        "strategy": "drnas",
        "strategy_options": {"alpha_lr": args.alpha_lr},
    }
    run = train(make_space(args.size, args.block), text, strategy="drnas", config=cfg)
    return run.final_arch, time.perf_counter() - t


def run_two_stage(
    seed: int, steps: int, trials: int, args: argparse.Namespace, text: Any, workdir: Path
) -> tuple[dict[str, Any], float]:
    t = time.perf_counter()
    cfg = {"steps": steps, "batch_size": args.batch, "progress": args.progress, "seed": seed, "lr": args.lr}
    run_dir = workdir / f"sandwich-{seed}"
    train(make_space(args.size, args.block), text, strategy="sandwich", config=cfg, run_dir=run_dir)
    result = sn.search.search(
        run_dir,
        objectives=("loss",),
        strategy="evolution",
        trials=trials,
        seed=seed,
        eval_batches=args.eval_batches,
        progress=args.progress,
        device="cpu",
    )
    return result.best["arch"], time.perf_counter() - t


def search_eval_seconds(args: argparse.Namespace, text: Any, workdir: Path) -> float:
    """Time of one supernet evaluation during evolution (probe on a tiny sandwich run)."""
    cfg = {"steps": 2, "batch_size": args.batch, "progress": False, "seed": 98}
    run_dir = workdir / "probe"
    train(make_space(args.size, args.block), text, strategy="sandwich", config=cfg, run_dir=run_dir)
    t = time.perf_counter()
    sn.search.search(
        run_dir,
        objectives=("loss",),
        strategy="random",
        trials=4,
        eval_batches=args.eval_batches,
        progress=False,
        device="cpu",
    )
    return (time.perf_counter() - t) / 4


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=float, default=120.0, help="wall-clock seconds per method and seed")
    p.add_argument("--train-share", type=float, default=0.75, help="two-stage: share of the budget for training")
    p.add_argument("--final-steps", type=int, default=300, help="stand-alone training steps of each found arch")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--size", choices=["small", "issue"], default="small")
    p.add_argument("--block", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--alpha-lr", type=float, default=3e-3, help="DrNAS alpha learning rate")
    p.add_argument("--eval-batches", type=int, default=4, help="val batches per evolution evaluation")
    p.add_argument("--val-batches", type=int, default=16, help="val batches for the final stand-alone loss")
    p.add_argument("--probe-steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--progress", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    text = sn.data.shakespeare()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        sps_drnas = steps_per_second("drnas", args, text)
        sps_sandwich = steps_per_second("sandwich", args, text)
        eval_s = search_eval_seconds(args, text, workdir)
        drnas_steps = max(1, int(args.budget * sps_drnas))
        sandwich_steps = max(1, int(args.budget * args.train_share * sps_sandwich))
        trials = max(4, int(args.budget * (1 - args.train_share) / max(eval_s, 1e-3)))
        print(
            f"probe: drnas {sps_drnas:.2f} steps/s, sandwich {sps_sandwich:.2f} steps/s, one evaluation "
            f"{eval_s:.2f} s -> drnas {drnas_steps} steps; two-stage {sandwich_steps} steps + {trials} trials"
        )
        for seed in args.seeds:
            arch_d, t_d = run_drnas(seed, drnas_steps, args, text)
            arch_t, t_t = run_two_stage(seed, sandwich_steps, trials, args, text, workdir)
            for method, arch, spent in (("drnas+superposition", arch_d, t_d), ("sandwich+evolution", arch_t, t_t)):
                loss, params = standalone_val_loss(arch, seed, args, text)
                rows.append((seed, method, spent, params, loss, arch))
                print(f"seed {seed} {method}: search {spent:.0f}s, params {params}, stand-alone val loss {loss:.4f}")
    print(
        f"\nTiny Shakespeare GPT ({args.size}), budget {args.budget:.0f}s per method, stand-alone "
        f"{args.final_steps} steps, batch {args.batch}, block {args.block}\n"
    )
    head = f"{'seed':>4} {'method':22} {'search s':>8} {'params':>9} {'val loss':>9}  arch"
    print(head)
    print("-" * len(head))
    for seed, method, spent, params, loss, arch in rows:
        print(f"{seed:4d} {method:22} {spent:8.0f} {params:9d} {loss:9.4f}  {arch}")
    for method in ("drnas+superposition", "sandwich+evolution"):
        vals = [r[4] for r in rows if r[1] == method]
        print(f"mean val loss {method}: {sum(vals) / len(vals):.4f}")


if __name__ == "__main__":
    main()
