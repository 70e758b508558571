"""Plain PyTorch models named ``convert_models:function`` in tests of converted spaces (train, search, export, load,
``supernet convert``). Each function returns ``(model, example_input)`` with fixed weights ("pretrained")."""

from __future__ import annotations

import torch
from torch import nn


class ResBlock(nn.Module):
    """conv-BN-ReLU-conv-BN with an identity shortcut."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(out)))


class SmallCNN(nn.Module):
    """A ResNet-like classifier of 1x8x8 digits: stem, residual blocks in a Sequential, a downsampling conv."""

    def __init__(self, c: int = 16, blocks: int = 2, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
        self.blocks = nn.Sequential(*[ResBlock(c) for _ in range(blocks)])
        self.down = nn.Sequential(nn.Conv2d(c, 2 * c, 3, 2, 1, bias=False), nn.BatchNorm2d(2 * c), nn.ReLU())
        self.head = nn.Linear(2 * c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(self.blocks(self.stem(x)))
        return self.head(x.mean((2, 3)))


class Attention(nn.Module):
    """Causal self-attention from nn.Linear layers (the head split comes from the model's config)."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.d, self.h = d, heads
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).split(self.d, dim=2)
        q, k, v = (z.view(b, t, self.h, self.d // self.h).transpose(1, 2) for z in (q, k, v))
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, self.d))


class Block(nn.Module):
    """Pre-LN transformer block."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.ln1, self.attn, self.ln2 = nn.LayerNorm(d), Attention(d, heads), nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    """A character GPT: token + position embeddings, blocks in a ModuleList, LM head tied to the embedding."""

    def __init__(self, vocab: int = 65, d: int = 32, heads: int = 4, layers: int = 3, block_size: int = 16) -> None:
        super().__init__()
        self.block_size = block_size
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(block_size, d)
        self.blocks = nn.ModuleList([Block(d, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.tok.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln_f(x))


def small_cnn(c: int = 16) -> tuple[nn.Module, torch.Tensor]:
    """`SmallCNN` with fixed weights and BN statistics, and a digits-shaped input."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model, x = SmallCNN(c), torch.rand(4, 1, 8, 8)
        with torch.no_grad():
            model(x)  # running statistics away from 0/1
    return model.eval(), x


def tiny_gpt(layers: int = 3) -> tuple[nn.Module, torch.Tensor]:
    """`TinyGPT` with fixed weights, and a batch of Shakespeare-vocabulary tokens."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return TinyGPT(layers=layers), torch.randint(0, 65, (2, 16))


def not_declared():  # the missing return annotation is the point
    """A function that returns a model but does not declare it (refused by name)."""
    return small_cnn()
