"""``uniform``: single-path one-shot (SPOS): one uniformly sampled arch per step."""

from __future__ import annotations

import torch

from ..context import TrainContext
from .base import StepOutput, Strategy, register_strategy


@register_strategy("uniform")
class Uniform(Strategy):
    """Each step trains one arch drawn uniformly from the space (every decision independently uniform)."""

    def step(self, ctx: TrainContext, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
        x, y = batch
        arch = ctx.sample()
        loss = ctx.loss(ctx.forward(arch, x), y)
        ctx.backward(loss)
        return StepOutput(loss.detach(), [arch])
