"""Pattern- and spectrum-based proxies: ``swap`` (SWAP-Score) and ``vkdnw`` (Fisher-spectrum entropy).

- ``swap`` (Peng et al., ICLR 2024, "SWAP-NAS: Sample-Wise Activation Patterns for Ultra-fast NAS"): the number of
  distinct *sample-wise* activation patterns. At every activation module the binary code ``pre-activation > 0`` of
  the batch is a ``(samples, units)`` matrix (NASWOT's codes); SWAP reads it transposed, one row of ``B`` bits per
  unit, and counts the distinct rows over the concatenation of all activation modules (a pattern shared by two
  layers counts once). As for ``nwot``, the ReLU family is the paper's case; GELU/SiLU/Hardswish/... use the same
  sign code as an extension (``relu_only=True`` refuses them); a network without activation modules raises
  `ProxyNotApplicableError`. The paper's *regularised* SWAP-Score multiplies the count by
  ``exp(-(P - mu)^2 / sigma)``, ``P`` the parameter count in thousands; ``mu`` and ``sigma`` are a per-search-space
  size prior for which the official code sets no default (its correlation script scores the plain count), so the
  registered ``swap`` is the plain count and the regularised score is ``swap(..., mu=..., sigma=...)`` (or
  `swap_regularised`, a proxy to register with a chosen prior).
- ``vkdnw`` (Tybl & Neumann, CVPR 2025, "Training-free Neural Architecture Search through Variance of Knowledge of
  Deep Network Weights"): the entropy of the nine deciles of the eigenvalue spectrum of the Fisher information
  matrix of a few weights at initialisation, under the model's own (smoothed) softmax distribution. Needs class
  or token logits (`ProxyNotApplicableError` for regression outputs and for networks without parameters).
  `vkdnw_single` adds the paper's size term (the number of parameter tensors) in front of it.

Both are deterministic: neither draws random numbers unless ``vkdnw(..., sample_tensors=True)`` (seeded by ``seed``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Literal

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from .activation import GATED, RELU_FAMILY
from .common import Batch, ProxyNotApplicableError, batch_to, check_batch, hooked, net_device
from .registry import register_proxy

# ---- SWAP ---------------------------------------------------------------------------------------------------------

_BITS = 63  # bits per int64 word when packing one unit's pattern over the samples (sign bit left unused)


def _activation_modules(net: nn.Module, relu_only: bool, proxy: str) -> list[nn.Module]:
    kinds = RELU_FAMILY if relu_only else RELU_FAMILY + GATED
    acts = [m for m in net.modules() if isinstance(m, kinds)]
    if not acts:
        raise ProxyNotApplicableError(
            f"{proxy} needs activation modules (nn.ReLU and relatives"
            + ("" if relu_only else ", or GELU/SiLU/Hardswish/...")
            + f"); found none in {type(net).__name__}"
        )
    return acts


def _pack_patterns(code: torch.Tensor) -> torch.Tensor:
    """``(samples, units)`` booleans -> ``(units, words)`` int64 keys, one key row per unit's pattern."""
    powers = 2 ** torch.arange(_BITS, dtype=torch.int64, device=code.device)
    words = []
    for start in range(0, code.shape[0], _BITS):
        chunk = code[start : start + _BITS].to(torch.int64)
        words.append((chunk * powers[: chunk.shape[0], None]).sum(0))
    return torch.stack(words, dim=1)


