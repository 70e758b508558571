"""Tiny but structurally complete configs of the ready spaces, shared by tests that sweep every space."""

from __future__ import annotations

from typing import Any

import torch

import supernet as sn
from supernet.spaces import build_space

TINY: dict[str, dict[str, Any]] = {
    "nb201": {"C": 4, "N": 1},
    "mobilenet": {
        "widths": (8, 8, 16),
        "strides": (1, 2),
        "depths": (1, 2),
        "kernel_sizes": (3, 5),
        "expand_ratios": (2, 3),
        "activations": ("relu", "hswish"),
        "use_se": (False, True),
        "feature_dim": 16,
    },
    "gpt": {
        "vocab_size": 11,
        "block_size": 8,
        "embed_dims": (16, 24),
        "num_heads": (1, 2),
        "mlp_ratios": (2, 3),
        "depths": (1, 2),
        "head_dim": 8,
    },
    "vit": {
        "image_size": 8,
        "patch_size": 4,
        "embed_dims": (16, 24),
        "num_heads": (1, 2),
        "mlp_ratios": (2, 3),
        "depths": (1, 2),
        "head_dim": 8,
    },
    "darts": {"C": 4, "layers": 3, "nodes": 2},
}


def tiny_space(name: str, **overrides: Any) -> sn.SuperModule:
    """A small instance of ready space ``name``; ``overrides`` replace its tiny settings."""
    return build_space(name, **{**TINY[name], **overrides})


# A `supernet train` config of a tiny GPT run on Tiny Shakespeare (2 steps); fill in run_dir and the search section.
TINY_GPT_RUN_YAML = """
run_dir: {run_dir}
device: cpu
space: {{name: gpt, kwargs: {{block_size: 8, embed_dims: [8, 16], num_heads: [1, 2], mlp_ratios: [2],
        depths: [1, 2], head_dim: 4}}}}
data: {{name: shakespeare}}
train: {{steps: 2, batch_size: 4, strategy: uniform, progress: false}}
search: {{{search}, eval_batches: 1, eval_batch_size: 8, bn_batches: 0}}
"""


# Every ready space with a batch it takes, for the proxy sweeps: (space factory, (inputs, targets)).
PROXY_IMAGES = (torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 3]))
PROXY_TOKENS = (torch.randint(0, 17, (3, 8), generator=torch.Generator().manual_seed(0)),) * 2
PROXY_SPACES: dict[str, tuple[Any, Any]] = {
    "nb201": (lambda: tiny_space("nb201", num_classes=4), PROXY_IMAGES),
    "mobilenet": (lambda: tiny_space("mobilenet", num_classes=4, image_size=16, strides=(2, 2)), PROXY_IMAGES),
    "vit": (
        lambda: tiny_space("vit", image_size=16, patch_size=8, num_classes=4, embed_dims=(16, 32), mlp_ratios=(1, 2)),
        PROXY_IMAGES,
    ),
    "gpt": (lambda: tiny_space("gpt", vocab_size=17, embed_dims=(16, 32), mlp_ratios=(1, 2)), PROXY_TOKENS),
    "darts": (lambda: tiny_space("darts", num_classes=4), PROXY_IMAGES),
}
