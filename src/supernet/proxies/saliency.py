"""Gradient-based saliency proxies, summed over the weights of every Conv and Linear layer.

All take a freshly initialised network in train mode and one batch; none changes the network's parameters
(gradients are taken with ``torch.autograd.grad``; synflow works on a copy). Definitions (``theta`` a weight,
``g = dL/dtheta`` the gradient of the task loss on the batch, sums over the weights of Conv/Linear layers):

- ``snip``      (Lee et al. 2019): ``sum |theta * g|``.
- ``grasp``     (Wang et al. 2020): ``sum -theta * (H g)``, ``H`` the loss Hessian (NASLib's sign convention:
                larger is better).
- ``grad_norm`` (Abdelfattah et al. 2021): ``sum over layers of ||g_layer||_2``.
- ``plain``     (Abdelfattah et al. 2021): ``sum theta * g``.
- ``fisher``    (Theis et al. 2018; Turner et al. 2020): per output channel ``c`` of a Conv/Linear layer with
                activation ``a`` and ``dL/da``: ``0.5 * mean_n (sum_{other dims} a * dL/da)^2``, summed.
- ``synflow``   (Tanaka et al. 2020): on a copy in eval mode with ``|theta|`` for every parameter, in float64,
                normalisation layers bypassed (NASLib's ``bn=False``, extended to LayerNorm/GroupNorm), an all-ones
                input of batch size 1, ``R = sum(output)``: ``log(sum |theta * dR/dtheta|)`` (natural log, as NASLib
                reports it; ``-inf`` when the output does not depend on any weight).
- ``gradsign``  (Zhang & Jia 2022): ``sum over weights |sum over samples sign(g_i)|`` with per-sample gradients
                ``g_i`` (one backward pass per sample).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from .common import (
    NORMS,
    Batch,
    batch_to,
    check_batch,
    is_token_input,
    net_device,
    prunable_layers,
    task_loss,
    weight_grads,
)
from .registry import register_proxy


@register_proxy("snip")
def snip(net: nn.Module, batch: Batch, seed: int = 0) -> float:
    """SNIP connection sensitivity ``sum |theta * dL/dtheta|`` over Conv/Linear weights."""
    layers, grads = weight_grads(net, check_batch(batch))
    return float(sum((m.weight.detach() * g).abs().sum() for m, g in zip(layers, grads, strict=True) if g is not None))


@register_proxy("plain")
def plain(net: nn.Module, batch: Batch, seed: int = 0) -> float:
    """Plain saliency ``sum theta * dL/dtheta`` over Conv/Linear weights (NASLib's ``plain``)."""
    layers, grads = weight_grads(net, check_batch(batch))
    return float(sum((m.weight.detach() * g).sum() for m, g in zip(layers, grads, strict=True) if g is not None))


@register_proxy("grad_norm")
def grad_norm(net: nn.Module, batch: Batch, seed: int = 0) -> float:
    """Sum over Conv/Linear layers of the L2 norm of the loss gradient of the layer's weight."""
    _, grads = weight_grads(net, check_batch(batch))
    return float(sum(g.norm() for g in grads if g is not None))


@register_proxy("grasp")
def grasp(net: nn.Module, batch: Batch, seed: int = 0) -> float:
    """GraSP ``sum -theta * (H g)`` over Conv/Linear weights.

    ``H g`` comes from double backpropagation (attention runs on PyTorch's math kernel, which supports it).
    Where an op has no double-backward (e.g. hardsigmoid) it falls back to the central difference
    ``(grad L(theta + eps g) - grad L(theta - eps g)) / (2 eps)`` with ``eps = 1e-3 / max(||g||, 1e-12)``.
    """
    layers = prunable_layers(net)
    x, y = batch_to(check_batch(batch), net_device(net))
    weights = [m.weight for m in layers]
    with sdpa_kernel(SDPBackend.MATH):
        g = torch.autograd.grad(task_loss(net(x), y), weights, allow_unused=True)
        try:
            hg = _hessian_grad_exact(net, x, y, weights, g)
        except RuntimeError as err:
            if "not implemented" not in str(err):
                raise
            hg = _hessian_grad_fd(net, x, y, weights, g)
    return float(sum((-w.detach() * h).sum() for w, h in zip(weights, hg, strict=True) if h is not None))


def _hessian_grad_exact(net: nn.Module, x: torch.Tensor, y: torch.Tensor, weights: list, g: tuple) -> tuple:
    grads = torch.autograd.grad(task_loss(net(x), y), weights, create_graph=True, allow_unused=True)
    z = sum((a.detach() * b).sum() for a, b in zip(g, grads, strict=True) if a is not None and b is not None)
    if not isinstance(z, torch.Tensor) or not z.requires_grad:
        return tuple(None for _ in weights)
    return torch.autograd.grad(z, weights, allow_unused=True)


def _hessian_grad_fd(net: nn.Module, x: torch.Tensor, y: torch.Tensor, weights: list, g: tuple) -> tuple:
    norm = math.sqrt(sum(float(a.pow(2).sum()) for a in g if a is not None))
    eps = 1e-3 / max(norm, 1e-12)
    steps = [torch.zeros_like(w) if a is None else a.detach() for w, a in zip(weights, g, strict=True)]

    def shifted_grad(scale: float) -> tuple:
        with torch.no_grad():
            for w, s in zip(weights, steps, strict=True):
                w.add_(s, alpha=scale)
        try:
            return torch.autograd.grad(task_loss(net(x), y), weights, allow_unused=True)
        finally:
            with torch.no_grad():
                for w, s in zip(weights, steps, strict=True):
                    w.sub_(s, alpha=scale)

    plus, minus = shifted_grad(eps), shifted_grad(-eps)
    return tuple(None if p is None or m is None else (p - m) / (2 * eps) for p, m in zip(plus, minus, strict=True))


@register_proxy("fisher")
def fisher(net: nn.Module, batch: Batch, seed: int = 0, naslib_weighting: bool = False) -> float:
    """Fisher channel saliency summed over every output channel of every Conv/Linear layer.

    With ``naslib_weighting=True`` each channel's value is multiplied by the number of weights feeding that
    channel, which is what NASLib's sum over its per-weight broadcast array computes.
    """
    layers = prunable_layers(net)
    x, y = batch_to(check_batch(batch), net_device(net))
    acts: list[tuple[nn.Module, torch.Tensor]] = []

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if output.requires_grad:
            acts.append((module, output))

    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        loss = task_loss(net(x), y)
    finally:
        for h in handles:
            h.remove()
    if not acts:
        return 0.0
    grads = torch.autograd.grad(loss, [a for _, a in acts], allow_unused=True)
    total = 0.0
    for (module, a), g in zip(acts, grads, strict=True):
        if g is None:
            continue
        prod = (a.detach() * g).double()
        channel_dim = 1 if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) else prod.dim() - 1
        prod = prod.movedim(channel_dim, -1).reshape(prod.shape[0], -1, prod.shape[channel_dim]).sum(1)
        per_channel = 0.5 * prod.pow(2).mean(0)
        if naslib_weighting:
            per_channel = per_channel * module.weight[0].numel()
        total += float(per_channel.sum())
    return total


