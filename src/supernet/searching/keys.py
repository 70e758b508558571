"""Canonical arch keys: two arch dicts that run the same subnet get the same key.

A decision is *inactive* under an arch when nothing that runs reads it: the per-layer decisions of blocks
beyond the chosen depth of a `Repeat`, or decisions inside `LayerChoice` candidates that are not picked.
The key is the canonical JSON of the active decisions only, so the search never evaluates one subnet twice
because an unused decision differed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from torch import nn

from ..space import LayerChoice, Repeat, Searchable, SuperModule, Value


def active_decisions(space: SuperModule, arch: Mapping[str, Any]) -> set[str]:
    """Names of the decisions that affect the subnet ``arch`` (the space's active arch is left unchanged)."""
    previous = space.arch
    space.set_arch(arch)
    try:
        names: set[str] = set()
        stack: list[nn.Module] = [space.net]
        while stack:
            module = stack.pop()
            if isinstance(module, Searchable):
                for value in module.search_values().values():
                    if isinstance(value, Value):
                        names.update(c.name for c in value.leaves() if c.name is not None)
                if isinstance(module, Repeat):
                    stack.extend(module.blocks[: module.active_depth()])
                    continue
                if isinstance(module, LayerChoice):
                    stack.append(module.active_op())
                    continue
            stack.extend(module.children())
        return names
    finally:
        space.set_arch(previous)


def _decisions_in(module: nn.Module) -> set[str]:
    """Names of every decision read by a searchable module anywhere under ``module``."""
    names: set[str] = set()
    for m in module.modules():
        if isinstance(m, Searchable):
            for value in m.search_values().values():
                if isinstance(value, Value):
                    names.update(c.name for c in value.leaves() if c.name is not None)
    return names


def _gating_decisions(space: SuperModule) -> list[str]:
    """The decisions that switch other decisions on or off, outermost first.

    These are the depth of a `Repeat` whose blocks hold decisions and the choice of a `LayerChoice` whose
    candidates hold decisions; which decisions are active depends on the values of these alone.
    """
    out: dict[str, None] = {}
    for module in space.net.modules():  # pre-order: an enclosing module comes before the ones inside it
        if isinstance(module, Repeat):
            gated = any(_decisions_in(b) for b in module.blocks)
        elif isinstance(module, LayerChoice):
            gated = any(_decisions_in(c) for c in module.candidates.values())
        else:
            continue
        if gated:
            for value in module.search_values().values():
                if isinstance(value, Value):
                    out.update(dict.fromkeys(c.name for c in value.leaves() if c.name is not None))
    return list(out)


# Counting walks the active decisions once per setting of the gating decisions (~1 ms each on a CPU): at most
# this many walks keeps the count within a few seconds at the start of a search.
MAX_COUNT_WALKS = 2_000


def count_distinct_archs(space: SuperModule, max_archs: int = 100_000, max_steps: int = MAX_COUNT_WALKS) -> int | None:
    """How many distinct subnets (distinct `arch_key` values) ``space`` has, or None when that is too costly to count.

    Only the decisions that switch others on or off (depths, operation choices holding decisions) are
    enumerated, each once its enclosing ones are fixed; the other active decisions multiply the count. A space
    with more than ``max_archs`` arch dicts, or needing more than ``max_steps`` active-decision walks, gives None.
    """
    if space.num_archs() > max_archs:
        return None
    choices = space.choices
    gating = _gating_decisions(space)
    default = {name: options[0] for name, options in choices.items()}
    leaves: dict[tuple[Any, ...], int] = {}
    steps = 0
    stack: list[dict[str, Any]] = [{}]
    while stack:
        fixed = stack.pop()
        steps += 1
        if steps > max_steps:
            return None
        arch = default | fixed
        active = active_decisions(space, arch)
        todo = [g for g in gating if g in active and g not in fixed]
        if todo:
            stack.extend(fixed | {todo[0]: option} for option in choices[todo[0]])
            continue
        # Every active gating decision is fixed, so the active set is settled: one group of subnets that
        # differ only in the free active decisions. Two paths reaching the same group are counted once.
        signature = tuple(sorted((name, repr(fixed.get(name))) for name in active))
        leaves[signature] = math.prod(len(choices[n]) for n in active if n not in fixed)
    return sum(leaves.values())


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys (the same dict always gives the same string)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def arch_key(space: SuperModule, arch: Mapping[str, Any]) -> str:
    """The canonical key of ``arch``: JSON of its active decisions (validated against the space)."""
    arch = space.validate(arch)
    active = active_decisions(space, arch)
    return canonical_json({k: v for k, v in arch.items() if k in active})
