"""Latency lookup tables against measured latency: does the additive table rank archs like the clock does?

For each space (the ready ``mobilenet`` and ``gpt`` spaces with their default sizes), the script

1. builds a latency table as `supernet.cost.latency_table` does (``--samples`` random archs plus the largest, the
   smallest and one per forced option, timed end to end and fitted as `CostTable.fit` does by default: monotone
   non-negative least squares; the build time is reported), and beside it a non-negative fit without the
   monotone steps (``nnls``) and a plain least-squares fit of the very same timings (their rhos, and the plain
   fit's count of negative entries: what each constraint costs or gains, free of timing differences);
2. draws ``--archs`` *fresh* random archs (another seed, none of them used by the fit), measures each extracted
   subnet end to end with `supernet.cost.latency` (``--warmup`` runs, then the median of ``--repeats``), and
3. compares the table's predictions with the measurements (the mean of two timing passes): Spearman rho [95 %
   bootstrap CI], Kendall tau, the median and 90th-percentile relative error, and as free baselines the rho of
   FLOPs and of params with the measured latency on the same archs. The rho between the two passes ("retest
   rho") is the noise ceiling: no predictor can agree with the clock better than the clock agrees with itself.

Pin one thread (``--threads``, default 1) and run on a quiet machine: measured latency is the ground truth here,
and a busy machine adds noise to it. On a shared machine, ``--clock cpu`` reads process CPU time instead of wall
time for both the table and the measurements: for single-threaded CPU inference it is the latency minus the
time spent waiting for a core, so other processes' load does not enter the figures.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/latency_table.py                  # mobilenet + gpt, 100 archs
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/latency_table.py --clock cpu      # the same on a busy machine
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/latency_table.py --spaces gpt --archs 20 --repeats 5
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from scipy import stats

import supernet as sn
from supernet import cost, files

SPACES = ("mobilenet", "gpt")
TARGET_RHO = 0.9


def build(name: str, batch: int) -> tuple[sn.SuperModule, torch.Tensor]:
    """The ready space ``name`` at its default sizes and an input batch for it."""
    torch.manual_seed(0)
    space = sn.spaces.build_space(name)
    if name == "gpt":
        return space, torch.randint(0, 65, (batch, 64))
    return space, torch.randn(batch, 3, 32, 32)


def bootstrap_rho(x: list[float], y: list[float], rounds: int = 1000, seed: int = 0) -> tuple[float, float]:
    """A 95 % percentile bootstrap interval of Spearman's rho of paired samples."""
    rng = random.Random(seed)
    n, values = len(x), []
    for _ in range(rounds):
        idx = [rng.randrange(n) for _ in range(n)]
        with warnings.catch_warnings():  # a resample of tied values: rho is NaN, skipped below
            warnings.simplefilter("ignore", stats.ConstantInputWarning)
            r = stats.spearmanr([x[i] for i in idx], [y[i] for i in idx]).statistic
        if r == r:  # a resample with one distinct value has no rho
            values.append(float(r))
    values.sort()
    return values[int(0.025 * len(values))], values[int(0.975 * len(values)) - 1]