def swap_size_factor(net: nn.Module, mu: float, sigma: float) -> float:
    """SWAP's size regulariser ``exp(-(P - mu)^2 / sigma)``, ``P`` = parameters in thousands (Peng et al. 2024).

    ``P`` counts every parameter tensor whose name does not contain ``"auxiliary"`` (as the reference code does).
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    p = sum(t.numel() for name, t in net.named_parameters() if "auxiliary" not in name) / 1e3
    return math.exp(-((p - mu) ** 2) / sigma)


@register_proxy("swap")
def swap(
    net: nn.Module,
    batch: Batch,
    seed: int = 0,
    mu: float | None = None,
    sigma: float | None = None,
    relu_only: bool = False,
) -> float:
    """SWAP-Score (Peng et al., ICLR 2024): the number of distinct sample-wise activation patterns.

    ``|{ C[:, u] : u a unit of any activation module }|`` with ``C`` the ``(batch, units)`` binary code
    ``pre-activation > 0`` of each activation module (all modules' units pooled, each unit's column of ``B`` bits
    one pattern). With ``mu`` and ``sigma`` it is the regularised SWAP-Score, multiplied by
    ``exp(-(P - mu)^2 / sigma)``, ``P`` the number of parameters in thousands. At most ``min(units, 2^B)``.
    """
    x, y = check_batch(batch)
    if (mu is None) != (sigma is None):
        raise ValueError("the regularised SWAP-Score needs both mu and sigma (or neither)")
    acts = _activation_modules(net, relu_only, "swap")
    keys: list[torch.Tensor] = []

    def hook(module: nn.Module, inputs: tuple) -> None:
        code = inputs[0].detach().reshape(inputs[0].shape[0], -1) > 0
        keys.append(torch.unique(_pack_patterns(code), dim=0))

    with hooked(acts, hook, pre=True), torch.no_grad():
        net(batch_to((x, y), net_device(net))[0])
    count = float(torch.unique(torch.cat(keys), dim=0).shape[0]) if keys else 0.0
    if mu is not None and sigma is not None:
        count *= swap_size_factor(net, mu, sigma)
    return count


# ---- VKDNW --------------------------------------------------------------------------------------------------------

JacobianMode = Literal["auto", "forward", "reverse"]


def _selected_weights(
    net: nn.Module, max_tensors: int, per_tensor: int, sample_tensors: bool, seed: int
) -> list[tuple[str, torch.Tensor, int]]:
    """``(name, parameter, flat index)`` of the scored weights, in parameter order."""
    named = list(net.named_parameters())
    if not named:
        raise ProxyNotApplicableError("vkdnw needs parameters to take the Fisher information of; the network has none")
    if max_tensors < 1 or per_tensor < 1:
        raise ValueError(f"max_tensors and per_tensor must be >= 1, got {max_tensors} and {per_tensor}")
    if sample_tensors and len(named) > max_tensors:
        gen = torch.Generator().manual_seed(seed)
        chosen = sorted(torch.randperm(len(named), generator=gen)[:max_tensors].tolist())
    else:
        chosen = list(range(min(max_tensors, len(named))))
    out = []
    for i in chosen:
        name, p = named[i]
        idx = torch.linspace(0, p.numel() - 1, steps=per_tensor).long().unique().tolist()
        out.extend((name, p, k) for k in idx)
    return out


def _jacobian_forward(net: nn.Module, x: torch.Tensor, weights: list, classes: int) -> torch.Tensor:
    cols = []
    with sdpa_kernel(SDPBackend.MATH), fwAD.dual_level(), warnings.catch_warnings():
        # torch's forward AD scripts its jvp decompositions on first use, which warns that torch.jit is deprecated
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
        for name, p, k in weights:
            tangent = torch.zeros(p.shape, dtype=p.dtype, device=p.device)
            tangent.view(-1)[k] = 1.0
            out = functional_call(net, {name: fwAD.make_dual(p.detach(), tangent)}, (x,))
            t = fwAD.unpack_dual(out).tangent
            t = torch.zeros_like(out) if t is None else t
            cols.append(t.detach().reshape(-1, classes))
    return torch.stack(cols, dim=-1)


def _jacobian_per_sample(
    net: nn.Module, x: torch.Tensor, weights: list, logits: torch.Tensor
) -> torch.Tensor | None:
    """``d logits_n / d theta`` for every sample ``n`` by reverse mode, vmapped over the samples (and, inside
    `jacrev`, over a sample's logits): the cost of about one backward pass of the batch per logit of one sample.
    ``None`` where the network cannot run under vmap, or where a sample's logits computed alone differ from the
    batch's (the samples are not independent, e.g. a batch-statistics norm): the caller then uses another mode."""
    from torch.func import jacrev, vmap

    by_tensor: dict[str, tuple[torch.Tensor, list[int], list[int]]] = {}
    for j, (name, p, k) in enumerate(weights):
        by_tensor.setdefault(name, (p, [], []))
        by_tensor[name][1].append(k)
        by_tensor[name][2].append(j)
    index = {n: (torch.tensor(ks, device=p.device), torch.tensor(js, device=p.device))
             for n, (p, ks, js) in by_tensor.items()}

    def sample_logits(delta: torch.Tensor, xn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        params = {}
        for name, (p, _, _) in by_tensor.items():
            ks, js = index[name]
            params[name] = p.detach().reshape(-1).index_add(0, ks, delta[js].to(p.dtype)).reshape(p.shape)
        out = functional_call(net, params, (xn.unsqueeze(0),)).reshape(-1)
        return out, out.detach()

    delta = torch.zeros(len(weights), dtype=logits.dtype, device=logits.device)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            jac, alone = vmap(jacrev(sample_logits, has_aux=True), in_dims=(None, 0), chunk_size=16)(delta, x)
    except (RuntimeError, NotImplementedError, ValueError):
        return None
    if not torch.allclose(alone.reshape(logits.shape), logits, rtol=1e-4, atol=1e-5):
        return None
    return jac.detach().reshape(-1, logits.shape[-1], len(weights))


def _jacobian_reverse(net: nn.Module, x: torch.Tensor, weights: list, classes: int) -> torch.Tensor:
    tensors: list[torch.Tensor] = []
    for _, p, _ in weights:
        if not any(p is t for t in tensors):
            tensors.append(p)
    where = [next(i for i, t in enumerate(tensors) if t is p) for _, p, _ in weights]
    out = net(x).reshape(-1, classes)
    jac = torch.zeros(*out.shape, len(weights), dtype=out.dtype, device=out.device)
    flat = out.reshape(-1)
    for r in range(flat.numel()):
        grads = torch.autograd.grad(flat[r], tensors, retain_graph=True, allow_unused=True)
        for j, ((_, _, k), w) in enumerate(zip(weights, where, strict=True)):
            if grads[w] is not None:
                jac.view(-1, len(weights))[r, j] = grads[w].reshape(-1)[k]
    return jac


def _multinomial_cholesky(p: torch.Tensor) -> torch.Tensor:
    """Lower-triangular ``L`` with ``L L^T = diag(p) - p p^T`` for each row of ``p`` (Tanabe & Sagae 1992)."""
    c = p.shape[1]
    q = (1.0 - torch.cumsum(p, dim=1)).clamp_min(0.0)
    q[:, -1] = 0.0
    q_prev = torch.cat([torch.ones_like(q[:, :1]), q[:, :-1]], dim=1)
    d = torch.sqrt((p * q / q_prev).clamp_min(0.0))
    below = torch.tril(torch.ones(c, c, dtype=torch.bool, device=p.device), diagonal=-1)
    ratio = -p[:, :, None] / torch.where(q > 0, q, torch.ones_like(q))[:, None, :]
    eye = torch.eye(c, dtype=p.dtype, device=p.device).expand_as(ratio)
    low = torch.where(below, ratio, eye)
    return low * d[:, None, :]


def vkdnw_fisher(
    net: nn.Module,
    batch: Batch,
    seed: int = 0,
    max_tensors: int = 128,
    per_tensor: int = 1,
    sample_tensors: bool = False,
    alpha: float = 0.05,
    reference_factor: bool = False,
    jacobian: JacobianMode = "auto",
) -> torch.Tensor:
    """VKDNW's Fisher information matrix of the selected weights, ``(P, P)`` float64 (Tybl & Neumann, CVPR 2025).

    ``F = mean_n J_n^T (diag(p_n) - p_n p_n^T) J_n`` over the batch (over every sample and position for token
    logits), ``J_n = d logits_n / d theta`` for the ``P`` selected weights and
    ``p_n = (1 - alpha) softmax(logits_n) + alpha / C`` (the expected outer product of ``d log p(y | x_n) / d theta``
    under ``y ~ p_n``: no labels are used). The weights: the first ``max_tensors`` parameter tensors in
    ``named_parameters()`` order (a seeded random subset with ``sample_tensors=True``), and in each the
    ``per_tensor`` flat indices ``linspace(0, numel - 1, per_tensor)`` (index 0 when 1). The network runs in eval
    mode (its modes are restored afterwards), so BatchNorm uses running statistics and dropout is off.

    ``reference_factor=True`` reproduces the official code's product ``(L J_n)^T (L J_n)``, ``L`` the lower
    Cholesky factor of the covariance (``L L^T = diag(p) - p p^T``); the Fisher information is
    ``(L^T J_n)^T (L^T J_n)``, and the two differ in general. ``jacobian`` picks forward-mode AD (one forward pass
    of the batch per weight), reverse mode (per sample, vmapped: about one backward pass of the batch per logit of
    a sample; one backward pass per logit of the batch where the network cannot be vmapped or its samples are not
    independent), or (``"auto"``) the cheaper of the two, counting a backward pass as two forward passes, falling
    back to reverse mode where an op has no forward-mode derivative.

    ``F`` has rank at most ``N (C - 1)`` (``N`` samples or positions, ``C`` classes): with fewer than ``P`` the
    lower deciles of its spectrum are zero and the score degenerates, so use a batch with ``N (C - 1) >= P``
    (the official NAS-Bench-201 runs: 64 Gaussian-noise inputs, 10-120 classes, 128 weights).
    """
    x, y = check_batch(batch)
    weights = _selected_weights(net, max_tensors, per_tensor, sample_tensors, seed)
    x, y = batch_to((x, y), net_device(net))
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
            logits = net(x)
        if not (logits.dim() == y.dim() + 1 and logits.shape[:-1] == y.shape and logits.shape[-1] >= 2):
            raise ProxyNotApplicableError(
                f"vkdnw needs class or token logits (B, C) / (B, T, V) to take a softmax Fisher information of; "
                f"got outputs {tuple(logits.shape)} for targets {tuple(y.shape)}"
            )
        classes = logits.shape[-1]
        per_sample = logits[0].numel()
        jac = None
        if jacobian == "reverse" or (jacobian == "auto" and 2 * per_sample < len(weights)):
            jac = _jacobian_per_sample(net, x, weights, logits)
        if jac is None and jacobian != "reverse":
            try:
                jac = _jacobian_forward(net, x, weights, classes)
            except (RuntimeError, NotImplementedError):
                if jacobian == "forward":
                    raise
        if jac is None:
            jac = _jacobian_reverse(net, x, weights, classes)
    finally:
        for m, training in modes:
            m.training = training
    jac = jac.double()
    z = logits.detach().reshape(-1, classes).double()
    p = F.softmax(z, dim=1) * (1.0 - alpha) + alpha / classes
    if reference_factor:
        a = _multinomial_cholesky(p) @ jac
        return torch.einsum("nci,ncj->ij", a, a) / z.shape[0]
    cov = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    return torch.einsum("nci,ncd,ndj->ij", jac, cov, jac) / z.shape[0]


def decile_entropy(eigenvalues: torch.Tensor) -> float:
    """Entropy of the nine deciles of a spectrum, normalised to sum 1: VKDNW's score from the FIM eigenvalues.

    ``q_k = quantile(lambda, k / 10)`` for ``k = 1..9`` (linear interpolation), ``t = q / (sum |q| + 1e-10)``,
    ``-sum t log(t + 1e-10)`` (Tybl & Neumann, CVPR 2025; the epsilons are the official code's). In ``[0, log 9]``.
    """
    lam = eigenvalues.detach().double().flatten()
    q = torch.quantile(lam, torch.arange(1, 10, dtype=torch.float64, device=lam.device) / 10)
    t = q / (q.abs().sum() + 1e-10)
    return float(-(t * torch.log(t + 1e-10)).sum()) + 0.0  # + 0.0: an all-zero spectrum gives 0.0, not -0.0


@register_proxy("vkdnw")
def vkdnw(
    net: nn.Module,
    batch: Batch,
    seed: int = 0,
    max_tensors: int = 128,
    per_tensor: int = 1,
    sample_tensors: bool = False,
    alpha: float = 0.05,
    reference_factor: bool = False,
    jacobian: JacobianMode = "auto",
) -> float:
    """VKDNW (Tybl & Neumann, CVPR 2025): entropy of the deciles of the weights' Fisher information spectrum.

    ``decile_entropy(svd(F))`` with ``F`` from `vkdnw_fisher` (the selected weights' Fisher information under the
    model's own smoothed softmax, at initialisation, eval mode); ``q_k`` the ``k/10`` quantiles of its eigenvalues,
    ``t = q / sum q``, score ``-sum_k t_k log t_k`` (higher is better). The keyword arguments are `vkdnw_fisher`'s.
    """
    fisher = vkdnw_fisher(
        net,
        batch,
        seed=seed,
        max_tensors=max_tensors,
        per_tensor=per_tensor,
        sample_tensors=sample_tensors,
        alpha=alpha,
        reference_factor=reference_factor,
        jacobian=jacobian,
    )
    return decile_entropy(torch.linalg.svdvals(fisher))


def vkdnw_single(net: nn.Module, batch: Batch, seed: int = 0, **kwargs: object) -> float:
    """VKDNW_single (Tybl & Neumann, CVPR 2025) as one number: ``#parameter tensors + vkdnw / log 10``.

    The paper ranks networks by the pair (number of parameter tensors, ``vkdnw``) lexicographically; since
    ``vkdnw <= log 9 < log 10`` this sum orders networks the same way. Not registered; ``kwargs`` go to `vkdnw`.
    """
    entropy = vkdnw(net, batch, seed=seed, **kwargs)  # type: ignore[arg-type]
    return len(list(net.named_parameters())) + entropy / math.log(10)


def swap_regularised(mu: float, sigma: float, relu_only: bool = False) -> Callable[..., float]:
    """A proxy ``fn(net, batch, seed=0)`` computing the regularised SWAP-Score with this size prior.

    ``swap(net, batch, mu=mu, sigma=sigma)``: count times ``exp(-(P - mu)^2 / sigma)``, ``P`` parameters in
    thousands (Peng et al., ICLR 2024). Register it under a name of your choice with ``register_proxy``.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")

    def fn(net: nn.Module, batch: Batch, seed: int = 0) -> float:
        return swap(net, batch, seed=seed, mu=mu, sigma=sigma, relu_only=relu_only)

    fn.__doc__ = f"Regularised SWAP-Score with mu={mu}, sigma={sigma} (parameters in thousands)."
    return fn


__all__ = [
    "decile_entropy",
    "swap",
    "swap_regularised",
    "swap_size_factor",
    "vkdnw",
    "vkdnw_fisher",
    "vkdnw_single",
]
