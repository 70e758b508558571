"""``alpha``: AlphaNet's adaptive alpha-divergence in place of KL in the sandwich rule.

Same paths as ``sandwich`` (max from labels; min and random archs distilled from the max arch), but each
student minimises, per sample, the larger of ``D_{alpha_min}(p||q)`` and ``D_{alpha_max}(p||q)`` (p: the max
arch's prediction, q: the student's), with importance weights ``(p/q)^alpha`` clipped at ``clip``
(Wang et al., "AlphaNet: Improved Training of Supernets with Alpha-Divergence", ICML 2021; defaults
alpha in [-1, 1], clip 5).
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator

from ..distill import alpha_divergence
from .base import register_strategy
from .sandwich import Sandwich, SandwichOptions


class AlphaOptions(SandwichOptions):
    """Options of the ``alpha`` strategy."""

    alpha_min: float = Field(-1.0, ge=-1.0, le=1.0)
    alpha_max: float = Field(1.0, ge=-1.0, le=1.0)
    clip: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _order(self) -> AlphaOptions:
        if self.alpha_min > self.alpha_max:
            raise ValueError(f"alpha_min ({self.alpha_min}) must not exceed alpha_max ({self.alpha_max})")
        return self


@register_strategy("alpha")
class Alpha(Sandwich):
    """Sandwich rule with adaptive alpha-divergence distillation (AlphaNet)."""

    Options = AlphaOptions

    def distill_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        o = self.options
        t = o.temperature
        return alpha_divergence(student / t, teacher / t, o.alpha_min, o.alpha_max, o.clip)
