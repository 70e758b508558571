"""Architecture-only metrics of subnets (params, FLOPs, measured latency), cached per arch key."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from .. import cost
from ..space import SuperModule
from .objectives import CHEAP_METRICS


class CostModel:
    """Computes the cheap metrics of subnets of ``space``.

    Args:
        space: the supernet.
        example_input: one input batch (for FLOPs and latency; not needed for params).
        latency_device: where latency is measured (the extracted subnet runs there in eval mode).
        latency_repeats: timed forward passes per measurement (median reported).
        latency_table: a `supernet.cost.CostTable` of latencies (`supernet.cost.latency_table`): latency is
            then predicted from it, not measured (no subnet runs).
    """

    def __init__(
        self,
        space: SuperModule,
        example_input: Any = None,
        latency_device: str | torch.device = "cpu",
        latency_repeats: int = 20,
        latency_table: cost.CostTable | None = None,
    ) -> None:
        self.space = space
        self.latency_table = latency_table
        self.example_input = example_input
        self.latency_device = latency_device
        self.latency_repeats = latency_repeats
        self._cache: dict[tuple[str, str], float] = {}

    def __call__(self, arch: Mapping[str, Any], metrics: Iterable[str], key: str | None = None) -> dict[str, float]:
        """``{metric: value}`` for each requested cheap metric of subnet ``arch``."""
        wanted = [m for m in dict.fromkeys(metrics) if m in CHEAP_METRICS]
        out: dict[str, float] = {}
        todo = []
        for m in wanted:
            if key is not None and (key, m) in self._cache:
                out[m] = self._cache[(key, m)]
            else:
                todo.append(m)
        if "latency" in todo and self.latency_table is not None:
            out["latency"] = self.latency_table.arch_cost(arch)
            todo.remove("latency")
            if key is not None:
                self._cache[(key, "latency")] = out["latency"]
        if not todo:
            return out
        if any(m != "params" for m in todo) and self.example_input is None:
            raise ValueError(f"metrics {todo} need an example input: pass example_input= (or search a training run)")
        net = self.space.extract(arch)
        net.eval()
        device = next((p.device for p in self.space.parameters()), torch.device("cpu"))
        for m in todo:
            if m == "params":
                value = float(cost.params(net))
            elif m == "flops":
                value = float(cost.flops(net.to(device), _to(self.example_input, device)))
            else:
                value = float(
                    cost.latency(net, self.example_input, device=self.latency_device, repeats=self.latency_repeats)
                )
            out[m] = value
            if key is not None:
                self._cache[(key, m)] = value
        return out


def _to(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, tuple):
        return tuple(_to(v, device) for v in x)
    return x
