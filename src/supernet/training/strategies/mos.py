"""``mos``: Mixture-of-Supernets (Jawahar et al., 2023): arch-routed mixtures of expert weights, trained by an inner
strategy.

Before training, every entangled Linear of the space becomes a mixture of ``experts`` weight matrices routed by
the arch (`supernet.space.mixture`: one small router, a softmax over the experts per layer). The inner strategy
(default ``sandwich``, as in the paper's supernet training) samples and trains the subnets; the router and the
experts learn from the same loss. The number of steps and paths is the inner strategy's: a ``mos`` run compares
with a run of the inner strategy alone at matched compute, and the router's extra work shows in wall time. For
entangled spaces (GPT, ViT); a space without entangled Linear layers is refused. ``pada`` cannot be the inner
strategy (it reads the Linear weights' gradients directly, which a mixture computes).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ...space import SuperModule
from ...space.mixture import mixture, mixture_of
from .base import register_strategy
from .composite import Composite, CompositeOptions


class MoSOptions(CompositeOptions):
    """Options of ``mos``."""

    inner: str = Field("sandwich", description="the strategy that samples and trains the subnets")
    experts: int = Field(2, ge=1, description="expert weight matrices per Linear layer (1: the plain supernet)")
    router_hidden: int = Field(32, ge=1, description="hidden width of the router MLP")


@register_strategy("mos")
class MixtureOfSupernets(Composite):
    """Mixture-of-Supernets: every entangled Linear weight is a router-weighted sum of expert weights."""

    Options = MoSOptions

    def __init__(self, options: Any = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        if self.options.inner == "pada":
            raise ValueError("mos: pada cannot be the inner strategy (it reads Linear weight gradients directly)")

    def prepare_space(self, space: SuperModule) -> None:
        o = self.options
        mixed = mixture_of(space)
        if mixed is None:
            mixture(space, o.experts, o.router_hidden)
        elif (mixed.experts, mixed.hidden) != (o.experts, o.router_hidden):
            raise ValueError(
                f"mos: the space is a mixture of {mixed.experts} experts (router {mixed.hidden}), the options ask "
                f"for {o.experts} ({o.router_hidden})"
            )


__all__ = ["MixtureOfSupernets", "MoSOptions"]
