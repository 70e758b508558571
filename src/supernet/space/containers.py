"""Operation choice (`LayerChoice`) and depth choice (`Repeat`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from .base import Kind, Searchable, extract_module
from .choice import Choice, Value, current_int, max_int
from .superposition import Mix, mix_of, mix_plan


class LayerChoice(Searchable):
    """Choose one of several candidate operations; each candidate owns its weights.

    Args:
        candidates: ``{option name: module}`` or a sequence of modules (options are then 0, 1, ...).
        name: the decision's name (defaults to the module path).
        choice: an existing `Choice` to share one decision between several LayerChoices; its options
            must equal the candidates' keys.
    """

    value_kinds: ClassVar[dict[str, Kind]] = {"choice": "other"}

    def __init__(
        self,
        candidates: Mapping[str, nn.Module] | Sequence[nn.Module],
        name: str | None = None,
        choice: Choice | None = None,
    ) -> None:
        super().__init__()
        items = list(candidates.items()) if isinstance(candidates, Mapping) else list(enumerate(candidates))
        if not items:
            raise ValueError("LayerChoice needs at least one candidate")
        self.candidates = nn.ModuleDict({str(k): m for k, m in items})
        keys = tuple(k for k, _ in items)
        if choice is None:
            choice = Choice(keys, name=name)
        elif tuple(choice.options) != keys:
            raise ValueError(f"shared choice options {choice.options} differ from candidates {keys}")
        if not choice.size_key:
            # Rank candidates by size so max_arch/min_arch pick the largest/smallest op.
            choice.size_key = {k: sum(p.numel() for p in m.parameters()) for k, m in items}
            choice.current = choice.largest()
        self.choice = choice

    def search_values(self) -> dict[str, Any]:
        return {"choice": self.choice}

    def decision_name(self, path: str, attr: str) -> str:
        return path or "choice"

    def active_op(self) -> nn.Module:
        """The candidate selected by the active arch."""
        return self.candidates[str(self.choice.current)]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        mix = mix_of(self.choice)
        if mix is not None:
            return self._mixed_forward(mix, *args, **kwargs)
        return self.active_op()(*args, **kwargs)

    def _mixed_forward(self, mix: Mix, *args: Any, **kwargs: Any) -> Any:
        # Operation choice under mixture weights: the weighted sum of every candidate's output (DARTS);
        # with a hard pick (GDAS) only the picked candidate runs, scaled by its straight-through weight.
        weights = mix.weights
        if mix.index is not None:
            out = self.candidates[str(self.choice.options[mix.index])](*args, **kwargs)
            return out * weights[mix.index].to(out.dtype)
        out = 0
        for i in mix.paths if mix.paths is not None else range(len(self.choice.options)):
            y = self.candidates[str(self.choice.options[i])](*args, **kwargs)
            out = out + weights[i].to(y.dtype) * y
        return out

    def extract(self) -> nn.Module:
        return extract_module(self.active_op())


class Repeat(Searchable):
    """A depth decision: run the first ``depth`` of ``len(blocks)`` blocks in sequence.

    Args:
        blocks: the blocks, or a factory ``fn(index) -> module`` used with ``max_depth``.
        depth: an int or a `Choice` of depths (each between 0 and the number of blocks).
    """

    value_kinds: ClassVar[dict[str, Kind]] = {"depth": "depth"}

    def __init__(
        self,
        blocks: Sequence[nn.Module] | Callable[[int], nn.Module],
        depth: int | Value,
        max_depth: int | None = None,
    ) -> None:
        super().__init__()
        if callable(blocks) and not isinstance(blocks, nn.Module):
            n = max_depth if max_depth is not None else max_int(depth, "Repeat depth")
            blocks = [blocks(i) for i in range(n)]
        self.blocks = nn.ModuleList(blocks)
        self.depth = depth
        deepest = max_int(depth, "Repeat depth")
        options = depth.possible_values() if isinstance(depth, Value) else [depth]
        if deepest > len(self.blocks) or min(options) < 0:
            raise ValueError(f"Repeat depth options {options} must lie in 0..{len(self.blocks)} (the blocks given)")

    def search_values(self) -> dict[str, Any]:
        return {"depth": self.depth}

    def active_depth(self) -> int:
        """How many blocks run under the active arch."""
        return current_int(self.depth, "depth")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = mix_plan(self, (self.depth,), "Repeat depth")
        if plan is not None:
            return self._mixed_forward(x, plan)
        for block in self.blocks[: self.active_depth()]:
            x = block(x)
        return x

    def _mixed_forward(self, x: torch.Tensor, plan: Any) -> torch.Tensor:
        # Depth under mixture weights: the weighted sum of the outputs taken after each candidate depth;
        # with a hard pick only that many blocks run, scaled by the straight-through weight.
        (deepest,) = plan.sizes
        scale = plan.scale(x.device)
        if not plan.mixed:
            for block in self.blocks[:deepest]:
                x = block(x)
            return x if scale is None else x * scale
        weights = dict(plan.groups((0,), x.device))
        out = weights[(0,)] * x if (0,) in weights else 0
        for d, block in enumerate(self.blocks[:deepest], start=1):
            x = block(x)
            if (d,) in weights:
                out = out + weights[(d,)] * x
        return out if scale is None else out * scale

    def extract(self) -> nn.Sequential:
        return nn.Sequential(*(extract_module(b) for b in self.blocks[: self.active_depth()]))
