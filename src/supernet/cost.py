"""Cost model: parameters, FLOPs and measured latency of a network or of a supernet's active subnet.

On a supernet (or any module containing searchable layers) every function measures the active subnet
by extracting it first, so the figures agree with the extracted network by construction.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .space import SuperModule, contains_searchable, extract_module


def active_network(module: nn.Module) -> nn.Module:
    """``module`` itself if it is plain, else a plain copy of its active subnet."""
    if isinstance(module, SuperModule):
        return module.extract()
    return extract_module(module) if contains_searchable(module) else module


def params(module: nn.Module) -> int:
    """Number of parameters of the (active sub)network; a parameter shared by two layers counts once."""
    return sum(p.numel() for p in active_network(module).parameters())


def _as_args(example_input: Any) -> tuple[Any, ...]:
    return example_input if isinstance(example_input, tuple) else (example_input,)


def flops(module: nn.Module, example_input: Any) -> int:
    """FLOPs of one forward pass on ``example_input`` (a tensor or a tuple of arguments).

    Counted by ``torch.utils.flop_counter`` (matrix multiplies, convolutions, attention), which counts a
    multiply-add as 2 FLOPs; element-wise ops are not counted.
    """
    net = active_network(module)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(*_as_args(example_input))
    return int(counter.get_total_flops())


def latency(
    module: nn.Module,
    example_input: Any,
    device: str | torch.device = "cpu",
    warmup: int = 5,
    repeats: int = 30,
) -> float:
    """Median wall time in seconds of one forward pass (inference mode) after ``warmup`` runs.

    Measures the extracted (deployable) subnet in eval mode on ``device``.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    device = torch.device(device)
    net = active_network(module)
    if net is module:
        net = copy.deepcopy(module)
    net = net.to(device).eval()
    args = tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in _as_args(example_input))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            sync()
            start = time.perf_counter()
            net(*args)
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times)
