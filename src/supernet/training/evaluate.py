"""Evaluating subnets with inherited weights: BatchNorm recalibration, loss and accuracy, many archs at once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..device import resolve_device
from ..space import BatchNorm2d, SuperModule
from .tasks import Batch, Task


def batchnorm_modules(module: nn.Module) -> list[nn.Module]:
    """Every BatchNorm with running statistics: ours (`sn.BatchNorm2d`) and torch's (``nn.BatchNorm1d/2d/3d``)."""
    out = []
    for m in module.modules():
        if isinstance(m, (BatchNorm2d, nn.modules.batchnorm._BatchNorm)) and m.track_running_stats:
            out.append(m)
    return out


def _bn_buffers(bns: Sequence[nn.Module]) -> list[dict[str, torch.Tensor]]:
    return [{k: v.detach().clone() for k, v in m.named_buffers(recurse=False)} for m in bns]


def _restore_bn(bns: Sequence[nn.Module], saved: Sequence[Mapping[str, torch.Tensor]]) -> None:
    with torch.no_grad():
        for m, buf in zip(bns, saved, strict=True):
            for k, v in buf.items():
                getattr(m, k).copy_(v)


@torch.no_grad()
def recalibrate_bn(
    space: nn.Module,
    task: Task | Iterable[torch.Tensor | Batch],
    num_batches: int = 16,
    batch_size: int = 64,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> bool:
    """Re-estimate BatchNorm running statistics for the active arch.

    Every BatchNorm's running stats are reset, then ``num_batches`` training batches (drawn with a generator
    seeded by ``seed``, so the result is reproducible) are forwarded in train mode without gradients, with a
    cumulative average (momentum ``1/(k+1)`` for batch ``k``: torch's ``momentum=None`` semantics) so the
    final statistics are the mean of the per-batch statistics. ``task`` may also be an iterable of input
    batches (or ``(x, y)`` pairs). The module is left in eval mode.

    Returns:
        False if the module has no BatchNorm (nothing done), else True.
    """
    bns = batchnorm_modules(space)
    if not bns:
        space.eval()
        return False
    dev = resolve_device(device, space)
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
    if isinstance(task, Task):
        gen = torch.Generator().manual_seed(seed)
        batches: Iterable[Any] = (task.train_batch(batch_size, gen, dev)[0] for _ in range(num_batches))
    else:
        batches = task
    space.train()
    try:
        k = 0
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            for m in bns:
                m.momentum = 1.0 / (k + 1)
            space(x.to(dev))
            k += 1
            if k >= num_batches:
                break
    finally:
        for m, mom in zip(bns, momenta, strict=True):
            m.momentum = mom
        space.eval()
    return True


def _amp(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if device.type == "cuda" and precision in ("auto", "bf16"):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _finish(sums: Mapping[str, float]) -> dict[str, float]:
    n = max(sums.get("count", 0.0), 1.0)
    return {"loss": sums["loss_sum"] / n, "accuracy": sums["correct"] / n, "count": int(sums.get("count", 0))}


def _evaluate_batches(space: nn.Module, task: Task, batches: Sequence[Batch], precision: str, device: torch.device
                      ) -> dict[str, float]:
    sums = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0}
    with torch.no_grad(), _amp(device, precision):
        for x, y in batches:
            for k, v in task.metrics(space(x), y).items():
                sums[k] = sums.get(k, 0.0) + v
    return _finish(sums)


def calibration_batches(task: Task, num_batches: int, batch_size: int, seed: int, device: torch.device
                        ) -> list[torch.Tensor]:
    """The training inputs BatchNorm is recalibrated on: the same for every arch (and its exported model)."""
    gen = torch.Generator().manual_seed(seed)
    return [task.train_batch(batch_size, gen, device)[0] for _ in range(num_batches)]


def _eval_batches(task: Task, split: str, batch_size: int, max_batches: int | None, device: torch.device
                  ) -> list[Batch]:
    batches = list(task.eval_batches(split, batch_size, max_batches, device))
    if not batches:
        raise ValueError(f"the {split!r} split gives no evaluation batches")
    return batches


def evaluate_model(
    model: nn.Module,
    task: Task,
    split: str = "val",
    batch_size: int = 64,
    max_batches: int | None = None,
    bn_batches: int = 0,
    bn_batch_size: int | None = None,
    seed: int = 0,
    precision: str = "auto",
) -> dict[str, float]:
    """Loss and accuracy of a plain module (e.g. an exported subnet) with the recipe `evaluate` uses.

    With ``bn_batches > 0`` its BatchNorm statistics are first recalibrated on the same training batches that
    `evaluate` uses for the corresponding arch of the supernet (and kept: the module is changed in place), so
    an exported subnet scores what the search measured. With ``bn_batches=0`` the module is evaluated as it is.
    The module is left in eval mode.
    """
    dev = resolve_device(None, model)
    if bn_batches > 0 and batchnorm_modules(model):
        recalibrate_bn(model, calibration_batches(task, bn_batches, bn_batch_size or batch_size, seed, dev),
                       num_batches=bn_batches, device=dev)
    model.eval()
    return _evaluate_batches(model, task, _eval_batches(task, split, batch_size, max_batches, dev), precision, dev)


def evaluate(
    space: SuperModule,
    arch: Mapping[str, Any] | None,
    task: Task,
    split: str = "val",
    batch_size: int = 64,
    max_batches: int | None = None,
    bn_batches: int = 16,
    bn_batch_size: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    precision: str = "auto",
    restore: bool = True,
) -> dict[str, float]:
    """Loss and accuracy of subnet ``arch`` (None: the active arch) with inherited weights.

    BatchNorm statistics are recalibrated for the arch first (spaces with BatchNorm only). With
    ``restore=True`` the space's arch, train/eval mode and BN statistics are put back afterwards.

    Returns:
        ``{"loss": mean cross entropy, "accuracy": top-1 accuracy, "count": examples (tokens for an LM)}``.
    """
    return evaluate_many(
        space, [arch], task, split, batch_size, max_batches, bn_batches, bn_batch_size, seed, device, precision,
        restore, progress=False,
    )[0]


def evaluate_many(
    space: SuperModule,
    archs: Sequence[Mapping[str, Any] | None],
    task: Task,
    split: str = "val",
    batch_size: int = 64,
    max_batches: int | None = None,
    bn_batches: int = 16,
    bn_batch_size: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    precision: str = "auto",
    restore: bool = True,
    progress: bool = False,
) -> list[dict[str, float]]:
    """`evaluate` for many archs, loading the evaluation (and BN calibration) batches onto the device once.

    Every arch sees exactly the same evaluation batches and calibration batches, so results are comparable
    and reproducible; the result list follows ``archs``.
    """
    dev = resolve_device(device, space)
    previous_arch, was_training = space.arch, space.training
    bns = batchnorm_modules(space)
    saved = _bn_buffers(bns) if (bns and restore) else None
    eval_batches = _eval_batches(task, split, batch_size, max_batches, dev)
    calib = calibration_batches(task, bn_batches, bn_batch_size or batch_size, seed, dev) if bns else []
    results = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(archs), desc="evaluate", unit="arch", leave=False)
    try:
        for arch in archs:
            if arch is not None:
                space.set_arch(arch)
            if bns:
                recalibrate_bn(space, calib, num_batches=len(calib), device=dev)
            space.eval()
            results.append(_evaluate_batches(space, task, eval_batches, precision, dev))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if restore:
            space.set_arch(previous_arch)
            if saved is not None:
                _restore_bn(bns, saved)
            space.train(was_training)
    return results
