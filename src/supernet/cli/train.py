"""``supernet train CONFIG``: train a supernet from a YAML pipeline config."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from ..config import PipelineConfig
from ..data.config import build_data
from ..seeding import seed_everything
from ..spaces import build_space
from ..training.checkpoint import latest_checkpoint
from ..training.strategies import STRATEGIES
from ._util import device_arg, formatter, friendly, method_list

EXAMPLE = """example:
  supernet train configs/gpt.yaml --run-dir runs/gpt
  supernet train configs/gpt.yaml --resume          # continue exactly from the latest checkpoint

config (YAML; every section optional, unknown keys are errors):
  plugins: [mymethods]                 # optional: your modules that register spaces, strategies, ... (first)
  run_dir: runs/gpt
  space: {name: gpt, kwargs: {block_size: 64}}
  data: {name: shakespeare}            # or {name: text, path: file.txt}, {name: digits}, {name: images, path: x.tgz}
  train: {steps: 2000, batch_size: 32, strategy: sandwich, lr: 0.002, warmup_steps: 100, checkpoint_every: 200}
  search: {algorithm: nsga2, objectives: [loss, params], constraints: ["params <= 500k"], trials: 60}
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    p = sub.add_parser(
        "train",
        help="train a supernet from a YAML config",
        description=(
            "Train a supernet with a training strategy (train.strategy) and checkpoint it.\n\n"
            f"training strategies:\n{method_list(STRATEGIES.describe())}"
        ),
        epilog=EXAMPLE,
        formatter_class=formatter(),
    )
    p.add_argument("config", type=Path, help="YAML pipeline config")
    p.add_argument("--run-dir", type=Path, help="output directory (default: run_dir from the config)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the run dir")
    p.add_argument("--steps", type=int, help="override train.steps")
    p.add_argument("--strategy", metavar="NAME", help="override train.strategy (a training strategy listed above)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (override train.progress)")
    device_arg(p, default=None)  # type: ignore[arg-type]
    p.set_defaults(func=friendly(run))


def run(args: argparse.Namespace) -> int:
    """Validate the config, record it in the run dir, and train."""
    from ..training import train

    cfg = PipelineConfig.from_yaml(args.config)
    data = cfg.to_json()
    if args.run_dir is not None:
        data["run_dir"] = str(args.run_dir)
    if args.device is not None:
        data["device"] = args.device
    if args.steps is not None:
        data["train"]["steps"] = args.steps
    if args.strategy is not None:
        data["train"]["strategy"] = args.strategy
    if args.no_progress:
        data["train"]["progress"] = False
    cfg = PipelineConfig.from_dict(data, where=f"config {args.config}")
    run_dir = Path(cfg.run_dir)
    if not args.resume and latest_checkpoint(run_dir) is not None:  # refuse before building or writing anything
        raise FileExistsError(
            f"{run_dir} already holds a trained run: continue it with --resume, or pass another --run-dir; "
            "nothing was written"
        )
    seed_everything(cfg.train.seed)  # before the space is built: its initial weights are random too
    space = build_space(cfg.space.name, **cfg.space.kwargs)
    dataset = build_data(cfg.data)
    result = train(
        space, dataset, config=cfg.train, run_dir=run_dir, device=cfg.device, resume=args.resume,
        pipeline=cfg.to_json(),
    )
    Console().print(f"trained {result.step} steps; run directory: [bold]{run_dir}[/bold]")
    Console().print(f"next: supernet search {run_dir}")
    return 0
