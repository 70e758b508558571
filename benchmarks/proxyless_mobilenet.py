"""ProxylessNAS on the mobilenet space with a latency target: does the found arch meet the target, and is it better
than random archs of the same latency?

Steps (every size is an argument and printed with the results):

1. a latency lookup table of the space on this CPU (`supernet.cost.latency_table`, batch ``--latency-batch``, one
   thread, CPU clock by default so a busy machine does not distort it, non-negative fit), with its holdout check;
2. ``sn.train(..., "proxyless")`` on a CIFAR-10 subset with the latency loss
   ``latency_weight * E[latency] / target`` (``--latency-loss hinge``: ``latency_weight * max(0, E[latency] /
   target - 1)``), the target a fraction of the way from the smallest arch's predicted latency to the largest's
   (``--target-fraction``; the smallest arch, `min_arch`, is not always the one the table predicts fastest);
3. the found arch (the alphas' argmax): its *measured* latency against the target and the table's prediction;
4. ``--random`` random archs whose *measured* latency lies within ``--tolerance`` of the found arch's, and the
   found arch, each trained stand-alone from scratch with the same recipe
   (`supernet.bench.groundtruth.train_standalone`: AdamW, cosine, ``--standalone-steps``) and scored on the
   validation split.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/proxyless_mobilenet.py --data-dir ../shared/data \\
        --out runs/proxyless-mobilenet
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import supernet as sn
from supernet import cost, files
from supernet.bench.groundtruth import GroundTruthRecipe, reinitialize, train_standalone


def measured_latency(space: sn.SuperModule, arch: dict[str, Any], x: torch.Tensor, clock: str,
                     repeats: int = 21) -> float:
    """Median latency (s) of ``arch``'s extracted subnet, batch of ``x``."""
    previous = space.arch
    space.set_arch(arch)
    try:
        return cost.latency(space, x, warmup=3, repeats=repeats, clock=clock)
    finally:
        space.set_arch(previous)