def validate(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Build the table for space ``name``, time fresh archs, and compare."""
    space, x = build(name, args.batch)
    start = time.perf_counter()
    timed_fit: list[tuple[dict[str, Any], float]] = []

    def measure() -> float:
        value = cost.latency(space, x, device=args.device, warmup=args.warmup, repeats=args.repeats, clock=args.clock)
        timed_fit.append((dict(space.arch), value))
        return value

    # the fit latency_table makes (monotone, the default), recording its timings ...
    table = cost.CostTable.fit(space, measure, args.samples, args.seed, unit="s")
    build_s = time.perf_counter() - start
    # ... and plain least squares on the very same timings, for the side-by-side row
    def refit(method: str) -> cost.CostTable:
        replay = iter(v for _, v in timed_fit)
        return cost.CostTable.fit(space, lambda: next(replay), 0, args.seed, unit="s",
                                  archs=[a for a, _ in timed_fit], method=method)

    free, nnls = refit("lstsq"), refit("nnls")
    rng = random.Random(args.seed + 1000)  # not the fit's archs
    archs = [space.sample(rng=rng) for _ in range(args.archs)]
    passes: list[list[float]] = [[], []]
    predicted, predicted_free, predicted_nnls, flops, params = [], [], [], [], []
    previous = space.arch
    try:
        # Two timing passes over the archs: their agreement is the noise ceiling of any prediction.
        for k, timed in enumerate(passes):
            for i, arch in enumerate(archs):
                space.set_arch(arch)
                timed.append(cost.latency(space, x, device=args.device, warmup=args.warmup, repeats=args.repeats,
                                          clock=args.clock))
                if k == 0:
                    predicted.append(table.arch_cost(arch))
                    predicted_free.append(free.arch_cost(arch))
                    predicted_nnls.append(nnls.arch_cost(arch))
                    sub = space.extract(arch)
                    flops.append(cost.flops(sub, x))
                    params.append(cost.params(sub))
                if not args.no_progress:
                    print(f"\r{name}: pass {k + 1}, {i + 1}/{len(archs)} archs timed", end="", file=sys.stderr,
                          flush=True)
    finally:
        space.set_arch(previous)
    if not args.no_progress:
        print(file=sys.stderr)
    measured = [(a + b) / 2 for a, b in zip(*passes, strict=True)]
    rel = sorted(abs(p - m) / m for p, m in zip(predicted, measured, strict=True))
    rho = float(stats.spearmanr(predicted, measured).statistic)
    return {
        "space": name,
        "archs": len(archs),
        "table_samples": args.samples,
        "table_build_s": build_s,
        "rho": rho,
        "rho_ci": bootstrap_rho(predicted, measured),
        "tau": float(stats.kendalltau(predicted, measured).statistic),
        "lstsq_rho": float(stats.spearmanr(predicted_free, measured).statistic),
        "lstsq_rho_ci": bootstrap_rho(predicted_free, measured),
        "fit": table.meta["fit"],
        "nnls_rho": float(stats.spearmanr(predicted_nnls, measured).statistic),
        "nnls_rho_ci": bootstrap_rho(predicted_nnls, measured),
        "negative_entries": {"lstsq": _negatives(free)},
        "median_rel_error": statistics.median(rel),
        "p90_rel_error": rel[int(0.9 * (len(rel) - 1))],
        "flops_rho": float(stats.spearmanr(flops, measured).statistic),
        "params_rho": float(stats.spearmanr(params, measured).statistic),
        "retest_rho": float(stats.spearmanr(*passes).statistic),
        "latency_ms": [1e3 * min(measured), 1e3 * max(measured)],
        "meets_target": rho >= TARGET_RHO,
    }


def _negatives(table: cost.CostTable) -> int:
    """How many entries of ``table`` (single and pair terms) are below zero."""
    return sum(v < 0 for t in [*table.tables.values(), *table.pairs.values()] for v in t)


def table_markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The results as a Markdown table with the settings above it."""
    lines = [
        f"Latency table ({rows[0]['fit'] if rows else ''} fit) vs measured latency ({args.clock} clock), device "
        f"{args.device}, {torch.get_num_threads()} thread(s), batch "
        f"{args.batch}, median of {args.repeats} after {args.warmup} warm-up runs; table fitted on {args.samples} "
        f"archs + extremes + one per forced option; {args.archs} fresh archs (target rho >= {TARGET_RHO}).",
        "",
        "| space | archs | rho [95 % CI] | tau | median rel. err | p90 rel. err | FLOPs rho | params rho | "
        "retest rho | nnls fit rho [95 % CI], same timings | plain lstsq fit rho [95 % CI], same timings | "
        "negative lstsq entries | "
        "latency range (ms) | table build (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = r["rho_ci"]
        lines.append(
            f"| {r['space']} | {r['archs']} | {r['rho']:.3f} [{lo:.3f}, {hi:.3f}] | {r['tau']:.3f} | "
            f"{100 * r['median_rel_error']:.1f} % | {100 * r['p90_rel_error']:.1f} % | {r['flops_rho']:.3f} | "
            f"{r['params_rho']:.3f} | {r['retest_rho']:.3f} | {r['nnls_rho']:.3f} [{r['nnls_rho_ci'][0]:.3f}, "
            f"{r['nnls_rho_ci'][1]:.3f}] | {r['lstsq_rho']:.3f} [{r['lstsq_rho_ci'][0]:.3f}, "
            f"{r['lstsq_rho_ci'][1]:.3f}] | {r['negative_entries']['lstsq']} | "
            f"{r['latency_ms'][0]:.2f}-{r['latency_ms'][1]:.2f} | "
            f"{r['table_build_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spaces", default=",".join(SPACES), help="comma-separated ready spaces (default mobilenet,gpt)")
    p.add_argument("--archs", type=int, default=100, help="fresh archs to time and predict (default 100)")
    p.add_argument("--samples", type=int, default=48, help="random archs the table is fitted on (default 48)")
    p.add_argument("--batch", type=int, default=1, help="batch size of the timed input (default 1)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="what both the table and the measurement read: wall time, or process CPU time (one thread)")
    p.add_argument("--out", type=Path, default=None, help="write results.json and table.md here")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.spaces.split(",") if n.strip()]
    unknown = [n for n in names if n not in sn.spaces.SPACES]
    if unknown or not names:
        p.error(f"unknown space(s) {unknown}; ready spaces: {sorted(sn.spaces.SPACES)}")
    if args.archs < 3 or args.samples < 1 or args.repeats < 1:
        p.error("need --archs >= 3, --samples >= 1 and --repeats >= 1")
    torch.set_num_threads(args.threads)
    rows = [validate(n, args) for n in names]
    md = table_markdown(rows, args)
    print(md)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        files.write_json(args.out / "results.json", rows)
        files.write_text(args.out / "table.md", md)
    return rows


if __name__ == "__main__":
    main()
