"""The proxy registry and the one-call scorer: fresh network per arch, every requested proxy, NaN policy."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

import torch
from torch import nn

from ..device import resolve_device
from ..registry import Registry, UnknownNameError
from .common import Batch, ProxyNotApplicableError, batch_to, check_batch, fresh_network


class Proxy(Protocol):
    """A proxy: ``fn(net, batch, seed=0) -> float`` on a freshly initialised network in train mode."""

    def __call__(self, net: nn.Module, batch: Batch, seed: int = 0) -> float: ...


PROXIES: Registry[Proxy] = Registry("proxy")
"""Every proxy by name, in registration order. Higher is meant to be better for all except ``params``/``flops``
(size, no direction). The proxy files (`saliency`, `activation`, `static`) register theirs with `register_proxy`
when `supernet.proxies` imports them."""


def register_proxy(name: str) -> Callable[[Proxy], Proxy]:
    """Decorator adding a proxy ``fn(net, batch, seed=0) -> float`` under ``name``.

    The first line of its docstring is its description in ``supernet proxies --help`` and ``supernet info``.
    """
    return PROXIES.register(name)


NOISE_INPUTS = frozenset({"az_expressivity", "az_progressivity", "az_trainability", "vkdnw"})
"""Proxies whose authors score standard-normal inputs, not data: AZ-NAS (Lee & Ham, CVPR 2024; its NAS-Bench-201
code passes real images only to ZiCo, SNIP, GraSP, TE-NAS and GradSign) and VKDNW (Tybl & Neumann, CVPR 2025; its
NAS-Bench-201 code passes no data loader to it). It matters: on 200 sampled NAS-Bench-201 archs AZ-NAS's
progressivity ranks CIFAR-10 test accuracy with Kendall tau 0.53 on noise and 0.13 on CIFAR-10 images
(``benchmarks/proxies_nb201.py``). Zen-score draws its own Gaussian inputs whatever it is given."""

Inputs = Literal["paper", "batch"]


def paper_inputs(name: str, batch: Batch, seed: int = 0) -> Batch:
    """The batch proxy ``name`` scores under ``inputs="paper"``: for a `NOISE_INPUTS` proxy, standard-normal
    inputs shaped like the batch's (drawn from ``seed`` on the CPU, then moved to the batch's device and dtype;
    targets kept); the batch itself otherwise, and for integer inputs (token ids have no Gaussian counterpart)."""
    x, y = check_batch(batch)
    if name not in NOISE_INPUTS or not torch.is_floating_point(x):
        return x, y
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(x.shape, generator=gen, dtype=torch.float32).to(x.device, x.dtype), y


def _check_names(names: Sequence[str] | None) -> list[str]:
    names = PROXIES.names() if names is None else list(names)
    unknown = [n for n in names if n not in PROXIES]
    if unknown:
        raise UnknownNameError(f"unknown proxies {unknown}; available: {', '.join(PROXIES)}")
    return names


def score(
    net_or_space: nn.Module,
    batch: Batch,
    arch: Mapping[str, Any] | None = None,
    names: Sequence[str] | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    strict: bool = False,
    inputs: Inputs = "paper",
) -> dict[str, float]:
    """Every proxy in ``names`` (default: every registered proxy) for one architecture, ``{name: value}``.

    The network is ``net_or_space.extract(arch)`` for a space (a copy of ``net_or_space`` for a plain network),
    re-initialised from ``seed``; each proxy gets its own copy, so one proxy cannot disturb another. Results are
    deterministic for a given seed and batch (on CPU; CUDA kernels may add round-off).

    Inputs: ``"paper"`` (default) scores each proxy on the inputs its authors' code uses: the proxies of
    `NOISE_INPUTS` (AZ-NAS, VKDNW) on standard-normal inputs shaped like the batch (`paper_inputs`), every other one
    on the batch; ``"batch"`` gives every proxy the batch.

    NaN policy: a proxy whose definition does not cover the network or input (`ProxyNotApplicableError`, e.g.
    ``jacov`` on token inputs) gives ``nan``; ``strict=True`` raises instead. Other errors always propagate.
    """
    if inputs not in ("paper", "batch"):
        raise ValueError(f"inputs must be 'paper' or 'batch', got {inputs!r}")
    names = _check_names(names)
    dev = resolve_device(device)
    batch = batch_to(check_batch(batch), dev)
    base = fresh_network(net_or_space, arch, seed=seed, device=dev)
    out: dict[str, float] = {}
    for name in names:
        try:
            given = paper_inputs(name, batch, seed) if inputs == "paper" else batch
            out[name] = float(PROXIES[name](copy.deepcopy(base), given, seed=seed))
        except ProxyNotApplicableError:
            if strict:
                raise
            out[name] = math.nan
    return out


def objective(
    space: nn.Module,
    name: str,
    batch: Batch,
    seed: int = 0,
    device: str | torch.device = "auto",
    sign: float = 1.0,
    inputs: Inputs = "paper",
) -> Callable[[Mapping[str, Any]], float]:
    """A callable ``arch -> sign * proxy value`` for search (an objective, or a pre-filter score).

    Use ``sign=-1`` to turn a proxy into something to minimise. Inapplicable proxies give ``nan``. ``inputs`` as
    in `score`.
    """
    _check_names([name])

    def fn(arch: Mapping[str, Any]) -> float:
        return sign * score(space, batch, arch=arch, names=[name], seed=seed, device=device, inputs=inputs)[name]

    fn.__name__ = f"proxy_{name}"
    return fn


__all__ = ["NOISE_INPUTS", "PROXIES", "Inputs", "Proxy", "ProxyNotApplicableError", "objective", "paper_inputs",
           "register_proxy", "score"]
