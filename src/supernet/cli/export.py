"""``supernet export RUN_DIR``: write a found subnet as safetensors + arch JSON + model card (+ ONNX)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from ._util import formatter, friendly

# supernet.export.FORMATS, spelled out so that building the parser imports no torch
FORMATS = ("safetensors", "onnx")

EXAMPLE = """example:
  supernet export runs/gpt --arch best --out models/gpt                       # best val loss on the front
  supernet export runs/gpt --arch best --constraint "params <= 300k" --out m  # best under a budget
  supernet export runs/gpt --arch 3 --out m                                   # front entry #3
  supernet export runs/gpt --arch '{"embed_dim": 64, "depth": 2, ...}' --out m
  supernet export runs/gpt --format onnx --out m                              # + model.onnx (supernet[onnx])
Load it with: import supernet as sn; model = sn.load("models/gpt")
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand."""
    p = sub.add_parser(
        "export",
        help="export a subnet of a trained supernet as a plain model directory",
        description="Extract a subnet with its inherited weights: model.safetensors, arch.json, model card.",
        epilog=EXAMPLE,
        formatter_class=formatter(),
    )
    p.add_argument("run_dir", type=Path, help="training run directory (searched with `supernet search`)")
    p.add_argument("--arch", help="best | an index into the Pareto front | the arch as JSON (default: best)")
    p.add_argument(
        "--out", type=Path, help="model directory to write (default: export.out of the config, else RUN_DIR/model)"
    )
    p.add_argument("--constraint", action="append", help="for --arch best: a budget such as 'params <= 300k'")
    p.add_argument("--metric", help="for --arch best: the metric to optimise (default: first search objective)")
    p.add_argument("--latency-device", help="where to measure latency for the model card (default: cpu)")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="safetensors",
        help="safetensors: the model directory; onnx: also model.onnx (batch dimension dynamic), checked with "
        "onnxruntime when installed (default: %(default)s)",
    )
    p.set_defaults(func=friendly(run))


def run(args: argparse.Namespace) -> int:
    """Export and print what was written."""
    from ..config import ExportConfig, load_section, read_pipeline
    from ..export import MissingExtraError, export, load_metadata, onnx_summary
    from ..training.checkpoint import PIPELINE_JSON

    base = {}
    if (args.run_dir / PIPELINE_JSON).is_file():  # the export section of the run's config gives the defaults
        base = read_pipeline(args.run_dir).export.model_dump()
    flags = {
        "arch": args.arch,
        "constraints": args.constraint,
        "metric": args.metric,
        "latency_device": args.latency_device,
    }
    base.update({k: v for k, v in flags.items() if v is not None})
    cfg = load_section(ExportConfig, base, "export config")
    try:
        out = export(
            args.run_dir,
            args.out or (Path(cfg.out) if cfg.out else args.run_dir / "model"),
            arch=cfg.arch,
            constraints=cfg.constraints or None,
            metric=cfg.metric,
            latency_device=cfg.latency_device,
            format=args.format,
        )
    except MissingExtraError as err:  # an expected user error: one line, as for bad values
        raise ValueError(str(err)) from None
    meta = load_metadata(out)
    shown = ", ".join(f"{k}={v:.4g}" for k, v in meta["metrics"].items() if isinstance(v, (int, float)))
    measured = (meta.get("evaluation") or {}).get("measured_on_export")
    how = "measured on the exported model" if measured else "from the search"
    console = Console()
    console.print(f"exported {meta['params']:,}-parameter model to [bold]{out}[/bold] ({how}: {shown})")
    if meta.get("onnx"):
        console.print(f"ONNX: {onnx_summary(meta['onnx'])}", highlight=False)
    return 0
