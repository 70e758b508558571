"""``fair``: FairNAS strict fairness: every option of every decision trains in each step group.

One step is one group: ``m`` paths run on the same batch, gradients accumulate, and the loop takes one
optimizer step. Path ``i`` takes, for every decision, the ``i``-th entry of that decision's sequence.

Decisions may have different option counts ``k``. With ``group="max"`` (default) ``m`` is the largest ``k``;
each decision's sequence is a random permutation of its options, followed by further random permutations
truncated to length ``m``: decisions with ``m`` options train every option exactly once per group, smaller
decisions train every option at least once and at most ``ceil(m / k)`` times (as even as ``m`` paths allow).
With ``group="lcm"`` ``m`` is the least common multiple of all ``k`` (at most ``max_group``) and every option
of every decision trains exactly ``m / k`` times: strict fairness for all decisions at a higher cost.
The per-path losses are averaged (``loss / m``) so the learning rate means the same as for one path.
"""

from __future__ import annotations

import math
import random
from typing import Any, Literal

import torch
from pydantic import Field

from ...space import SuperModule
from ..context import TrainContext
from .base import StepOutput, Strategy, StrategyOptions, register_strategy


class FairOptions(StrategyOptions):
    """Options of the ``fair`` strategy."""

    group: Literal["max", "lcm"] = "max"
    max_group: int = Field(64, ge=1)


def fair_group(choices: dict[str, tuple[Any, ...]], rng: random.Random, group: str = "max", max_group: int = 64
               ) -> list[dict[str, Any]]:
    """The archs of one fair step group (see the module docstring)."""
    counts = [len(o) for o in choices.values()] or [1]
    m = max(counts) if group == "max" else math.lcm(*counts)
    if m > max_group:
        raise ValueError(
            f"fair strategy: a step group of {m} paths exceeds max_group={max_group}; use group='max' or raise "
            "max_group"
        )
    seqs: dict[str, list[Any]] = {}
    for name, options in choices.items():
        seq: list[Any] = []
        while len(seq) < m:
            perm = list(options)
            rng.shuffle(perm)
            seq.extend(perm)
        seqs[name] = seq[:m]
    return [{name: seqs[name][i] for name in choices} for i in range(m)]


@register_strategy("fair")
class Fair(Strategy):
    """FairNAS: each step runs a group of paths covering every option of every decision (one optimizer step)."""

    Options = FairOptions

    def paths_per_step(self, space: SuperModule) -> int | None:
        counts = [len(options) for options in space.choices.values()] or [1]
        return max(counts) if self.options.group == "max" else math.lcm(*counts)

    def step(self, ctx: TrainContext, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
        x, y = batch
        archs = fair_group(ctx.space.choices, ctx.rng, self.options.group, self.options.max_group)
        total = torch.zeros((), device=x.device)
        for i, arch in enumerate(archs):
            loss = ctx.loss(ctx.forward(arch, x, sync=i == len(archs) - 1), y)
            ctx.backward(loss / len(archs))
            total = total + loss.detach()
        return StepOutput(total / len(archs), archs)
