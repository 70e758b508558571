"""Canonical arch keys: two arch dicts that run the same subnet get the same key.

A decision is *inactive* under an arch when nothing that runs reads it: the per-layer decisions of blocks
beyond the chosen depth of a `Repeat`, or decisions inside `LayerChoice` candidates that are not picked.
The key is the canonical JSON of the active decisions only, so the search never evaluates one subnet twice
because an unused decision differed.
"""

from __future__ import annotations

import json
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


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys (the same dict always gives the same string)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def arch_key(space: SuperModule, arch: Mapping[str, Any]) -> str:
    """The canonical key of ``arch``: JSON of its active decisions (validated against the space)."""
    arch = space.validate(arch)
    active = active_decisions(space, arch)
    return canonical_json({k: v for k, v in arch.items() if k in active})
