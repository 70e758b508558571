"""``supernet latency RUN_DIR``: a latency lookup table of a trained run's space on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._util import device_arg, formatter, friendly

EXAMPLE = """example:
  supernet latency runs/gpt --out runs/gpt/latency.json --samples 48
  supernet search runs/gpt --objectives loss,latency --latency-table runs/gpt/latency.json
The table predicts an arch's latency as a sum over its decisions, fitted to timed subnets; its holdout check
(R^2, relative errors on archs it was not fitted to) is printed and saved with it.
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``latency`` subcommand."""
    p = sub.add_parser(
        "latency",
        help="measure a latency lookup table of a run's space (for latency objectives without running subnets)",
        description="Time subnets of the run's space end to end on a device and fit an additive latency table.",
        epilog=EXAMPLE,
        formatter_class=formatter(),
    )
    p.add_argument("run_dir", type=Path, help="training run directory")
    p.add_argument("--out", type=Path, help="where to write the table (default RUN_DIR/latency.json)")
    p.add_argument("--samples", type=int, default=48, help="random archs timed to fit the table (default 48)")
    p.add_argument("--holdout", type=int, default=16, help="further archs timed to check it (default 16)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=1, help="input batch size (default 1)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall time (default), or process CPU time: robust on a busy machine, CPU with one thread")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    device_arg(p, default="cpu")
    p.set_defaults(func=friendly(run))


def run(args: argparse.Namespace) -> int:
    """Measure, save and summarise the table."""
    import torch

    from ..cost import latency_table
    from ..training import load_run
    from ..training.rundata import task_of_run

    if args.samples < 1 or args.holdout < 0 or args.batch_size < 1:
        raise ValueError(f"need --samples >= 1, --holdout >= 0, --batch-size >= 1; got {args.samples}, "
                         f"{args.holdout}, {args.batch_size}")
    if args.clock == "cpu":
        torch.set_num_threads(1)  # CPU time is latency only for single-threaded inference
    space = load_run(args.run_dir).space.eval()
    example = task_of_run(args.run_dir).example_input(args.batch_size)
    table = latency_table(space, example, device=args.device, samples=args.samples, holdout=args.holdout,
                          progress=not args.no_progress, clock=args.clock)
    out = table.save(args.out or args.run_dir / "latency.json")
    low, high = table.extremes()
    print(f"latency table of {len(table.tables)} decisions on {table.meta['name']} ({table.meta['device']}): "
          f"{low * 1e3:.3f}-{high * 1e3:.3f} ms, fit R^2 {table.r2:.3f}")
    check = table.meta.get("holdout")
    if check:
        print(f"holdout: {check['archs']} archs, R^2 {check['r2']:.3f}, mean relative error "
              f"{100 * check['mean_rel_error']:.1f} %, max {100 * check['max_rel_error']:.1f} %")
    print(f"written: {out}")
    return 0
