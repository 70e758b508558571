"""Where tensors go: one rule for ``--device auto|cpu|cuda[:N]`` everywhere in the library."""

from __future__ import annotations

import torch
from torch import nn


def resolve_device(device: str | torch.device | None = "auto", module: nn.Module | None = None) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; None -> the module's device (CPU if it has no parameters)."""
    if device is None:
        if module is not None:
            for p in module.parameters():
                return p.device
        return torch.device("cpu")
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
