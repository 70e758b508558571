"""Why a supernet ranks as it does: read the finished cells of a ranking matrix and split each cell's Kendall tau.

For every cell of ``benchmarks/ranking_matrix.py`` (its ``report.json``: supernet accuracy, table accuracy,
FLOPs of each uniformly sampled NB201 arch), prints

* tau(supernet, table) -- the matrix's figure -- and tau(FLOPs, table), the free floor;
* tau(supernet, FLOPs) and tau(supernet, #conv): does the supernet see that archs with more convolutions are
  better (NB201's table: tau(#conv, table) about 0.55)?
* the mean tau *within* groups of archs with the same number of convolution edges (10+ archs per group): does it
  rank archs of equal size?
* the label-free hybrid of the supernet and FLOPs: the log-rank sum (`supernet.proxies.aznas.az_aggregate`, the
  aggregation `sn.estimate.Estimator` uses), with a bootstrap CI, beside the FLOPs floor.

    .venv/bin/python benchmarks/ranking_analysis.py runs/ranking_matrix-cpu
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

from supernet.bench.metrics import bootstrap_ci, kendall_tau
from supernet.proxies.aznas import az_aggregate

MIN_GROUP = 10


def analyse(report: dict[str, Any], resamples: int = 1000) -> dict[str, Any]:
    """The figures above for one cell's report (uniformly sampled archs only)."""
    archs = [a for a in report["archs"] if a.get("sampled", a.get("role") == "sampled")]
    pred = np.array([a["predicted_accuracy"] for a in archs])
    true = np.array([a["true"] for a in archs])
    flops = np.array([a["flops"] for a in archs])
    convs = np.array([a["key"].count("conv") for a in archs])
    groups: dict[int, list[int]] = collections.defaultdict(list)
    for i, k in enumerate(convs):
        groups[int(k)].append(i)
    within = [kendall_tau(pred[idx], true[idx]) for idx in groups.values() if len(idx) >= MIN_GROUP]
    hybrid = np.array(az_aggregate({"supernet": pred, "flops": flops}))
    ci = bootstrap_ci(kendall_tau, hybrid, true, n_resamples=resamples, seed=0)
    return {
        "archs": len(archs),
        "tau": kendall_tau(pred, true),
        "flops_tau": kendall_tau(flops, true),
        "tau_supernet_flops": kendall_tau(pred, flops),
        "tau_supernet_convs": kendall_tau(pred, convs),
        "tau_true_convs": kendall_tau(true, convs),
        "within_groups": statistics.fmean(within) if within else None,
        "hybrid": ci.value,
        "hybrid_low": ci.low,
        "hybrid_high": ci.high,
    }


def main(argv: list[str] | None = None) -> int:
    """Print the table for every finished cell of a matrix directory."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("matrix_dir", type=Path, help="a ranking_matrix output directory")
    ap.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples for the hybrid's CI")
    args = ap.parse_args(argv)
    reports = sorted(args.matrix_dir.glob("*/report.json"))
    if not reports:
        print(f"ranking_analysis: error: no finished cell (*/report.json) in {args.matrix_dir}", file=sys.stderr)
        return 2
    header = ("cell", "archs", "tau", "FLOPs tau", "tau(sn, FLOPs)", "tau(sn, #conv)", "tau(table, #conv)",
              "within #conv groups", "sn+FLOPs log-rank [95% CI]")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for path in reports:
        r = analyse(json.loads(path.read_text()), args.resamples)
        within = "n/a" if r["within_groups"] is None else f"{r['within_groups']:.3f}"
        print(f"| {path.parent.name} | {r['archs']} | {r['tau']:.3f} | {r['flops_tau']:.3f} | "
              f"{r['tau_supernet_flops']:.3f} | {r['tau_supernet_convs']:.3f} | {r['tau_true_convs']:.3f} | "
              f"{within} | {r['hybrid']:.3f} [{r['hybrid_low']:.3f}, {r['hybrid_high']:.3f}] |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
