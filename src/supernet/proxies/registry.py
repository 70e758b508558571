"""The proxy registry and the one-call scorer: fresh network per arch, every requested proxy, NaN policy."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import torch
from torch import nn

from .activation import jacov, nwot, zen
from .common import Batch, ProxyNotApplicableError, batch_to, check_batch, fresh_network, resolve_device
from .saliency import fisher, grad_norm, gradsign, grasp, plain, snip, synflow
from .static import flops, l2_norm, params


class Proxy(Protocol):
    """A proxy: ``fn(net, batch, seed=0) -> float`` on a freshly initialised network in train mode."""

    def __call__(self, net: nn.Module, batch: Batch, seed: int = 0) -> float: ...


PROXIES: dict[str, Proxy] = {
    "synflow": synflow,
    "snip": snip,
    "grasp": grasp,
    "fisher": fisher,
    "grad_norm": grad_norm,
    "plain": plain,
    "jacov": jacov,
    "nwot": nwot,
    "gradsign": gradsign,
    "zen": zen,
    "l2_norm": l2_norm,
    "params": params,
    "flops": flops,
}
"""Every proxy by name. Higher is meant to be better for all except ``params``/``flops`` (size, no direction)."""

DEFAULT_PROXIES: tuple[str, ...] = tuple(PROXIES)


def register_proxy(name: str) -> Callable[[Proxy], Proxy]:
    """Decorator adding a user proxy ``fn(net, batch, seed=0) -> float`` under ``name``."""

    def wrap(fn: Proxy) -> Proxy:
        if name in PROXIES:
            raise ValueError(f"a proxy named {name!r} is already registered")
        PROXIES[name] = fn
        return fn

    return wrap


def _check_names(names: Sequence[str] | None) -> list[str]:
    names = list(DEFAULT_PROXIES if names is None else names)
    unknown = [n for n in names if n not in PROXIES]
    if unknown:
        raise KeyError(f"unknown proxies {unknown}; available: {', '.join(PROXIES)}")
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
    """Every proxy in ``names`` (default: all) for one architecture, ``{name: value}``.

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


__all__ = ["DEFAULT_PROXIES", "PROXIES", "Proxy", "ProxyNotApplicableError", "objective", "register_proxy", "score"]
