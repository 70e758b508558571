"""Mixture-of-Supernets (Jawahar et al., 2023): architecture-routed mixtures of expert weights.

`mixture(space, experts=K)` turns every entangled `supernet.space.Linear` of a space into a mixture of ``K``
expert weight matrices, in place: the layer's weight under arch ``a`` is ``sum_k c_k(a) W_k``, sliced as usual,
where the coefficients come from one small *router* (an MLP on a fixed one-hot encoding of the arch, one softmax
over the ``K`` experts per layer: the layer-wise MoS). Each subnet thus gets weights customised to it while memory
stays about ``K`` times the Linear weights. ``W_0`` is the layer's own weight; the other experts start as copies
of it plus small noise (seeded), so the mixture starts near the plain supernet and the experts can diverge. Biases
are not mixed. With ``K = 1`` every coefficient is exactly 1 and the space computes exactly what it did before.

``extract(arch)`` materialises the mixed weight into a plain ``nn.Linear``: the exported net is as plain and as
small as without the mixture. The router's and the experts' weights are ordinary parameters trained with the
supernet's loss; the mixture (experts, router width) is recorded in ``space.spec`` so a run directory rebuilds it.

Implemented with ``torch.nn.utils.parametrize`` (the layer's ``weight`` becomes a computed tensor); strategies that
read a Linear weight's ``.grad`` directly (``pada``'s path importance) do not apply to a mixed space.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from .base import NetWrapper, extract_module
from .choice import Choice
from .layers import Linear
from .supermodule import SuperModule

NOISE = 1e-2  # std of the extra experts' start noise, relative to the weight's std
SEED = 0


class Router(nn.Module):
    """An MLP from the one-hot encoding of the active arch to one softmax over ``experts`` per mixed layer."""

    def __init__(self, decisions: dict[str, Choice], layers: int, experts: int, hidden: int) -> None:
        super().__init__()
        self._decisions = dict(decisions)
        width = sum(len(c.options) for c in self._decisions.values())
        self.layers, self.experts = layers, experts
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, layers * experts))
        # until the first `update`: equal weights (exactly 1 for a single expert)
        self.coefficients = torch.full((layers, experts), 1.0 / experts)

    def encode(self) -> torch.Tensor:
        """The one-hot encoding of the active arch (decisions in the space's order)."""
        rows = []
        for c in self._decisions.values():
            row = torch.zeros(len(c.options))
            row[c.index(c.current)] = 1.0
            rows.append(row)
        return torch.cat(rows).to(self.mlp[0].weight.device)

    def update(self) -> torch.Tensor:
        """Compute (and keep, for the mixed layers) the ``(layers, experts)`` coefficients of the active arch."""
        logits = self.mlp(self.encode()).view(self.layers, self.experts)
        self.coefficients = F.softmax(logits, dim=-1)
        return self.coefficients


class MixedWeight(nn.Module):
    """The parametrization of one Linear weight: ``c_0 W + sum_{k>0} c_k W_k`` with the router's coefficients."""

    def __init__(self, weight: torch.Tensor, experts: int, slot: int, router: Router, generator: torch.Generator
                 ) -> None:
        super().__init__()
        if experts > 1:
            scale = NOISE * float(weight.detach().std())
            noise = torch.randn((experts - 1, *weight.shape), generator=generator) * scale
            self.extra: nn.Parameter | None = nn.Parameter(weight.detach().cpu().unsqueeze(0) + noise)
        else:  # one expert: the layer's own weight only (no empty parameter for optimizers and DDP to trip on)
            self.register_parameter("extra", None)
        self.slot = slot
        self._router = [router]  # a plain reference: the router is registered once, on the `Mixture`

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        c = self._router[0].coefficients[self.slot].to(weight.device, weight.dtype)
        out = c[0] * weight
        if self.extra is not None:
            out = out + torch.tensordot(c[1:], self.extra.to(weight.dtype), dims=1)
        return out


class Mixture(NetWrapper):
    """A network whose entangled Linear layers are mixtures of experts; ``forward`` routes the active arch."""

    def __init__(self, net: nn.Module, decisions: dict[str, Choice], experts: int, hidden: int) -> None:
        super().__init__()
        layers = [m for m in net.modules() if isinstance(m, Linear)]
        if not layers:
            raise ValueError("a mixture of supernets needs entangled Linear layers (sn.Linear); this space has none")
        self.net = net
        with torch.random.fork_rng(devices=[]):  # seeded, and the caller's random stream is left as it was
            torch.manual_seed(SEED)
            self.router = Router(decisions, len(layers), experts, hidden)
        generator = torch.Generator().manual_seed(SEED)
        for slot, layer in enumerate(layers):
            mixed = MixedWeight(layer.weight, experts, slot, self.router, generator)
            parametrize.register_parametrization(layer, "weight", mixed, unsafe=True)
        self.experts, self.hidden = experts, hidden

    def wrapped(self) -> nn.Module:
        return self._modules["net"]  # type: ignore[return-value]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self.router.update()
        return self.net(*args, **kwargs)

    def extract(self) -> nn.Module:
        with torch.no_grad():
            self.router.update()
            return extract_module(self.net)


def mixture(space: SuperModule, experts: int = 2, hidden: int = 32) -> Mixture:
    """Make every entangled Linear of ``space`` a mixture of ``experts`` weights routed by the arch, in place.

    Returns the `Mixture` (now ``space.net``); ``space.spec`` records it.

    Raises:
        ValueError: ``experts < 1`` or ``hidden < 1``, a space without entangled Linear layers, or one already mixed.
    """
    if experts < 1 or hidden < 1:
        raise ValueError(f"experts and hidden must be >= 1, got {experts} and {hidden}")
    if isinstance(space.net, Mixture):
        raise ValueError(f"this space is already a mixture of {space.net.experts} supernets")
    device = next((p.device for p in space.parameters()), torch.device("cpu"))
    mixed = Mixture(space.net, space.decisions, experts, hidden).to(device)
    space.net = mixed
    if space.spec is not None:
        space.spec = {**space.spec, "mixture": {"experts": experts, "hidden": hidden}}
    return mixed


def mixture_of(space: SuperModule) -> Mixture | None:
    """The space's `Mixture`, or None."""
    return space.net if isinstance(space.net, Mixture) else None


__all__ = ["MixedWeight", "Mixture", "Router", "mixture", "mixture_of"]
