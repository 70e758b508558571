"""Mixers: how architecture parameters ``alpha`` become the mixture weights of one decision.

One small protocol: a mixer maps an alpha vector to a `Mix` (weights over the options, plus a hard index for
one-hot samplers), gives the deterministic probabilities used for reporting and selection, and may add a
regulariser to the architecture loss.

- `SoftmaxMixer` (DARTS): ``softmax(alpha)``.
- `DirichletMixer` (DrNAS): a reparameterised sample of ``Dirichlet(elu(alpha) + 1)``; optional anchor
  regulariser ``reg_scale * KL(Dir(elu(alpha) + 1) || Dir(1, ..., 1))``.
- `GumbelMixer` (GDAS): hard Gumbel-softmax ``one_hot(argmax) - p.detach() + p`` with
  ``p = softmax((log_softmax(alpha) + g) / tau)``; tau annealed linearly from ``tau_max`` to ``tau_min``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch.distributions import Dirichlet, kl_divergence

from ..registry import Registry
from ..space.superposition import Mix


@runtime_checkable
class Mixer(Protocol):
    """Turns architecture parameters into mixture weights."""

    name: str
    hard: bool

    def sample(self, alpha: torch.Tensor, progress: float, generator: torch.Generator) -> Mix:
        """Mixture weights for one forward pass (differentiable w.r.t. ``alpha``); ``progress`` in [0, 1]."""
        ...

    def probs(self, alpha: torch.Tensor) -> torch.Tensor:
        """Deterministic option probabilities (for history, plots and selection)."""
        ...

    def regularizer(self, alphas: list[torch.Tensor]) -> torch.Tensor | None:
        """Extra term for the architecture loss, or None."""
        ...


MIXERS: Registry[type[Mixer]] = Registry("mixer")
"""Every gradient mixer class by name (``softmax``, ``dirichlet``, ``gumbel``); ``supernet info`` lists them."""


def register_mixer(name: str) -> Callable[[type[Mixer]], type[Mixer]]:
    """Class decorator: register a mixer class under ``name`` (its first docstring line describes it)."""
    return MIXERS.register(name)


@register_mixer("softmax")
class SoftmaxMixer:
    """Softmax (DARTS): w = softmax(alpha)."""

    name = "softmax"
    hard = False

    def sample(self, alpha: torch.Tensor, progress: float, generator: torch.Generator) -> Mix:
        return Mix(torch.softmax(alpha, dim=-1))

    def probs(self, alpha: torch.Tensor) -> torch.Tensor:
        return torch.softmax(alpha.detach(), dim=-1)

    def regularizer(self, alphas: list[torch.Tensor]) -> torch.Tensor | None:
        return None


def concentration(alpha: torch.Tensor) -> torch.Tensor:
    """DrNAS concentration ``elu(alpha) + 1`` (always positive)."""
    return F.elu(alpha) + 1.0


@register_mixer("dirichlet")
class DirichletMixer:
    """Dirichlet (DrNAS): w ~ Dirichlet(elu(alpha) + 1), with the reparameterisation gradient.

    Args:
        reg_scale: weight of the anchor regulariser ``sum_decisions KL(Dir(elu(alpha)+1) || Dir(1))``
            (0 disables it; DrNAS then relies on the L2 weight decay of the alpha optimizer).
    """

    name = "dirichlet"
    hard = False

    def __init__(self, reg_scale: float = 0.0) -> None:
        if reg_scale < 0:
            raise ValueError(f"reg_scale must be >= 0, got {reg_scale}")
        self.reg_scale = reg_scale

    def sample(self, alpha: torch.Tensor, progress: float, generator: torch.Generator) -> Mix:
        conc = concentration(alpha).float().cpu()
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            w = Dirichlet(conc).rsample()
        return Mix(w.to(alpha.device))

    def probs(self, alpha: torch.Tensor) -> torch.Tensor:
        conc = concentration(alpha.detach())
        return conc / conc.sum(-1, keepdim=True)

    def regularizer(self, alphas: list[torch.Tensor]) -> torch.Tensor | None:
        if self.reg_scale == 0 or not alphas:
            return None
        total = 0.0
        for a in alphas:
            conc = concentration(a)
            total = total + kl_divergence(Dirichlet(conc), Dirichlet(torch.ones_like(conc)))
        return self.reg_scale * total


@register_mixer("gumbel")
class GumbelMixer:
    """Gumbel (GDAS): a hard one-hot Gumbel-softmax sample with the straight-through gradient.

    Args:
        tau_max, tau_min: temperature at the start and at the end of training (linear in ``progress``).
    """

    name = "gumbel"
    hard = True

    def __init__(self, tau_max: float = 10.0, tau_min: float = 0.1) -> None:
        if not tau_max >= tau_min > 0:
            raise ValueError(f"need tau_max >= tau_min > 0, got tau_max={tau_max}, tau_min={tau_min}")
        self.tau_max, self.tau_min = tau_max, tau_min

    def temperature(self, progress: float) -> float:
        """``tau_max - (tau_max - tau_min) * progress`` with ``progress`` clamped to [0, 1]."""
        progress = min(max(progress, 0.0), 1.0)
        return self.tau_max - (self.tau_max - self.tau_min) * progress

    def sample(self, alpha: torch.Tensor, progress: float, generator: torch.Generator) -> Mix:
        tau = self.temperature(progress)
        for _ in range(100):  # resample in the (rare) case of an infinite Gumbel draw
            u = torch.empty(alpha.shape, dtype=torch.float32).exponential_(generator=generator)
            gumbel = (-u.log()).to(alpha.device)
            p = torch.softmax((torch.log_softmax(alpha.float(), dim=-1) + gumbel) / tau, dim=-1)
            if torch.isfinite(gumbel).all() and torch.isfinite(p).all():
                break
        index = int(p.detach().argmax())
        one_hot = torch.zeros_like(p)
        one_hot[index] = 1.0
        return Mix(one_hot - p.detach() + p, index)

    def probs(self, alpha: torch.Tensor) -> torch.Tensor:
        return torch.softmax(alpha.detach(), dim=-1)

    def regularizer(self, alphas: list[torch.Tensor]) -> torch.Tensor | None:
        return None
