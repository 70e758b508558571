"""Data-free statistics used as proxies: ``l2_norm``, ``params`` and ``flops``."""

from __future__ import annotations

import torch
from torch import nn

from .. import cost
from .common import Batch, check_batch, net_device, prunable_layers
from .registry import register_proxy


@register_proxy("l2_norm")
def l2_norm(net: nn.Module, batch: Batch | None = None, seed: int = 0) -> float:
    """Sum over Conv/Linear layers of the Frobenius norm of the weight (NASLib's ``l2_norm``); no data used."""
    with torch.no_grad():
        return float(sum(m.weight.norm() for m in prunable_layers(net)))


@register_proxy("params")
def params(net: nn.Module, batch: Batch | None = None, seed: int = 0) -> float:
    """Number of parameters (`supernet.cost.params`); no data used."""
    return float(cost.params(net))


@register_proxy("flops")
def flops(net: nn.Module, batch: Batch, seed: int = 0) -> float:
    """FLOPs of one forward pass on a single sample of the batch (`supernet.cost.flops`, 2 per multiply-add)."""
    x, _ = check_batch(batch)
    return float(cost.flops(net, x[:1].to(net_device(net))))
