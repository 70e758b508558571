"""The proxy registry and the one-call scorer: fresh network per arch, every requested proxy, NaN policy."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

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
) -> dict[str, float]:
    """Every proxy in ``names`` (default: every registered proxy) for one architecture, ``{name: value}``.

    The network is ``net_or_space.extract(arch)`` for a space (a copy of ``net_or_space`` for a plain network),
    re-initialised from ``seed``; each proxy gets its own copy, so one proxy cannot disturb another. Results are
    deterministic for a given seed and batch (on CPU; CUDA kernels may add round-off).

    NaN policy: a proxy whose definition does not cover the network or input (`ProxyNotApplicableError`, e.g.
    ``jacov`` on token inputs) gives ``nan``; ``strict=True`` raises instead. Other errors always propagate.
    """
    names = _check_names(names)
    dev = resolve_device(device)
    batch = batch_to(check_batch(batch), dev)
    base = fresh_network(net_or_space, arch, seed=seed, device=dev)
    out: dict[str, float] = {}
    for name in names:
        try:
            out[name] = float(PROXIES[name](copy.deepcopy(base), batch, seed=seed))
        except ProxyNotApplicableError:
            if strict:
                raise
            out[name] = math.nan
    return out


def objective(
    space: nn.Module, name: str, batch: Batch, seed: int = 0, device: str | torch.device = "auto", sign: float = 1.0
) -> Callable[[Mapping[str, Any]], float]:
    """A callable ``arch -> sign * proxy value`` for search (an objective, or a pre-filter score).

    Use ``sign=-1`` to turn a proxy into something to minimise. Inapplicable proxies give ``nan``.
    """
    _check_names([name])

    def fn(arch: Mapping[str, Any]) -> float:
        return sign * score(space, batch, arch=arch, names=[name], seed=seed, device=device)[name]

    fn.__name__ = f"proxy_{name}"
    return fn


__all__ = ["PROXIES", "Proxy", "ProxyNotApplicableError", "objective", "register_proxy", "score"]
