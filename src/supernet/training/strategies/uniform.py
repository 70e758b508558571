"""``uniform``: single-path one-shot (SPOS): one uniformly sampled arch per step."""

from __future__ import annotations

import torch

from ..context import TrainContext
from .base import StepOutput, Strategy, register_strategy


@register_strategy("uniform")
class Uniform(Strategy):
    """SPOS: each step trains one arch drawn uniformly at random (every decision independently uniform)."""

    def step(self, ctx: TrainContext, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
        x, y = batch
        arch = ctx.sample()
        loss = ctx.loss(ctx.forward(arch, x), y)
        ctx.backward(loss)
        return StepOutput(loss.detach(), [arch])
