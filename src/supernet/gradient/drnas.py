"""``drnas``: DrNAS (Chen et al., 2021) — mixture weights sampled from a Dirichlet over the options."""

from __future__ import annotations

from pydantic import Field

from ..training.strategies.base import register_strategy
from .base import GradientOptions, GradientStrategy
from .mixers import DirichletMixer, Mixer


class DrNASOptions(GradientOptions):
    """DrNAS options: the anchor regulariser's weight (0: off; the alpha L2 decay then regularises)."""

    kl_reg_scale: float = Field(0.0, ge=0, description="weight of sum KL(Dir(elu(alpha)+1) || Dir(1))")


@register_strategy("drnas")
class DrNAS(GradientStrategy):
    """DrNAS: mixture weights sampled from Dirichlet(elu(alpha) + 1) with the reparameterisation gradient.

    Weights ``w ~ Dirichlet(elu(alpha) + 1)`` (reparameterised); selection by the mean ``conc / sum(conc)``.
    """

    Options = DrNASOptions

    def make_mixer(self) -> Mixer:
        return DirichletMixer(self.options.kl_reg_scale)
