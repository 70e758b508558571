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


# Random streams that must not follow the training stream (so adding one does not shift the sampled archs) start
# from the run's seed plus a named offset. The values are those of supernet 0.1, so its runs resume unchanged.
ALPHA_INIT_SEED_OFFSET = 7919  # initial architecture parameters of a gradient strategy
MIXER_SEED_OFFSET = 7920  # the mixer's Gumbel / Dirichlet samples
VAL_BATCH_SEED_OFFSET = 1  # validation batches of bilevel strategies
SHIFTNAS_INIT_SEED_OFFSET = 7921  # ShiftNAS's architecture generator: initial weights
SHIFTNAS_NOISE_SEED_OFFSET = 7922  # ShiftNAS's Gumbel noise
GROUNDTRUTH_INIT_SEED_OFFSET = 1000  # stand-alone training of arch i from scratch: offset + i


def derived_seed(seed: int, offset: int) -> int:
    """The seed of one named random stream of a run seeded with ``seed`` (``offset``: an ``*_SEED_OFFSET``)."""
    return seed + offset
