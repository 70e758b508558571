"""Small plain blocks used by both supernets and the networks extracted from them.

Nothing here reads a choice: an extracted network is made of standard torch layers plus these blocks, so it
can be saved, scripted or exported without the search code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Zero(nn.Module):
    """The 'none' operation: zeros shaped like the input (with an optional spatial stride)."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class SelfAttention(nn.Module):
    """Multi-head self-attention from four projections; the head count follows the width of ``q``.

    Head size is fixed (``head_dim``), so a choice of head count changes the width of q/k/v
    (``heads * head_dim``) while the embedding dim may differ: this is the AutoFormer convention.
    """

    def __init__(self, q: nn.Module, k: nn.Module, v: nn.Module, proj: nn.Module, head_dim: int, causal: bool) -> None:
        super().__init__()
        self.q, self.k, self.v, self.proj = q, k, v, proj
        self.head_dim = head_dim
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.q(x), self.k(x), self.v(x)
        heads = q.shape[-1] // self.head_dim
        q, k, v = (z.view(b, t, heads, self.head_dim).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.proj(y.transpose(1, 2).reshape(b, t, heads * self.head_dim))


class PositionalEmbedding(nn.Module):
    """Adds a learned position embedding to a ``(batch, length, dim)`` input."""

    def __init__(self, length: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(length, dim))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        if t > self.weight.shape[0]:
            raise ValueError(f"sequence length {t} exceeds the {self.weight.shape[0]} learned positions")
        return x + self.weight[:t]


class ClassToken(nn.Module):
    """Prepends a learned class token to a ``(batch, length, dim)`` input."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.weight.expand(x.shape[0], -1, -1), x], dim=1)
