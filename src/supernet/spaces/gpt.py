"""A nanoGPT-like decoder space: embedding dim global, heads and MLP ratio per layer, depth global."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..space import Choice, Embedding, LayerNorm, Linear, PositionalEmbedding, SuperModule
from .registry import register_space
from .transformer import block_stack


class GPT(nn.Module):
    """Token + position embedding, transformer blocks, final LayerNorm, LM head; returns logits (B, T, V)."""

    def __init__(
        self, tok: nn.Module, pos: nn.Module, blocks: nn.Module, ln_f: nn.Module, head: nn.Module, block_size: int
    ) -> None:
        super().__init__()
        self.tok, self.pos, self.blocks, self.ln_f, self.head = tok, pos, blocks, ln_f, head
        self.block_size = block_size

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if idx.shape[-1] > self.block_size:
            raise ValueError(f"input has {idx.shape[-1]} tokens; the model's block size is {self.block_size}")
        x = self.pos(self.tok(idx))
        return self.head(self.ln_f(self.blocks(x)))

    @torch.no_grad()
    def generate(
        self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Sample ``max_new_tokens`` tokens after the prompt ``idx`` (B, T)."""
        for _ in range(max_new_tokens):
            logits = self(idx[:, -self.block_size :])[:, -1, :] / max(temperature, 1e-6)
            nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
            idx = torch.cat([idx, nxt], dim=1)
        return idx


@register_space("gpt")
def gpt(
    vocab_size: int = 65,
    block_size: int = 64,
    embed_dims: Sequence[int] = (64, 96, 128),
    num_heads: Sequence[int] = (2, 4),
    mlp_ratios: Sequence[float] = (2, 3, 4),
    depths: Sequence[int] = (2, 3, 4),
    head_dim: int = 32,
) -> SuperModule:
    """A GPT space (pre-LN, causal self-attention, GELU MLP, untied LM head).

    Decisions: ``embed_dim`` (global), ``layers.{i}.heads`` and ``layers.{i}.mlp_ratio`` per layer,
    ``depth`` (global). Head size is fixed at ``head_dim``; attention width is ``heads * head_dim``.
    The defaults (max 0.85M parameters with a 65-character vocabulary) train on 2 CPU cores.
    """
    embed = Choice(embed_dims, name="embed_dim")
    net = GPT(
        Embedding(vocab_size, embed),
        PositionalEmbedding(block_size, embed),
        block_stack(embed, num_heads, mlp_ratios, depths, head_dim, causal=True),
        LayerNorm(embed),
        Linear(embed, vocab_size),
        block_size,
    )
    return SuperModule(net)
