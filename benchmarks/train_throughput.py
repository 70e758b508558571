"""Training throughput: the supernet (uniform sampling, and pinned to its max arch) vs the extracted max arch alone.

Same batch size, same optimizer (AdamW), same data; the three modes are timed in interleaved rounds so machine
load affects them alike. Prints a table of samples/s (median over rounds) and the ratios to the plain max arch.

    python benchmarks/train_throughput.py                       # GPT space defaults, CPU
    python benchmarks/train_throughput.py --device cuda --batch-size 64 --block-size 128
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import supernet as sn
from supernet.training import TrainConfig, TrainContext, decision_kinds
from supernet.training.loop import make_optimizer
from supernet.training.strategies import make_strategy


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10, help="steps per mode per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per mode first")
    args = ap.parse_args()

    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    torch.manual_seed(0)
    text = sn.data.shakespeare()
    space = sn.spaces.gpt(vocab_size=text.vocab_size, block_size=args.block_size).to(device)
    cfg = TrainConfig(steps=10**9, batch_size=args.batch_size, block_size=args.block_size, progress=False)
    task = sn.training.make_task(text, block_size=args.block_size)
    amp = torch.bfloat16 if device.type == "cuda" else None

    uniform = make_strategy("uniform")
    ctx = TrainContext(space, space, task, cfg, uniform.options, device, decision_kinds(space), amp_dtype=amp)
    opt_super = make_optimizer(space, cfg)
    plain = space.extract(space.max_arch()).to(device).train()
    opt_plain = torch.optim.AdamW(plain.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(0)
    batches = [task.train_batch(args.batch_size, gen, device) for _ in range(args.steps)]

    def step_super(batch: tuple[torch.Tensor, torch.Tensor], pinned: bool) -> None:
        opt_super.zero_grad(set_to_none=True)
        if pinned:
            x, y = batch
            ctx.backward(ctx.loss(ctx.forward(space.max_arch(), x), y))
        else:
            uniform.step(ctx, batch)
        torch.nn.utils.clip_grad_norm_(space.parameters(), 1.0)
        opt_super.step()

    def step_plain(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        opt_plain.zero_grad(set_to_none=True)
        x, y = batch
        with ctx.autocast():
            out = plain(x)
        task.loss(out, y).backward()
        torch.nn.utils.clip_grad_norm_(plain.parameters(), 1.0)
        opt_plain.step()

    modes = {
        "supernet, uniform sampling": lambda b: step_super(b, False),
        "supernet, max arch": lambda b: step_super(b, True),
        "extracted max arch alone": step_plain,
    }
    for fn in modes.values():
        for b in batches[: args.warmup]:
            fn(b)
    rates: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(args.rounds):
        for name, fn in modes.items():
            _sync(device)
            t0 = time.perf_counter()
            for b in batches:
                fn(b)
            _sync(device)
            rates[name].append(args.steps * args.batch_size / (time.perf_counter() - t0))

    base = statistics.median(rates["extracted max arch alone"])
    print(
        f"device={device} batch={args.batch_size} block={args.block_size} steps/round={args.steps} "
        f"rounds={args.rounds} threads={torch.get_num_threads()}"
    )
    print(f"max arch params: {sn.cost.params(plain):,}")
    print(f"{'mode':<30} {'samples/s (median)':>20} {'min':>10} {'max':>10} {'ratio vs plain':>15}")
    for name, r in rates.items():
        med = statistics.median(r)
        print(f"{name:<30} {med:>20.1f} {min(r):>10.1f} {max(r):>10.1f} {med / base:>15.2f}")


if __name__ == "__main__":
    main()
