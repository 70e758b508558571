"""``gdas``: GDAS (Dong & Yang, 2019) — one hard Gumbel-softmax sample per decision, straight-through gradient.

Only the sampled option of each decision runs (entangled choices compute only the chosen slice), so a step
costs one subnet; the temperature anneals linearly from ``tau_max`` to ``tau_min`` over training.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from ..training.strategies.base import register_strategy
from .base import GradientOptions, GradientStrategy
from .mixers import GumbelMixer, Mixer


class GDASOptions(GradientOptions):
    """GDAS options: the Gumbel-softmax temperature schedule."""

    tau_max: float = Field(10.0, gt=0, description="temperature at the first step")
    tau_min: float = Field(0.1, gt=0, description="temperature at the last step")

    @model_validator(mode="after")
    def _check_tau(self) -> GDASOptions:
        if self.tau_min > self.tau_max:
            raise ValueError(f"tau_min ({self.tau_min}) must not exceed tau_max ({self.tau_max})")
        return self


@register_strategy("gdas")
class GDAS(GradientStrategy):
    """GDAS: one hard Gumbel-softmax sample per decision (one subnet per step), straight-through gradient."""

    Options = GDASOptions

    def make_mixer(self) -> Mixer:
        return GumbelMixer(self.options.tau_max, self.options.tau_min)

    def step_metrics(self, progress: float) -> dict[str, Any]:
        return {"tau": self.mixer.temperature(progress)}
