"""The demo's pipeline with preset overrides: how the supernet strategy, steps and learning rate change what it finds.

Runs `supernet.demo.run_demo` (train, search, export, optional fine-tuning, sample) with `DemoPreset` fields
replaced by the JSON given, one torch thread, and prints the members table (smallest, found, largest: val loss
with inherited weights), the fine-tuning result and the timings as JSON. The figures behind the demo's default:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/demo_presets.py runs/demo-sandwich \\
        '{"strategy": "sandwich", "steps": 1200, "warmup_steps": 60, "lr": 0.003, "finetune_steps": 0}'
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/demo_presets.py runs/demo-uniform \\
        '{"strategy": "uniform", "steps": 2400, "warmup_steps": 60, "lr": 0.005, "finetune_steps": 0}'
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/demo_presets.py runs/demo-no-distill \\
        '{"strategy": "sandwich", "steps": 800, "warmup_steps": 40, "lr": 0.006, "finetune_steps": 0,
          "strategy_options": {"distill_weight": 0.0}}'

(The members' val losses do not depend on the fine-tuning stage, which comes after them.)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch
from rich.console import Console

from supernet.demo import DemoPreset, run_demo


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="run directory (rerunning resumes)")
    p.add_argument("overrides", type=json.loads, nargs="?", default={}, help="DemoPreset fields as a JSON object")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    fields = {f.name for f in dataclasses.fields(DemoPreset)}
    unknown = sorted(set(args.overrides) - fields)
    if unknown:
        p.error(f"unknown DemoPreset fields {unknown}; known: {sorted(fields)}")
    torch.set_num_threads(1)
    preset = dataclasses.replace(DemoPreset(), **args.overrides)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out.with_suffix(".log"), "w") as log:
        summary = run_demo(args.out, device=args.device, preset=preset, console=Console(file=log, width=120))
    result = {k: summary[k] for k in ("timings", "members", "finetune")}
    result["overrides"] = args.overrides
    print(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
