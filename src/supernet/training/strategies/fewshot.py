"""``fewshot``: few-shot NAS (Zhao et al., ICML 2021): warm up one supernet, then split it into sub-supernets.

The space is partitioned (`supernet.space.partition`) before training, so its structure never changes during a
run: one copy of the weights per sub-supernet, of which only the first is used during the warm-up. At step
``warmup * steps`` the supernet is split exhaustively on the chosen decisions: one sub-supernet per combination of
their options (NB201 default: the first decision, 5 sub-supernets, as in the paper), each starting from the
warmed-up weights. Training then continues with the *inner* strategy (uniform, fair, sandwich, pada, ...), whose
archs each run on their own sub-supernet, so the total budget (warm-up plus every sub-supernet) is the steps of
the run: a fewshot run compares with a one-shot run of the same steps at matched compute.

`SplitStrategy` is the shared machinery (the inner strategy, the partitioned space, the split log in the
strategy state and ``RUN_DIR/splits.json``); `gm` (gradient-matching splits) builds on it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import torch
from pydantic import Field

from ...files import write_json
from ...space import SuperModule
from ...space.partition import partition, partitions_of, split
from ..context import TrainContext
from .base import StepOutput, StrategyOptions, register_strategy
from .composite import Composite, CompositeOptions

SPLITS_JSON = "splits.json"


class SplitOptions(CompositeOptions):
    """Options shared by the splitting strategies."""

    warmup: float = Field(0.5, gt=0.0, lt=1.0, description="fraction of the steps trained as one supernet")


class SplitStrategy(Composite):
    """A strategy that partitions the space, trains it with an inner strategy and splits it at given steps.

    Subclasses give the partition count (`partitions`), the steps at which to split (`split_steps`) and the split
    itself (`do_split`, which calls `supernet.space.split` and returns a JSON-able record of what it decided).
    """

    Options = SplitOptions

    def __init__(self, options: Mapping[str, Any] | StrategyOptions | None = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.log: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ to override
    def partitions(self, space: SuperModule) -> int:
        """How many weight copies the space needs."""
        raise NotImplementedError

    def split_steps(self, total_steps: int) -> list[int]:
        """The 0-based steps at whose start a split happens."""
        return [min(total_steps - 1, max(1, round(self.options.warmup * total_steps)))]

    def do_split(self, ctx: TrainContext, index: int) -> dict[str, Any]:
        """Split number ``index``; return what was decided (JSON-able)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the strategy protocol
    def prepare_space(self, space: SuperModule) -> None:
        parts = partitions_of(space)
        wanted = self.partitions(space)
        if parts is None:
            partition(space, wanted)
        elif parts.count != wanted:
            raise ValueError(f"{self.name} needs {wanted} partitions, the space has {parts.count}")

    def setup(self, ctx: TrainContext) -> None:
        self.steps = self.split_steps(ctx.total_steps)
        super().setup(ctx)

    def step(self, ctx: TrainContext, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
        extra: dict[str, float] = {}
        if ctx.step in self.steps:
            record = {"step": ctx.step, **self.do_split(ctx, self.steps.index(ctx.step))}
            record["partitions"] = partitions_of(ctx.space).describe()  # type: ignore[union-attr]
            self.log = [r for r in self.log if r["step"] < ctx.step] + [record]
            extra["split"] = float(len(self.log))
            if ctx.run_dir is not None and ctx.rank == 0:
                write_json(ctx.run_dir / SPLITS_JSON, {"strategy": self.name, "splits": self.log})
        out = super().step(ctx, batch)
        out.metrics.update(extra)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "log": self.log}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.log = list(state.get("log", []))


class FewShotOptions(SplitOptions):
    """Options of ``fewshot``."""

    decisions: list[str] | None = Field(
        None, description="decisions to split on (default: the first decision with the most options)"
    )


@register_strategy("fewshot")
class FewShot(SplitStrategy):
    """Few-shot NAS: after the warm-up, one sub-supernet per combination of options of the split decisions."""

    Options = FewShotOptions

    def split_decisions(self, space: SuperModule) -> list[str]:
        """The decisions to split on (checked against the space)."""
        names = self.options.decisions
        if names is None:
            counts = {n: len(c.options) for n, c in space.decisions.items()}
            if not counts or max(counts.values()) < 2:
                raise ValueError("fewshot needs a decision with at least 2 options to split on")
            return [max(counts, key=lambda n: (counts[n], -list(counts).index(n)))]
        unknown = [n for n in names if n not in space.decisions]
        if unknown or not names or len(set(names)) != len(names):
            raise ValueError(
                f"fewshot: decisions {names} must be distinct decisions of the space; unknown: {unknown}; "
                f"the space's decisions: {list(space.decisions)}"
            )
        return list(names)

    def partitions(self, space: SuperModule) -> int:
        return math.prod(len(space.decisions[n].options) for n in self.split_decisions(space))

    def do_split(self, ctx: TrainContext, index: int) -> dict[str, Any]:
        current = [0]
        for name in self.split_decisions(ctx.space):
            groups = [[o] for o in ctx.space.decisions[name].options]
            current = list(itertools.chain.from_iterable(split(ctx.space, p, name, groups) for p in current))
        return {"decisions": self.split_decisions(ctx.space)}


__all__ = ["FewShot", "FewShotOptions", "SPLITS_JSON", "SplitOptions", "SplitStrategy"]
