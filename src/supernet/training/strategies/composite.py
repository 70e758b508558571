"""Strategies that change the space and leave the sampling to an *inner* strategy (``fewshot``, ``gm``, ``mos``).

`Composite` builds the inner strategy from its options and hands it every step, batch, checkpoint and schedule;
a subclass adds what it does around it (split the space, mix weights).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from pydantic import Field

from ...space import SuperModule
from ..context import TrainContext
from .base import StepOutput, Strategy, StrategyOptions, make_strategy


class CompositeOptions(StrategyOptions):
    """Options of a strategy with an inner strategy."""

    inner: str = Field("uniform", description="the strategy that samples and trains the subnets")
    inner_options: dict[str, Any] = Field(default_factory=dict, description="options of the inner strategy")


class Composite(Strategy):
    """A strategy that delegates sampling and training to an inner one-shot strategy."""

    Options = CompositeOptions

    def __init__(self, options: Mapping[str, Any] | StrategyOptions | None = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        o = self.options
        self.inner = make_strategy(o.inner, o.inner_options)
        if isinstance(self.inner, Composite):
            raise ValueError(f"{self.name}: the inner strategy {o.inner!r} wraps another; choose a one-shot strategy")

    def setup(self, ctx: TrainContext) -> None:
        self.inner.setup(ctx)

    def next_batch(self, ctx: TrainContext) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inner.next_batch(ctx)

    def step(self, ctx: TrainContext, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
        return self.inner.step(ctx, batch)

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.inner.load_state_dict(state.get("inner", {}))

    def tensor_state(self) -> dict[str, torch.Tensor]:
        return self.inner.tensor_state()

    def load_tensor_state(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self.inner.load_tensor_state(tensors)

    def paths_per_step(self, space: SuperModule) -> int | None:
        return self.inner.paths_per_step(space)

    def schedule_segments(self, ctx: TrainContext) -> list[int] | None:
        return self.inner.schedule_segments(ctx)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["inner"] = self.inner.describe()
        return out


__all__ = ["Composite", "CompositeOptions"]
