"""VKDNW's Jacobian modes side by side: seconds and the score of each mode on the same NB201 archs.

Each arch of the ``nb201`` space (C=16, N=5, 32x32, the VKDNW table's network) is scored with
`supernet.proxies.patterns.vkdnw_fisher` at batch 64 (Gaussian inputs, seeded) under ``torch.no_grad()`` (as
``benchmarks/proxies_nb201.py`` scores it), once per Jacobian mode: ``reverse`` (vmapped per sample, what
``auto`` picks for 10 classes) and ``forward`` (one forward-mode pass per scored weight). Printed: seconds per
mode, their ratio, and the VKDNW entropy of each (they must agree).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vkdnw_jacobian.py --archs 3
"""

from __future__ import annotations

import argparse
import time

import torch

import supernet as sn
from supernet.proxies.patterns import decile_entropy, vkdnw_fisher

MODES = ("reverse", "forward")


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", type=int, default=3, help="random NB201 archs (default 3)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--C", type=int, default=16)
    p.add_argument("--N", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    space = sn.spaces.nb201(C=args.C, N=args.N, num_classes=10)
    g = torch.Generator().manual_seed(args.seed)
    x, y = torch.randn(args.batch, 3, 32, 32, generator=g), torch.randint(0, 10, (args.batch,), generator=g)
    rows = []
    print("| arch | reverse s | forward s | forward / reverse | entropy (reverse) | entropy (forward) |")
    print("|---|---|---|---|---|---|")
    for i in range(args.archs):
        net = space.extract(space.sample(seed=args.seed + i))
        row: dict[str, float] = {}
        for mode in MODES:
            t0 = time.perf_counter()
            with torch.no_grad():
                fisher = vkdnw_fisher(net, (x, y), jacobian=mode)
            row[f"{mode}_s"] = time.perf_counter() - t0
            row[f"{mode}_entropy"] = decile_entropy(torch.linalg.eigvalsh(fisher))
        rows.append(row)
        print(f"| {i} | {row['reverse_s']:.1f} | {row['forward_s']:.1f} | {row['forward_s'] / row['reverse_s']:.2f} | "
              f"{row['reverse_entropy']:.6f} | {row['forward_entropy']:.6f} |", flush=True)
    return rows


if __name__ == "__main__":
    main()