class _Bypass:
    """Forward hook that returns a module's input unchanged (normalisation layers under synflow)."""

    def __call__(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return inputs[0]


@register_proxy("synflow")
def synflow(net: nn.Module, batch: Batch, seed: int = 0) -> float:
    """SynFlow ``log(sum |theta * dR/dtheta|)`` on ``|theta|`` with an all-ones input (see the module docstring).

    For integer (token) inputs the first sample's tokens stand in for the all-ones input, since ids index
    embedding rows rather than carry a magnitude.
    """
    x, _ = check_batch(batch)
    work = copy.deepcopy(net).double().eval()  # eval: no dropout; norms are bypassed anyway
    with torch.no_grad():
        for t in list(work.parameters()) + list(work.buffers()):
            if torch.is_floating_point(t):
                t.abs_()
    handles = [m.register_forward_hook(_Bypass()) for m in work.modules() if isinstance(m, NORMS)]
    device = net_device(work)
    inp = x[:1].to(device) if is_token_input(x) else torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=device)
    try:
        weights = [m.weight for m in prunable_layers(work)]
        with sdpa_kernel(SDPBackend.MATH):
            grads = torch.autograd.grad(work(inp).sum(), weights, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    total = float(sum((w.detach() * g).abs().sum() for w, g in zip(weights, grads, strict=True) if g is not None))
    return math.log(total) if total > 0 else -math.inf


@register_proxy("gradsign")
def gradsign(net: nn.Module, batch: Batch, seed: int = 0) -> float:
    """GradSign ``sum_k |sum_i sign(dL(x_i)/dtheta_k)|`` over Conv/Linear weights, one backward pass per sample.

    BatchNorm in train mode normalises each single sample over its spatial positions, as in the reference
    implementation's per-sample loop; networks with BatchNorm1d on flat features cannot run one sample.
    """
    x, y = check_batch(batch)
    layers = prunable_layers(net)
    weights = [m.weight for m in layers]
    sums = [torch.zeros_like(w) for w in weights]
    device = net_device(net)
    for i in range(x.shape[0]):
        xi, yi = x[i : i + 1].to(device), y[i : i + 1].to(device)
        grads = torch.autograd.grad(task_loss(net(xi), yi), weights, allow_unused=True)
        for s, g in zip(sums, grads, strict=True):
            if g is not None:
                s += torch.sign(g)
    return float(sum(s.abs().sum() for s in sums))
