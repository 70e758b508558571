"""What a conversion made searchable and what it left fixed, as data and as a printable table."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class GroupRow:
    """One width group: its decision name, full size, options (empty when fixed) and why it is fixed."""

    name: str
    channels: int
    options: tuple[int, ...]
    layers: list[str]
    fixed_because: list[str] = field(default_factory=list)

    @property
    def searchable(self) -> bool:
        """Whether the group got a width choice."""
        return len(self.options) > 1


@dataclass
class ConvertReport:
    """The result of `supernet.convert`: width groups, depth choices, and everything left fixed with a reason."""

    groups: list[GroupRow] = field(default_factory=list)
    depths: dict[str, tuple[int, ...]] = field(default_factory=dict)
    fixed_layers: dict[str, str] = field(default_factory=dict)
    no_depth: dict[str, str] = field(default_factory=dict)

    @property
    def fixed(self) -> dict[str, str]:
        """``{what: why}`` for every layer and width group left fixed."""
        out = dict(self.fixed_layers)
        for g in self.groups:
            if not g.searchable:
                out[f"width of {g.name}"] = "; ".join(g.fixed_because) or "a single width option"
        return out

    def table(self) -> str:
        """A plain-text table of the conversion."""
        lines = []
        searchable = [g for g in self.groups if g.searchable]
        lines.append(f"width groups: {len(searchable)} searchable, {len(self.groups) - len(searchable)} fixed")
        width = max((len(g.name) for g in self.groups), default=8) + 2
        for g in self.groups:
            layers = ", ".join(g.layers[:4]) + (f", ... ({len(g.layers)} layers)" if len(g.layers) > 4 else "")
            if g.searchable:
                opts = ", ".join(map(str, g.options))
                lines.append(f"  {g.name:<{width}}{g.channels:>6}  options {opts:<18} {layers}")
            else:
                why = "; ".join(dict.fromkeys(g.fixed_because)) or "a single width option"
                lines.append(f"  {g.name:<{width}}{g.channels:>6}  FIXED: {why}")
        if self.depths:
            lines.append(f"depth choices: {len(self.depths)}")
            for name, opts in self.depths.items():
                lines.append(f"  {name:<{width}}blocks {', '.join(map(str, opts))}")
        if self.fixed_layers:
            lines.append(f"layers left fixed: {len(self.fixed_layers)}")
            for path, why in self.fixed_layers.items():
                lines.append(f"  {path:<{width}}{why}")
        if self.no_depth:
            lines.append("containers without a depth choice:")
            for path, why in self.no_depth.items():
                lines.append(f"  {path or '<model>':<{width}}{why}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()
