"""The bilevel architecture step: update alpha on validation data (first- or second-order).

The alpha gradient is computed through *leaf* copies of the mixture weights: the supernet loss is
differentiated w.r.t. the sampled weights ``w`` (one forward/backward per needed pass, all with the same
sample), then chained back through the mixer into alpha. So every mixer (softmax, Dirichlet, Gumbel) works with
the second-order step as well, with one noise sample shared by all its passes.

Second order (DARTS, "unrolled"): ``grad_alpha L_val(w', alpha)`` with ``w' = w - xi * grad_w L_train(w, alpha)``,
minus ``xi`` times the Hessian-vector product ``grad^2_{alpha,w} L_train(w, alpha) . grad_w' L_val(w', alpha)``,
approximated by finite differences at ``w +- eps v`` with ``eps = 0.01 / ||v||``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from ..space.choice import Choice
from ..space.superposition import Mix
from .alphas import ArchParameters
from .mixers import Mixer

LossFn = Callable[[dict[Choice, Mix], Any], torch.Tensor]
"""``loss_fn(mixes, batch)``: the supernet's loss on ``batch`` under the given mixture weights."""


def _leaves(mixes: dict[Choice, Mix]) -> dict[Choice, Mix]:
    return {c: Mix(m.weights.detach().clone().requires_grad_(True), m.index) for c, m in mixes.items()}


def _grads(loss: torch.Tensor, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    gs = torch.autograd.grad(loss, tensors, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, gs, strict=True)]


class Architect:
    """Owns the alpha optimizer and computes alpha updates.

    Args:
        alphas: the architecture parameters.
        mixer: how alphas become mixture weights.
        lr, weight_decay, betas: Adam settings for alpha (DARTS: 3e-4, 1e-3, (0.5, 0.999)).
    """

    def __init__(
        self,
        alphas: ArchParameters,
        mixer: Mixer,
        lr: float = 3e-4,
        weight_decay: float = 1e-3,
        betas: tuple[float, float] = (0.5, 0.999),
    ) -> None:
        self.alphas, self.mixer = alphas, mixer
        # an extra differentiable term of the alpha loss (ProxylessNAS's expected latency), or None
        self.extra: Callable[[], torch.Tensor] | None = None
        self.optimizer = torch.optim.Adam(alphas.parameters(), lr=lr, betas=betas, weight_decay=weight_decay)

    def alpha_grads(
        self,
        loss_fn: LossFn,
        mixes: dict[Choice, Mix],
        val_batch: Any,
        *,
        second_order: bool = False,
        train_batch: Any = None,
        weights: Iterable[nn.Parameter] = (),
        xi: float = 0.0,
        weight_decay: float = 0.0,
    ) -> torch.Tensor:
        """Put the architecture gradient into ``alpha.grad`` (replacing it); returns the validation loss.

        ``mixes`` are mixture weights drawn from the alphas (``alphas.sample(mixer, ...)``, still attached to
        alpha's graph); every pass of this step uses this one sample. For ``second_order=True`` pass
        ``train_batch``, the network ``weights``, the unrolling step size ``xi`` (usually the weights'
        learning rate) and their L2 ``weight_decay``.
        """
        live = mixes
        leaves = _leaves(live)
        leaf_w = [m.weights for m in leaves.values()]
        if not second_order:
            val_loss = loss_fn(leaves, val_batch)
            g_mix = _grads(val_loss, leaf_w)
        else:
            if train_batch is None:
                raise ValueError("the second-order alpha step needs train_batch")
            params = [p for p in weights if p.requires_grad]
            if not params:
                raise ValueError("the second-order alpha step needs the network weights")
            val_loss, g_mix = self._unrolled(loss_fn, leaves, leaf_w, val_batch, train_batch, params, xi, weight_decay)
        for a in self.alphas.parameters():
            a.grad = None
        total = sum((m.weights.float() * g.float()).sum() for m, g in zip(live.values(), g_mix, strict=True))
        reg = self.mixer.regularizer(self.alphas.parameters())
        if reg is not None:
            total = total + reg
        if self.extra is not None:
            total = total + self.extra().to(total.dtype if torch.is_tensor(total) else torch.float32)
        if torch.is_tensor(total) and total.requires_grad:
            total.backward()
        for a in self.alphas.parameters():
            if a.grad is None:
                a.grad = torch.zeros_like(a)
        return val_loss.detach()

    def _unrolled(
        self,
        loss_fn: LossFn,
        leaves: dict[Choice, Mix],
        leaf_w: list[torch.Tensor],
        val_batch: Any,
        train_batch: Any,
        params: list[nn.Parameter],
        xi: float,
        weight_decay: float,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        original = [p.detach().clone() for p in params]
        g_train = _grads(loss_fn(leaves, train_batch), params)
        try:
            with torch.no_grad():  # w' = w - xi * (grad + wd * w)
                for p, g, w in zip(params, g_train, original, strict=True):
                    p.copy_(w - xi * (g + weight_decay * w))
            val_loss = loss_fn(leaves, val_batch)
            grads = _grads(val_loss, leaf_w + params)
            d_mix, v = grads[: len(leaf_w)], grads[len(leaf_w) :]
            norm = torch.sqrt(sum((g.float() ** 2).sum() for g in v))
            eps = 0.01 / max(float(norm), 1e-12)
            with torch.no_grad():
                for p, w, g in zip(params, original, v, strict=True):
                    p.copy_(w + eps * g)
            g_plus = _grads(loss_fn(leaves, train_batch), leaf_w)
            with torch.no_grad():
                for p, w, g in zip(params, original, v, strict=True):
                    p.copy_(w - eps * g)
            g_minus = _grads(loss_fn(leaves, train_batch), leaf_w)
        finally:
            with torch.no_grad():
                for p, w in zip(params, original, strict=True):
                    p.copy_(w)
        hvp = [(gp - gm) / (2 * eps) for gp, gm in zip(g_plus, g_minus, strict=True)]
        return val_loss, [d - xi * h for d, h in zip(d_mix, hvp, strict=True)]

    def step(self) -> None:
        """Apply the alpha optimizer to the gradients put there by `alpha_grads`."""
        self.optimizer.step()
