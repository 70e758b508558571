"""NB201 ranking benchmark over strategies and seeds: runs `supernet bench nb201` for each and prints one table.

Every run is resumable (re-run the same command to continue) and writes its own report.json / summary.md /
scatter.png under --out-root. Example (the issue's CPU set; each run takes up to ~30 minutes on 2 free cores):

    .venv/bin/python benchmarks/nb201_rank.py --preset cpu --strategies uniform fair sandwich --seeds 0 1 \
        --data-dir ../shared/data --threads 1

--compute-matched divides the steps of multi-arch strategies by the forward/backward passes they make per step
(fair: 5 = one per NB201 op; sandwich: 2 + num_random = 4), so every strategy gets the same training compute.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from supernet.bench.nb201 import estimate_str, preset_config, run_nb201_bench

PASSES_PER_STEP = {"uniform": 1, "fair": 5, "sandwich": 4, "alpha": 4, "progressive": 1}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu", choices=["cpu", "cpu32", "gpu", "tiny"])
    p.add_argument("--strategies", nargs="+", default=["uniform", "fair", "sandwich"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out-root", default="runs/bench")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is faster on a busy machine)")
    p.add_argument("--compute-matched", action="store_true", help="equal forward/backward passes per strategy")
    p.add_argument("--archs", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    for strategy in args.strategies:
        for seed in args.seeds:
            cfg = preset_config(args.preset, strategy=strategy, seed=seed, archs=args.archs)
            tag = ""
            if args.compute_matched and PASSES_PER_STEP.get(strategy, 1) > 1:
                # the training split size (stratified: every class keeps (1 - holdout) of its images)
                base_steps = cfg.train_steps(
                    round(50000 * (1 - cfg.holdout_fraction))
                    if cfg.per_class is None
                    else round(10 * cfg.per_class * (1 - cfg.holdout_fraction))
                )
                cfg = preset_config(
                    args.preset,
                    strategy=strategy,
                    seed=seed,
                    archs=args.archs,
                    steps=max(1, base_steps // PASSES_PER_STEP[strategy]),
                )
                tag = "-matched"
            out = Path(args.out_root) / f"nb201-{strategy}-{args.preset}{tag}-s{seed}"
            t0 = time.perf_counter()
            report = run_nb201_bench(cfg, out, data_dir=args.data_dir, cache_dir=args.cache_dir)
            m, f = report["metrics"], report["floors"]
            rows.append(
                {
                    "strategy": strategy + tag,
                    "seed": seed,
                    "steps": report["config"]["steps"],
                    "tau": estimate_str(m["kendall_tau"]),
                    "sparse_tau": estimate_str(m["sparse_kendall_tau"]),
                    "rho": estimate_str(m["spearman_rho"]),
                    "P@10%": estimate_str(m["precision@0.1"]),
                    "regret": f"{m['regret']['value']:.2f}",
                    "flops_tau": estimate_str(f["flops_tau"]),
                    "wall_s": f"{report['timing']['total_s']:.0f}",
                    "this_session_s": f"{time.perf_counter() - t0:.0f}",
                }
            )
            print(json.dumps(rows[-1]))
    cols = list(rows[0])
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