def standalone(space_kwargs: dict[str, Any], arch: dict[str, Any], task: Any, recipe: GroundTruthRecipe,
               seed: int) -> dict[str, float]:
    """``arch`` trained from scratch: extracted from a freshly initialised space, re-initialised with ``seed``."""
    torch.manual_seed(seed)
    net = reinitialize(sn.spaces.mobilenet(**space_kwargs).extract(arch), seed)
    return train_standalone(net, task, recipe, seed, torch.device("cpu"))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="folder with images/cifar10-train.tar.gz")
    p.add_argument("--out", type=Path, default=Path("runs/proxyless-mobilenet"))
    p.add_argument("--size", type=int, default=32, help="image size (default 32)")
    p.add_argument("--subset", type=int, default=500, help="CIFAR-10 images per class (default 500)")
    p.add_argument("--steps", type=int, default=800, help="proxyless training steps (default 800)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--target-fraction", type=float, default=0.35,
                   help="latency target between the smallest (0) and largest (1) arch's prediction (default 0.35)")
    p.add_argument("--latency-loss", choices=("linear", "hinge"), default="linear",
                   help="the proxyless latency term: linear (the paper's) or hinge (no pull below the target)")
    p.add_argument("--latency-weight", type=float, default=1.0)
    p.add_argument("--random", type=int, default=4, help="random archs of similar latency (default 4)")
    p.add_argument("--tolerance", type=float, default=0.1, help="relative latency window of those (default 0.1)")
    p.add_argument("--max-tries", type=int, default=2000, help="random archs timed to find those (default 2000)")
    p.add_argument("--standalone-steps", type=int, default=600)
    p.add_argument("--table-samples", type=int, default=48)
    p.add_argument("--latency-batch", type=int, default=8,
                   help="images per timed run (default 8: at batch 1 a subnet's time is mostly per-op overhead and "
                        "two timings of one arch agree poorly, see benchmarks/latency_table.py)")
    p.add_argument("--table-repeats", type=int, default=15, help="timed runs per arch, the median is kept")
    p.add_argument("--clock", choices=("wall", "cpu"), default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    tarball = args.data_dir / "images" / "cifar10-train.tar.gz"
    if not tarball.is_file():
        p.error(f"no CIFAR-10 tarball at {tarball}")
    if not 0 < args.target_fraction < 1:
        p.error("--target-fraction must lie in (0, 1)")
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    data = sn.data.image_tarball(tarball, size=args.size, subset=args.subset, seed=args.seed)
    space_kwargs = {"image_size": args.size}
    torch.manual_seed(args.seed)
    space = sn.spaces.mobilenet(**space_kwargs)
    x1 = torch.randn(args.latency_batch, 3, args.size, args.size)

    t0 = time.perf_counter()
    table_path = args.out / "latency.json"
    if table_path.is_file():  # a rerun (resume) reuses the table the training used
        table = cost.CostTable.load(table_path)
    else:
        table = cost.latency_table(space, x1, samples=args.table_samples, holdout=16, seed=args.seed,
                                   repeats=args.table_repeats, progress=not args.no_progress, clock=args.clock)
        table.save(table_path)
    table_s = time.perf_counter() - t0
    fastest, slowest = table.arch_cost(space.min_arch()), table.arch_cost(space.max_arch())
    target = fastest + args.target_fraction * (slowest - fastest)

    t0 = time.perf_counter()
    options = {"latency_table": str(table_path), "latency_target": target, "latency_weight": args.latency_weight,
               "latency_loss": args.latency_loss}
    config = {"steps": args.steps, "batch_size": args.batch, "seed": args.seed, "progress": not args.no_progress,
              "eval_every": max(args.steps // 4, 1), "eval_batches": 4, "strategy": "proxyless",
              "strategy_options": options, "tensorboard": False}
    run = sn.train(space, data, "proxyless", config, run_dir=args.out / "train", device="cpu",
                   resume=(args.out / "train" / "run.json").is_file())
    train_s = time.perf_counter() - t0
    found = space.validate(run.final_arch)
    found_pred = table.arch_cost(found)
    found_meas = measured_latency(space, found, x1, args.clock, max(args.table_repeats, 1) + 6)

    # random archs whose *measured* latency is within the tolerance of the found arch's: a table's errors must
    # not decide which archs count as "similar"
    rng = random.Random(args.seed + 17)
    similar: list[dict[str, Any]] = []
    tried = 0
    while len(similar) < args.random and tried < args.max_tries:
        tried += 1
        arch = space.sample(rng=rng)
        if arch != found and abs(measured_latency(space, arch, x1, args.clock, 5) - found_meas) <= (
            args.tolerance * found_meas
        ):
            similar.append(arch)
    recipe = GroundTruthRecipe(steps=args.standalone_steps, batch_size=args.batch, lr=2e-3, warmup_steps=20,
                               eval_batch_size=256, seed=args.seed)
    t0 = time.perf_counter()
    rows = []
    for role, arch in [("found", found)] + [("random", a) for a in similar]:
        metrics = standalone(space_kwargs, arch, run.task, recipe, args.seed)
        rows.append({"role": role, "arch": arch, "predicted_ms": 1e3 * table.arch_cost(arch),
                     "measured_ms": 1e3 * measured_latency(space, arch, x1, args.clock, args.table_repeats + 6),
                     **metrics})
        if not args.no_progress:
            print(f"{role}: {rows[-1]['val_accuracy']:.1f} % at {rows[-1]['measured_ms']:.2f} ms", flush=True)
    standalone_s = time.perf_counter() - t0
    random_acc = [r["val_accuracy"] for r in rows if r["role"] == "random"]
    result = {
        "setting": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "table": {"holdout": table.meta.get("holdout"), "fastest_ms": 1e3 * fastest, "slowest_ms": 1e3 * slowest,
                  "build_s": table_s, "gates_exact": table.meta.get("gates_exact"),
                  "fit": table.meta.get("fit", "lstsq"),
                  "min_entry_ms": 1e3 * min(min(t) for t in [*table.tables.values(), *table.pairs.values()])},
        "target_ms": 1e3 * target,
        "found": {"arch": found, "predicted_ms": 1e3 * found_pred, "measured_ms": 1e3 * found_meas,
                  "measured_over_target": found_meas / target},
        "train_s": train_s,
        "standalone_s": standalone_s,
        "similar_tried": tried,
        "rows": rows,
        "found_accuracy": rows[0]["val_accuracy"],
        "random_accuracy_mean": statistics.fmean(random_acc) if random_acc else None,
        "random_accuracy_max": max(random_acc) if random_acc else None,
    }
    files.write_json(args.out / "proxyless.json", result)
    lines = [
        f"latency target {1e3 * target:.2f} ms (smallest-largest arch {1e3 * fastest:.2f}-{1e3 * slowest:.2f} ms, "
        f"{args.latency_loss} loss, "
        f"{args.clock} clock, batch {args.latency_batch}, {table.meta.get('fit', 'lstsq')} fit); found arch: "
        f"predicted {1e3 * found_pred:.2f} ms, measured {1e3 * found_meas:.2f} ms "
        f"({100 * found_meas / target:.0f} % of the target); proxyless training {train_s:.0f} s",
        "",
        f"| arch | measured ms | predicted ms | val acc % ({args.standalone_steps} stand-alone steps) | params |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['role']} | {r['measured_ms']:.2f} | {r['predicted_ms']:.2f} | {r['val_accuracy']:.1f} | "
              f"{int(r['params']):,} |" for r in rows]
    table_md = "\n".join(lines) + "\n"
    files.write_text(args.out / "proxyless.md", table_md)
    print(table_md)
    print(json.dumps({k: result[k] for k in ("found_accuracy", "random_accuracy_mean", "random_accuracy_max")}))
    return result


if __name__ == "__main__":
    main()
