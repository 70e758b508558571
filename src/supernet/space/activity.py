"""Which decisions an arch actually uses, and which decisions switch others on or off.

A decision is *inactive* under an arch when nothing that runs reads it: the per-layer decisions of blocks beyond
the chosen depth of a `Repeat`, or decisions inside `LayerChoice` candidates that are not picked. Arch keys
(`supernet.searching.keys`) and cost tables (`supernet.cost.CostTable`) count only the active ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from .base import Searchable
from .choice import Value
from .containers import LayerChoice, Repeat
from .supermodule import SuperModule


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


def gating_decisions(space: SuperModule) -> list[str]:
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


def decision_gates(space: SuperModule) -> dict[str, dict[str, list[Any]]]:
    """For each decision that some arch leaves inactive: the gating decisions it depends on and, for each, the
    options under which it is active, ``{decision: {gate: [options]}}``.

    Found by probing: from the largest arch (every `Repeat` at full depth), each gating decision is set to each
    of its options in turn and the active decisions are read. A decision is then taken to be active under an arch
    when every gate of it holds one of its listed options. That is exact for one level of gating (the blocks of
    a `Repeat`, the decisions inside the candidates of a `LayerChoice`); for gates nested inside other gates'
    blocks it can be approximate, which `gates_match` measures.
    """
    choices = space.choices
    base = space.max_arch()
    gates: dict[str, dict[str, list[Any]]] = {}
    for gate in gating_decisions(space):
        active_under = {repr(o): active_decisions(space, {**base, gate: o}) for o in choices[gate]}
        everywhere = set.intersection(*active_under.values())
        for name in set.union(*active_under.values()) - everywhere:
            gates.setdefault(name, {})[gate] = [o for o in choices[gate] if name in active_under[repr(o)]]
    return gates


def is_active(name: str, arch: Mapping[str, Any], gates: Mapping[str, Mapping[str, list[Any]]]) -> bool:
    """Whether decision ``name`` is active under ``arch`` according to ``gates`` (`decision_gates`)."""
    return all(arch[g] in allowed for g, allowed in gates.get(name, {}).items())


def gates_match(
    space: SuperModule, gates: Mapping[str, Mapping[str, list[Any]]], archs: list[Mapping[str, Any]]
) -> bool:
    """Whether ``gates`` give exactly the active decisions of each of ``archs``."""
    for arch in archs:
        active = active_decisions(space, arch)
        if {n for n in space.choices if is_active(n, arch, gates)} != active:
            return False
    return True


def interacting_decisions(space: SuperModule) -> list[tuple[str, str]]:
    """Pairs of decisions (with 2+ options) that one module reads together, e.g. a depthwise conv's kernel size and
    the expand ratio its channel count is derived from: the cost of such a layer depends on both jointly. Sorted,
    each pair once, in the order the decisions appear in ``space.choices``."""
    order = {n: i for i, n in enumerate(space.choices)}
    pairs: set[tuple[str, str]] = set()
    for module in space.net.modules():
        if not isinstance(module, Searchable):
            continue
        names: set[str] = set()
        for value in module.search_values().values():
            if isinstance(value, Value):
                names.update(c.name for c in value.leaves() if c.name is not None and len(c.options) > 1)
        ranked = sorted(names, key=lambda n: order.get(n, len(order)))
        pairs.update((a, b) for i, a in enumerate(ranked) for b in ranked[i + 1:])
    return sorted(pairs, key=lambda p: (order.get(p[0], 0), order.get(p[1], 0)))
