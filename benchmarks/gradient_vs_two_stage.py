"""DrNAS with weight superposition vs two-stage NAS (sandwich + evolution) under the same wall-clock budget.

Tiny Shakespeare, GPT space. Per seed:

1. **DrNAS** (``sn.train(..., strategy="drnas")``, TangleNAS superposition) trains until ``--budget`` seconds of
   wall clock have passed (the strategy stops the loop at the deadline; constant learning rate); the found
   arch is the argmax of the Dirichlet means.
2. **Two-stage**: ``sandwich`` supernet training until ``--train-share`` of the budget has passed, then
   regularized evolution over the trained supernet (objective: val loss with inherited weights) with as many
   trials as the rest of the budget allows (sized from one timed evaluation).
3. Each found arch is trained **stand-alone from scratch** (fresh initialisation, AdamW, the same
   ``--final-steps`` steps, batch and schedule) and its val loss is measured on fixed val windows.

The wall time actually spent by each method is printed next to its result.

    python benchmarks/gradient_vs_two_stage.py                       # 2 seeds, 120 s per method and seed
    python benchmarks/gradient_vs_two_stage.py --budget 30 --final-steps 100 --seeds 0
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import torch

import supernet as sn
from supernet.training import train
from supernet.training.evaluate import evaluate
from supernet.training.strategies import get_strategy
from supernet.training.tasks import make_task


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


class BudgetReached(Exception):
    """Raised by a timed strategy at its deadline to end training."""


def timed_strategy(name: str, deadline: float, options: dict[str, Any] | None = None) -> Any:
    """An instance of strategy ``name`` that stops the training loop once ``time.perf_counter() >= deadline``."""
    base = get_strategy(name)

    class Timed(base):  # type: ignore[misc, valid-type]
        steps_done = 0

        def step(self, ctx: Any, batch: Any) -> Any:
            if time.perf_counter() >= deadline:
                raise BudgetReached
            out = super().step(ctx, batch)
            self.steps_done += 1
            return out

    Timed.name = name
    return Timed(options or {})


def train_until(
    space: sn.SuperModule,
    text: Any,
    name: str,
    seconds: float,
    seed: int,
    args: argparse.Namespace,
    options: dict[str, Any] | None = None,
) -> Any:
    """Train ``space`` with strategy ``name`` for ``seconds`` of wall clock; returns the strategy instance."""
    strat = timed_strategy(name, time.perf_counter() + seconds, options)
    cfg = {
        "steps": 10**7,
        "batch_size": args.batch,
        "progress": False,
        "seed": seed,
        "lr": args.lr,
        "schedule": "constant",
        "log_every": 10**6,
    }
    try:
        train(space, text, strategy=strat, config=cfg)
    except BudgetReached:
        pass
    return strat


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


def run_drnas(seed: int, args: argparse.Namespace, text: Any) -> tuple[dict[str, Any], float, str]:
    """DrNAS with superposition for the whole budget; the argmax arch."""
    t = time.perf_counter()
    space = make_space(args.size, args.block)
    strat = train_until(space, text, "drnas", args.budget, seed, args, {"alpha_lr": args.alpha_lr})
    arch = strat.alphas.argmax_arch(space, strat.mixer)
    return arch, time.perf_counter() - t, f"{strat.steps_done} steps"


def run_two_stage(seed: int, args: argparse.Namespace, text: Any) -> tuple[dict[str, Any], float, str]:
    """Sandwich training for part of the budget, evolution (val loss, inherited weights) for the rest."""
    t = time.perf_counter()
    space = make_space(args.size, args.block)
    strat = train_until(space, text, "sandwich", args.budget * args.train_share, seed, args)
    task = make_task(text, block_size=args.block)

    def evaluator(arch: dict[str, Any]) -> dict[str, float]:
        return evaluate(space, arch, task, max_batches=args.eval_batches, device="cpu")

    t_eval = time.perf_counter()
    evaluator(space.max_arch())
    per_eval = time.perf_counter() - t_eval
    left = args.budget - (time.perf_counter() - t)
    trials = max(4, int(left / max(per_eval, 1e-3)))
    result = sn.searching.search(
        space,
        evaluator=evaluator,
        objectives=("loss",),
        algorithm="evolution",
        trials=trials,
        seed=seed,
        progress=False,
        device="cpu",
    )
    return result.best["arch"], time.perf_counter() - t, f"{strat.steps_done} steps + {trials} trials"


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
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    text = sn.data.shakespeare()
    rows = []
    for seed in args.seeds:
        for method, fn in (("drnas+superposition", run_drnas), ("sandwich+evolution", run_two_stage)):
            arch, spent, work = fn(seed, args, text)
            loss, params = standalone_val_loss(arch, seed, args, text)
            rows.append((seed, method, spent, work, params, loss, arch))
            print(f"seed {seed} {method}: {spent:.0f}s ({work}), params {params}, stand-alone val loss {loss:.4f}")
    print(
        f"\nTiny Shakespeare GPT ({args.size}), budget {args.budget:.0f}s per method and seed, stand-alone "
        f"{args.final_steps} steps, batch {args.batch}, block {args.block}\n"
    )
    head = f"{'seed':>4} {'method':20} {'wall s':>6} {'work':>20} {'params':>8} {'val loss':>8}  arch"
    print(head)
    print("-" * len(head))
    for seed, method, spent, work, params, loss, arch in rows:
        print(f"{seed:4d} {method:20} {spent:6.0f} {work:>20} {params:8d} {loss:8.4f}  {arch}")
    for method in ("drnas+superposition", "sandwich+evolution"):
        vals = [r[5] for r in rows if r[1] == method]
        print(f"mean stand-alone val loss {method}: {sum(vals) / len(vals):.4f}")


if __name__ == "__main__":
    main()
