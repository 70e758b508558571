"""What each decision controls: ``kernel``, ``depth``, ``width`` or ``other`` (used by progressive shrinking).

The kind is derived from where a choice is used: a Conv2d ``kernel_size`` -> kernel, a `Repeat` depth ->
depth, a channel / feature / embedding size -> width, a `LayerChoice` (operation) -> other. Searchable layers
written by others are classified by attribute name (``*kernel*``, ``*depth*``, sizes such as ``*channels*``,
``*features*``, ``*dim*``). A choice used in several roles takes the first of kernel, depth, width, other.
"""

from __future__ import annotations

from typing import Literal

from ..space import Conv2d, LayerChoice, Repeat, SuperModule
from ..space.base import Searchable
from ..space.choice import Value

Kind = Literal["kernel", "depth", "width", "other"]
KINDS: tuple[Kind, ...] = ("kernel", "depth", "width", "other")

_WIDTH_WORDS = ("channel", "feature", "dim", "width", "hidden", "shape", "expand", "ratio", "heads", "size")


def _attr_kind(module: Searchable, attr: str) -> Kind:
    name = attr.lower()
    if isinstance(module, Conv2d) and attr == "kernel_size":
        return "kernel"
    if isinstance(module, Repeat) and attr == "depth":
        return "depth"
    if isinstance(module, LayerChoice):
        return "other"
    if "kernel" in name:
        return "kernel"
    if "depth" in name or "layers" in name:
        return "depth"
    if any(w in name for w in _WIDTH_WORDS):
        return "width"
    return "other"


def decision_kinds(space: SuperModule, overrides: dict[str, str] | None = None) -> dict[str, Kind]:
    """``{decision name: kind}`` for every decision of ``space`` (``overrides`` wins, validated)."""
    found: dict[str, set[Kind]] = {name: set() for name in space.decisions}
    for module in space.net.modules():
        if not isinstance(module, Searchable):
            continue
        for attr, value in module.search_values().items():
            if not isinstance(value, Value):
                continue
            kind = _attr_kind(module, attr)
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
