"""two_stage_gpt: does the two-stage pipeline find a better arch than random archs under the same params budget?

(a) train a GPT supernet (``--strategy``, default sandwich; any registered training strategy) on Tiny
Shakespeare, search it (NSGA-II over val loss and params, hard constraint params <= budget) and take the best
feasible arch; (b) sample 20 random archs under the same budget.
Each arch is then trained stand-alone from scratch for the same number of steps and its val loss reported:
found vs the best and the median random arch. The supernet's own ranking of those archs (its val loss with
inherited weights, the same val batches) is compared with the stand-alone losses by Kendall tau; training
seconds per step and peak memory show a strategy's overhead (e.g. ``mos`` against ``sandwich``).
Stand-alone results depend only on the arch, the steps and the seed, so ``--standalone-cache FILE`` shares them
between runs of several strategies with the same seed.

    python benchmarks/two_stage_gpt.py                 # full (about 30-40 min on 2 CPU cores)
    python benchmarks/two_stage_gpt.py --quick         # smaller (about 10 min)
    python benchmarks/two_stage_gpt.py --strategy pada --seed 1
    python benchmarks/two_stage_gpt.py --quick --strategy mos --strategy-options '{"experts": 2}' \
        --standalone-cache runs/gpt-standalone.json
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

import supernet as sn
from supernet.bench.metrics import kendall_tau
from supernet.files import read_json, write_json
from supernet.finetune import train_plain
from supernet.searching import arch_key, search
from supernet.training import LMTask, evaluate, evaluate_model, train

SPACE = dict(block_size=64, embed_dims=(48, 64, 96), num_heads=(2, 3), mlp_ratios=(2, 4), depths=(1, 2, 3), head_dim=16)


def params_of(space: sn.SuperModule, arch: dict) -> int:
    space.set_arch(arch)
    return sn.cost.params(space)


def random_archs(space: sn.SuperModule, n: int, budget: float, seed: int) -> list[dict]:
    """``n`` distinct uniformly random archs with params <= budget (rejection sampling)."""
    rng = random.Random(seed)
    out, keys = [], set()
    while len(out) < n:
        arch = space.sample(rng=rng)
        key = arch_key(space, arch)
        if key in keys or params_of(space, arch) > budget:
            continue
        keys.add(key)
        out.append(arch)
    return out


def standalone(arch: dict, task: LMTask, steps: int, batch_size: int, lr: float, seed: int) -> float:
    """Val loss of ``arch`` trained from scratch (fresh weights, same recipe for every arch)."""
    torch.manual_seed(seed)
    model = sn.spaces.gpt(**SPACE).extract(arch)
    train_plain(model, task, steps, batch_size, lr, warmup_steps=steps // 20, seed=seed, progress=False)
    return evaluate_model(model, task, max_batches=32)["loss"]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--strategy", default="sandwich", help="training strategy of the supernet (supernet info)")
    ap.add_argument("--strategy-options", type=json.loads, default={}, help="the strategy's options as JSON")
    ap.add_argument("--lr", type=float, default=3e-3, help="supernet learning rate (default 3e-3)")
    ap.add_argument("--standalone-cache", type=Path, help="JSON file of stand-alone results shared between runs")
    ap.add_argument("--supernet-steps", type=int)
    ap.add_argument("--standalone-steps", type=int)
    ap.add_argument("--trials", type=int)
    ap.add_argument("--randoms", type=int, default=20)
    ap.add_argument("--budget-fraction", type=float, default=0.5, help="budget between min (0) and max (1) params")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    sn_steps = args.supernet_steps or (600 if args.quick else 2000)
    sa_steps = args.standalone_steps or (300 if args.quick else 800)
    trials = args.trials or (30 if args.quick else 80)
    out = args.out or Path(tempfile.mkdtemp(prefix="two_stage_gpt-"))
    console = Console()

    text = sn.data.shakespeare()
    task = LMTask(text, SPACE["block_size"])
    space = sn.spaces.gpt(**SPACE)
    lo, hi = params_of(space, space.min_arch()), params_of(space, space.max_arch())
    budget = lo + args.budget_fraction * (hi - lo)
    t0 = time.perf_counter()
    run = train(
        space,
        text,
        args.strategy,
        {
            "steps": sn_steps,
            "batch_size": 32,
            "lr": args.lr,
            "min_lr": args.lr / 10,
            "warmup_steps": sn_steps // 20,
            "seed": args.seed,
            "strategy": args.strategy,
            "strategy_options": args.strategy_options,
            "tensorboard": False,
        },
        run_dir=out / "run",
        device="cpu",
    )
    t_train = time.perf_counter() - t0
    result = search(
        run,
        objectives=["loss", "params"],
        algorithm="nsga2",
        constraints=f"params <= {budget:.0f}",
        trials=trials,
        population_size=max(4, trials // 5),
        eval_batches=8,
        task=task,
        device="cpu",
        seed=args.seed,
    )
    found = result.best["arch"]
    t_search = time.perf_counter() - t0 - t_train
    randoms = random_archs(space, args.randoms, budget, seed=args.seed + 1)

    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # training + search
    cache: dict[str, float] = {}
    if args.standalone_cache is not None and args.standalone_cache.is_file():
        cache = dict(read_json(args.standalone_cache, dict[str, float], "stand-alone cache"))

    def standalone_loss(arch: dict) -> float:
        key = f"{arch_key(space, arch)}|steps={sa_steps}|seed={args.seed}"
        if key not in cache:
            cache[key] = standalone(arch, task, sa_steps, 32, 3e-3, args.seed)
            if args.standalone_cache is not None:
                write_json(args.standalone_cache, cache)
        return cache[key]

    rows = []
    console.print(f"stand-alone training of 1 + {len(randoms)} archs, {sa_steps} steps each ...")
    found_loss = standalone_loss(found)
    rows.append(("found (two-stage)", params_of(space, found), found_loss))
    rand_losses = []
    for i, arch in enumerate(randoms):
        loss = standalone_loss(arch)
        rand_losses.append((loss, params_of(space, arch)))
        console.print(f"  random {i + 1}/{len(randoms)}: val loss {loss:.4f}")
    # the supernet's ranking of the same archs: inherited weights, the search's val batches
    ranked = [found, *randoms]
    sn_losses = [evaluate(run.space, arch, task, max_batches=8)["loss"] for arch in ranked]
    sa_losses = [found_loss] + [loss for loss, _ in rand_losses]
    tau = kendall_tau(sn_losses, sa_losses)
    best = min(rand_losses)
    med = statistics.median(x[0] for x in rand_losses)
    rows += [("best of random", best[1], best[0]), ("median random", None, med)]

    table = Table(
        title=f"two_stage_gpt ({args.strategy}, seed {args.seed}): params budget {budget:,.0f}; supernet "
        f"{sn_steps} steps, search {trials} archs, stand-alone {sa_steps} steps"
    )
    for col in ("arch", "params", "val loss (stand-alone)"):
        table.add_column(col, justify="right")
    for name, p, loss in rows:
        table.add_row(name, f"{p:,}" if p else "-", f"{loss:.4f}")
    console.print(table)
    verdict = "beats" if found_loss < med else "does NOT beat"
    console.print(
        f"found arch {verdict} the median random arch ({found_loss:.4f} vs {med:.4f}); "
        f"supernet training {t_train:.0f} s ({1e3 * t_train / sn_steps:.0f} ms/step), search {t_search:.0f} s; "
        f"peak memory {peak_rss_mb:.0f} MB; Kendall tau of supernet vs stand-alone val loss on these "
        f"{len(ranked)} archs: {tau:.3f}"
    )
    summary = {
        "strategy": args.strategy,
        "strategy_options": args.strategy_options,
        "seed": args.seed,
        "supernet_tau": tau,
        "supernet_losses": sn_losses,
        "standalone_losses": sa_losses,
        "train_s": t_train,
        "train_ms_per_step": 1e3 * t_train / sn_steps,
        "peak_rss_mb": peak_rss_mb,
        "supernet_params": sum(p.numel() for p in run.space.parameters()),
        "budget": budget,
        "found": {"arch": found, "val_loss": found_loss},
        "random_losses": rand_losses,
        "median_random": med,
        "best_random": best[0],
        "supernet_steps": sn_steps,
        "standalone_steps": sa_steps,
        "trials": trials,
    }
    write_json(out / "two_stage_gpt.json", summary)
    return summary


if __name__ == "__main__":
    main()
