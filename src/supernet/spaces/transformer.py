"""The pre-LN transformer block shared by the GPT and ViT spaces (plain class; layers may be entangled)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..space import LayerNorm, Linear, Repeat, attention, derived
from ..space.choice import Choice, Value


class Block(nn.Module):
    """``x + attn(ln1(x))`` then ``x + mlp(ln2(x))``."""

    def __init__(self, ln1: nn.Module, attn: nn.Module, ln2: nn.Module, mlp: nn.Module) -> None:
        super().__init__()
        self.ln1, self.attn, self.ln2, self.mlp = ln1, attn, ln2, mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


def entangled_block(
    embed: Value | int, heads: Choice | int, mlp_ratio: Choice | float, head_dim: int, causal: bool
) -> Block:
    """A transformer block whose embed dim, head count and MLP ratio may be choices."""
    hidden = _hidden_size(embed, mlp_ratio)
    mlp = nn.Sequential(Linear(embed, hidden), nn.GELU(), Linear(hidden, embed))
    return Block(LayerNorm(embed), attention(embed, heads, head_dim, causal), LayerNorm(embed), mlp)


def _hidden_size(embed: Value | int, ratio: Value | float) -> Value | int:
    # Ratios such as 3.5 give a whole hidden size only for some dims: round down like AutoFormer.
    if isinstance(embed, Value) or isinstance(ratio, Value):
        return derived(_mlp_width, embed, ratio)
    return _mlp_width(embed, ratio)


def _mlp_width(embed: int, ratio: float) -> int:
    return int(embed * ratio)


def block_stack(
    embed: Value,
    num_heads: Sequence[int],
    mlp_ratios: Sequence[float],
    depths: Sequence[int],
    head_dim: int,
    causal: bool,
) -> Repeat:
    """``max(depths)`` blocks with per-layer ``layers.{i}.heads`` / ``layers.{i}.mlp_ratio`` and a ``depth`` choice."""
    blocks = [
        entangled_block(
            embed,
            Choice(num_heads, name=f"layers.{i}.heads"),
            Choice(mlp_ratios, name=f"layers.{i}.mlp_ratio"),
            head_dim,
            causal=causal,
        )
        for i in range(max(depths))
    ]
    return Repeat(blocks, Choice(depths, name="depth"))
