"""A first-order DARTS search on the DARTS cell space, CIFAR-10, at a size a CPU can run; the found genotype.

The paper's setting (C=16, 8 cells, 32x32, a 25k/25k train/val split, 50 epochs of batch 64: GPU-days) is far
beyond 2 CPU cores; this script keeps its *structure* and shrinks the sizes, each stated in the output:

- space `supernet.spaces.darts` with ``--C`` channels and ``--layers`` cells (defaults 8 and 5: reduction cells
  at 1 and 3), 4 nodes;
- CIFAR-10 from the shared JPEG tarball, resized to ``--size`` pixels, ``--subset`` images per class; the
  training loop splits it into weight and alpha (validation) halves as DARTS does;
- ``sn.train(..., strategy="darts")``: first-order DARTS (weights by SGD, alphas by Adam at the paper's 3e-4,
  weight decay 1e-3), ``--steps`` steps of ``--batch``.

Reported: the genotype (DARTS' derivation: two distinct strongest inputs per node, `DartsSpace.derive_arch`) and
the per-decision argmax arch the strategy returns, the params of the DARTS CIFAR-10 evaluation network each
genotype builds (C=36, 20 cells, without the auxiliary head, as the paper counts), the share of parameter-free
ops (skip/pool) in the normal cell (DARTS' known failure mode is a cell of skips), wall time, and the supernet's
validation accuracy under the derived arch.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/darts_search.py --data-dir ../shared/data --out runs/darts-search
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

import supernet as sn
from supernet import files
from supernet.spaces import darts_network
from supernet.training import evaluate

PARAMETER_FREE = {"max_pool_3x3", "avg_pool_3x3", "skip_connect"}


def eval_params(genotype: Any) -> int:
    """Params of the DARTS CIFAR-10 evaluation network of ``genotype``, without the auxiliary head."""
    net = darts_network(genotype)
    return sum(p.numel() for n, p in net.named_parameters() if not n.startswith("auxiliary_head"))


def free_share(genotype: Any) -> float:
    """Share of the normal cell's entries that are parameter-free ops."""
    return sum(op in PARAMETER_FREE for op, _ in genotype.normal) / len(genotype.normal)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="folder with images/cifar10-train.tar.gz")
    p.add_argument("--out", type=Path, default=Path("runs/darts-search"))
    p.add_argument("--C", type=int, default=8)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--size", type=int, default=16)
    p.add_argument("--subset", type=int, default=1000, help="images per class (default 1000: 10k images)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    tarball = args.data_dir / "images" / "cifar10-train.tar.gz"
    if not tarball.is_file():
        p.error(f"no CIFAR-10 tarball at {tarball}")
    torch.set_num_threads(args.threads)
    data = sn.data.image_tarball(tarball, size=args.size, subset=args.subset, seed=args.seed)
    space = sn.spaces.darts(C=args.C, layers=args.layers)
    config = {
        "steps": args.steps, "batch_size": args.batch, "lr": 0.025, "weight_decay": 3e-4, "seed": args.seed,
        "progress": not args.no_progress, "checkpoint_every": 100, "eval_every": max(args.steps // 5, 1),
        "eval_batches": 4, "strategy": "darts",
        "strategy_options": {"alpha_lr": 3e-4, "alpha_weight_decay": 1e-3, "history_every": 50},
    }
    start = time.perf_counter()
    run = sn.train(space, data, "darts", config, run_dir=args.out, device=args.device,
                   resume=(args.out / "run.json").is_file())
    train_s = time.perf_counter() - start
    probs = run.strategy.history[-1]["probs"]
    derived = space.derive_arch(probs)
    argmax = space.validate(run.final_arch)
    g_derived, g_argmax = space.to_genotype(derived), space.to_genotype(argmax)
    val = evaluate(space, derived, run.task, max_batches=16, device=args.device) if run.task is not None else None
    result = {
        "setting": {k: getattr(args, k) for k in ("C", "layers", "size", "subset", "steps", "batch", "seed")},
        "train_s": train_s,
        "genotype": str(g_derived),
        "argmax_genotype": str(g_argmax),
        "eval_params": eval_params(g_derived),
        "argmax_eval_params": eval_params(g_argmax),
        "normal_parameter_free_share": free_share(g_derived),
        "supernet_val": val,
        "final_train_loss": run.history[-1]["loss"],
    }
    files.write_json(args.out / "darts_search.json", result)
    print(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
