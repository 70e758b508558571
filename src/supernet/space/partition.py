"""Sub-supernets (few-shot NAS): one space whose archs route to one of several copies of the weights.

`partition(space, count)` replaces ``space.net`` in place by `Partitions`: ``count`` copies of the network that
share the space's `Choice` objects (so ``set_arch``, ``sample``, search and the arch keys are unchanged) but own
their weights. Each copy (a *partition*) holds a set of options per decision; an arch runs on the one active
partition whose option sets contain it. At first only partition 0 is active and holds every option, so the
partitioned space computes exactly what the plain one did. `split` divides an active partition on one decision
into groups of options: the first group stays in the partition, each further group goes to a free copy that
starts from the partition's weights (few-shot NAS initialises its sub-supernets from the one-shot supernet).

Which options each partition holds is kept in buffers (``membership``, ``active``), so checkpoints, resume,
``load_run`` and export carry the splits with the weights. ``extract(arch)`` extracts from the arch's partition:
the exported net is as plain and as small as before.

The whole network is copied (every weight owned per partition), which is exact for any split; memory grows with
``count``: `memory_report` gives the figures.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .base import NetWrapper, extract_module
from .choice import Choice
from .supermodule import SuperModule


class Partitions(NetWrapper):
    """``count`` weight copies of one network, sharing its decisions; ``forward`` runs the active arch's copy."""

    def __init__(self, net: nn.Module, decisions: Mapping[str, Choice], count: int) -> None:
        super().__init__()
        if count < 1:
            raise ValueError(f"a partitioned space needs at least 1 partition, got {count}")
        shared = {id(c): c for c in decisions.values()}  # deepcopy keeps the Choice objects themselves
        self.copies = nn.ModuleList([net] + [copy.deepcopy(net, memo=dict(shared)) for _ in range(count - 1)])
        self._decisions = dict(decisions)
        self._offsets: dict[str, int] = {}
        total = 0
        for name, c in self._decisions.items():
            self._offsets[name] = total
            total += len(c.options)
        self.register_buffer("membership", torch.ones(count, total, dtype=torch.bool))
        self.register_buffer("active", torch.zeros(count, dtype=torch.bool))
        self.active[0] = True
        self._table_key: tuple[int, ...] = ()
        self._table: tuple[list[list[bool]], list[bool]] = ([], [])

    def wrapped(self) -> nn.Module:
        return self._modules["copies"][0]  # type: ignore[index]

    @property
    def count(self) -> int:
        """How many copies of the weights (partitions, used or not)."""
        return len(self.copies)

    def _rows(self) -> tuple[list[list[bool]], list[bool]]:
        """The buffers as Python lists, re-read only when they change (no device sync per forward on CUDA)."""
        key = (self.membership._version, self.active._version, self.membership.data_ptr(), self.active.data_ptr())
        if key != self._table_key:
            self._table = (self.membership.tolist(), self.active.tolist())
            self._table_key = key
        return self._table

    def holds(self, index: int, arch: Mapping[str, Any]) -> bool:
        """Whether partition ``index`` is active and holds every option of ``arch`` (a validated arch)."""
        membership, active = self._rows()
        if not active[index]:
            return False
        row = membership[index]
        return all(row[self._offsets[n] + c.index(arch[n])] for n, c in self._decisions.items())

    def index_of(self, arch: Mapping[str, Any] | None = None) -> int:
        """The partition that runs ``arch`` (default: the active arch)."""
        arch = {n: c.current for n, c in self._decisions.items()} if arch is None else arch
        for i in range(self.count):
            if self.holds(i, arch):
                return i
        raise RuntimeError(f"no partition holds arch {dict(arch)} (the partitions' buffers are inconsistent)")

    def options_of(self, index: int) -> dict[str, tuple[Any, ...]]:
        """``{decision: options}`` that partition ``index`` holds."""
        row = self._rows()[0][index]
        return {
            n: tuple(o for i, o in enumerate(c.options) if row[self._offsets[n] + i])
            for n, c in self._decisions.items()
        }

    def describe(self) -> list[dict[str, list[Any]]]:
        """For every active partition, the decisions it restricts and the options it holds there."""
        out = []
        for i in range(self.count):
            if self._rows()[1][i]:
                held = self.options_of(i)
                out.append({n: list(v) for n, v in held.items() if len(v) < len(self._decisions[n].options)})
        return out

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.copies[self.index_of()](*args, **kwargs)

    def extract(self) -> nn.Module:
        return extract_module(self.copies[self.index_of()])


