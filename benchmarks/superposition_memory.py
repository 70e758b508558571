"""Superposition (TangleNAS weight mixing) vs output mixing: peak memory and step time of one alpha-style step.

Both variants run the same supernet, the same batch and the same softmax mixture weights over every decision;
a step is forward + backward (gradients to the weights and to alpha).

- ``weights``: one forward at the size of the largest option with mixed weights (`superposition(mode="weights")`);
- ``outputs``: every layer computes every option separately and sums the zero-padded outputs
  (`superposition(mode="outputs")`, the classic DARTS way of mixing; memory grows with the options).

Memory, measured two ways:

- CPU: each variant runs in a **fresh subprocess** (glibc told to mmap every allocation >= 64 KiB, so freed tensors
  go back to the OS); after one warm-up step the kernel's peak-RSS mark is reset (``/proc/self/clear_refs``)
  and the **peak RSS delta** of the measured step (VmHWM minus VmRSS before it) is reported.
  On CUDA: ``torch.cuda.max_memory_allocated`` delta in the same process.
- **saved activations**: bytes of the distinct tensors autograd saves for the backward pass (counted with
  ``torch.autograd.graph.saved_tensors_hooks``, each storage once), in this process.

Step time: both variants alternate in this process (same batch), median of ``--steps`` steps after warm-up.

    python benchmarks/superposition_memory.py            # GPT (issue sizes) and mobilenet, CPU
    python benchmarks/superposition_memory.py --space gpt --batch 16 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import torch

import supernet as sn
from gradient_vs_two_stage import make_space  # a sibling script: benchmarks/ is on sys.path when run
from supernet.gradient import ArchParameters, SoftmaxMixer, superposition

MODES = ("weights", "outputs")


def build(space_name: str, batch: int, block: int, seed: int = 0) -> tuple[sn.SuperModule, torch.Tensor, Any]:
    """The space, an input batch and a loss function on its output."""
    torch.manual_seed(seed)
    if space_name == "gpt":
        space = make_space("issue", block)  # the GPT space, shared with gradient_vs_two_stage
        x = torch.randint(0, 65, (batch, block))
        y = torch.randint(0, 65, (batch, block))

        def loss(out: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.cross_entropy(out.reshape(-1, 65), y.reshape(-1))

    elif space_name == "mobilenet":
        space = sn.spaces.mobilenet()
        x = torch.randn(batch, 3, 32, 32)
        y = torch.randint(0, 10, (batch,))

        def loss(out: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.cross_entropy(out, y)

    else:
        raise SystemExit(f"unknown space {space_name!r}: use gpt or mobilenet")
    return space, x, loss


class Step:
    """One forward/backward of the space under softmax mixture weights."""

    def __init__(self, space_name: str, batch: int, block: int, device: torch.device) -> None:
        self.space, self.x, self.loss = build(space_name, batch, block)
        self.space.to(device).train()
        self.x = self.x.to(device)
        self.loss_fn = self.loss
        self.alphas = ArchParameters(
            self.space, init_std=0.5, generator=torch.Generator().manual_seed(1), device=device
        )
        self.mixer = SoftmaxMixer()
        self.space.set_arch(self.space.max_arch())

    def __call__(self, mode: str) -> None:
        self.space.zero_grad(set_to_none=True)
        for a in self.alphas.parameters():
            a.grad = None
        mixes = self.alphas.sample(self.mixer, 0.0, torch.Generator())
        with superposition(mixes, mode=mode):
            out = self.space(self.x)
        self.loss_fn(out.float() if out.device.type == "cpu" else out).backward()


def saved_bytes(step: Step, mode: str) -> int:
    """Bytes of distinct storages autograd saves for backward during one forward."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        try:
            s = t.untyped_storage()
            seen[s.data_ptr()] = max(seen.get(s.data_ptr(), 0), s.nbytes())
        except (RuntimeError, NotImplementedError):
            pass
        return t

    step.space.zero_grad(set_to_none=True)
    mixes = step.alphas.sample(step.mixer, 0.0, torch.Generator())
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), superposition(mixes, mode=mode):
        out = step.space(step.x)
    step.loss_fn(out.float()).backward()
    return sum(seen.values())


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(space_name: str, mode: str, batch: int, block: int, threads: int) -> None:
    """Run in a fresh process: warm up, reset the peak-RSS mark, measure one step's peak RSS delta."""
    torch.set_num_threads(threads)
    step = Step(space_name, batch, block, torch.device("cpu"))
    step(mode)  # warm-up (lazy initialisation, allocator pools)
    step.space.zero_grad(set_to_none=True)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = _status_kb("VmRSS")
    step(mode)
    peak = _status_kb("VmHWM")
    print(json.dumps({"peak_delta_mb": (peak - before) / 1024}))


