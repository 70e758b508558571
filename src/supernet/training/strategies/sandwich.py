"""``sandwich``: BigNAS sandwich rule with in-place distillation.

Each step trains, on the same batch, the largest arch, the smallest arch and ``num_random`` uniformly random
archs. The largest learns from the labels; every other arch learns from the largest arch's soft predictions
(detached) through KL divergence at ``temperature``. Gradients of all paths are summed (one optimizer step).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from ...space import SuperModule
from ..context import TrainContext
from ..distill import kl_distill
from .base import StepOutput, Strategy, StrategyOptions, register_strategy


class SandwichOptions(StrategyOptions):
    """Options of the ``sandwich`` strategy."""

    num_random: int = Field(2, ge=0)
    temperature: float = Field(1.0, gt=0)
    distill_weight: float = Field(1.0, ge=0)


@register_strategy("sandwich")
class Sandwich(Strategy):
    """BigNAS sandwich rule: max, min and random archs per step, the others distilled in place from the max.

    Max + min + ``num_random`` random archs per step; max from labels, the rest distilled from max.
    """

    Options = SandwichOptions

    def plan(self, ctx: TrainContext) -> list[dict[str, Any]]:
        """The archs of this step: max, min, then the random ones."""
        return [ctx.space.max_arch(), ctx.space.min_arch()] + [ctx.sample() for _ in range(self.options.num_random)]

    def paths_per_step(self, space: SuperModule) -> int | None:
        return 2 + self.options.num_random

    def distill_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss to backpropagate, value to log)`` of one student against the teacher's logits (rows)."""
        loss = kl_distill(student, teacher, self.options.temperature)
        return loss, loss.detach()

    def step(self, ctx: TrainContext, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
        x, y = batch
        archs = self.plan(ctx)
        last = len(archs) - 1
        out = ctx.forward(archs[0], x, sync=last == 0)
        loss_max = ctx.loss(out, y)
        ctx.backward(loss_max)
        teacher, _ = ctx.task.flat(out.detach(), y)
        metrics: dict[str, Any] = {"loss_max": loss_max.detach()}
        for i, arch in enumerate(archs[1:], start=1):
            student, _ = ctx.task.flat(ctx.forward(arch, x, sync=i == last), y)
            loss, value = self.distill_loss(student, teacher)
            ctx.backward(loss * self.options.distill_weight)
            if i == 1:
                metrics["distill_min"] = value
        return StepOutput(loss_max.detach(), archs, metrics)
