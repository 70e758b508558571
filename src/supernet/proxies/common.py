"""Shared plumbing for training-free proxies: fresh networks, batches, the task loss and the layers scored."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..device import resolve_device
from ..space import SuperModule

Batch = tuple[torch.Tensor, torch.Tensor]
"""``(inputs, targets)``: images ``(B, C, H, W)`` with class targets ``(B,)``, or tokens ``(B, T)`` with
next-token targets ``(B, T)`` (any input a network's ``forward`` takes, as long as dim 0 is the batch)."""

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""The layers whose weights the saliency proxies score (NASLib and the pruning papers score Conv and Linear)."""

NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d)


class ProxyNotApplicableError(ValueError):
    """A proxy's definition does not cover this network or input (the message says why)."""


def check_batch(batch: Any) -> Batch:
    """``batch`` as an ``(inputs, targets)`` pair of tensors sharing the batch size, or a clear error."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise TypeError(f"a proxy batch must be a pair (inputs, targets) of tensors, got {type(batch).__name__}")
    x, y = batch
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"a proxy batch must hold tensors, got ({type(x).__name__}, {type(y).__name__})")
    if x.shape[0] != y.shape[0] or x.shape[0] < 1:
        raise ValueError(f"inputs and targets must share a batch size >= 1, got {tuple(x.shape)} and {tuple(y.shape)}")
    return x, y


def is_token_input(x: torch.Tensor) -> bool:
    """Whether the inputs are integer ids (a language model) rather than continuous values."""
    return not torch.is_floating_point(x) and not torch.is_complex(x)


def task_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy for classification ``(B, C)`` vs ``(B,)`` and LM ``(B, T, V)`` vs ``(B, T)`` outputs;
    mean squared error for float targets shaped like the outputs."""
    if torch.is_floating_point(targets) and targets.shape == outputs.shape:
        return F.mse_loss(outputs, targets)
    if outputs.dim() == targets.dim() + 1 and outputs.shape[:-1] == targets.shape:
        return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1))
    raise ValueError(
        f"cannot pair outputs {tuple(outputs.shape)} with targets {tuple(targets.shape)}: expected logits "
        "(B, C) with class ids (B,), logits (B, T, V) with token ids (B, T), or float targets shaped like the outputs"
    )


def prunable_layers(net: nn.Module) -> list[nn.Module]:
    """Conv and Linear layers of ``net`` in module order (each once)."""
    layers = [m for m in net.modules() if isinstance(m, PRUNABLE)]
    if not layers:
        raise ProxyNotApplicableError("the network has no Conv or Linear layer for a saliency proxy to score")
    return layers


def init_network(net: nn.Module, seed: int) -> nn.Module:
    """Re-initialise every parameter of ``net`` in place from ``seed`` (and return it).

    Modules with ``reset_parameters`` (torch layers) use it; any other module's own parameters are drawn
    from ``N(0, 0.02)`` (the convention of learned position embeddings and class tokens). BatchNorm running
    statistics are reset. The global RNG state is restored afterwards.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in net.modules():
            if hasattr(m, "reset_parameters") and callable(m.reset_parameters):
                m.reset_parameters()
            else:
                with torch.no_grad():
                    for p in m.parameters(recurse=False):
                        p.normal_(0.0, 0.02)
    return net


def fresh_network(
    net_or_space: nn.Module, arch: Mapping[str, Any] | None = None, seed: int = 0, device: str | torch.device = "cpu"
) -> nn.Module:
    """A standalone network for proxy scoring: the subnet ``arch`` extracted from a space (or a copy of a plain
    network), re-initialised from ``seed``, on ``device``, in train mode (batch statistics in BatchNorm)."""
    if isinstance(net_or_space, SuperModule):
        net = net_or_space.extract(arch)
    else:
        if arch is not None:
            raise ValueError("an arch was given but the network is not a SuperModule (space)")
        net = copy.deepcopy(net_or_space)
    init_network(net, seed)
    return net.to(resolve_device(device)).train()


def batch_to(batch: Batch, device: torch.device) -> Batch:
    """Both tensors of a batch moved to ``device``."""
    return batch[0].to(device), batch[1].to(device)


def net_device(net: nn.Module) -> torch.device:
    """The device of ``net``'s first parameter (CPU when it has none)."""
    p = next(net.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def weight_grads(net: nn.Module, batch: Batch) -> tuple[list[nn.Module], list[torch.Tensor | None]]:
    """Prunable layers of ``net`` and the loss gradient of each layer's weight on ``batch`` (None if unused)."""
    layers = prunable_layers(net)
    x, y = batch_to(batch, net_device(net))
    net.zero_grad(set_to_none=True)
    loss = task_loss(net(x), y)
    grads = torch.autograd.grad(loss, [m.weight for m in layers], allow_unused=True)
    return layers, list(grads)


@contextlib.contextmanager
def hooked(modules: Iterable[nn.Module], hook: Callable[..., Any], pre: bool = False) -> Iterator[None]:
    """``hook`` registered as a forward hook (``pre=True``: forward pre-hook) on ``modules`` for the body only."""
    handles = [m.register_forward_pre_hook(hook) if pre else m.register_forward_hook(hook) for m in modules]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