def partition(space: SuperModule, count: int) -> Partitions:
    """Give ``space`` ``count`` copies of its weights, in place (``space.net`` becomes a `Partitions`).

    The space computes what it did before (only partition 0 is active until `split`). Its ``spec`` records the
    partition count, so a run directory rebuilds the same structure. Returns the `Partitions`.

    Raises:
        ValueError: ``space`` is already partitioned, or ``count < 1``.
    """
    if isinstance(space.net, Partitions):
        raise ValueError(f"this space is already partitioned ({space.net.count} partitions)")
    parts = Partitions(space.net, space.decisions, count)
    space.net = parts
    if space.spec is not None:
        space.spec = {**space.spec, "partitions": count}
    return parts


def partitions_of(space: SuperModule) -> Partitions | None:
    """The space's `Partitions`, or None for a space that is not partitioned."""
    return space.net if isinstance(space.net, Partitions) else None


@torch.no_grad()
def split(space: SuperModule, index: int, decision: str, groups: Sequence[Sequence[Any]]) -> list[int]:
    """Split active partition ``index`` on ``decision`` into ``groups`` of options; returns the partition of each
    group (the first group stays in ``index``; every further group takes a free copy initialised from it).

    Raises:
        ValueError: the space is not partitioned, the partition is not active, the groups do not divide the
            options the partition holds for ``decision`` into non-empty disjoint sets, or too few copies are free.
    """
    parts = partitions_of(space)
    if parts is None:
        raise ValueError("split needs a partitioned space: call partition(space, count) first")
    if not 0 <= index < parts.count or not bool(parts.active[index]):
        raise ValueError(f"partition {index} is not an active partition")
    if decision not in parts._decisions:
        raise ValueError(f"unknown decision {decision!r}; the space's decisions are {list(parts._decisions)}")
    choice = parts._decisions[decision]
    held = parts.options_of(index)[decision]
    flat = [o for g in groups for o in g]
    if len(groups) < 2 or any(len(g) == 0 for g in groups) or sorted(map(choice.index, flat)) != sorted(
        map(choice.index, held)
    ):
        raise ValueError(
            f"groups {[list(g) for g in groups]} must divide the options partition {index} holds for {decision!r} "
            f"({list(held)}) into at least 2 non-empty disjoint groups"
        )
    free = [i for i in range(parts.count) if not bool(parts.active[i])]
    if len(free) < len(groups) - 1:
        raise ValueError(
            f"splitting into {len(groups)} groups needs {len(groups) - 1} free partitions, {len(free)} left"
        )
    offset = parts._offsets[decision]
    width = len(choice.options)
    targets = [index, *free[: len(groups) - 1]]
    base = parts.membership[index].clone()
    source = parts.copies[index].state_dict()
    for target, group in zip(targets, groups, strict=True):
        row = base.clone()
        row[offset : offset + width] = False
        for option in group:
            row[offset + choice.index(option)] = True
        parts.membership[target] = row
        parts.active[target] = True
        if target != index:
            parts.copies[target].load_state_dict(source)
    return targets


def memory_report(space: SuperModule) -> dict[str, int]:
    """Parameters and bytes of the whole (partitioned) space, of one partition, and the partitions in use."""
    parts = partitions_of(space)
    total = sum(p.numel() for p in space.parameters())
    total_bytes = sum(p.numel() * p.element_size() for p in space.parameters())
    one = parts.copies[0] if parts is not None else space.net
    return {
        "params": total,
        "bytes": total_bytes,
        "params_per_partition": sum(p.numel() for p in one.parameters()),
        "partitions": parts.count if parts is not None else 1,
        "active_partitions": int(parts.active.sum()) if parts is not None else 1,
    }


__all__ = ["Partitions", "memory_report", "partition", "partitions_of", "split"]
