"""Activation- and Jacobian-based proxies: ``nwot`` (NASWOT), ``jacov`` and ``zen``.

Which op types they cover:

- ``nwot`` reads binary codes ``pre-activation > 0`` at activation *modules*. It is defined for ReLU-family
  activations (ReLU, ReLU6, LeakyReLU, PReLU, RReLU), where the code says which linear region an input falls in.
  For smooth gated activations (GELU, SiLU, Hardswish, Mish, ELU, CELU, SELU; e.g. the gpt and vit spaces) the
  same sign code is used as an extension beyond the paper (``relu_only=True`` refuses them instead). Activations
  applied as functions inside ``forward`` (``F.relu``) are invisible; a network without any activation module
  raises `ProxyNotApplicableError`.
- ``jacov`` and ``zen`` differentiate or perturb the *input*: they need continuous inputs (images, features)
  and raise `ProxyNotApplicableError` for integer token inputs (language models).
- ``zen`` is defined for ReLU CNNs with BatchNorm (Lin et al. 2021); on other networks it is computed the same
  way (feature map before global pooling, or the input of the last Linear layer when there is no pooling) but
  lies outside the paper's analysis.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from .common import Batch, ProxyNotApplicableError, batch_to, check_batch, hooked, is_token_input, net_device
from .registry import register_proxy

RELU_FAMILY = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU)
GATED = (nn.GELU, nn.SiLU, nn.Hardswish, nn.Mish, nn.ELU, nn.CELU, nn.SELU)


@register_proxy("nwot")
def nwot(net: nn.Module, batch: Batch, seed: int = 0, relu_only: bool = False) -> float:
    """NASWOT (Mellor et al. 2021, v2): log-determinant of the kernel of the batch's binary activation codes.

    ``log|K|`` with ``K = sum over activation modules of C C^T + (1-C)(1-C)^T``, ``C`` the ``(batch, units)``
    binary code ``pre-activation > 0``.

    ``K[i, j]`` counts the units where samples ``i`` and ``j`` agree. Returns ``-inf`` when ``K`` is singular
    (two samples with identical codes everywhere). Needs a batch of at least 2 samples.
    """
    x, y = check_batch(batch)
    if x.shape[0] < 2:
        raise ValueError("nwot needs a batch of at least 2 samples (it compares samples with each other)")
    kinds = RELU_FAMILY if relu_only else RELU_FAMILY + GATED
    acts = [m for m in net.modules() if isinstance(m, kinds)]
    if not acts:
        raise ProxyNotApplicableError(
            "nwot needs activation modules (nn.ReLU and relatives"
            + ("" if relu_only else ", or GELU/SiLU/Hardswish/...")
            + f"); found none in {type(net).__name__}"
        )
    kernel = torch.zeros(x.shape[0], x.shape[0], dtype=torch.float64, device=net_device(net))

    def hook(module: nn.Module, inputs: tuple) -> None:
        code = (inputs[0].detach().reshape(inputs[0].shape[0], -1) > 0).double()
        kernel.add_(code @ code.T + (1.0 - code) @ (1.0 - code).T)

    with hooked(acts, hook, pre=True), torch.no_grad():
        net(batch_to((x, y), net_device(net))[0])
    sign, logdet = torch.linalg.slogdet(kernel.cpu())
    return float(logdet) if sign > 0 else -math.inf


@register_proxy("jacov")
def jacov(net: nn.Module, batch: Batch, seed: int = 0) -> float:
    """Jacobian covariance (Mellor et al. 2021, v1; NASLib's variant).

    ``J`` = per-sample gradient of the sum of the outputs with respect to the input, flattened to
    ``(batch, input size)``; ``R`` = correlation matrix of the rows; with its eigenvalues ``v`` (negative
    round-off clipped to 0) and ``k = 1e-5``: ``-sum(log(v + k) + 1 / (v + k))``. Returns ``-inf`` when a
    sample's Jacobian is constant (the output ignores the input), where the correlation is undefined.
    """
    x, _ = check_batch(batch)
    if is_token_input(x):
        raise ProxyNotApplicableError("jacov differentiates with respect to the input; integer token ids have none")
    if x.shape[0] < 2:
        raise ValueError("jacov needs a batch of at least 2 samples")
    xi = x.to(net_device(net)).detach().clone().requires_grad_(True)
    out = net(xi)
    (jac,) = torch.autograd.grad(out.sum(), xi, allow_unused=True)
    if jac is None:
        return -math.inf
    j = jac.reshape(jac.shape[0], -1).double().cpu().numpy()
    if np.any(j.std(axis=1) == 0):
        return -math.inf
    corr = np.corrcoef(j)
    v = np.clip(np.linalg.eigvalsh(corr), 0.0, None)
    k = 1e-5
    return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))


_POOLS = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool2d)


def _feature_module(net: nn.Module) -> nn.Module:
    pools = [m for m in net.modules() if isinstance(m, _POOLS)]
    if pools:
        return pools[-1]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if linears:
        return linears[-1]
    raise ProxyNotApplicableError("zen needs a global pooling layer or a final Linear head to read features at")


@register_proxy("zen")
def zen(net: nn.Module, batch: Batch, seed: int = 0, mixup_gamma: float = 1e-2) -> float:
    """Zen-score (Lin et al. 2021) on a Gaussian-initialised copy with Gaussian inputs shaped like the batch.

    ``log E_x ||f(x) - f(x + gamma * eps)||_1 + sum over BatchNorm layers of log sqrt(mean_c var_c)`` where
    ``f`` is the feature map entering the last global pooling layer (else the input of the last Linear layer),
    Conv/Linear weights are drawn from ``N(0, 1)`` with zero biases, BatchNorm uses batch statistics with unit
    scale and zero shift, and ``var_c`` is BatchNorm's batch variance of channel ``c`` on ``x``.
    """
    x, _ = check_batch(batch)
    if is_token_input(x):
        raise ProxyNotApplicableError("zen perturbs the input with Gaussian noise; integer token ids cannot be")
    work = copy.deepcopy(net).train()
    device = net_device(work)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in work.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
                m.weight.fill_(1.0)
                m.bias.zero_()
    x1 = torch.randn(x.shape, generator=gen, dtype=torch.float32).to(device)
    x2 = torch.randn(x.shape, generator=gen, dtype=torch.float32).to(device)
    target = _feature_module(work)
    feats: list[torch.Tensor] = []
    log_bn: list[float] = []
    record_bn = [True]

    def feat_hook(module: nn.Module, inputs: tuple) -> None:
        feats.append(inputs[0].detach())

    def bn_hook(module: nn.Module, inputs: tuple) -> None:
        if record_bn[0]:
            a = inputs[0].detach()
            dims = [d for d in range(a.dim()) if d != 1]
            log_bn.append(0.5 * math.log(float(a.var(dim=dims, unbiased=False).mean()) + 1e-30))

    handles = [target.register_forward_pre_hook(feat_hook)]
    handles += [
        m.register_forward_pre_hook(bn_hook) for m in work.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    try:
        with torch.no_grad():
            work(x1)
            record_bn[0] = False
            work(x1 + mixup_gamma * x2)
    finally:
        for h in handles:
            h.remove()
    diff = (feats[0] - feats[1]).abs().reshape(x.shape[0], -1).sum(1).mean()
    d = float(diff)
    return (math.log(d) if d > 0 else -math.inf) + sum(log_bn)
