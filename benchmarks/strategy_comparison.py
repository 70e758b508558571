"""Strategy comparison: the same GPT space, data and step budget trained with every two-stage strategy.

For each of uniform, fair, sandwich, alpha, progressive: train the supernet, then report the val loss (inherited
weights) of its max arch, its min arch and the arch a search finds under a params budget (regularized evolution
over val loss, hard constraint params <= budget).

    python benchmarks/strategy_comparison.py                   # about 25 min on 2 CPU cores
    python benchmarks/strategy_comparison.py --steps 150 --trials 15 --strategies uniform,sandwich   # quick look
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

import supernet as sn
from supernet.searching import search
from supernet.training import LMTask, evaluate, train

SPACE = dict(block_size=64, embed_dims=(48, 64, 96), num_heads=(2, 3), mlp_ratios=(2, 4), depths=(1, 2, 3), head_dim=16)
STRATEGIES = ("uniform", "fair", "sandwich", "alpha", "progressive")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--budget-fraction", type=float, default=0.5)
    ap.add_argument("--eval-batches", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="strategy_comparison-"))
    console = Console()
    text = sn.data.shakespeare()
    task = LMTask(text, SPACE["block_size"])
    probe = sn.spaces.gpt(**SPACE)
    probe.set_arch(probe.min_arch())
    lo = sn.cost.params(probe)
    probe.set_arch(probe.max_arch())
    hi = sn.cost.params(probe)
    budget = lo + args.budget_fraction * (hi - lo)

    table = Table(
        title=f"strategy comparison: {args.steps} steps x 32 x {SPACE['block_size']} tokens, search "
        f"{args.trials} archs under {budget:,.0f} params (val loss, inherited weights)"
    )
    for col in ("strategy", "max arch", "min arch", "found arch", "found params", "train s"):
        table.add_column(col, justify="right")
    for name in args.strategies.split(","):
        space = sn.spaces.gpt(**SPACE)
        t = time.perf_counter()
        run = train(
            space,
            text,
            name,
            {
                "steps": args.steps,
                "batch_size": 32,
                "lr": 3e-3,
                "min_lr": 3e-4,
                "warmup_steps": args.steps // 20,
                "seed": args.seed,
                "progress": False,
            },
            run_dir=out / name,
            device="cpu",
        )
        seconds = time.perf_counter() - t
        kw = {"max_batches": args.eval_batches, "bn_batches": 0}
        loss_max = evaluate(run.space, run.space.max_arch(), task, **kw)["loss"]
        loss_min = evaluate(run.space, run.space.min_arch(), task, **kw)["loss"]
        result = search(
            run,
            objectives=["loss"],
            algorithm="evolution",
            constraints=f"params <= {budget:.0f}",
            trials=args.trials,
            population_size=max(4, args.trials // 4),
            eval_batches=args.eval_batches,
            task=task,
            device="cpu",
            seed=args.seed,
            progress=False,
        )
        best = result.best
        table.add_row(
            name,
            f"{loss_max:.4f}",
            f"{loss_min:.4f}",
            f"{best['metrics']['loss']:.4f}",
            f"{int(best['metrics']['params']):,}",
            f"{seconds:.0f}",
        )
        console.print(f"{name}: max {loss_max:.4f} min {loss_min:.4f} found {best['metrics']['loss']:.4f}")
    console.print(table)


if __name__ == "__main__":
    main()
