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

    @property
    def heads(self) -> bool:
        """Whether the group counts an attention layer's heads (decision ``<layer>.heads``)."""
        return self.name.endswith(".heads")

    @property
    def single(self) -> str:
        """Why a group without pins is fixed anyway."""
        return "a single head option" if self.heads else "a single width option"


@dataclass
class AttentionRow:
    """A converted ``nn.MultiheadAttention``: its heads (of ``head_dim`` each), the head counts searched (empty
    when the head count is fixed, with the reasons) and whether its input and output widths are searched (they
    follow the width groups of the layers around it)."""

    path: str
    heads: int
    head_dim: int
    embed_dim: int
    options: tuple[int, ...]
    input_searchable: bool
    output_searchable: bool
    fixed_because: list[str] = field(default_factory=list)

    @property
    def searchable(self) -> bool:
        """Whether the head count is a choice."""
        return len(self.options) > 1


@dataclass
class ConvertReport:
    """The result of `supernet.convert`: width groups, depth choices, attention layers, and everything left fixed
    with a reason."""

    groups: list[GroupRow] = field(default_factory=list)
    depths: dict[str, tuple[int, ...]] = field(default_factory=dict)
    fixed_layers: dict[str, str] = field(default_factory=dict)
    no_depth: dict[str, str] = field(default_factory=dict)
    attention: list[AttentionRow] = field(default_factory=list)
    #: torch transformer modules whose fused inference fast path is kept off (it reads the full weights; see
    #: `supernet.converting.transformer`), in the space and in extracted models.
    fastpath_off: list[str] = field(default_factory=list)

    @property
    def fixed(self) -> dict[str, str]:
        """``{what: why}`` for every layer and width group left fixed."""
        out = dict(self.fixed_layers)
        for g in self.groups:
            if not g.searchable:
                what = g.name if g.heads else f"width of {g.name}"
                out[what] = "; ".join(g.fixed_because) or g.single
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
                why = "; ".join(dict.fromkeys(g.fixed_because)) or g.single
                lines.append(f"  {g.name:<{width}}{g.channels:>6}  FIXED: {why}")
        if self.attention:
            lines.append(f"attention layers: {len(self.attention)}")
            for a in self.attention:
                what = f"heads {a.heads} x {a.head_dim}"
                if a.searchable:
                    what += f"  options {', '.join(map(str, a.options))}"
                else:
                    what += "  FIXED: " + ("; ".join(dict.fromkeys(a.fixed_because)) or "a single head option")
                io = {(True, True): "searched", (False, False): "fixed"}.get(
                    (a.input_searchable, a.output_searchable),
                    "input searched" if a.input_searchable else "output searched",
                )
                lines.append(f"  {a.path:<{width}}{what}; embed dim {a.embed_dim} {io}")
        if self.fastpath_off:
            shown = ", ".join(self.fastpath_off[:4]) + (", ..." if len(self.fastpath_off) > 4 else "")
            lines.append(f"torch fused fast path off (it would bypass the searchable layers): {shown}")
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