def peak_rss_subprocess(space_name: str, mode: str, batch: int, block: int, threads: int) -> float:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    cmd = [
        sys.executable,
        __file__,
        "--child",
        f"{space_name}:{mode}",
        "--batch",
        str(batch),
        "--block",
        str(block),
        "--threads",
        str(threads),
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["peak_delta_mb"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", choices=["gpt", "mobilenet", "all"], default="all")
    p.add_argument("--batch", type=int, default=None, help="batch size (default: 8 for gpt, 16 for mobilenet)")
    p.add_argument("--block", type=int, default=64, help="GPT context length")
    p.add_argument("--steps", type=int, default=3, help="timed steps per variant")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        space_name, mode = args.child.split(":")
        child(space_name, mode, args.batch, args.block, args.threads)
        return
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spaces = ["gpt", "mobilenet"] if args.space == "all" else [args.space]
    rows = []
    for name in spaces:
        batch = args.batch or (8 if name == "gpt" else 16)
        step = Step(name, batch, args.block, device)
        res: dict[str, dict[str, float]] = {m: {} for m in MODES}
        for mode in MODES:
            step(mode)  # warm-up
        times: dict[str, list[float]] = {m: [] for m in MODES}
        for _ in range(args.steps):
            for mode in MODES:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                step(mode)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[mode].append(time.perf_counter() - t)
        for mode in MODES:
            res[mode]["time_ms"] = 1000 * statistics.median(times[mode])
            res[mode]["saved_mb"] = saved_bytes(step, mode) / 2**20
            if device.type == "cuda":
                step.space.zero_grad(set_to_none=True)
                torch.cuda.synchronize()
                base = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
                step(mode)
                res[mode]["peak_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
            else:
                res[mode]["peak_mb"] = peak_rss_subprocess(name, mode, batch, args.block, args.threads)
        rows.append((name, batch, res))
        del step
    method = "CUDA max_memory_allocated delta" if device.type == "cuda" else "peak RSS delta, fresh subprocess"
    print(f"\nsuperposition (weights) vs output mixing (outputs), device={device}, threads={args.threads}")
    print(f"peak memory: {method}; saved: autograd saved-tensor bytes; time: median fwd+bwd step\n")
    head = f"{'space':10} {'batch':>5} {'variant':8} {'peak MB':>9} {'saved MB':>9} {'step ms':>9}"
    print(head)
    print("-" * len(head))
    for name, batch, res in rows:
        for mode in MODES:
            r = res[mode]
            print(f"{name:10} {batch:5d} {mode:8} {r['peak_mb']:9.1f} {r['saved_mb']:9.1f} {r['time_ms']:9.1f}")
        w, o = res["weights"], res["outputs"]
        print(
            f"{name:10} {'':5} {'ratio':8} {w['peak_mb'] / o['peak_mb']:9.2f} {w['saved_mb'] / o['saved_mb']:9.2f} "
            f"{w['time_ms'] / o['time_ms']:9.2f}   (weights / outputs)"
        )


if __name__ == "__main__":
    main()
