"""An AutoFormer-like vision transformer space for small images."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..space import Choice, ClassToken, Conv2d, LayerNorm, Linear, PositionalEmbedding, SuperModule
from .registry import register_space
from .transformer import block_stack


class ViT(nn.Module):
    """Patch embedding, class token, positions, transformer blocks, LayerNorm, classifier on the class token."""

    def __init__(
        self, patch: nn.Module, cls: nn.Module, pos: nn.Module, blocks: nn.Module, norm: nn.Module, head: nn.Module
    ) -> None:
        super().__init__()
        self.patch, self.cls, self.pos, self.blocks, self.norm, self.head = patch, cls, pos, blocks, norm, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)  # (B, patches, dim)
        x = self.blocks(self.pos(self.cls(x)))
        return self.head(self.norm(x)[:, 0])


@register_space("vit")
def vit(
    image_size: int = 32,
    patch_size: int = 4,
    in_channels: int = 3,
    num_classes: int = 10,
    embed_dims: Sequence[int] = (64, 96, 128),
    num_heads: Sequence[int] = (2, 4),
    mlp_ratios: Sequence[float] = (2, 3, 4),
    depths: Sequence[int] = (2, 3, 4),
    head_dim: int = 32,
) -> SuperModule:
    """A ViT space: ``embed_dim`` and ``depth`` global, ``layers.{i}.heads`` / ``layers.{i}.mlp_ratio`` per layer.

    Head size is fixed at ``head_dim`` (AutoFormer convention). Patches are ``patch_size`` squares of an
    ``image_size`` square input.
    """
    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
    embed = Choice(embed_dims, name="embed_dim")
    tokens = (image_size // patch_size) ** 2 + 1
    net = ViT(
        Conv2d(in_channels, embed, patch_size, stride=patch_size, padding=0),
        ClassToken(embed),
        PositionalEmbedding(tokens, embed),
        block_stack(embed, num_heads, mlp_ratios, depths, head_dim, causal=False),
        LayerNorm(embed),
        Linear(embed, num_classes),
    )
    return SuperModule(net)
