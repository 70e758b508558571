"""Overhead of the library's loops: `sn.train` and `evaluate_many` vs a minimal hand-written loop on the same modules.

Training: one call ``sn.train(space, task, "uniform", {steps: S, ...})`` against a hand-written single-path loop
of S steps over the same `SuperModule` object: the same arch sampling per step (``space.sample`` from a
``random.Random`` with the same seed, then ``set_arch``), the same data (indices drawn from a
``torch.Generator`` with the same seed), the same optimizer (AdamW with the same two parameter groups, the
same constant lr), the same gradient clipping, the same batch size. Both timings include their own setup
(the optimizer, and for ``sn.train`` everything it does before the first step), divided by S.

Evaluation: ``evaluate_many(space, archs, task)`` against a hand-written loop over the same archs: per arch,
``set_arch``, reset the BatchNorm running statistics, forward the same calibration batches in train mode
with a cumulative average (momentum ``1/(k+1)``), then loss and accuracy over the same validation batches in
eval mode; like ``evaluate_many`` it saves the BatchNorm statistics, arch and mode first and puts them back
after the last arch. Time per arch.

Before timing, each case checks (untimed, on copies of the space) that the two variants do the same work: a
few training steps must leave bit-identical weights, and the evaluation the same loss and accuracy per arch
(``--no-check`` skips this).

The two variants run interleaved (ours, hand-written, hand-written, ours, ...) for several repetitions after
an untimed warm-up; each repetition gives one ratio ours / hand-written. The table shows the median time of
each and the median, min and max of the per-repetition ratios. Target: median ratio <= 1.05.

Cases: ``nb201`` (the NAS-Bench-201 cell space, operation choices, small C/N), ``lc_macro`` (a MobileNet-block
macro space whose every block is an `sn.LayerChoice` of plain blocks), ``mobilenet`` (the ready OFA-like space,
entangled layers and `Repeat` depth) and ``eval_*`` (evaluation of the same spaces). Runs on one CPU thread
(``--threads``) so the figure is about the loop, not about the BLAS scheduling.

    python benchmarks/loop_overhead.py                      # a few minutes on a shared 2-core machine
    python benchmarks/loop_overhead.py --repeats 9 --steps 60 --json /tmp/after.json
    PYTHONPATH=/path/to/other/checkout/src python benchmarks/loop_overhead.py   # the same figures for other code
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import supernet as sn
from supernet.training import evaluate_many

NUM_CLASSES = 10
IMAGE = 32
SEED = 0
LR = 1e-3
CLIP = 1.0


# --------------------------------------------------------------------------------------------------------------
# Spaces


class MBBlock(nn.Module):
    """A plain MobileNetV2 block: 1x1 expand, kxk depthwise, 1x1 project (BN + ReLU6), residual when shapes match."""

    def __init__(self, c_in: int, c_out: int, kernel: int, expand: int, stride: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.body = nn.Sequential(
            nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def lc_macro_space(widths: tuple[int, ...] = (8, 16, 24), blocks_per_stage: int = 2) -> sn.SuperModule:
    """A macro space of MobileNet blocks, each an `sn.LayerChoice` of {k3, k5} x {e2, e4} plain blocks.

    Later blocks of a stage may also be skipped (``skip``: identity), so the candidates differ in depth too.
    """
    layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU6()]
    c_in = widths[0]
    for s, c_out in enumerate(widths):
        for b in range(blocks_per_stage):
            stride = 2 if (b == 0 and s > 0) else 1
            cands: dict[str, nn.Module] = {
                f"k{k}_e{e}": MBBlock(c_in, c_out, k, e, stride) for k in (3, 5) for e in (2, 4)
            }
            if b > 0:
                cands["skip"] = nn.Identity()
            layers.append(sn.LayerChoice(cands, name=f"stage{s}.block{b}"))
            c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, NUM_CLASSES)]
    return sn.SuperModule(nn.Sequential(*layers))


def make_space(name: str) -> sn.SuperModule:
    torch.manual_seed(SEED)
    if name == "nb201":
        return sn.spaces.nb201(C=8, N=1, num_classes=NUM_CLASSES)
    if name == "lc_macro":
        return lc_macro_space()
    if name == "mobilenet":
        return sn.spaces.mobilenet(
            num_classes=NUM_CLASSES, widths=(8, 16, 24), strides=(2, 2), activations=("relu", "hswish"),
            use_se=(False, True), feature_dim=32, stem_stride=2,
        )
    raise ValueError(name)


def make_data(n_train: int, n_val: int) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(SEED)
    x = torch.randn(n_train + n_val, 3, IMAGE, IMAGE, generator=g)
    y = torch.randint(NUM_CLASSES, (n_train + n_val,), generator=g)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


# --------------------------------------------------------------------------------------------------------------
# Training: sn.train vs a hand-written single-path loop


def train_ours(space: sn.SuperModule, task: Any, steps: int, batch: int) -> float:
    # A constant lr: the hand-written loop uses one too (the cosine schedule costs nothing but changes the weights,
    # and the equivalence check compares them).
    cfg = {"steps": steps, "batch_size": batch, "lr": LR, "schedule": "constant", "grad_clip": CLIP, "seed": SEED,
           "progress": False, "precision": "fp32"}
    t0 = time.perf_counter()
    sn.train(space, task, "uniform", cfg, device="cpu")
    return (time.perf_counter() - t0) / steps


def train_hand(space: sn.SuperModule, data: tuple[torch.Tensor, torch.Tensor], steps: int, batch: int) -> float:
    t0 = time.perf_counter()
    x_all, y_all = data
    space.train()
    # The optimizer sn.train builds: weight decay (0 here) on matrices/kernels only, so two parameter groups.
    params = [p for p in space.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2]}, {"params": [p for p in params if p.ndim < 2]}]
    opt = torch.optim.AdamW(groups, lr=LR, weight_decay=0.0)
    rng = random.Random(SEED)
    gen = torch.Generator().manual_seed(SEED)
    for _ in range(steps):
        idx = torch.randint(len(y_all), (batch,), generator=gen)
        x, y = x_all[idx], y_all[idx]
        space.set_arch(space.sample(rng=rng))
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(space(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(space.parameters(), CLIP)
        opt.step()
    loss.item()
    return (time.perf_counter() - t0) / steps


# --------------------------------------------------------------------------------------------------------------
# Evaluation: evaluate_many vs a hand-written loop with BN recalibration


def _bns(space: nn.Module) -> list[nn.Module]:
    return [
        m for m in space.modules()
        if isinstance(m, (sn.BatchNorm2d, nn.modules.batchnorm._BatchNorm)) and m.track_running_stats
    ]


def eval_ours(space: sn.SuperModule, task: Any, archs: list[dict[str, Any]], bn_batches: int, batch: int,
              val_batches: int) -> float:
    t0 = time.perf_counter()
    evaluate_many(space, archs, task, batch_size=batch, max_batches=val_batches, bn_batches=bn_batches,
                  device="cpu", precision="fp32")
    return (time.perf_counter() - t0) / len(archs)


@torch.no_grad()
def eval_hand_loop(space: sn.SuperModule, train: tuple[torch.Tensor, torch.Tensor],
                   val: tuple[torch.Tensor, torch.Tensor], archs: list[dict[str, Any]], bn_batches: int, batch: int,
                   val_batches: int) -> list[dict[str, float]]:
    gen = torch.Generator().manual_seed(SEED)
    calib = [train[0][torch.randint(len(train[1]), (batch,), generator=gen)] for _ in range(bn_batches)]
    evals = [(val[0][i : i + batch], val[1][i : i + batch]) for i in range(0, len(val[1]), batch)][:val_batches]
    bns = _bns(space)
    # Like evaluate_many(restore=True): keep the supernet's BN statistics, arch and mode, put them back at the end.
    previous_arch, was_training = space.arch, space.training
    saved = [{k: v.detach().clone() for k, v in m.named_buffers(recurse=False)} for m in bns]
    momenta = [m.momentum for m in bns]
    results = []
    for arch in archs:
        space.set_arch(arch)
        for m in bns:
            m.reset_running_stats()
        space.train()
        for k, x in enumerate(calib):
            for m in bns:
                m.momentum = 1.0 / (k + 1)
            space(x)
        for m, mom in zip(bns, momenta, strict=True):
            m.momentum = mom
        space.eval()
        loss_sum, correct, count = 0.0, 0.0, 0
        for x, y in evals:
            out = space(x)
            loss_sum += float(F.cross_entropy(out, y, reduction="sum"))
            correct += float((out.argmax(-1) == y).sum())
            count += len(y)
        results.append({"loss": loss_sum / count, "accuracy": correct / count})
    space.set_arch(previous_arch)
    for m, buf in zip(bns, saved, strict=True):
        for k, v in buf.items():
            getattr(m, k).copy_(v)
    space.train(was_training)
    return results


def eval_hand(space: sn.SuperModule, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
              archs: list[dict[str, Any]], bn_batches: int, batch: int, val_batches: int) -> float:
    t0 = time.perf_counter()
    eval_hand_loop(space, train, val, archs, bn_batches, batch, val_batches)
    return (time.perf_counter() - t0) / len(archs)


# --------------------------------------------------------------------------------------------------------------
# The check that both variants do the same work (untimed, on copies of the space)


def check_train(space: sn.SuperModule, task: Any, data: tuple[torch.Tensor, torch.Tensor], batch: int,
                steps: int = 3) -> None:
    a, b = copy.deepcopy(space), copy.deepcopy(space)
    train_ours(a, task, steps, batch)
    train_hand(b, data, steps, batch)
    sa, sb = a.state_dict(), b.state_dict()
    differ = [k for k in sa if not torch.equal(sa[k], sb[k])]
    if differ:
        raise SystemExit(f"check failed: after {steps} steps sn.train and the hand-written loop differ in {differ[:5]}")


def check_eval(space: sn.SuperModule, task: Any, train: tuple[torch.Tensor, torch.Tensor],
               val: tuple[torch.Tensor, torch.Tensor], archs: list[dict[str, Any]], bn_batches: int, batch: int,
               val_batches: int) -> None:
    a, b = copy.deepcopy(space), copy.deepcopy(space)
    ours = evaluate_many(a, archs, task, batch_size=batch, max_batches=val_batches, bn_batches=bn_batches,
                         device="cpu", precision="fp32")
    hand = eval_hand_loop(b, train, val, archs, bn_batches, batch, val_batches)
    for i, (o, h) in enumerate(zip(ours, hand, strict=True)):
        if abs(o["loss"] - h["loss"]) > 1e-5 * max(1.0, abs(h["loss"])) or o["accuracy"] != h["accuracy"]:
            raise SystemExit(f"check failed: arch {i}: evaluate_many gives {o}, the hand-written loop {h}")
    sa, sb = a.state_dict(), b.state_dict()
    if a.arch != b.arch or a.training != b.training or any(not torch.equal(sa[k], sb[k]) for k in sa):
        raise SystemExit("check failed: evaluate_many and the hand-written loop leave the space in different states")


# --------------------------------------------------------------------------------------------------------------


def interleave(ours: Callable[[], float], hand: Callable[[], float], repeats: int) -> dict[str, Any]:
    ours(), hand()  # warm-up (allocator, first-call caches)
    t_ours, t_hand, ratios = [], [], []
    for r in range(repeats):
        if r % 2 == 0:
            a = ours()
            b = hand()
        else:
            b = hand()
            a = ours()
        t_ours.append(a)
        t_hand.append(b)
        ratios.append(a / b)
    return {
        "ours_ms": statistics.median(t_ours) * 1e3,
        "hand_ms": statistics.median(t_hand) * 1e3,
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "ratios": ratios,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="nb201,lc_macro,mobilenet,eval_nb201,eval_lc_macro,eval_mobilenet")
    ap.add_argument("--repeats", type=int, default=7, help="timed repetitions per variant (interleaved)")
    ap.add_argument("--steps", type=int, default=40, help="training steps per repetition")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--archs", type=int, default=4, help="archs per evaluation repetition")
    ap.add_argument("--bn-batches", type=int, default=4)
    ap.add_argument("--val-batches", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("--no-check", action="store_true", help="skip the check that both variants do the same work")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    train_data, val_data = make_data(n_train=1024, n_val=args.val_batches * args.batch)
    task = sn.training.make_task((train_data, val_data))
    load_before = os.getloadavg()
    results: dict[str, dict[str, Any]] = {}
    t_start = time.perf_counter()
    for case in [c.strip() for c in args.cases.split(",") if c.strip()]:
        if case.startswith("eval_"):
            space = make_space(case.removeprefix("eval_"))
            archs = [space.sample(seed=1000 + i) for i in range(args.archs)]
            if not args.no_check:
                check_eval(space, task, train_data, val_data, archs, args.bn_batches, args.batch, args.val_batches)
            res = interleave(
                lambda s=space, a=archs: eval_ours(s, task, a, args.bn_batches, args.batch, args.val_batches),
                lambda s=space, a=archs: eval_hand(s, train_data, val_data, a, args.bn_batches, args.batch,
                                                   args.val_batches),
                args.repeats,
            )
            res["unit"] = "ms/arch"
        else:
            space = make_space(case)
            if not args.no_check:
                check_train(space, task, train_data, args.batch)
            res = interleave(
                lambda s=space: train_ours(s, task, args.steps, args.batch),
                lambda s=space: train_hand(s, train_data, args.steps, args.batch),
                args.repeats,
            )
            res["unit"] = "ms/step"
        results[case] = res
        print(
            f"  {case}: ours {res['ours_ms']:.2f} {res['unit']}, hand-written {res['hand_ms']:.2f}, "
            f"ratio median {res['ratio_median']:.3f} (min {res['ratio_min']:.3f})",
            flush=True,
        )
    elapsed = time.perf_counter() - t_start
    load_after = os.getloadavg()

    header = (
        f"loop overhead: ours / hand-written (CPU, {args.threads} thread(s), batch {args.batch}, "
        f"{args.steps} steps or {args.archs} archs per repetition, {args.repeats} repetitions)"
    )
    print()
    print(header)
    print(f"supernet from {os.path.dirname(sn.__file__)}; load average {load_before[0]:.2f} -> {load_after[0]:.2f} "
          f"(1 min); took {elapsed:.0f} s")
    cols = f"{'case':<16} {'unit':<8} {'ours':>9} {'hand':>9} {'ratio med':>10} {'min':>7} {'max':>7}"
    print(cols)
    print("-" * len(cols))
    for case, r in results.items():
        print(
            f"{case:<16} {r['unit']:<8} {r['ours_ms']:>9.2f} {r['hand_ms']:>9.2f} {r['ratio_median']:>10.3f} "
            f"{r['ratio_min']:>7.3f} {r['ratio_max']:>7.3f}"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "supernet": os.path.dirname(sn.__file__), "load": [load_before, load_after],
                       "seconds": elapsed, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
