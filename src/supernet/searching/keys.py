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

from ..space import SuperModule
from ..space.activity import active_decisions, gating_decisions

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
    gating = gating_decisions(space)
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
