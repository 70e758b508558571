"""``supernet bench nb201``: train an NB201 supernet, rank archs with it, and compare with NAS-Bench-201."""

from __future__ import annotations

import argparse
import sys

from ._util import json_object

EXAMPLE = """examples:
  supernet bench nb201 --preset cpu --strategy uniform --seed 0 --data-dir ../shared/data
  supernet bench nb201 --preset gpu --strategy sandwich --epochs 50 --archs 200 --data-dir DATA --out runs/b1
  supernet bench nb201 --preset tiny --data-dir DATA            # a few steps: checks the pipeline end to end

Presets: cpu (C=16, N=1, 16x16 images, 12 epochs: 7-21 min on 2 CPU cores with --threads 1),
cpu32 (C=16, N=1, 32x32, 7,652 steps: the data README's calibration, slower), gpu (the paper setting: C=16, N=5,
32x32, 25k/25k split, 50 epochs), tiny (seconds). Re-running the same command with the same --out resumes.
Data: --data-dir holds images/cifar10-train.tar.gz and benchmarks/nb201/ (or set $SUPERNET_DATA);
--table points at an NB201 table directory or file directly."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand."""
    p = sub.add_parser(
        "bench",
        help="measure how well a supernet ranks archs against a tabular benchmark (NAS-Bench-201)",
        description="Train a NAS-Bench-201 supernet with a strategy, evaluate archs with inherited weights after BN "
        "recalibration on held-out training images, and report Kendall tau, sparse tau, Spearman rho, P@k and "
        "regret with bootstrap CIs, next to the FLOPs/params floors. Writes report.json, scatter.png, summary.md.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("benchmark", choices=["nb201"], help="the benchmark (nb201: NAS-Bench-201 CIFAR-10)")
    p.add_argument(
        "--preset", default="cpu", choices=["cpu", "cpu32", "gpu", "tiny"], help="settings bundle (default cpu)"
    )
    p.add_argument("--strategy", default="uniform", help="training strategy (uniform, fair, sandwich, ...)")
    p.add_argument(
        "--strategy-options",
        dest="strategy_options",
        help='the strategy\'s options as JSON, e.g. \'{"inner": "pada"}\' for fewshot',
    )
    p.add_argument("--epochs", type=float, help="training epochs over the supernet's training images")
    p.add_argument("--steps", type=int, help="optimizer steps (overrides --epochs)")
    p.add_argument("--archs", type=int, help="archs sampled uniformly from the table (+ its best and worst)")
    p.add_argument("--seed", type=int, default=0, help="seeds training and the arch sample (default 0)")
    p.add_argument("--batch-size", type=int, help="training batch size")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--data-dir", help="folder with images/cifar10-train.tar.gz and benchmarks/nb201/")
    p.add_argument("--table", help="NB201 table directory or JSON/CSV file (default: under --data-dir)")
    p.add_argument("--cache-dir", help="decoded image cache (default $SUPERNET_CACHE or ~/.cache/supernet)")
    p.add_argument("--out", help="output directory (default runs/bench/nb201-<strategy>-<preset>-s<seed>)")
    p.add_argument("--device", help="cuda, cpu or auto (default auto)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (1 is faster on a busy machine)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print the metrics table."""
    from rich.console import Console
    from rich.table import Table as RichTable

    from ..bench.nb201 import estimate_str, preset_config, run_nb201_bench
    from ..bench.tables import TableError

    console = Console()
    try:
        if args.threads is not None:
            import torch

            if args.threads < 1:
                raise ValueError(f"--threads must be >= 1, got {args.threads}")
            torch.set_num_threads(args.threads)
        options = None
        if args.strategy_options is not None:
            options = json_object(args.strategy_options, "--strategy-options", '{"inner": "pada"}')
        cfg = preset_config(
            args.preset,
            strategy=args.strategy,
            strategy_options=options,
            epochs=args.epochs,
            steps=args.steps,
            archs=args.archs,
            seed=args.seed,
            batch_size=args.batch_size,
            lr=args.lr,
            device=args.device,
        )
        if args.epochs is not None and args.steps is None and cfg.steps is not None:
            from dataclasses import replace

            cfg = replace(cfg, steps=None)  # --epochs given: it decides, not the preset's fixed step count
        out = args.out or f"runs/bench/nb201-{cfg.strategy}-{cfg.preset}-s{cfg.seed}"
        report = run_nb201_bench(
            cfg,
            out,
            table=args.table,
            data_dir=args.data_dir,
            cache_dir=args.cache_dir,
            progress=not args.no_progress,
            log=lambda m: console.print(f"[dim]{m}[/dim]"),
        )
    except (FileNotFoundError, ValueError, TableError, KeyError) as err:
        print(f"supernet bench: error: {err}", file=sys.stderr)
        return 2
    table = RichTable(title=f"NB201 ranking: {cfg.strategy}, preset {cfg.preset}, seed {cfg.seed}")
    table.add_column("metric")
    table.add_column("value [95% CI]", justify="right")
    for name, est in report["metrics"].items():
        table.add_row(name, estimate_str(est))
    for name in ("flops_tau", "params_tau", "flops_tau_all"):
        if name in report["floors"]:
            table.add_row(f"floor: {name}", estimate_str(report["floors"][name]))
    table.add_row("floor: README FLOPs tau (all archs)", f"{report['floors']['readme_flops_tau_all']:.3f}")
    t = report["timing"]
    table.add_row("wall time (train / eval / total s)", f"{t['train_s']:.0f} / {t['eval_s']:.0f} / {t['total_s']:.0f}")
    console.print(table)
    console.print(f"verdict: {report['verdict']}")
    console.print(f"report: {out}/report.json, {out}/summary.md, {out}/scatter.png")
    return 0
