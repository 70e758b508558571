"""``supernet convert MODULE:FUNCTION --out DIR``: make your own PyTorch model a search space over its weights."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from ._util import formatter, friendly, json_object

EXAMPLE = """example:
  supernet convert mymodels:resnet --out runs/resnet --widths 0.5,0.75,1.0 --sort l1 --data '{"name": "digits"}'
  supernet train runs/resnet/config.yaml --steps 500      # fine-tune the supernet from the pretrained weights
  supernet search runs/resnet/run --constraint 'params <= 50%'
  supernet export runs/resnet/run

MODULE:FUNCTION is a function that returns (model, example_input), annotated as such so that a run file cannot
name an arbitrary function:

  def resnet() -> tuple[nn.Module, torch.Tensor]:
      model = MyResNet(); model.load_state_dict(load_file("resnet.safetensors"))
      return model, torch.randn(1, 3, 32, 32)

It is called again whenever the space is rebuilt (supernet train/search/export, sn.load), so it should load the
same pretrained weights each time. OUT gets space.json (the space spec), report.txt (the conversion table) and
config.yaml (a pipeline config for `supernet train`, whose run directory is OUT/run).
"""


def _widths(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated fractions such as 0.5,0.75,1.0, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one width fraction")
    return values


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``convert`` subcommand."""
    p = sub.add_parser(
        "convert",
        help="make your own PyTorch model a search space (widths, depth) over its own weights",
        description=(
            "Trace a model given as MODULE:FUNCTION, give every width group (a layer's channels and everything that "
            "must keep their size) a width choice and runs of residual blocks a depth choice, keeping the model's "
            "weights (the largest arch is the model). Prints what was made searchable and what was left fixed, "
            "and writes a config for `supernet train` (fine-tuning the supernet), then search and export."
        ),
        epilog=EXAMPLE,
        formatter_class=formatter(),
    )
    p.add_argument("model", help="MODULE:FUNCTION returning (model, example_input)")
    p.add_argument("--out", type=Path, required=True, help="output directory (space.json, report.txt, config.yaml)")
    p.add_argument("--widths", type=_widths, default=[0.5, 0.75, 1.0],
                   help="width fractions offered to every group (default 0.5,0.75,1.0)")
    p.add_argument("--no-depth", action="store_true", help="no depth choices")
    p.add_argument("--sort", choices=["l1", "activation"],
                   help="sort channels by importance: weight L1 norm, or mean activation on the example input")
    p.add_argument("--divisor", type=int, default=1, help="round widths to a multiple of this (default 1)")
    p.add_argument("--pin", action="append", default=[], metavar="NAME",
                   help="a width decision or layer path to keep at full width (repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="PATH",
                   help="a module to leave untouched (repeatable)")
    p.add_argument("--group-widths", help='widths per group as JSON, e.g. \'{"layer2.0.conv1": [16, 0.5]}\'')
    p.add_argument("--model-kwargs", help="keyword arguments of the model function as JSON")
    p.add_argument("--data", help='the config\'s data section as JSON, e.g. \'{"name": "digits"}\' '
                   "(default: leave it to edit)")
    p.set_defaults(func=friendly(run))


def run(args: argparse.Namespace) -> int:
    """Convert, print the report, write space.json, report.txt and config.yaml."""
    import yaml

    from .. import cost
    from ..config import PipelineConfig
    from ..converting import SPEC_NAME, converted
    from ..files import write_json, write_text

    group_widths = json_object(args.group_widths, "--group-widths", '{"layer1.0.conv1": [0.5, 1.0]}') \
        if args.group_widths else None
    model_kwargs = json_object(args.model_kwargs, "--model-kwargs", '{"depth": 18}') if args.model_kwargs else None
    data = json_object(args.data, "--data", '{"name": "digits"}') if args.data else None
    kwargs: dict[str, Any] = {
        "model": args.model,
        "widths": args.widths,
        "depth": not args.no_depth,
        "group_widths": group_widths,
        "pin": args.pin,
        "exclude": args.exclude,
        "divisor": args.divisor,
        "sort": args.sort,
        "model_kwargs": model_kwargs,
    }
    space = converted(**kwargs)
    assert space.spec is not None
    spec = space.spec
    out = Path(args.out)
    config: dict[str, Any] = {
        "run_dir": str(out / "run"),
        "space": {"name": SPEC_NAME, "kwargs": {k: v for k, v in spec["kwargs"].items() if v is not None}},
        "train": {"strategy": "sandwich"},
        "search": {"objectives": ["loss", "params"], "constraints": ["params <= 50%"]},
    }
    if data is not None:
        config["data"] = data
    PipelineConfig.from_dict(config, where="the written config")  # a bad --data fails here, before writing

    console = Console()
    report = space.report.table()
    console.print(report, markup=False, highlight=False)
    largest = cost.params(space.extract(space.max_arch()))
    smallest = cost.params(space.extract(space.min_arch()))
    summary = (f"{len(space.choices)} decisions, {space.num_archs():.3g} archs; params {smallest:,} (smallest) to "
               f"{largest:,} (largest = the model)")
    console.print(summary, markup=False, highlight=False)

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "space.json", spec)
    write_text(out / "report.txt", report + "\n" + summary + "\n")
    header = "# written by `supernet convert`; the run trains (fine-tunes) the converted model's own weights\n"
    if data is None:
        header += "# add the data section: data: {name: digits} / {name: images, path: ...} / {name: text, path: ...}\n"
    write_text(out / "config.yaml", header + yaml.safe_dump(config, sort_keys=False))
    console.print(f"wrote {out / 'space.json'}, {out / 'report.txt'}, {out / 'config.yaml'}", markup=False,
                  highlight=False)
    console.print(f"next: supernet train {out / 'config.yaml'}  (then: supernet search {out / 'run'}; "
                  f"supernet export {out / 'run'})", markup=False, highlight=False)
    return 0
