"""Seeding: one call seeds every global generator a run uses (Python, NumPy, torch on every device)."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA).

    Every entry point calls this before anything random happens, space construction (weight init) included,
    so two runs of one config are identical from the first step.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
