"""Forward+backward time of a supernet under an arch vs the extracted standalone net for the same arch.

For each space, 10 sampled archs; for each arch the two variants run interleaved (A, B, A, B, ...) on the
same batch so machine noise hits both alike. Prints per-space median ratios (supernet / extracted).
Target: median ratio <= 1.15.

    python benchmarks/slicing_overhead.py [--archs 10] [--repeats 15] [--device auto]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

import supernet as sn


def step_time(model: torch.nn.Module, x: torch.Tensor, sync) -> float:
    model.zero_grad(set_to_none=True)
    sync()
    start = time.perf_counter()
    out = model(x)
    out.float().pow(2).mean().backward()
    sync()
    return time.perf_counter() - start


def measure(space: sn.SuperModule, x: torch.Tensor, archs: int, repeats: int, device: torch.device) -> list[float]:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    space.to(device).train()
    ratios = []
    for seed in range(archs):
        arch = space.sample(seed=seed)
        space.set_arch(arch)
        net = space.extract(arch).to(device).train()
        for _ in range(3):  # warm-up both
            step_time(space, x, sync)
            step_time(net, x, sync)
        sup, ext = [], []
        for _ in range(repeats):
            sup.append(step_time(space, x, sync))
            ext.append(step_time(net, x, sync))
        ratios.append(statistics.median(sup) / statistics.median(ext))
        print(
            f"  arch {seed}: supernet {statistics.median(sup) * 1e3:.1f} ms, "
            f"extracted {statistics.median(ext) * 1e3:.1f} ms, ratio {ratios[-1]:.3f}",
            flush=True,
        )
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    torch.manual_seed(0)
    cases = {
        "gpt": (sn.spaces.gpt(vocab_size=65, block_size=64), torch.randint(0, 65, (args.batch, 64))),
        "mobilenet": (sn.spaces.mobilenet(), torch.randn(args.batch, 3, 32, 32)),
    }
    table = Table(title=f"supernet vs extracted: forward+backward time ratio ({device}, batch {args.batch})")
    for col in ("space", "archs", "median ratio", "min", "max"):
        table.add_column(col)
    for name, (space, x) in cases.items():
        print(name, flush=True)
        ratios = measure(space, x.to(device), args.archs, args.repeats, device)
        table.add_row(
            name, str(len(ratios)), f"{statistics.median(ratios):.3f}", f"{min(ratios):.3f}", f"{max(ratios):.3f}"
        )
    Console().print(table)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
