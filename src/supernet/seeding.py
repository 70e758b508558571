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


# A process that restarts part-way (a DDP rank other than 0 resuming at step s, a search worker joining a study that
# already holds n trials) seeds itself with ``seed + index + RESTART_SEED_STRIDE * done``: a prime stride, so a
# restarted process does not replay the random stream of an earlier start, nor that of another process index.
RESTART_SEED_STRIDE = 7919


def restart_seed(seed: int, index: int, done: int) -> int:
    """The seed of process ``index`` restarting after ``done`` units of work (steps, trials): `RESTART_SEED_STRIDE`."""
    return seed + index + RESTART_SEED_STRIDE * done
