"""What each decision controls: ``kernel``, ``depth``, ``width`` or ``other`` (used by progressive shrinking and by
the monotone fit of cost tables).

Every searchable layer declares the kind of each value it reads (`Searchable.value_kinds`): ``sn.Conv2d``'s
``kernel_size`` is a kernel, `Repeat`'s ``depth`` a depth, channel / feature / embedding sizes widths, a
`LayerChoice` (operation) other. A value a layer does not declare is ``other``: nothing is guessed from names.
Every leaf choice of a derived value (``embed * ratio``) takes the value's kind. A choice used in several roles
takes the first of kernel, depth, width, other.
"""

from __future__ import annotations

from .base import KINDS, Kind, Searchable
from .choice import Value
from .supermodule import SuperModule

__all__ = ["KINDS", "Kind", "decision_kinds"]


def decision_kinds(space: SuperModule, overrides: dict[str, str] | None = None) -> dict[str, Kind]:
    """``{decision name: kind}`` for every decision of ``space``, in the space's order (``overrides`` win).

    Raises:
        ValueError: an override names an unknown decision or an unknown kind.
    """
    found: dict[str, set[Kind]] = {name: set() for name in space.decisions}
    for module in space.net.modules():
        if not isinstance(module, Searchable):
            continue
        for attr, value in module.search_values().items():
            if not isinstance(value, Value):
                continue
            kind = module.value_kind(attr)
            for leaf in value.leaves():
                if leaf.name in found:
                    found[leaf.name].add(kind)
    out: dict[str, Kind] = {name: next((k for k in KINDS if k in kinds), "other") for name, kinds in found.items()}
    for name, kind in (overrides or {}).items():
        if name not in out:
            raise ValueError(f"kind override for unknown decision {name!r}; decisions: {', '.join(out)}")
        if kind not in KINDS:
            raise ValueError(f"kind of {name!r} must be one of {KINDS}, got {kind!r}")
        out[name] = kind  # type: ignore[assignment]
    return out
