"""Test-wide settings."""

from __future__ import annotations

import torch

# CI runs two pytest workers on two cores: one intra-op thread each avoids oversubscription, which made
# small forwards swing from milliseconds to seconds on a loaded machine.
torch.set_num_threads(1)
